#!/usr/bin/env python
"""GFL demo visualizer: boxes, classes, scores and (optionally) the learned side distributions.

    python demo/demo.py --config-file configs/Quickstart/gfl_shapes.py \\
        --input 'datasets/gfocal_shapes/val/*.jpg' --output output/demo --show-distributions \\
        train.init_checkpoint=output/quickstart/gfl/model_final.pth
    python demo/demo.py --config-file ... --video-input clip.mp4 --output out.mp4 train.init_checkpoint=...
    python demo/demo.py --config-file ... --webcam train.init_checkpoint=...
    python demo/demo.py --exported output/export/gfl_onnx --input IMAGES --output DIR --show-distributions
    python demo/demo.py --config-file configs/Quickstart/gfl_shapes_large.py --input BIG.jpg --output out.png \\
        --slice 256 --overlap 0.25 --merge distribution train.init_checkpoint=...   # sliced, plus the whole image
    python demo/demo.py --exported DIR --input my/images --output out --save-labels cvat   # pre-annotations

Flags follow Detectron2's demo; config overrides (``key=value``) come last. Weights come from
``train.init_checkpoint``; resizing, input format and class names from the config's test data.
``--slice SIZE`` runs each image on overlapping SIZE x SIZE tiles (in the image's pixels; neighbours
share ``--overlap`` of a tile) plus the whole image (``--no-whole-image``: tiles only), merged by
``--merge`` (nms, greedy: SAHI's, distribution: side by side from the sharpest view; the default);
without it the config's ``dataloader.test.slicing`` applies when enabled.

With ``--exported DIR`` the pictures come from an exported model run by ``gfocal_runtime``
(ONNX Runtime or OpenVINO), without building the PyTorch model. Images are read with their EXIF
orientation applied; unreadable files are reported and skipped. ``--save-labels FORMAT`` (yolo, voc,
cvat, labelstudio, coco) also writes the detections at or above ``--confidence-threshold`` to
``OUTPUT/labels/`` as that format's pre-annotations (YOLO lines with a confidence column, Label
Studio ``predictions``, CVAT boxes marked automatic, COCO json with scores), to import and correct
in the annotation tool. With several inputs, pictures
mirror the inputs' folders under ``--output`` so that equal file names never collide.
"""

import argparse
import glob
import logging
import os
import sys
import time

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
import cv2
import numpy as np

from detectron2.data import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger

from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.engine import LazyPredictor, instances_from_runtime
from gfocal.errors import ConfigError
from gfocal.export.quantize import IMAGE_EXTS
from gfocal.modeling import slicing_settings
from gfocal_runtime import Detector
from gfocal_runtime.formats import FORMATS, save_predictions
from gfocal_runtime.slicing import SlicingSettings

VIDEO_EXTS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}
logger = logging.getLogger("gfocal.demo")


