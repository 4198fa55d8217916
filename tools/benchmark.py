#!/usr/bin/env python
"""Speed and deployed accuracy of GFL, measured side by side in one run.

``--mode models`` (default): GFL v1 / v2 against Detectron2's own FCOS and RetinaNet
(R-50-FPN): median eval-mode inference time of one 800x1216 image (GFL also optimised: folded
batch norms, channels_last) and median training step (Detectron2's ``SimpleTrainer.run_step``;
with ``--amp`` on CUDA fp16 autocast, ``AMPTrainer``) at batch 2, random weights, synthetic
images, ratios to FCOS.

``--mode train``: one training step of the quick-start model (its own data, batch 16) and of GFL
R-50-FPN (synthetic images, batch ``--train-batch``) on the CPU in float32, channels_last,
bfloat16 autocast (``train.amp.enabled=True``, where the CPU has bf16 units) and both: medians,
ratios to float32, and each variant's losses on the same batch and weights beside float32's.

``--mode deploy``: the whole pipeline from a decoded 800x1216 BGR image to detections,
R-50-FPN with random weights: Detectron2 FCOS eager, GFL eager, GFL optimised eager (folded batch
norms, channels_last, inference_mode), and the exported GFL on ONNX Runtime and OpenVINO in
fp32, OpenVINO bf16 (where the CPU has bf16) and int8 (QDQ) on both back-ends. Random weights
score every location alike, so the score threshold is set to 0 for every model: each level
sends its top 1000 (location, class) pairs to NMS and each path returns 100 detections, the
post-processing of a busy image. Medians, ratios to FCOS eager, achieved GFLOP/s (fvcore's
count, 1 multiply-add = 1 flop) beside the measured fp32 peak of a large 3x3 convolution.

``--mode frontier``: GFocal's light and quick-start models against Ultralytics YOLO11n / YOLO26n
trained for the same wall time (1x, 2x, 4x the quick start's training time) on the built-in data:
val AP by the same evaluator, batch-1 ms through each one's ONNX export, parameters, peak memory,
and an AP-vs-ms plot with the Pareto front (:mod:`frontier`; YOLO needs ``make yolo-env``).

``--mode formats``: reading a YOLO dataset of ``--files`` label files (default 100,000; tiny
generated images, 4 boxes per file, written once under output/benchmark/yolo_read) with
``gfocal_runtime.formats.read_labels``: seconds and files per second.

``--mode ap``: quick-start val box AP of a trained quick-start model (``--weights``) through
each deployment path (Detectron2's ``inference_on_dataset`` with the configs' evaluator): eager,
optimised eager, ONNX Runtime / OpenVINO fp32, OpenVINO bf16, int8 on both back-ends
(calibrated on 64 training images).

    python tools/benchmark.py                               # GFL vs FCOS/RetinaNet, CPU
    python tools/benchmark.py --device cuda --amp           # on a GPU
    python tools/benchmark.py --mode train --height 512 --width 768   # CPU training precisions
    python tools/benchmark.py --mode deploy                 # deployment paths (exports cached)
    python tools/benchmark.py --mode ap --weights output/quickstart/gfl/model_final.pth
    python tools/benchmark.py --mode frontier --budgets 1 2 4 --jobs 2   # vs YOLO (make yolo-env)
    python tools/benchmark.py --mode formats --files 100000             # reading YOLO labels
"""

import argparse
import functools
import itertools
import json
import logging
import os
import sys
import time

import numpy as np
import torch
from tabulate import tabulate

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.data.detection_utils import read_image
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from gfocal.checkpoint import load_for_inference, require_weights
from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.engine import FastCOCOEvaluator, LazyPredictor, build_trainer, cpu_has_bf16, cpu_name, interleaved_medians
from gfocal.errors import ConfigError
from gfocal.export import DEPLOYMENT_PATHS, deployment_paths
from gfocal.modeling import optimize_for_inference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "gfl": ("GFL v1", os.path.join(REPO, "configs/COCO-Detection/gfl_R_50_FPN_1x.py")),
    "gflv2": ("GFL v2", os.path.join(REPO, "configs/COCO-Detection/gflv2_R_50_FPN_1x.py")),
    "gfl_nano": ("GFocal-Nano", os.path.join(REPO, "configs/COCO-Detection/gfl_nano_416.py")),
    "fcos": ("D2 FCOS", "COCO-Detection/fcos_R_50_FPN_1x.py"),
    "retinanet": ("D2 RetinaNet", "COCO-Detection/retinanet_R_50_FPN_1x.py"),
}
PATHS = {"fcos-eager": "D2 FCOS eager", **DEPLOYMENT_PATHS}


