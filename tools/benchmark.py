#!/usr/bin/env python
"""Speed (and deployed accuracy) of GFL, measured side by side in one run.

Three modes:

``--mode models`` (default): GFL v1 / v2 against Detectron2's own FCOS and RetinaNet
(R-50-FPN): median eval-mode inference time of one 800x1216 image and median train-step time
(forward, backward, SGD step) at batch 2, random weights, synthetic images, ratios to FCOS.

``--mode deploy``: the whole pipeline from a decoded 800x1216 BGR image to detections, R-50-FPN
with random weights: Detectron2 FCOS eager, GFL eager, GFL optimised eager (folded batch norms,
channels_last, inference_mode), and the exported GFL on ONNX Runtime and OpenVINO in fp32,
OpenVINO bf16 (where the CPU has bf16) and int8 (QDQ) on both back-ends. Medians, ratios to
FCOS eager, achieved GFLOP/s (fvcore's count, 1 multiply-add = 1 flop) beside the measured fp32
peak of a large 3x3 convolution on this machine.

``--mode eval``: COCO box evaluation time of pycocotools (what Detectron2's COCOEvaluator runs
without its C++ extension) and faster-coco-eval (``gfocal.evaluation.FastCOCOEvaluator``), on
the built-in val split and on a COCO-val-sized set (its annotations repeated to 5,100 images),
with synthetic detections (jittered gt boxes and false positives, up to 100 per image).

``--mode ap``: quick-start val box AP of a trained quick-start model (``--weights``) through
each deployment path: eager, optimised eager, ONNX Runtime / OpenVINO fp32, OpenVINO bf16, and
int8 on both back-ends (calibrated on 64 training images).

    python tools/benchmark.py                               # GFL vs FCOS/RetinaNet, CPU
    python tools/benchmark.py --device cuda --amp           # on a GPU
    python tools/benchmark.py --mode deploy                 # deployment paths (exports cached)
    python tools/benchmark.py --mode ap --weights output/quickstart/gfl/model_final.pth
    python tools/benchmark.py --mode eval
"""
import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np
import torch

import gfocal  # noqa: F401  (registers GFL; quiets known warnings)
from detectron2 import model_zoo
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "gfl": ("GFL v1", os.path.join(REPO, "configs/COCO-Detection/gfl_R_50_FPN_1x.py")),
    "gflv2": ("GFL v2", os.path.join(REPO, "configs/COCO-Detection/gflv2_R_50_FPN_1x.py")),
    "fcos": ("D2 FCOS", "COCO-Detection/fcos_R_50_FPN_1x.py"),
    "retinanet": ("D2 RetinaNet", "COCO-Detection/retinanet_R_50_FPN_1x.py"),
}


def load_model(path: str, device: str):
    cfg = LazyConfig.load(path) if os.path.isabs(path) else model_zoo.get_config(path)
    model = instantiate(cfg.model).to(device)
    return model


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


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Runner:
    """One model with its optimizer; each call to ``infer``/``train_step`` returns seconds."""

    def __init__(self, model, device: str, amp: bool):
        self.model, self.device, self.amp = model, device, amp
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
        self.scaler = torch.amp.GradScaler(enabled=amp and device.startswith("cuda"))
        self.device_type = device.split(":")[0]

    def infer(self, inputs) -> float:
        self.model.eval()
        sync(self.device)
        start = time.perf_counter()
        with torch.no_grad(), torch.autocast(self.device_type, enabled=self.amp):
            self.model(inputs)
        sync(self.device)
        return time.perf_counter() - start

    def train_step(self, inputs) -> float:
        self.model.train()
        sync(self.device)
        start = time.perf_counter()
        with EventStorage(), torch.autocast(self.device_type, enabled=self.amp):
            losses = self.model(inputs)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        sync(self.device)
        return time.perf_counter() - start


def interleaved_medians(runners, fn_name, inputs, iters, warmup):
    """Round-robin over the models so that machine drift hits all of them alike."""
    times = {key: [] for key in runners}
    for i in range(warmup + iters):
        for key, runner in runners.items():
            t = getattr(runner, fn_name)(inputs)
            if i >= warmup:
                times[key].append(t)
    return {key: statistics.median(v) for key, v in times.items()}


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