def get_parser():
    parser = argparse.ArgumentParser(
        description="GFocal demo", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--config-file", metavar="FILE", help="path to a lazy config")
    parser.add_argument(
        "--exported", metavar="DIR", help="an exported model folder (tools/export_model.py) instead of a config"
    )
    parser.add_argument(
        "--backend", help="with --exported: onnxruntime or openvino (default: the faster one installed)"
    )
    parser.add_argument("--input", nargs="+", help="image files, folders, or glob patterns ('dir/*.jpg')")
    parser.add_argument("--output", help="output file (one input) or folder")
    parser.add_argument("--video-input", help="path to a video file")
    parser.add_argument("--webcam", action="store_true", help="read frames from the first camera")
    parser.add_argument("--confidence-threshold", type=float, default=0.3, help="minimum score to draw")
    parser.add_argument("--show-distributions", action="store_true", help="draw each box's L/T/R/B distributions")
    parser.add_argument(
        "--no-optimize", action="store_true", help="run the model as built, not its inference-optimised copy"
    )
    parser.add_argument("--slice", type=int, metavar="SIZE", help="sliced inference: tiles of SIZE x SIZE pixels")
    parser.add_argument(
        "--overlap", type=float, metavar="R", help="with --slice: the share of a tile neighbours have in common (0.25)"
    )
    parser.add_argument("--merge", metavar="NAME", help="with --slice: nms, greedy or distribution (the default)")
    parser.add_argument("--no-whole-image", action="store_true", help="with --slice: the tiles only")
    parser.add_argument(
        "--opts",
        dest="more_opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides, as in Detectron2's demo",
    )
    parser.add_argument(
        "--save-labels",
        metavar="FORMAT",
        choices=FORMATS,
        help=f"with --input and --output DIR: also write the detections (>= --confidence-threshold) as "
        f"pre-annotations to DIR/labels/ in one of {', '.join(FORMATS)}",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value, last")
    return checked_parser(parser)


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


def output_paths(output, files):
    """Where each input's picture goes: ``--output`` itself for one input and a file name,
    else a folder mirroring the inputs' paths relative to their common folder (.png)."""
    if output is None:
        return [None] * len(files)
    ext = os.path.splitext(output)[1].lower()
    if len(files) == 1 and ext and not os.path.isdir(output):
        if ext not in IMAGE_EXTS:
            raise ConfigError(
                f"--output {output}: cannot write images as {ext!r}; use one of {sorted(IMAGE_EXTS)} or a folder"
            )
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        return [output]
    if os.path.isfile(output):
        raise ConfigError(f"--output {output} is an existing file, but {len(files)} inputs need a folder")
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    paths = [
        os.path.join(output, os.path.splitext(os.path.relpath(os.path.abspath(f), root))[0] + ".png") for f in files
    ]
    if len(set(paths)) != len(paths):  # a.jpg and a.png in one folder
        paths = [os.path.join(output, os.path.relpath(os.path.abspath(f), root) + ".png") for f in files]
    return paths


def slicing_from_args(args, cfg):
    """The sliced-inference settings the flags ask for (None: the config's own, or none)."""
    if args.slice is None:
        if args.overlap is not None or args.merge is not None or args.no_whole_image:
            raise ConfigError("--overlap, --merge and --no-whole-image go with --slice SIZE; give --slice too")
        return None
    base = dict(cfg.dataloader.test.get("slicing", {})) if cfg is not None else {}
    overlap = base.get("overlap", SlicingSettings.overlap) if args.overlap is None else args.overlap
    merge = args.merge or base.get("merge") or SlicingSettings.merge
    slicing = dict(enabled=True, size=args.slice, overlap=overlap, merge=merge, whole_image=not args.no_whole_image)
    slicing_settings(slicing, where="--slice/--overlap/--merge")  # checked before anything is built
    return slicing


class Demo:
    """Predict with a config's model (``LazyPredictor``) or an exported one (``gfocal_runtime``)
    and draw."""

    def __init__(self, cfg, args):
        self.args = args
        self.predictions = []  # (file, (height, width), arrays) per image, for --save-labels
        if args.exported:
            try:
                self.detector = Detector(args.exported, backend=args.backend, slicing=args.slicing)
            except (ValueError, ImportError) as e:  # a bad model.json, a torch-export folder, no runtime
                raise ConfigError(f"--exported {args.exported}: {e}") from e
            self.metadata = Metadata(thing_classes=list(self.detector.class_names))
            logger.info(f"exported model {args.exported} on {self.detector.backend}")
            if args.show_distributions and not self.detector.spec.with_distributions:
                logger.warning(
                    f"--show-distributions: {args.exported} was exported without distributions (export with "
                    "--with-distributions to draw them); drawing boxes only"
                )
        else:
            self.predictor = LazyPredictor(cfg, optimize=not args.no_optimize, slicing=args.slicing)
            self.metadata = self.predictor.metadata

    def predict(self, image_bgr: np.ndarray):
        if not self.args.exported:
            return self.predictor(image_bgr)["instances"]
        return instances_from_runtime(self.detector(image_bgr), image_bgr.shape[:2])

    def render(self, image_bgr: np.ndarray) -> tuple:
        """BGR frame -> (BGR picture, number of drawn instances, the instances)."""
        from gfocal.analysis.visualization import draw_predictions

        instances = self.predict(image_bgr)
        picture = draw_predictions(
            image_bgr[:, :, ::-1],
            instances,
            self.metadata,
            confidence_threshold=self.args.confidence_threshold,
            show_distributions=self.args.show_distributions,
        )
        count = int((instances.scores >= self.args.confidence_threshold).sum())
        return np.ascontiguousarray(picture[:, :, ::-1]), count, instances

    def run_images(self, files) -> int:
        failed = 0
        for path, dst in zip(files, output_paths(self.args.output, files)):
            try:
                image = read_image(path, format="BGR")  # EXIF orientation applied
            except Exception as e:  # not an image, corrupt or truncated
                ext = os.path.splitext(path)[1].lower()
                why = "not an image file" if ext not in IMAGE_EXTS else "unreadable or corrupt image"
                logger.warning(f"skipped {path}: {why} ({type(e).__name__})")
                failed += 1
                continue
            start = time.perf_counter()
            picture, count, instances = self.render(image)
            if self.args.save_labels:
                self.predictions.append((path, image.shape[:2], _as_arrays(instances)))
            logger.info(f"{path}: {count} detections in {time.perf_counter() - start:.2f}s")
            if dst:
                os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
                if not cv2.imwrite(dst, picture):
                    raise ConfigError(f"--output: cannot write {dst}")
            else:
                show(picture)
        logger.info(f"processed {len(files) - failed} of {len(files)} files ({failed} skipped)")
        if self.args.save_labels and self.predictions:
            out = os.path.join(self.args.output, "labels")
            names = self.metadata.thing_classes
            written = save_predictions(
                self.predictions, names, self.args.save_labels, out, min_score=self.args.confidence_threshold
            )
            logger.info(f"{self.args.save_labels} pre-annotations: {out} ({len(written)} files)")
        return failed

    def run_video(self, capture, dst=None) -> int:
        writer, frames = None, 0
        fps = capture.get(cv2.CAP_PROP_FPS) or 15
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            picture, _, _ = self.render(frame)
            frames += 1
            if dst:
                if writer is None:
                    writer = open_video_writer(dst, fps, picture.shape[:2])
                writer.write(picture)
            elif show(picture):
                break
        capture.release()
        if writer is not None:
            writer.release()
        logger.info(f"processed {frames} frames" + (f" -> {dst}" if dst else ""))
        return frames


def _as_arrays(instances) -> dict:
    """Detectron2 ``Instances`` -> the runtime's output dict (numpy boxes, scores, classes)."""
    return {
        "boxes": instances.pred_boxes.tensor.cpu().numpy(),
        "scores": instances.scores.cpu().numpy(),
        "classes": instances.pred_classes.cpu().numpy(),
    }


def open_video_writer(dst, fps, size_hw):
    ext = os.path.splitext(dst)[1].lower()
    if ext not in VIDEO_EXTS:
        raise ConfigError(f"--output {dst}: cannot write video as {ext!r}; use one of {sorted(VIDEO_EXTS)}")
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    writer = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*VIDEO_EXTS[ext]), fps, (size_hw[1], size_hw[0]))
    if not writer.isOpened():
        raise ConfigError(f"--output {dst}: OpenCV cannot open a {ext} video writer here")
    return writer


