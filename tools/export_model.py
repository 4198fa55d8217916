#!/usr/bin/env python
"""Export a trained GFL (v1 or v2) for deployment, in one command.

    python tools/export_model.py --config-file configs/Quickstart/gfl_shapes.py --format onnx \\
        --output output/export/gfl_onnx train.init_checkpoint=output/quickstart/gfl/model_final.pth
    python tools/export_model.py --config-file ... --format onnx --int8 --calib-images 64 --output DIR ...
    python tools/export_model.py --config-file ... --format torch-export --output DIR ...

Writes DIR/model.onnx (or DIR/model.pt2, a torch.export ExportedProgram) and DIR/model.json,
everything a runtime needs plus the export's own measured differences from PyTorch. Run the ONNX
model with ``gfocal_runtime.Detector(DIR)`` (numpy + opencv + onnxruntime or openvino; no torch)
or ``demo/demo.py --exported DIR``. Weights come from ``train.init_checkpoint`` (official GFL
checkpoints are converted on the fly); an empty one exports the model as initialised (a warning;
for benchmarks). ``--int8`` quantises the convolutions (QDQ, per-channel), calibrated on N images
of the config's training set or on the images of a folder. Every argument is checked before the
export starts, and DIR gets its files only when the export has succeeded.
"""

import argparse
import os
import sys

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
from detectron2.utils.logger import setup_logger

from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.export import FORMATS, check_export, export_model, load_model


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to a lazy config")
    parser.add_argument("--format", default="onnx", choices=FORMATS)
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the model and model.json")
    parser.add_argument("--int8", action="store_true", help="static int8 quantisation (ONNX, QDQ)")
    parser.add_argument(
        "--calib-images", default="64", metavar="N|FOLDER", help="int8 calibration: N training images, or a folder"
    )
    parser.add_argument(
        "--with-distributions", action="store_true", help="also output the four side distributions of every location"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value, last")
    return checked_parser(parser)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    setup_logger(name="gfocal")
    cfg = load_config(args.config_file, args.opts)
    calibration = check_export(cfg, args.format, args.output, args.int8, args.calib_images)
    spec = export_model(
        cfg,
        load_model(cfg),
        args.output,
        args.format,
        int8=args.int8,
        calib_images=calibration,
        with_distributions=args.with_distributions,
        source={"config": args.config_file, "weights": cfg.train.init_checkpoint or None, "overrides": list(args.opts)},
    )
    diffs = ", ".join(f"{k} {v:.2g}" for k, v in spec.parity["max_abs_diff"].items())
    print(
        f"wrote {os.path.join(args.output, spec.model_file)} and model.json (GFL v{spec.gfl_version}, "
        f"{spec.precision}); max |diff| vs PyTorch: {diffs}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