def gfl_gflops(model, height: int, width: int) -> float:
    """Detectron2's FlopCountAnalysis (fvcore's counts, 1 multiply-add = 1 flop) of one
    inference."""
    from detectron2.utils.analysis import FlopCountAnalysis

    inputs = [{"image": torch.rand(3, height, width) * 255}]
    with torch.no_grad():
        flops = FlopCountAnalysis(model.eval(), inputs)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return flops.total() / 1e9


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def export_once(cfg, model, out_dir, int8, calib):
    """Export into ``out_dir`` unless a complete export is already there."""
    from gfocal.export import export_model

    if not os.path.isfile(os.path.join(out_dir, "model.json")):
        print(f"exporting {'int8' if int8 else 'fp32'} ONNX to {out_dir} ...", flush=True)
        export_model(cfg, model, out_dir, "onnx", int8=int8, calib_images=calib)
    return out_dir


def deployment_paths(cfg, model, export_root, calib, paths):
    """name -> callable(image_bgr) for each requested deployment path of ``model``."""
    from gfocal.predictor import LazyPredictor
    from gfocal_runtime import Detector

    runs = {}
    if "gfl-eager" in paths:
        runs["gfl-eager"] = LazyPredictor(cfg, model=model, optimize=False)
    if "gfl-optimized" in paths:
        runs["gfl-optimized"] = LazyPredictor(cfg, model=model, optimize=True)
    fp32 = int8 = None
    if any(p.endswith("fp32") or p.endswith("bf16") for p in paths):
        fp32 = export_once(cfg, model, os.path.join(export_root, "fp32"), False, calib)
    if any(p.endswith("int8") for p in paths):
        int8 = export_once(cfg, model, os.path.join(export_root, "int8"), True, calib)
    for name in paths:
        backend, _, precision = name.partition("-")
        if backend in ("onnxruntime", "openvino"):
            folder = int8 if precision == "int8" else fp32
            runs[name] = Detector(folder, backend=backend, precision="bf16" if precision == "bf16" else None)
    return runs


DEPLOY_NAMES = {
    "fcos-eager": "D2 FCOS eager",
    "gfl-eager": "GFL eager",
    "gfl-optimized": "GFL optimised eager",
    "onnxruntime-fp32": "GFL ONNX Runtime fp32",
    "openvino-fp32": "GFL OpenVINO fp32",
    "openvino-bf16": "GFL OpenVINO bf16",
    "onnxruntime-int8": "GFL ONNX Runtime int8",
    "openvino-int8": "GFL OpenVINO int8",
}


def calibration_folder(folder: str, count: int) -> str:
    """A folder with ``count`` built-in val images (links), for calibrating the R-50 model,
    whose COCO training set is not on this machine."""
    from detectron2.data import DatasetCatalog

    if not os.path.isdir(folder):
        os.makedirs(folder)
        for record in DatasetCatalog.get("gfocal_shapes_val")[:count]:
            os.symlink(os.path.abspath(record["file_name"]), os.path.join(folder, os.path.basename(record["file_name"])))
    return folder


def run_deploy(args):
    from detectron2 import model_zoo

    from gfocal.predictor import LazyPredictor

    torch.manual_seed(0)
    cfg = LazyConfig.load(MODELS["gfl"][1])
    gfl = instantiate(cfg.model).eval()
    paths = [p for p in DEPLOY_NAMES if p != "openvino-bf16" or cpu_has_bf16()]
    paths = [p for p in paths if not args.paths or p in args.paths]
    calib = args.calib or calibration_folder(os.path.join(args.export_root, "calibration"), 16)
    runs = deployment_paths(cfg, gfl, args.export_root, calib, [p for p in paths if p != "fcos-eager"])
    if "fcos-eager" in paths:
        fcos_cfg = model_zoo.get_config(MODELS["fcos"][1])
        runs = {"fcos-eager": LazyPredictor(fcos_cfg, model=instantiate(fcos_cfg.model), optimize=False), **runs}
    gen = np.random.default_rng(0)
    image = gen.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)

    times = {k: [] for k in runs}
    counts = {}
    for i in range(args.warmup + args.infer_iters):
        for name, fn in runs.items():
            start = time.perf_counter()
            out = fn(image)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times[name].append(elapsed)
            counts[name] = len(out["instances"]) if "instances" in out else len(out["boxes"])
    medians = {k: statistics.median(v) for k, v in times.items()}
    gflops = gfl_gflops(gfl, args.height, args.width)
    peak = conv_peak_gflops()
    base = medians.get("fcos-eager")
    print(f"\n{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"one {args.height}x{args.width} image, whole pipeline; GFL R-50-FPN {gflops:.0f} GFLOPs; "
          f"fp32 3x3-conv peak {peak:.0f} GFLOP/s")
    print("| path | median (ms) | vs FCOS eager | GFLOP/s | detections |")
    print("|---|---|---|---|---|")
    for name, t in medians.items():
        ratio = f"{base / t:.2f}x" if base else "-"
        rate = f"{gflops / t:.0f}" if name != "fcos-eager" else "-"
        print(f"| {DEPLOY_NAMES[name]} | {t * 1000:.0f} | {ratio} | {rate} | {counts[name]} |")
    return {"median_s": medians, "gflops": gflops, "conv_peak_gflops": peak, "detections": counts}


