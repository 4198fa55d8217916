#!/usr/bin/env python
"""Speed of GFL v1 / v2 against Detectron2's own FCOS and RetinaNet (R-50-FPN), in one run.

Reports the median eval-mode inference time of one 800x1216 image and the median train-step
time (forward, backward, SGD step) at batch 2, with random weights and synthetic images, and
the ratios to FCOS. The models are the full COCO configs: ours from configs/, Detectron2's from
its model zoo.

    python tools/benchmark.py                       # all four models, CPU
    python tools/benchmark.py --device cuda --amp   # on a GPU
    python tools/benchmark.py --models gfl fcos --infer-iters 20 --train-iters 10
"""
import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time

import torch

from detectron2 import model_zoo
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import gfocal  # noqa: F401

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 on CPU, fp16 on CUDA)")
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--infer-iters", type=int, default=7)
    parser.add_argument("--train-iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.manual_seed(0)

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
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name, "args": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
