#!/usr/bin/env python
"""Benchmark of tools/find_label_errors.py on the built-in data, side by side with cleanlab's
ObjectLab on the same predictions, and what the corrections are worth downstream.

    python tools/benchmark_label_errors.py                 # everything (a 2-core CPU: ~1-1.5 h)
    python tools/benchmark_label_errors.py --skip-downstream
    python tools/benchmark_label_errors.py --seeds 0,1     # downstream: mean of two seeds

1. Noise: gfocal.label_check.inject_noise (seeded; drop, class flip, one- and two-side shifts
   of 10-30%, spawn on background, duplicates) on gfocal_shapes_train -> noisy_train.json.
2. The tool's default run on it (out-of-fold, the quick-start recipe) -> check/; its wall time.
3. Per type: AP of the ranking and recall at the number injected, for GFocal and for cleanlab
   (``cleanlab.object_detection.rank``: badloc for location, swap for class, overlooked for
   missing; it has no spurious or duplicate score, so each of its three label-box scores is
   tried there and the best kept; each score's thresholds are tuned on this very benchmark,
   see ``CLEANLAB_GRID``); mean IoU of the moved boxes with their clean boxes before and after;
   flipped classes given back; flags per 1,000 untouched annotations.
4. Downstream: the quick start trained on clean, noisy and corrected train (train_net.py
   --resume into runs/, two at a time), val box AP, and the share of the noise's AP cost won back.

Everything goes to --output (default output/label_benchmark): results.json and the table. A
rerun reuses what is done: the fold models and their outputs (the tool's own cache), cleanlab's
rankings of the same predictions (cleanlab.json) and finished downstream runs; ``--jobs 3`` trains
the three downstream runs side by side (on 2 cores that ends sooner than 2 + 1).
cleanlab is a benchmark-only dependency: ``pip install cleanlab==2.9.0 'numpy<2'``.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
import numpy as np
from tabulate import tabulate

from gfocal.analysis.plotting import final_metrics
from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.data import train_on_coco_json
from gfocal.engine import TrainingRun, cpu_name, train_unless_finished
from gfocal.errors import ConfigError, GFocalError
from gfocal.label_check import ISSUE_TYPES, dataset_files, evaluate_issues, inject_noise
from gfocal.label_check.benchmark import injected, positives_of, ranking_ap
from gfocal_runtime.boxes import xywh_to_xyxy, xyxy_to_xywh

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")
# cleanlab's thresholds, tuned here for GFL scores (IoU estimates that rarely pass its 0.95).
CLEANLAB_GRID = {
    "badloc": [{"low_probability_threshold": t} for t in (0.5, 0.3, 0.1, 0.05)],
    "swap": [{"high_probability_threshold": t} for t in (0.95, 0.7, 0.5, 0.3, 0.1)],
    "overlooked": [{"high_probability_threshold": t} for t in (0.95, 0.7, 0.5, 0.3, 0.1)],
}


def cleanlab_inputs(noisy, predictions, category_ids):
    """cleanlab's per-image labels and predictions (x1y1x2y2 px, contiguous classes)."""
    index = {c: i for i, c in enumerate(category_ids)}
    by_image = {im["id"]: [] for im in noisy["images"]}
    for a in noisy["annotations"]:
        by_image[a["image_id"]].append(a)
    preds = {im["id"]: [[] for _ in category_ids] for im in noisy["images"]}
    for p in predictions:
        preds[p["image_id"]][index[p["category_id"]]].append([*xywh_to_xyxy(p["bbox"]), p["score"]])
    ids = [im["id"] for im in noisy["images"]]
    labels = [
        {
            "bboxes": xywh_to_xyxy([a["bbox"] for a in by_image[i]]).astype(np.float32).reshape(-1, 4),
            "labels": np.array([index[a["category_id"]] for a in by_image[i]], np.int64),
            "ids": [a["id"] for a in by_image[i]],
        }
        for i in ids
    ]
    predictions = [[np.array(c, np.float32).reshape(-1, 5) for c in preds[i]] for i in ids]
    return ids, labels, predictions


