#!/usr/bin/env python
"""Localization Distillation on the built-in data, after `make quickstart`: the quick-start model
teaches a smaller, faster student (configs/Quickstart/gfl_shapes_student.py), trained plainly,
with main-region LD (ld_shapes.py) and with the full recipe (ld_full_shapes.py), same schedule,
for each seed; then a table of val box AP, AP50, AP75, APs, APm, training time and the inference
speed of student and teacher (optimised eager, one image at a time and in batches of 16, and the
int8 ONNX Runtime export).

    python tools/distill_quickstart.py                      # 2 seeds x 3 runs, two trainings at a time
    python tools/distill_quickstart.py --seeds 0 --runs student ld train.max_iter=600

Each run is `train_net.py --resume --config-file configs/Quickstart/<config> train.seed=S` into
output/quickstart_ld/<run>_seed<S>/: a killed run continues from its last checkpoint, a finished
one is reused (delete it to train again). `--jobs` trainings run at a time, the cores split
between them (default 2: on two cores that finishes sooner than one after the other).
"""

import argparse
import functools
import json
import os
import sys

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
import cv2
import torch
from tabulate import tabulate

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog

from gfocal.analysis.plotting import final_metrics, training_minutes
from gfocal.checkpoint import load_for_inference
from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.engine import LazyPredictor, TrainingRun, cpu_name, interleaved_medians, train_unless_finished
from gfocal.errors import CheckpointError, GFocalError
from gfocal.export import deployment_paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER = ("configs/Quickstart/gfl_shapes.py", "output/quickstart/gfl/model_final.pth")
RUNS = {
    "student": ("plain student", "configs/Quickstart/gfl_shapes_student.py"),
    "ld": ("LD (main region)", "configs/Quickstart/ld_shapes.py"),
    "ld_full": ("LD (full recipe)", "configs/Quickstart/ld_full_shapes.py"),
}
METRICS = ["AP", "AP50", "AP75", "APs", "APm"]
BATCH = 16  # images per call of the batched speed path (the training batch)


SPEED_PATHS = {  # key -> column of the speed table
    "eager": "optimised eager (ms/image)",
    "eager_batch": f"optimised eager, batches of {BATCH} (ms/image)",
    "int8": "int8 ONNX Runtime (ms/image)",
}


def inference_paths(config: str, weights: str, export_root: str, overrides=()):
    """A trained config's ways to run a list of BGR images, by :data:`SPEED_PATHS` key: the
    optimised eager predictor one image at a time (latency, as the demo runs) and on batches of
    ``BATCH`` (throughput, as evaluation or a server can run), and the int8 ONNX Runtime detector
    (exported once into ``export_root``)."""
    cfg = load_config(os.path.join(REPO, config), overrides)
    model = instantiate(cfg.model).eval()
    load_for_inference(model, weights, cfg)
    paths = deployment_paths(cfg, model, export_root, "64", ["gfl-optimized", "onnxruntime-int8"])
    eager = LazyPredictor(cfg, model=model)

    def batches(images):
        for start in range(0, len(images), BATCH):
            with torch.inference_mode():
                eager.model([eager.preprocess(image) for image in images[start : start + BATCH]])

    return {
        "eager": lambda images: [paths["gfl-optimized"](image) for image in images],
        "eager_batch": batches,
        "int8": lambda images: [paths["onnxruntime-int8"](image) for image in images],
    }


def time_side_by_side(models, images, rounds: int = 5):
    """Median ms per image of every path of ``models`` ({model: {path: callable on a list of
    images}}), after one batch of warm-up, measured round-robin (each path over all images once per
    round: :func:`gfocal.engine.interleaved_medians`), so that the ratios hold."""
    for paths in models.values():
        for fn in paths.values():
            fn(images[:BATCH])
    fns = {(who, path): functools.partial(fn, images) for who, paths in models.items() for path, fn in paths.items()}
    seconds = interleaved_medians(fns, rounds)
    return {who: {path: seconds[who, path] / len(images) * 1000 for path in paths} for who, paths in models.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--output-root", default=os.path.join(REPO, "output/quickstart_ld"))
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="trainings at a time, the cores split between them (default: 2, or 1 on one core)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="overrides for every run")
    args = checked_parser(parser).parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    teacher_weights = os.path.join(REPO, TEACHER[1])
    if not os.path.isfile(teacher_weights):
        raise CheckpointError(f"no teacher at {TEACHER[1]}: run `make quickstart` first (it trains the teacher)")
    for key in args.runs:  # every override checked against every config before any training
        load_config(os.path.join(REPO, RUNS[key][1]), args.opts)

    runs = []
    for key in args.runs:
        teacher = [] if key == "student" else [f"distill.teacher.weights={teacher_weights}"]
        for seed in args.seeds:
            out = os.path.join(args.output_root, f"{key}_seed{seed}")
            overrides = [f"train.seed={seed}", f"train.output_dir={out}", *teacher, *args.opts]
            runs.append(TrainingRun(f"{RUNS[key][0]}, seed {seed}", out, os.path.join(REPO, RUNS[key][1]), overrides))
    train_unless_finished(runs, os.path.join(REPO, "train_net.py"), args.jobs)

    rows, results = [], {}
    for key in args.runs:
        per_seed = []
        for seed in args.seeds:
            out = os.path.join(args.output_root, f"{key}_seed{seed}")
            metrics = final_metrics(os.path.join(out, "metrics.json"), METRICS)
            if metrics is None:
                raise GFocalError(f"no evaluation found in {out}/metrics.json")
            metrics["minutes"] = training_minutes(os.path.join(out, "log.txt"))
            per_seed.append(metrics)
        results[key] = per_seed
        rows.append([RUNS[key][0], *[" / ".join(f"{m[k]:.1f}" for m in per_seed) for k in [*METRICS, "minutes"]]])

    val = DatasetCatalog.get("gfocal_shapes_val")[:50]
    images = [cv2.imread(r["file_name"]) for r in val]
    first = os.path.join(args.output_root, f"{args.runs[0]}_seed{args.seeds[0]}", "model_final.pth")
    # The student as trained (the first run's config and overrides); the teacher is the quick start's.
    models = {
        "student": inference_paths(
            RUNS[args.runs[0]][1], first, os.path.join(args.output_root, "export_student"), args.opts
        ),
        "teacher": inference_paths(TEACHER[0], teacher_weights, os.path.join(args.output_root, "export_teacher")),
    }
    speeds = time_side_by_side(models, images)
    results["speed_ms"] = speeds
    headers = ["run (seeds " + " / ".join(map(str, args.seeds)) + ")", *METRICS, "training (min)"]
    print("\n" + tabulate(rows, headers=headers, tablefmt="pipe"))
    speed_rows = [[who, *(f"{s[path]:.1f}" for path in SPEED_PATHS)] for who, s in speeds.items()]
    speed_rows.append(
        ["student faster by", *(f"{speeds['teacher'][p] / speeds['student'][p]:.2f}x" for p in SPEED_PATHS)]
    )
    print("\n" + tabulate(speed_rows, headers=["model", *SPEED_PATHS.values()], tablefmt="pipe"))
    print(f"(measured side by side on {cpu_name()}, {torch.get_num_threads()} threads)")
    with open(os.path.join(args.output_root, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