def run_ap(args):
    from detectron2.data import DatasetCatalog
    from detectron2.evaluation import COCOEvaluator

    from gfocal.checkpoint import GFLCheckpointer
    from gfocal.export import instances_from_runtime

    cfg = LazyConfig.load(args.config_file)
    model = instantiate(cfg.model).eval()
    GFLCheckpointer(model, for_inference=True).load(args.weights)
    paths = [p for p in DEPLOY_NAMES if p != "fcos-eager" and (p != "openvino-bf16" or cpu_has_bf16())]
    paths = [p for p in paths if not args.paths or p in args.paths]
    runs = deployment_paths(cfg, model, args.export_root, args.calib or "64", paths)
    records = DatasetCatalog.get(cfg.dataloader.test.dataset.names)
    results = {}
    for name, fn in runs.items():
        evaluator = COCOEvaluator(cfg.dataloader.test.dataset.names, use_fast_impl=False)
        evaluator.reset()
        start = time.perf_counter()
        for record in records:
            image = cv2.imread(record["file_name"])
            out = fn(image)
            inst = out["instances"] if "instances" in out else instances_from_runtime(out, image.shape[:2])
            evaluator.process([record], [{"instances": inst}])
        seconds = time.perf_counter() - start
        box = evaluator.evaluate()["bbox"]
        results[name] = {"AP": box["AP"], "AP50": box["AP50"], "AP75": box["AP75"], "seconds": seconds}
    print(f"\nquick-start val box AP, {os.path.basename(args.config_file)}, {args.weights}")
    print("| path | AP | AP50 | AP75 | val time (s) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {DEPLOY_NAMES[name]} | {r['AP']:.2f} | {r['AP50']:.2f} | {r['AP75']:.2f} | {r['seconds']:.1f} |")
    return results


def synthetic_results(gt: dict, per_image: int, seed: int = 0):
    """COCO-format detections: each gt box jittered once or twice (15% with a wrong class),
    then random boxes up to ``per_image`` per image, random scores."""
    gen = np.random.default_rng(seed)
    cats = [c["id"] for c in gt["categories"]]
    by_image = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    results = []
    for image in gt["images"]:
        dets = []
        for ann in by_image.get(image["id"], []):
            x, y, w, h = ann["bbox"]
            for _ in range(int(gen.integers(1, 3))):
                jx, jy, jw, jh = gen.normal(0, 0.08 * max(w, h), 4)
                cat = ann["category_id"] if gen.random() > 0.15 else int(gen.choice(cats))
                dets.append(([x + jx, y + jy, max(w + jw, 1.0), max(h + jh, 1.0)], cat))
        while len(dets) < per_image:
            w, h = gen.uniform(4, image["width"] / 2), gen.uniform(4, image["height"] / 2)
            dets.append(([gen.uniform(0, image["width"] - w), gen.uniform(0, image["height"] - h), w, h],
                         int(gen.choice(cats))))
        for box, cat in dets[:per_image]:
            results.append({"image_id": image["id"], "category_id": cat, "bbox": [float(v) for v in box],
                            "score": float(gen.uniform(0.05, 1.0))})
    return results


def repeated(gt: dict, times: int) -> dict:
    """``gt`` with its images (and annotations) repeated ``times`` times under new ids."""
    out = {k: v for k, v in gt.items() if k not in ("images", "annotations")}
    out["images"], out["annotations"] = [], []
    step = max(i["id"] for i in gt["images"]) + 1
    ann_id = 1
    for t in range(times):
        out["images"] += [dict(i, id=i["id"] + t * step) for i in gt["images"]]
        for a in gt["annotations"]:
            out["annotations"].append(dict(a, id=ann_id, image_id=a["image_id"] + t * step))
            ann_id += 1
    return out