def model_config(key: str):
    from detectron2 import model_zoo  # here: its import warns (pkg_resources) unless run() has quieted it

    path = MODELS[key][1]
    return LazyConfig.load(path) if os.path.isabs(path) else model_zoo.get_config(path)


def synthetic_inputs(batch: int, height: int, width: int, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(batch):
        image = (torch.rand(3, height, width, generator=gen) * 255).to(device)
        xy = torch.rand(12, 2, generator=gen) * torch.tensor([width * 0.7, height * 0.7])
        wh = torch.rand(12, 2, generator=gen) * torch.tensor([width * 0.3, height * 0.3]) + 16
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1).to(device))
        inst.gt_classes = torch.randint(0, 80, (12,), generator=gen).to(device)
        inputs.append({"image": image, "instances": inst, "height": height, "width": width})
    return inputs


def run_models(args):
    infer_inputs = synthetic_inputs(1, args.height, args.width, args.device)
    train_inputs = synthetic_inputs(args.train_batch, args.height, args.width, args.device, seed=1)
    device_type = args.device.split(":")[0]
    infer, train, train_failures = {}, {}, {}
    for key in args.models:
        model = instantiate(model_config(key).model).to(args.device)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        trainer = build_trainer(model, itertools.repeat(train_inputs), optimizer, args.device, args.amp)
        # GFL also as optimize_for_inference makes it for evaluation and demos (folded BN, channels_last).
        variants = {key: model}
        if key.startswith("gfl"):
            variants[f"{key}-optimised"] = optimize_for_inference(model.eval())

        for name, net in variants.items():

            def infer_once(net=net):
                net.eval()
                with torch.inference_mode(), torch.autocast(device_type, enabled=args.amp):
                    net(infer_inputs)

            infer[name] = infer_once

        def train_once(model=model, trainer=trainer):
            model.train()
            with EventStorage(trainer.iter) as trainer.storage:
                trainer.run_step()

        try:  # one untimed step: a model that cannot train this way is reported, not timed
            train_once()
        except RuntimeError as e:
            train_failures[key] = str(e).splitlines()[0]
            continue
        train[key] = train_once
    infer = interleaved_medians(infer, args.infer_iters, args.warmup, args.device)
    train = interleaved_medians(train, args.train_iters, args.warmup, args.device)
    base = "fcos" if "fcos" in args.models else None
    train_base = base if base in train else None
    device_name = torch.cuda.get_device_name(args.device) if device_type == "cuda" else cpu_name()
    print(
        f"\n{device_name}, {torch.get_num_threads()} threads, torch {torch.__version__}, inference "
        f"1x{args.height}x{args.width}, train batch {args.train_batch}, amp={args.amp}"
    )
    rows = [
        [
            MODELS[k][0],
            f"{infer[k] * 1000:.1f}",
            f"{infer[k] / infer[base]:.3f}x" if base else "-",
            f"{infer[k + '-optimised'] * 1000:.1f}" if k + "-optimised" in infer else "-",
            f"{train[k] * 1000:.1f}" if k in train else "failed",
            f"{train[k] / train[train_base]:.3f}x" if train_base and k in train else "-",
        ]
        for k in args.models
    ]
    headers = ["model", "inference (ms)", "vs FCOS", "optimised (ms)", "train step (ms)", "vs FCOS"]
    print(tabulate(rows, headers=headers, tablefmt="pipe"))
    for k, why in train_failures.items():
        print(f"{MODELS[k][0]}: its train step failed with amp={args.amp}: {why}")
    return {
        k: {
            "name": MODELS[k][0],
            "inference_s": infer[k],
            "optimised_inference_s": infer.get(k + "-optimised"),
            "train_step_s": train.get(k),
            "train_failure": train_failures.get(k),
        }
        for k in args.models
    }


# ----------------------------------------------------------------------------- training precision

