"""GFocal against Ultralytics YOLO at equal training wall time on the built-in data
(``tools/benchmark.py --mode frontier``).

Budgets are multiples of the quick start's training time on this CPU in these conditions: a
short probe of each GFocal config measures its step time (``jobs`` trainings side by side,
``cpu_count // jobs`` threads each, as the real runs), 1x is the quick-start schedule's 1,500
steps, and each GFocal model trains ``round(budget / its step)`` iterations (its schedule follows
``train.max_iter``); each YOLO model (``.venv-yolo``, :mod:`yolo_side`) trains for the same
seconds with ``time=``. Every model is evaluated on the same val json by the same COCO evaluator
(faster-coco-eval) and timed at batch 1 on val images through its ONNX export (GFocal:
``gfocal_runtime.Detector`` on ONNX Runtime and OpenVINO, fp32 and int8; YOLO: its own export
and ``predict``), 2 threads, NMS included on both sides. Runs are kept under ``--output-dir``: a
rerun reuses finished ones and resumes killed ones (YOLO runs restart).
"""

import json
import os
import re
import subprocess
import sys

import numpy as np

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.data.detection_utils import read_image
from detectron2.evaluation import inference_on_dataset

from gfocal.checkpoint import load_for_inference
from gfocal.config import load_config
from gfocal.engine import FastCOCOEvaluator, cpu_name, faster_cocoeval, run_trainings
from gfocal.errors import ConfigError
from gfocal.export import deployment_paths
from gfocal_runtime.formats import LabelSet, write_labels

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURE = os.path.join(REPO, "tools", "measure.py")
GFOCAL = {
    "quickstart": ("quick-start GFL", "configs/Quickstart/gfl_shapes.py"),
    "quickstart_strong": ("quick-start GFL, strong aug", "configs/Quickstart/gfl_shapes_strong.py"),
    "nano": ("GFocal-Nano", "configs/Quickstart/gfl_nano_shapes.py"),
    "nano_mild": ("GFocal-Nano, mild aug", "configs/Quickstart/gfl_nano_shapes_mild.py"),
    "nano_v2": ("GFocal-Nano v2", "configs/Quickstart/gflv2_nano_shapes.py"),
    "nano_ld": ("GFocal-Nano + LD", "configs/Quickstart/ld_nano_shapes.py"),
}
# A student trains after its teacher, the quick-start model of the same budget (its probe: the
# quick-start probe's); the teacher's training time is not in the student's budget.
TEACHER = {"nano_ld": "quickstart"}
# A variant of another contender's config (a student: less its teacher); probed after the first
# probes, beside a second probe of the config it extends, and scaled to the first probes' conditions.
EXTENDS = {"nano_ld": "nano", "nano_mild": "nano", "quickstart_strong": "quickstart"}
YOLO = {"yolo11n": "YOLO11n", "yolo26n": "YOLO26n"}
CONTENDERS = list(GFOCAL) + list(YOLO)
BASE_ITERS = 1500  # the quick-start schedule: its training time is the 1x budget
PROBE_ITERS = 60
GFOCAL_PATHS = ("onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-int8")


def yolo_python() -> str:
    """The Ultralytics venv's python, or one line on how to make it."""
    python = os.path.join(REPO, ".venv-yolo", "bin", "python")
    ok = (
        os.path.isfile(python)
        and subprocess.run(
            [python, "-c", "import ultralytics, onnxruntime"],
            capture_output=True,
            env=dict(os.environ, YOLO_OFFLINE="True"),
        ).returncode
        == 0
    )
    if not ok:
        raise ConfigError(
            "the YOLO contenders need Ultralytics in its own venv: run `make yolo-env` (creates .venv-yolo with "
            "ultralytics 8.4.190; AGPL, a benchmark-only extra), or leave yolo11n/yolo26n out of --contenders"
        )
    return python


def yolo_dataset(out_dir: str):
    """The built-in train/val splits written as YOLO (once); returns (data.yaml, val image list)."""
    root = os.path.join(out_dir, "data", "yolo")
    val_list = os.path.join(root, "val.txt")
    if not os.path.isfile(val_list):
        splits = {}
        for split in ("train", "val"):
            name = f"gfocal_shapes_{split}"
            splits[split] = [dict(r, annotations=[dict(a) for a in r["annotations"]]) for r in DatasetCatalog.get(name)]
            for record in splits[split]:  # Detectron2's COCO loader gives XYWH boxes
                for a in record["annotations"]:
                    x, y, w, h = a["bbox"]
                    a["bbox"] = [x, y, x + w, y + h]
        classes = MetadataCatalog.get("gfocal_shapes_train").thing_classes
        write_labels(LabelSet("coco", "", list(classes), splits), root, fmt="yolo")
        with open(val_list, "w") as f:
            f.write("".join(r["file_name"] + "\n" for r in splits["val"]))
    return os.path.join(root, "data.yaml"), val_list