def run_eval(args):
    from pycocotools.coco import COCO as PyCOCO
    from pycocotools.cocoeval import COCOeval

    from detectron2.data import DatasetCatalog, MetadataCatalog

    from gfocal.evaluation import faster_cocoeval

    DatasetCatalog.get("gfocal_shapes_val")  # generates the built-in data once
    with open(MetadataCatalog.get("gfocal_shapes_val").json_file) as f:
        val = json.load(f)
    rows = []
    for name, gt, per_image in [("built-in val", val, 5), ("COCO-val-sized", repeated(val, 17), 100)]:
        results = synthetic_results(gt, per_image)
        start = time.perf_counter()
        coco = PyCOCO()
        coco.dataset = gt
        coco.createIndex()
        official = COCOeval(coco, coco.loadRes(results), "bbox")
        official.evaluate()
        official.accumulate()
        official.summarize()
        t_official = time.perf_counter() - start
        start = time.perf_counter()
        fast = faster_cocoeval(gt, results)
        t_fast = time.perf_counter() - start
        diff = float(np.abs(np.asarray(official.stats) - np.asarray(fast.stats)).max())
        rows.append((name, len(gt["images"]), len(results), t_official, t_fast, diff))
    print("\n| set | images | detections | pycocotools (s) | faster-coco-eval (s) | speed-up | max stat diff |")
    print("|---|---|---|---|---|---|---|")
    for name, n_img, n_det, a, b, d in rows:
        print(f"| {name} | {n_img} | {n_det} | {a:.2f} | {b:.2f} | {a / b:.1f}x | {d:.1e} |")
    return [dict(zip(("set", "images", "detections", "pycocotools_s", "faster_s", "max_diff"), r)) for r in rows]


def run_models(args):
    infer_inputs = synthetic_inputs(1, args.height, args.width, args.device)
    train_inputs = synthetic_inputs(args.train_batch, args.height, args.width, args.device, seed=1)
    runners = {key: Runner(load_model(MODELS[key][1], args.device), args.device, args.amp) for key in args.models}
    infer = interleaved_medians(runners, "infer", infer_inputs, args.infer_iters, args.warmup)
    train = interleaved_medians(runners, "train_step", train_inputs, args.train_iters, args.warmup)
    results = {
        key: {"name": MODELS[key][0], "inference_s": infer[key], "train_step_s": train[key]}
        for key in args.models
    }
    device_name = (
        torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.processor() or "cpu"
    )
    print(
        f"\n{device_name}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"inference 1x{args.height}x{args.width}, train batch {args.train_batch}, amp={args.amp}"
    )
    print("| model | inference (ms) | vs FCOS | train step (ms) | vs FCOS |")
    print("|---|---|---|---|---|")
    base = results.get("fcos")
    for key, r in results.items():
        ri = f"{r['inference_s'] / base['inference_s']:.3f}x" if base else "-"
        rt = f"{r['train_step_s'] / base['train_step_s']:.3f}x" if base else "-"
        print(f"| {r['name']} | {r['inference_s'] * 1000:.0f} | {ri} | {r['train_step_s'] * 1000:.0f} | {rt} |")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="models", choices=["models", "deploy", "ap", "eval"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--paths", nargs="+", choices=list(DEPLOY_NAMES), help="deploy/ap: only these paths")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 on CPU, fp16 on CUDA)")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--infer-iters", type=int, default=7)
    parser.add_argument("--train-iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--export-root", default=os.path.join(REPO, "output", "benchmark", "exports"),
                        help="deploy/ap: where exported models are cached")
    parser.add_argument("--calib", help="int8 calibration: N training images or a folder "
                        "(deploy: 16 built-in val images; ap: 64 training images)")
    parser.add_argument("--config-file", default=os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"),
                        help="ap: the quick-start config")
    parser.add_argument("--weights", default=os.path.join(REPO, "output/quickstart/gfl/model_final.pth"),
                        help="ap: trained quick-start weights")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    if args.mode == "ap":
        args.export_root = os.path.join(args.export_root, "quickstart-" + os.path.splitext(os.path.basename(args.config_file))[0])
        results = run_ap(args)
    elif args.mode == "eval":
        results = run_eval(args)
    elif args.mode == "deploy":
        args.export_root = os.path.join(args.export_root, "gfl_R_50_FPN")
        results = run_deploy(args)
    else:
        results = run_models(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2, default=str)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