TRAIN_VARIANTS = {  # name -> (channels_last, bf16 autocast)
    "fp32": (False, False),
    "channels_last": (True, False),
    "bf16": (False, True),
    "channels_last + bf16": (True, True),
}


def train_workloads(args):
    """name -> (config, one fixed batch): the quick-start model on its own data, GFL R-50-FPN on
    synthetic images."""
    quick = load_config(args.config_file)
    batch = next(iter(instantiate(quick.dataloader.train)))
    r50 = model_config("gfl")
    r50_batch = synthetic_inputs(args.train_batch, args.height, args.width, "cpu", seed=1)
    return {
        f"quick start, batch {len(batch)}": (quick, batch),
        f"GFL R-50-FPN, batch {args.train_batch} x {args.height}x{args.width}": (r50, r50_batch),
    }


def run_train(args):
    variants = {k: v for k, v in TRAIN_VARIANTS.items() if not v[1] or cpu_has_bf16()}
    rows, results = [], {}
    for workload, (cfg, batch) in train_workloads(args).items():
        steps, losses = {}, {}
        for variant, (channels_last, bf16) in variants.items():
            torch.manual_seed(0)  # the same initial weights for every variant
            model = instantiate(cfg.model).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            # lr 0: the weights stay, so every step sees the same weights and batch.
            optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
            trainer = build_trainer(model, itertools.repeat(batch), optimizer, "cpu", amp=bf16)

            def step(trainer=trainer, variant=variant):
                with EventStorage(trainer.iter) as trainer.storage:
                    trainer.run_step()
                    losses[variant] = {k: v.latest() for k, v in trainer.storage.histories().items() if "loss" in k}

            steps[variant] = step
        medians = interleaved_medians(steps, args.train_iters, args.warmup)
        for variant, t in medians.items():
            delta = max(abs(losses[variant][k] - v) / max(abs(v), 1e-6) for k, v in losses["fp32"].items())
            total = sum(v for k, v in losses[variant].items() if k.startswith("loss_"))
            rows.append(
                [workload, variant, f"{t * 1000:.0f}", f"{medians['fp32'] / t:.2f}x", f"{total:.4f}", f"{delta:.1e}"]
            )
        results[workload] = {"median_s": medians, "losses": losses}
    print(
        f"\n{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; one training step "
        "(forward, backward, SGD), same weights and batch for every variant"
    )
    headers = ["model", "variant", "step (ms)", "speed-up", "total loss", "max rel. loss diff vs fp32"]
    print(tabulate(rows, headers=headers, tablefmt="pipe"))
    if len(variants) < len(TRAIN_VARIANTS):
        print("(no bfloat16 rows: this CPU has neither AVX512-BF16 nor AMX)")
    return results


# ----------------------------------------------------------------------------- deployment


def conv_peak_gflops(seconds: float = 2.0) -> float:
    """fp32 throughput of large 3x3 convolutions (channels_last, the faster layout here; the
    best of two shapes a detector runs): the machine's practical peak for them."""
    best = 0.0
    for cin, h, w in ((256, 100, 152), (128, 200, 304)):
        conv = torch.nn.Conv2d(cin, cin, 3, padding=1).eval().to(memory_format=torch.channels_last)
        x = torch.rand(1, cin, h, w).to(memory_format=torch.channels_last)
        with torch.inference_mode():
            conv(x)
            runs, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                conv(x)
                runs += 1
        best = max(best, cin * cin * 9 * h * w * runs / (time.perf_counter() - start) / 1e9)
    return best


def gflops(model, height: int, width: int) -> float:
    """Detectron2's FlopCountAnalysis (1 multiply-add = 1 flop) of one inference."""
    from detectron2.utils.analysis import FlopCountAnalysis

    with torch.no_grad():
        flops = FlopCountAnalysis(model.eval(), [{"image": torch.rand(3, height, width) * 255}])
        return flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total() / 1e9


def calibration_folder(folder: str, count: int) -> str:
    """A folder with ``count`` built-in val images (links), for calibrating the R-50 model,
    whose COCO training set is not on this machine."""
    if not os.path.isdir(folder):
        os.makedirs(folder)
        for record in DatasetCatalog.get("gfocal_shapes_val")[:count]:
            os.symlink(
                os.path.abspath(record["file_name"]), os.path.join(folder, os.path.basename(record["file_name"]))
            )
    return folder