def _train_seconds(out: str) -> float:
    """Detectron2's 'Overall training speed: N iterations in H:MM:SS' of a finished run."""
    with open(os.path.join(out, "log.txt")) as f:
        found = re.findall(r"Overall training speed: \d+ iterations in (\d+):(\d+):(\d+)", f.read())
    h, m, s = (int(v) for v in found[-1])
    return 3600 * h + 60 * m + s


def _with_peak_rss(argv, out: str):
    """``argv`` run by tools/measure.py, which writes the peak RSS of its processes to ``out/peak_rss.json``."""
    return [sys.executable, MEASURE, "peak-rss", out, "--", *argv]


def _gfocal_argv(key: str, out: str, iters: int):
    config = os.path.join(REPO, GFOCAL[key][1])
    argv = [
        sys.executable, os.path.join(REPO, "train_net.py"), "--resume", "--config-file", config,
        f"train.max_iter={iters}", f"train.output_dir={out}", "train.eval_period=0", "train.checkpointer.period=500",
    ]  # fmt: skip
    if key in TEACHER:  # the teacher's run sits beside the student's: <out_dir>/<teacher>_<budget> or probe/<teacher>
        parent, name = os.path.split(out)
        teacher_out = os.path.join(parent, TEACHER[key] + name[len(key) :])
        argv.append(f"distill.teacher.weights={os.path.join(teacher_out, 'model_final.pth')}")
    return argv


def _in_waves(todo, jobs: int) -> None:
    """Run the trainings of ``todo`` (label, argv, out) ``jobs`` at a time; a student whose
    teacher's weights are not there yet waits for every other run."""

    def waits(argv):
        weights = [a.split("=", 1)[1] for a in argv if a.startswith("distill.teacher.weights=")]
        return bool(weights) and not os.path.isfile(weights[0])

    later = [t for t in todo if waits(t[1])]
    run_trainings([t for t in todo if t not in later], jobs)
    run_trainings(later, jobs)


