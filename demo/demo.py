#!/usr/bin/env python
"""GFL demo visualizer: boxes, classes, scores and (optionally) the learned side distributions.

    python demo/demo.py --config-file configs/Quickstart/gfl_shapes.py \\
        --input 'datasets/gfocal_shapes/val/*.jpg' --output output/demo --show-distributions \\
        train.init_checkpoint=output/quickstart/gfl/model_final.pth
    python demo/demo.py --config-file ... --video-input clip.mp4 --output out.mp4 train.init_checkpoint=...
    python demo/demo.py --config-file ... --webcam train.init_checkpoint=...

Flags follow Detectron2's demo; config overrides (``key=value``) come last. Weights come from
``train.init_checkpoint``; resizing, input format and class names from the config's test data.
"""
import argparse
import glob
import logging
import os
import sys
import time

import cv2
import numpy as np

from detectron2.config import LazyConfig
from detectron2.utils.logger import setup_logger

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
logger = logging.getLogger("gfocal.demo")


def get_parser():
    parser = argparse.ArgumentParser(description="GFocal demo", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to a lazy config")
    parser.add_argument("--input", nargs="+", help="image files, folders, or glob patterns ('dir/*.jpg')")
    parser.add_argument("--output", help="output file (one input) or folder")
    parser.add_argument("--video-input", help="path to a video file")
    parser.add_argument("--webcam", action="store_true", help="read frames from the first camera")
    parser.add_argument("--confidence-threshold", type=float, default=0.3, help="minimum score to draw")
    parser.add_argument("--show-distributions", action="store_true", help="draw each box's L/T/R/B distributions")
    parser.add_argument("--opts", dest="more_opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, as in Detectron2's demo")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value, last")
    return parser


def split_overrides(args):
    """``--input a.jpg key=value`` puts the override into --input's list: move items that look
    like ``key=value`` and are not existing paths to the overrides."""
    opts = list(args.opts) + list(args.more_opts)
    if args.input:
        kept = []
        for item in args.input:
            (opts if "=" in item and not os.path.exists(item) else kept).append(item)
        args.input = kept
    args.opts = opts
    return args


def expand_inputs(patterns):
    """Files from paths, folders (their files, sorted) and globs; missing paths are an error."""
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            files += sorted(
                os.path.join(pattern, f) for f in os.listdir(pattern) if os.path.isfile(os.path.join(pattern, f))
            )
        elif os.path.isfile(pattern):
            files.append(pattern)
        else:
            matches = sorted(glob.glob(os.path.expanduser(pattern)))
            if not matches:
                raise FileNotFoundError(f"--input: no such file, folder or matching files: {pattern!r}")
            files += [m for m in matches if os.path.isfile(m)]
    return files


def output_path(output, src, many):
    if output is None:
        return None
    if many or os.path.isdir(output) or not os.path.splitext(output)[1]:
        os.makedirs(output, exist_ok=True)
        stem = os.path.splitext(os.path.basename(src))[0]
        return os.path.join(output, stem + ".png")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    return output


class Demo:
    def __init__(self, cfg, args):
        from gfocal.predictor import LazyPredictor

        self.predictor = LazyPredictor(cfg)
        self.args = args

    def render(self, image_bgr: np.ndarray) -> tuple:
        """BGR frame -> (BGR picture, number of drawn instances)."""
        from gfocal.visualization import draw_predictions

        instances = self.predictor(image_bgr)["instances"]
        picture = draw_predictions(
            image_bgr[:, :, ::-1],
            instances,
            self.predictor.metadata,
            confidence_threshold=self.args.confidence_threshold,
            show_distributions=self.args.show_distributions,
        )
        return np.ascontiguousarray(picture[:, :, ::-1]), int((instances.scores >= self.args.confidence_threshold).sum())

    def run_images(self, files) -> int:
        failed = 0
        for path in files:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                ext = os.path.splitext(path)[1].lower()
                why = "not an image file" if ext not in IMAGE_EXTS else "unreadable or corrupt image"
                logger.warning(f"skipped {path}: {why}")
                failed += 1
                continue
            start = time.perf_counter()
            picture, count = self.render(image)
            logger.info(f"{path}: {count} detections in {time.perf_counter() - start:.2f}s")
            dst = output_path(self.args.output, path, len(files) > 1)
            if dst:
                cv2.imwrite(dst, picture)
            else:
                show(picture)
        logger.info(f"processed {len(files) - failed} of {len(files)} files ({failed} skipped)")
        return failed

    def run_video(self, capture, dst=None) -> int:
        writer, frames = None, 0
        fps = capture.get(cv2.CAP_PROP_FPS) or 15
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            picture, _ = self.render(frame)
            frames += 1
            if dst:
                if writer is None:
                    h, w = picture.shape[:2]
                    writer = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                writer.write(picture)
            elif show(picture):
                break
        capture.release()
        if writer is not None:
            writer.release()
        logger.info(f"processed {frames} frames" + (f" -> {dst}" if dst else ""))
        return frames


def show(picture) -> bool:
    """Show a picture in a window; returns True when the user pressed Esc."""
    try:
        cv2.imshow("GFocal", picture)
        return cv2.waitKey(1) == 27
    except cv2.error as e:
        raise SystemExit(f"cannot open a window here ({e.err}); pass --output to write files instead")


def main(argv=None) -> int:
    args = split_overrides(get_parser().parse_args(argv))
    setup_logger(name="gfocal")
    setup_logger(name="fvcore")
    if sum(bool(x) for x in (args.input, args.video_input, args.webcam)) != 1:
        print("error: give exactly one of --input, --video-input, --webcam", file=sys.stderr)
        return 2
    if not os.path.isfile(args.config_file):
        print(f"error: config file not found: {args.config_file}", file=sys.stderr)
        return 2
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    try:
        files = expand_inputs(args.input) if args.input else None
        if args.video_input and not os.path.isfile(args.video_input):
            raise FileNotFoundError(f"--video-input: no such file {args.video_input!r}")
        demo = Demo(cfg, args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if files is not None:
        if not files:
            print("error: --input matched no files", file=sys.stderr)
            return 2
        failed = demo.run_images(files)
        return 1 if failed == len(files) else 0
    if args.video_input:
        capture = cv2.VideoCapture(args.video_input)
        if not capture.isOpened():
            print(f"error: cannot read video {args.video_input!r}", file=sys.stderr)
            return 2
        dst = None
        if args.output:
            dst = args.output
            if os.path.isdir(dst) or not os.path.splitext(dst)[1]:
                os.makedirs(dst, exist_ok=True)
                dst = os.path.join(dst, os.path.splitext(os.path.basename(args.video_input))[0] + ".mp4")
        return 0 if demo.run_video(capture, dst) > 0 else 1
    capture = cv2.VideoCapture(0)
    if not capture.isOpened():
        print("error: no camera found (--webcam needs a camera at index 0)", file=sys.stderr)
        return 2
    demo.run_video(capture, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
