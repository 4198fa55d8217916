#!/usr/bin/env python
"""Convert an official GFL checkpoint (mmdetection 1.x/2.x/3.x GFL, implus/GFocal v1,
implus/GFocalV2) or a torchvision ImageNet ResNet into a file Detectron2 loads into GFocal.

    python tools/convert_checkpoint.py gfl_r50_fpn_1x_coco_20200629_121244-25944287.pth \
        -o gfl_R_50_FPN_1x.pth --config-file configs/COCO-Detection/gfl_R_50_FPN_1x.py
    python train_net.py --config-file configs/COCO-Detection/gfl_R_50_FPN_1x.py --eval-only \
        train.init_checkpoint=gfl_R_50_FPN_1x.pth

With --config-file the result is loaded into that config's model and every missing or unexpected
key is reported (non-zero exit if any). Files are read with torch.load(weights_only=True).
"""

import argparse
import logging
import os
import sys

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
from detectron2.config import instantiate

from gfocal.checkpoint import convert_state_dict, load_checkpoint_file, save_checkpoint
from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.errors import CheckpointError, ConfigError


def main(argv=None) -> int:
    parser = checked_parser(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    )
    parser.add_argument("input", help="official checkpoint (.pth)")
    parser.add_argument("-o", "--output", required=True, help="converted checkpoint to write (.pth)")
    parser.add_argument("--config-file", help="check the result against this config's model")
    parser.add_argument("opts", nargs="*", default=[], help="config overrides key=value")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = load_config(args.config_file, args.opts) if args.config_file else None
    if os.path.isdir(args.output):
        raise ConfigError(f"--output {args.output} is a folder; give the file name to write")
    checkpoint = load_checkpoint_file(args.input)
    state, info = convert_state_dict(checkpoint, num_classes=cfg.model.num_classes if cfg else None)
    print(f"source:  {info.summary()}")
    print(
        f"mapped:  {len(state)} tensors; dropped {len(info.dropped)} ({', '.join(info.dropped[:4])}"
        f"{' ...' if len(info.dropped) > 4 else ''})"
    )

    if cfg is not None:  # compared by name and shape, before anything is written
        expected = instantiate(cfg.model).state_dict()
        problems = [f"missing in the checkpoint: {k}" for k in expected if k not in state]
        problems += [f"not in the model: {k}" for k in state if k not in expected]
        problems += [
            f"shape {tuple(v.shape)} vs model {tuple(expected[k].shape)}: {k}"
            for k, v in state.items()
            if k in expected and v.shape != expected[k].shape
        ]
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            dcn = (
                f"; the checkpoint has {'modulated ' if info.deform_modulated else ''}DCN on {info.deform_stages}: "
                "set model.backbone.bottom_up.stages.deform_on_stages / deform_modulated accordingly"
                if info.deform_stages
                else ""
            )
            raise CheckpointError(f"{args.input} does not fit {args.config_file}: {'; '.join(problems[:5])}{more}{dcn}")
        print(f"checked: loads into {args.config_file} with no missing or unexpected keys")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    save_checkpoint({"model": state, "__author__": f"gfocal conversion of {args.input}"}, args.output)
    print(f"wrote:   {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