def cleanlab_rankings(noisy, predictions, category_ids, changes):
    """Per issue type cleanlab's best ranking over CLEANLAB_GRID: (AP, recall, setting)."""
    from cleanlab.object_detection import rank

    ids, labels, preds = cleanlab_inputs(noisy, predictions, category_ids)
    plain = [{"bboxes": x["bboxes"], "labels": x["labels"]} for x in labels]
    # What each score is about, per image: an annotation (badloc, swap) or a predicted box (overlooked).
    label_rows = [[{"image_id": i, "annotation_id": aid} for aid in lab["ids"]] for i, lab in zip(ids, labels)]
    pred_rows = [
        [{"image_id": i, "suggested_bbox": xyxy_to_xywh(box).tolist()} for p in pred for box in p[:, :4]]
        for i, pred in zip(ids, preds)
    ]
    scored = {
        (name, i): getattr(rank, f"compute_{name}_box_scores")(labels=plain, predictions=preds, **setting)
        for name, grid in CLEANLAB_GRID.items()
        for i, setting in enumerate(grid)
    }
    tried = {"location": ("badloc",), "class": ("swap",), "missing": ("overlooked",)}
    out = {}
    for kind in ISSUE_TYPES:
        best = None
        for name in tried.get(kind, ("badloc", "swap")):
            for i, setting in enumerate(CLEANLAB_GRID[name]):
                rows = pred_rows if name == "overlooked" else label_rows
                entries = [
                    {**row, "_s": v}
                    for image_rows, s in zip(rows, scored[name, i])
                    for row, v in zip(image_rows, np.asarray(s, np.float64))
                    if np.isfinite(v)
                ]
                entries.sort(key=lambda e: e["_s"])  # lower = more suspect
                ap, recall = ranking_ap(positives_of(kind, entries, changes), injected(kind, changes))
                if best is None or ap > best[0]:
                    best = (ap, recall, f"{name} {setting}")
        out[kind] = {"ap": best[0], "recall_at_injected": best[1], "setting": best[2]}
    return out


def cached_cleanlab(root, noisy, predictions, category_ids, changes):
    """:func:`cleanlab_rankings`, kept in ROOT/cleanlab.json under a digest of its inputs (the
    predictions, the noise, the grid): a rerun on the same predictions takes it from there.
    None when cleanlab is not installed."""
    key = hashlib.sha256(json.dumps([predictions, changes, repr(CLEANLAB_GRID)]).encode()).hexdigest()
    path = os.path.join(root, "cleanlab.json")
    if os.path.isfile(path):
        with open(path) as f:
            kept = json.load(f)
        if kept.get("key") == key:
            print(f"cleanlab's rankings of these predictions read back from {path}")
            return kept["result"]
    try:
        result = cleanlab_rankings(noisy, predictions, category_ids, changes)
    except ImportError:
        print("cleanlab is not installed (pip install cleanlab==2.9.0 'numpy<2'): its columns are left out")
        return None
    with open(path, "w") as f:
        json.dump({"key": key, "result": result}, f, indent=1)
    return result


def train_downstream(root, jsons, image_root, overrides, jobs=None, seeds=(0,)):
    """Quick-start trainings on each train set of ``jsons`` (name -> json file), once per
    ``train.seed`` of ``seeds`` (``jobs`` at a time; CPU default 2): each set's val box AP per
    seed and their mean. A short training's AP moves by points with the seed and with small
    changes of its data, so one seed says little about a difference of a few points."""
    cfg = load_config(CONFIG, overrides)
    runs = []  # (train set, its training)
    for name, json_file in jsons.items():
        for seed in seeds:
            out = os.path.join(root, "runs", name if seed == 0 else f"{name}-seed{seed}")
            run_cfg = train_on_coco_json(cfg, json_file, image_root, f"label_benchmark_{name}")
            run_cfg.train.output_dir = out
            run_cfg.train.seed = seed
            runs.append((name, TrainingRun(f"quick start on {name} train, seed {seed}", out, run_cfg)))
    jobs = jobs or min(2, os.cpu_count() or 1)
    train_unless_finished([training for _, training in runs], os.path.join(REPO, "train_net.py"), jobs, cwd=REPO)
    per_seed = {}
    for name, training in runs:
        metrics = final_metrics(os.path.join(training.output_dir, "metrics.json"))
        if metrics is None:
            raise GFocalError(f"no evaluation in {training.output_dir}/metrics.json")
        per_seed.setdefault(name, []).append(metrics["AP"])
    return {name: float(np.mean(aps)) for name, aps in per_seed.items()}, per_seed