def _median_step(out: str) -> float:
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return float(np.median([r["time"] for r in rows if "time" in r and r.get("iteration", 0) >= PROBE_ITERS // 3]))


def step_seconds(keys, out_dir: str, jobs: int) -> dict:
    """Median training step time of each GFocal config, probed side by side as the real runs train.

    The probe of a variant (``EXTENDS``; a student, whose probe waits for its teacher's) runs after
    the others, beside a second probe of the config it extends (``<variant>_reference``), and its
    step is scaled by that config's first probe over the second, so that every step is measured in
    the first probes' conditions.
    """
    first, pairs = [], {key: [] for key in keys if key in EXTENDS}
    for key in keys:
        out = os.path.join(out_dir, "probe", key)
        if not os.path.isfile(os.path.join(out, "model_final.pth")):
            (pairs[key] if key in EXTENDS else first).append(
                (f"{key} probe", _gfocal_argv(key, out, PROBE_ITERS) + ["train.log_period=5"], out)
            )
        reference = os.path.join(out_dir, "probe", f"{key}_reference")
        if key in EXTENDS and not os.path.isfile(os.path.join(reference, "model_final.pth")):
            argv = _gfocal_argv(EXTENDS[key], reference, PROBE_ITERS) + ["train.log_period=5"]
            pairs[key].append((f"{key} reference probe", argv, reference))
    run_trainings(first, jobs)
    for pair in pairs.values():  # a variant and its reference side by side, a pair at a time
        if pair:
            run_trainings(pair, jobs)
    steps = {key: _median_step(os.path.join(out_dir, "probe", key)) for key in keys}
    for key in keys:
        if key in EXTENDS:
            steps[key] *= steps[EXTENDS[key]] / _median_step(os.path.join(out_dir, "probe", f"{key}_reference"))
    return steps


def train_all(contenders, budgets, out_dir: str, jobs: int, only_finished: bool = False) -> dict:
    """Train every (contender, budget) not finished yet (``only_finished``: none, and leave the
    unfinished out); returns {(key, budget): output dir}."""
    gfocal_keys = [k for k in contenders if k in GFOCAL]
    if only_finished:
        outs = {(k, b): os.path.join(out_dir, f"{k}_{b:g}x") for b in budgets for k in contenders}
        done = "result.json", "model_final.pth"
        return {kb: out for kb, out in outs.items() if os.path.isfile(os.path.join(out, done[kb[0] in GFOCAL]))}
    teachers = {f"{TEACHER[k]}_{b:g}x": TEACHER[k] for b in budgets for k in contenders if k in TEACHER}
    missing = [
        run for run, teacher in teachers.items()
        if teacher not in contenders and not os.path.isfile(os.path.join(out_dir, run, "model_final.pth"))
    ]  # fmt: skip
    if missing:
        raise ConfigError(
            f"a distilled contender trains under its teacher's run of the same budget: add {teachers[missing[0]]} "
            f"to --contenders (no {', '.join(missing)} in {out_dir})"
        )
    students = [k for k in gfocal_keys if k in TEACHER]
    needed = set(gfocal_keys) | {"quickstart"} | {TEACHER[k] for k in students}
    needed |= {EXTENDS[k] for k in gfocal_keys if k in EXTENDS}
    steps = step_seconds(sorted(needed), out_dir, jobs)
    base = BASE_ITERS * steps["quickstart"]
    print(
        f"1x budget: {BASE_ITERS} quick-start steps of {steps['quickstart']:.3f} s = {base / 60:.1f} min; steps {steps}"
    )
    todo, outs = [], {}
    python = yolo_python() if any(k in YOLO for k in contenders) else None
    for budget in budgets:
        for key in contenders:
            out = os.path.join(out_dir, f"{key}_{budget:g}x")
            outs[(key, budget)] = out
            if key in GFOCAL:
                if not os.path.isfile(os.path.join(out, "model_final.pth")):
                    argv = _with_peak_rss(_gfocal_argv(key, out, round(budget * base / steps[key])), out)
                    todo.append((f"{key} {budget:g}x", argv, out))
            elif not os.path.isfile(os.path.join(out, "result.json")):
                data, val_list = yolo_dataset(out_dir)
                argv = [python, os.path.join(REPO, "tools", "yolo_side.py"), "--model", key, "--data", data]
                argv += ["--hours", f"{budget * base / 3600:.5f}", "--val-list", val_list, "--out", out]
                todo.append((f"{key} {budget:g}x", _with_peak_rss(argv, out), out))
    _in_waves(todo, jobs)
    return outs


def _peak_rss(out: str):
    """The peak RSS (MiB) tools/measure.py recorded for a training, None for a run it did not wrap."""
    path = os.path.join(out, "peak_rss.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)["peak_rss_mb"]


def _yolo_row(out: str) -> dict:
    with open(os.path.join(out, "result.json")) as f:
        result = json.load(f)
    with open(MetadataCatalog.get("gfocal_shapes_val").json_file) as f:
        gt = json.load(f)
    ids = {os.path.basename(im["file_name"]): im["id"] for im in gt["images"]}
    categories = [c["id"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    rows = []
    for det in result["detections"]:
        for (x0, y0, x1, y1), score, cls in zip(det["boxes"], det["scores"], det["classes"]):
            image_id = ids[os.path.basename(det["file_name"])]
            rows.append(
                {
                    "image_id": image_id,
                    "category_id": categories[cls],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": score,
                }
            )
    stats = faster_cocoeval(gt, rows).stats
    return {
        "AP": 100 * stats[0], "AP50": 100 * stats[1], "train_min": result["train_seconds"] / 60,
        "parameters_M": result["parameters"] / 1e6, "train_rss_mb": _peak_rss(out),
    }  # fmt: skip


def _gfocal_row(key: str, out: str) -> dict:
    cfg = load_config(os.path.join(REPO, GFOCAL[key][1]))
    with open(os.path.join(out, "metrics.json")) as f:
        final = [json.loads(line) for line in f if "bbox/AP" in line][-1]
    row = {"AP": final["bbox/AP"], "AP50": final["bbox/AP50"], "train_min": _train_seconds(out) / 60}
    model = instantiate(cfg.model).eval()
    load_for_inference(model, os.path.join(out, "model_final.pth"), cfg)
    row["parameters_M"] = sum(p.numel() for p in model.parameters()) / 1e6
    row["train_rss_mb"] = _peak_rss(out)
    paths = deployment_paths(cfg, model, os.path.join(out, "export"), "64", GFOCAL_PATHS)
    name = cfg.dataloader.test.dataset.names
    records = DatasetCatalog.get(name)
    for path, fn in paths.items():
        if path != "onnxruntime-fp32":  # the fp32 export's AP is the model's (tests/test_export.py)
            loader = build_detection_test_loader(dataset=records, mapper=lambda r: r, num_workers=0)

            def path_model(inputs, fn=fn):
                return [{"instances": fn(read_image(x["file_name"], format="BGR"))} for x in inputs]

            row[f"{path} AP"] = inference_on_dataset(path_model, loader, FastCOCOEvaluator(name))["bbox"]["AP"]
    return row


def latency_commands(key: str, out: str, out_dir: str, files):
    """{column: argv} of the batch-1 timings of one run: each prints one json line."""
    if key in YOLO:
        _, val_list = yolo_dataset(out_dir)
        argv = [yolo_python(), os.path.join(REPO, "tools", "yolo_side.py"), "--phase", "latency", "--model", key]
        return {"onnxruntime-fp32": argv + ["--data", "-", "--hours", "1", "--val-list", val_list, "--out", out]}
    commands = {}
    for path in GFOCAL_PATHS:
        backend, _, precision = path.partition("-")
        folder = os.path.join(out, "export", "int8" if precision == "int8" else "fp32")
        commands[path] = [sys.executable, MEASURE, "latency", folder, backend, *files]
    return commands


def measure_latencies(commands: dict, rounds: int = 3) -> dict:
    """{name: (median ms, peak RSS MiB)} of commands run one at a time, round-robin over ``rounds``
    rounds so that a slow spell of the machine falls on all of them alike."""
    times = {name: [] for name in commands}
    peaks = {name: 0.0 for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            done = subprocess.run(
                argv, check=True, capture_output=True, text=True, env=dict(os.environ, YOLO_OFFLINE="True")
            )
            timed = json.loads(done.stdout.strip().splitlines()[-1])
            times[name].append(timed["latency_ms"])
            peaks[name] = max(peaks[name], timed["peak_rss_mb"])
    return {name: (float(np.median(times[name])), peaks[name]) for name in commands}


def run_frontier(args) -> dict:
    """``--mode frontier``: train, evaluate and time every contender at every budget; print the
    table and write ``<output-dir>/frontier.json`` and ``frontier.png``."""
    unknown = [c for c in args.contenders if c not in CONTENDERS]
    if unknown or not args.contenders:
        raise ConfigError(f"--contenders {' '.join(args.contenders)}: expected some of {', '.join(CONTENDERS)}")
    if not args.budgets or min(args.budgets) <= 0:
        raise ConfigError(
            f"--budgets must be positive multiples of the quick start's training time, got {args.budgets}"
        )
    if any(c in YOLO for c in args.contenders):
        yolo_python()  # before anything trains or is written
    out_dir = os.path.abspath(args.output_dir)
    outs = train_all(args.contenders, args.budgets, out_dir, args.jobs, args.only_finished)
    if not outs:
        raise ConfigError(f"--only-finished: no finished run of {' '.join(args.contenders)} in {out_dir}")
    results, commands = {}, {}
    files = [r["file_name"] for r in DatasetCatalog.get("gfocal_shapes_val")[: args.latency_images]]
    for (key, budget), out in outs.items():
        name = f"{key} {budget:g}x"
        row = _yolo_row(out) if key in YOLO else _gfocal_row(key, out)
        results[name] = dict(row, model=key, budget=budget)
        commands.update({(name, path): argv for path, argv in latency_commands(key, out, out_dir, files).items()})
    for (name, path), (ms, peak) in measure_latencies(commands).items():
        results[name][f"{path} ms"] = ms
        if path == "onnxruntime-fp32":
            results[name]["runtime_rss_mb"] = peak
    from tabulate import tabulate

    columns = ["AP", "AP50", "train_min", "onnxruntime-fp32 ms", "onnxruntime-int8 ms", "onnxruntime-int8 AP",
               "openvino-fp32 ms", "openvino-int8 ms", "parameters_M", "train_rss_mb", "runtime_rss_mb"]  # fmt: skip
    table = [[name] + [_fmt(r.get(c)) for c in columns] for name, r in results.items()]
    print(f"\nfrontier on the built-in data, {cpu_name()}, {args.jobs} job(s) side by side")
    print(tabulate(table, headers=["run"] + columns, tablefmt="pipe"))
    with open(os.path.join(out_dir, "frontier.json"), "w") as f:
        json.dump(results, f, indent=1)
    plot_frontier(results, os.path.join(out_dir, "frontier.png"))
    return results


def _fmt(value):
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else value


def pareto(points):
    """Indices of the points (ms, AP) no other point beats on both (lower ms, higher AP)."""
    return [
        i for i, (ms, ap) in enumerate(points) if not any(m <= ms and a >= ap and (m, a) != (ms, ap) for m, a in points)
    ]


def plot_frontier(results: dict, path: str) -> None:
    """AP against batch-1 ms (ONNX Runtime fp32), one colour per model, the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    points = [(results[n]["onnxruntime-fp32 ms"], results[n]["AP"]) for n in names]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = {}
    for name, (ms, ap) in zip(names, points):
        key = results[name]["model"]
        first = key not in colours
        colour = colours.setdefault(key, f"C{len(colours)}")
        ax.scatter(ms, ap, color=colour, label=key if first else None)
        ax.annotate(f"{results[name]['budget']:g}x", (ms, ap), textcoords="offset points", xytext=(4, 3), fontsize=8)
    front = sorted(points[i] for i in pareto(points))
    ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
    ax.set_xlabel("batch-1 ms per 192-px image (ONNX Runtime fp32, 2 threads, NMS included)")
    ax.set_ylabel("val box AP (built-in data)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