def show(picture) -> bool:
    """Show a picture in a window; returns True when the user pressed Esc."""
    try:
        cv2.imshow("GFocal", picture)
        return cv2.waitKey(1) == 27
    except cv2.error as e:
        raise ConfigError(f"cannot open a window here ({e.err}); pass --output to write files instead")


def main(argv=None) -> int:
    args = split_overrides(get_parser().parse_args(argv))
    setup_logger(name="gfocal")
    setup_logger(name="fvcore")
    if sum(bool(x) for x in (args.input, args.video_input, args.webcam)) != 1:
        raise ConfigError("give exactly one of --input, --video-input, --webcam")
    if bool(args.config_file) == bool(args.exported):
        raise ConfigError("give exactly one of --config-file (a PyTorch model) and --exported DIR")
    if args.backend and not args.exported:
        raise ConfigError("--backend chooses the runtime of an --exported model; give --exported DIR")
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise ConfigError(f"--confidence-threshold must be in [0, 1], got {args.confidence_threshold}")
    if args.save_labels and not (args.input and args.output and not os.path.splitext(args.output)[1]):
        raise ConfigError(
            "--save-labels needs --input IMAGES and --output DIR (a folder: the labels go to DIR/labels/)"
        )
    cfg = load_config(args.config_file, args.opts) if args.config_file else None
    args.slicing = slicing_from_args(args, cfg)
    files = expand_inputs(args.input) if args.input else None
    if args.video_input and not os.path.isfile(args.video_input):
        raise FileNotFoundError(f"--video-input: no such file {args.video_input!r}")
    if files is not None and not files:
        raise ConfigError("--input matched no files")
    demo = Demo(cfg, args)

    if files is not None:
        failed = demo.run_images(files)
        return 1 if failed == len(files) else 0
    if args.video_input:
        capture = cv2.VideoCapture(args.video_input)
        if not capture.isOpened():
            raise ConfigError(f"cannot read video {args.video_input!r}")
        dst = args.output
        if dst and (os.path.isdir(dst) or not os.path.splitext(dst)[1]):
            dst = os.path.join(dst, os.path.splitext(os.path.basename(args.video_input))[0] + ".mp4")
        return 0 if demo.run_video(capture, dst) > 0 else 1
    capture = cv2.VideoCapture(0)
    if not capture.isOpened():
        raise ConfigError("no camera found (--webcam needs a camera at index 0)")
    demo.run_video(capture, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