def run_deploy(args, paths):
    cfg = model_config("gfl")
    cfg.model.test_score_thresh = 0.0
    gfl = instantiate(cfg.model).eval()
    calib = args.calib or calibration_folder(os.path.join(args.export_root, "calibration"), 16)
    runs = deployment_paths(cfg, gfl, args.export_root, calib, [p for p in paths if p != "fcos-eager"])
    if "fcos-eager" in paths:
        fcos_cfg = model_config("fcos")
        fcos_cfg.model.test_score_thresh = 0.0
        fcos = LazyPredictor(fcos_cfg, model=instantiate(fcos_cfg.model), optimize=False)
        runs = {"fcos-eager": lambda image: fcos(image)["instances"], **runs}
    image = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    counts = {name: len(fn(image)) for name, fn in runs.items()}
    medians = interleaved_medians(
        {name: functools.partial(fn, image) for name, fn in runs.items()}, args.infer_iters, args.warmup
    )
    flops, peak, base = gflops(gfl, args.height, args.width), conv_peak_gflops(), medians.get("fcos-eager")
    print(
        f"\n{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; one {args.height}x"
        f"{args.width} image, whole pipeline; GFL R-50-FPN {flops:.0f} GFLOPs; fp32 3x3-conv peak {peak:.0f} GFLOP/s"
    )
    rows = [
        [
            PATHS[name],
            f"{t * 1000:.0f}",
            f"{base / t:.2f}x" if base else "-",
            f"{flops / t:.0f}" if name != "fcos-eager" else "-",
            counts[name],
        ]
        for name, t in medians.items()
    ]
    print(tabulate(rows, headers=["path", "median (ms)", "vs FCOS eager", "GFLOP/s", "detections"], tablefmt="pipe"))
    return {"median_s": medians, "gflops": flops, "conv_peak_gflops": peak, "detections": counts}


def run_ap(args, paths):
    cfg = load_config(args.config_file)
    model = instantiate(cfg.model).eval()
    load_for_inference(model, require_weights(args.weights), cfg)
    runs = deployment_paths(cfg, model, args.export_root, args.calib or "64", [p for p in paths if p != "fcos-eager"])
    name = cfg.dataloader.test.dataset.names
    loader = build_detection_test_loader(dataset=DatasetCatalog.get(name), mapper=lambda record: record, num_workers=0)
    results = {}
    for path, fn in runs.items():

        def path_model(
            inputs, fn=fn
        ):  # the path as inference_on_dataset calls a model (files read as BGR, EXIF applied)
            return [{"instances": fn(read_image(x["file_name"], format="BGR"))} for x in inputs]

        start = time.perf_counter()
        box = inference_on_dataset(path_model, loader, FastCOCOEvaluator(name))["bbox"]
        results[path] = {k: box[k] for k in ("AP", "AP50", "AP75")} | {"seconds": time.perf_counter() - start}
    print(f"\nquick-start val box AP, {os.path.basename(args.config_file)}, {args.weights}")
    rows = [
        [PATHS[p], f"{r['AP']:.2f}", f"{r['AP50']:.2f}", f"{r['AP75']:.2f}", f"{r['seconds']:.1f}"]
        for p, r in results.items()
    ]
    print(tabulate(rows, headers=["path", "AP", "AP50", "AP75", "val time (s)"], tablefmt="pipe"))
    return results


