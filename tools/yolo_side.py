#!/usr/bin/env python
"""The Ultralytics side of ``tools/benchmark.py --mode frontier``; runs with ``.venv-yolo/bin/python``
(``make yolo-env``). Ultralytics is AGPL: this script is a benchmark-only extra, run as a separate
process; GFocal and its runtime never import it.

Trains a YOLO model from its yaml (no weights, nothing fetched: ``YOLO_OFFLINE``; per-epoch
validation, AMP check and plots off) for a wall-clock budget (``time=``), predicts every val image
(``conf=0.001``, ``max_det=100``, as Ultralytics validates) and exports ONNX (``OUT/result.json``;
a finished training is reused); ``--phase latency`` times batch-1 ``predict`` of the export
(prints one json line: median ms per image and peak RSS), to be run when nothing else runs.

    .venv-yolo/bin/python tools/yolo_side.py --model yolo11n --data data.yaml --hours 0.15 \\
        --val-list val.txt --out output/frontier/yolo11n_1x
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "True")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an Ultralytics model yaml name, e.g. yolo11n or yolo26n")
    parser.add_argument("--data", required=True, help="a YOLO data.yaml")
    parser.add_argument("--hours", type=float, required=True, help="training wall-clock budget (time=)")
    parser.add_argument("--val-list", required=True, help="a text file of val image paths, one per line")
    parser.add_argument("--out", required=True)
    parser.add_argument("--imgsz", type=int, default=192)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--phase",
        choices=["train", "latency"],
        default="train",
        help="train: train, predict val, export ONNX; latency: time the export (run on a quiet CPU)",
    )
    parser.add_argument("--latency-images", type=int, default=100)
    parser.add_argument("--latency-conf", type=float, default=0.05, help="score threshold of the timed predict")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.hours <= 0:
        print(f"error: --hours must be positive, got {args.hours}", file=sys.stderr)
        return 2
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    out = os.path.abspath(args.out)
    trained = os.path.join(out, "trained.json")
    weights = os.path.join(out, "train", "weights", "last.pt")
    if not os.path.isfile(trained):
        model = YOLO(f"{args.model}.yaml")
        start = time.perf_counter()
        model.train(
            data=os.path.abspath(args.data), time=args.hours, imgsz=args.imgsz, batch=args.batch, device="cpu",
            workers=1, val=False, plots=False, amp=False, project=out, name="train", exist_ok=True, seed=0,
            verbose=False,
        )  # fmt: skip
        with open(trained, "w") as f:
            json.dump({"train_seconds": time.perf_counter() - start}, f)
    with open(trained) as f:
        result = json.load(f)
    if args.phase == "latency":
        return time_export(args, out)
    model = YOLO(weights)
    result["parameters"] = sum(p.numel() for p in model.model.parameters())
    with open(args.val_list) as f:
        files = [line.strip() for line in f if line.strip()]
    detections = []
    for r in model.predict(files, imgsz=args.imgsz, conf=0.001, max_det=100, device="cpu", verbose=False, stream=True):
        boxes = r.boxes
        detections.append(
            {
                "file_name": r.path,
                "boxes": boxes.xyxy.tolist(),
                "scores": boxes.conf.tolist(),
                "classes": boxes.cls.int().tolist(),
            }
        )
    result["detections"] = detections
    result["onnx"] = model.export(format="onnx", imgsz=args.imgsz, device="cpu", verbose=False)
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f)
    print(f"{args.model}: {result['train_seconds'] / 60:.1f} min training, exported to {result['onnx']}")
    return 0


def time_export(args, out: str) -> int:
    """Median ms of one batch-1 ``predict`` of the ONNX export on val images, and this process's peak RSS."""
    import cv2
    from ultralytics import YOLO

    with open(os.path.join(out, "result.json")) as f:
        exported = YOLO(json.load(f)["onnx"], task="detect")
    with open(args.val_list) as f:
        images = [cv2.imread(line.strip()) for line in list(f)[: args.latency_images]]
    exported.predict(images[0], imgsz=args.imgsz, conf=args.latency_conf, verbose=False)  # warm-up
    times = []
    for image in images:
        start = time.perf_counter()
        exported.predict(image, imgsz=args.imgsz, conf=args.latency_conf, verbose=False)
        times.append(time.perf_counter() - start)
    with open("/proc/self/status") as f:  # VmHWM: ru_maxrss would keep the parent's peak from before exec
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"latency_ms": 1000 * statistics.median(times), "peak_rss_mb": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