def parse_seeds(text: str) -> tuple:
    try:
        seeds = tuple(int(x) for x in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct non-negative integers, comma-separated (e.g. 0,1), got {text!r}")
    return seeds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join(REPO, "output/label_benchmark"))
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--skip-downstream", action="store_true", help="no clean / noisy / corrected trainings")
    parser.add_argument("--jobs", type=int, default=None, help="downstream trainings at a time (CPU default 2)")
    parser.add_argument(
        "--seeds", default="0", help="train.seed of the downstream trainings, comma-separated (mean over them)"
    )
    parser.add_argument("--tool-args", default="", help="extra arguments for find_label_errors.py, one string")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="overrides for every training")
    args = checked_parser(parser).parse_args(argv)
    load_config(CONFIG, args.opts)  # overrides checked before anything runs
    seeds = parse_seeds(args.seeds)
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    os.makedirs(args.output, exist_ok=True)
    clean_json, image_root = dataset_files("gfocal_shapes_train")
    with open(clean_json) as f:
        clean = json.load(f)
    noisy, changes = inject_noise(clean, seed=args.seed)
    noisy_json = os.path.join(args.output, "noisy_train.json")
    for path, data in ((noisy_json, noisy), (os.path.join(args.output, "changes.json"), changes)):
        if not os.path.isfile(path) or json.load(open(path)) != data:
            with open(path, "w") as f:
                json.dump(data, f)
    check_dir = os.path.join(args.output, "check")
    cmd = [sys.executable, os.path.join(REPO, "tools/find_label_errors.py"), "--config-file", CONFIG]
    cmd += ["--json", noisy_json, "--image-root", image_root, "--output", check_dir, *args.tool_args.split()]
    cmd += args.opts
    print("==", " ".join(cmd[1:]), flush=True)
    start = time.time()
    subprocess.run(cmd, check=True, cwd=REPO)
    wall = time.time() - start
    outputs = {}
    for name in ("run", "label_issues", "corrected", "predictions"):
        with open(os.path.join(check_dir, f"{name}.json")) as f:
            outputs[name] = json.load(f)
    summary, issues, corrected, predictions = outputs.values()
    ours = evaluate_issues(issues, changes, noisy, corrected)
    category_ids = sorted(c["id"] for c in noisy["categories"])
    theirs = cached_cleanlab(args.output, noisy, predictions, category_ids, changes)
    results = {
        "cpu": cpu_name(),
        "tool": {"wall_minutes": wall / 60, **summary["minutes"], "mode": summary["mode"], "scales": summary["scales"]},
        "gfocal": ours,
        "cleanlab": theirs,
    }
    rows = []
    for kind in ISSUE_TYPES:
        t, c = ours["types"][kind], theirs[kind] if theirs else None
        row = [kind, t["injected"], f"{t['ap']:.3f}", f"{t['recall_at_injected']:.3f}"]
        row += [f"{c['ap']:.3f}", f"{c['recall_at_injected']:.3f}"] if c else ["-", "-"]
        row.append(f"{t['ap'] / c['ap']:.1f}x" if c and c["ap"] > 0 else "-")
        rows.append(row + [f"{t['flagged']} ({t['precision_flagged']:.2f})"])
    headers = ["type", "injected", "AP", "recall@injected", "cleanlab AP", "cleanlab recall", "AP ratio"]
    table = tabulate(rows, headers=headers + ["flagged (precision)"], tablefmt="pipe")
    moved = ours["moved_iou"]
    lines = [
        table,
        "",
        f"moved boxes, mean IoU with the clean box: noisy {moved['noisy']:.3f} -> "
        f"corrected.json {moved['corrected']:.3f} "
        f"(every suggestion applied: {moved['suggested']:.3f})",
        f"flipped classes given back: {100 * ours['class_restored']:.1f}%",
        f"flags per 1,000 untouched annotations: {ours['flags_per_1000_untouched']:.1f}",
        f"tool wall time: {wall / 60:.1f} min ({summary['mode']}, scales {summary['scales']}; training "
        f"{summary['minutes']['training']:.1f} min) on {cpu_name()}",
    ]
    if theirs:
        lines.append("cleanlab settings: " + "; ".join(f"{k}: {v['setting']}" for k, v in theirs.items()))
    if not args.skip_downstream:
        jsons = {"clean": clean_json, "noisy": noisy_json, "corrected": os.path.join(check_dir, "corrected.json")}
        ap, per_seed = train_downstream(args.output, jsons, image_root, args.opts, args.jobs, seeds)
        cost = ap["clean"] - ap["noisy"]
        recovered = (ap["corrected"] - ap["noisy"]) / cost if cost > 0 else float("nan")
        results["downstream_ap"] = {**ap, "recovered": recovered, "seeds": list(seeds), "per_seed": per_seed}
        each = "; ".join(f"{name} " + " / ".join(f"{v:.1f}" for v in aps) for name, aps in per_seed.items())
        lines.append(
            f"val box AP of the quick start trained on clean {ap['clean']:.1f} / noisy {ap['noisy']:.1f} / "
            f"corrected {ap['corrected']:.1f} train (mean over train.seed {args.seeds}: {each}): "
            f"{100 * recovered:.0f}% of the noise's cost recovered"
        )
    text = "\n".join(lines)
    print("\n" + text)
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.output, "table.md"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