def run_formats(files: int, root: str) -> dict:
    """Seconds to read a YOLO dataset of ``files`` label files (generated once under ``root``)."""
    import cv2

    from gfocal_runtime.formats import read_labels

    yaml_path = os.path.join(root, f"data_{files}.yaml")
    if not os.path.isfile(yaml_path):
        os.makedirs(os.path.join(root, "images"), exist_ok=True)
        os.makedirs(os.path.join(root, "labels"), exist_ok=True)
        ok, png = cv2.imencode(".png", np.full((48, 64, 3), 127, np.uint8))
        lines = "".join(f"{k % 4} 0.{k + 2} 0.{k + 3} 0.1{k} 0.2{k}\n" for k in range(4)).encode()
        for i in range(files):
            for path, data in ((f"images/{i:07d}.png", png.tobytes()), (f"labels/{i:07d}.txt", lines)):
                if not os.path.isfile(os.path.join(root, path)):
                    with open(os.path.join(root, path), "wb") as f:
                        f.write(data)
        with open(os.path.join(root, f"list_{files}.txt"), "w") as f:
            f.write("".join(f"./images/{i:07d}.png\n" for i in range(files)))
        with open(yaml_path, "w") as f:
            f.write(f"train: list_{files}.txt\nnames: [a, b, c, d]\n")
    start = time.perf_counter()
    labels = read_labels(f"yolo:{yaml_path}")
    seconds = time.perf_counter() - start
    boxes = sum(len(r["annotations"]) for r in labels.splits["train"])
    print(f"read {files:,} YOLO label files ({boxes:,} boxes) in {seconds:.1f} s: {files / seconds:,.0f} files/s")
    print(f"CPU: {cpu_name()}")
    return {"files": files, "boxes": boxes, "seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="models", choices=["models", "train", "deploy", "ap", "frontier", "formats"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), help="deploy/ap: only these paths")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="models: fp16 autocast and AMPTrainer (CUDA)")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--infer-iters", type=int, default=7)
    parser.add_argument("--train-iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--export-root",
        default=os.path.join(REPO, "output", "benchmark", "exports"),
        help="deploy/ap: where exported models are cached",
    )
    parser.add_argument(
        "--calib",
        help="int8 calibration: N training images or a folder (deploy: 16 built-in val images; ap: 64 training images)",
    )
    parser.add_argument(
        "--config-file",
        default=os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"),
        help="train, ap: the quick-start config",
    )
    parser.add_argument(
        "--weights",
        default=os.path.join(REPO, "output/quickstart/gfl/model_final.pth"),
        help="ap: trained quick-start weights",
    )
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--files", type=int, default=100_000, help="formats: YOLO label files to read")
    parser.add_argument(
        "--budgets", nargs="+", type=float, default=[1, 2, 4], help="frontier: x the quick start's time"
    )
    parser.add_argument("--contenders", nargs="+", default=["quickstart", "nano", "yolo11n", "yolo26n"])
    parser.add_argument(
        "--only-finished", action="store_true", help="frontier: train nothing; evaluate and time the finished runs"
    )
    parser.add_argument("--jobs", type=int, default=2, help="frontier: trainings side by side (one thread each at 2)")
    parser.add_argument("--latency-images", type=int, default=100, help="frontier: val images timed at batch 1")
    parser.add_argument(
        "--output-dir", default=os.path.join(REPO, "output", "frontier"), help="frontier: runs kept here"
    )
    args = checked_parser(parser).parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: this machine has no CUDA device")
    if args.amp and not args.device.startswith("cuda"):
        raise ConfigError("--amp needs --device cuda (Detectron2's AMPTrainer is fp16 on CUDA)")
    if min(args.height, args.width, args.infer_iters, args.train_iters, args.train_batch) < 1 or args.warmup < 0:
        raise ConfigError("--height, --width, --infer-iters, --train-iters and --train-batch must be >= 1")
    paths = [p for p in (args.paths or PATHS) if p != "openvino-bf16" or "bf16" in cpu_name()]
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    if args.mode == "formats":
        if args.files < 1:
            raise ConfigError(f"--files must be >= 1, got {args.files}")
        results = run_formats(args.files, os.path.join(REPO, "output", "benchmark", "yolo_read"))
    elif args.mode == "frontier":
        if args.jobs < 1 or args.latency_images < 1:
            raise ConfigError("--jobs and --latency-images must be >= 1")
        from frontier import run_frontier  # tools/frontier.py, beside this script

        results = run_frontier(args)
    elif args.mode == "ap":
        args.export_root = os.path.join(
            args.export_root, "quickstart-" + os.path.splitext(os.path.basename(args.config_file))[0]
        )
        results = run_ap(args, paths)
    elif args.mode == "train":
        if args.device != "cpu":
            raise ConfigError("--mode train measures CPU training precisions: leave --device cpu")
        results = run_train(args)
    elif args.mode == "deploy":
        args.export_root = os.path.join(args.export_root, "gfl_R_50_FPN")
        results = run_deploy(args, paths)
    else:
        results = run_models(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
