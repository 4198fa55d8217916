#!/usr/bin/env python
"""Train and evaluate GFL with Detectron2's LazyConfig system.

Follows Detectron2's ``tools/lazyconfig_train_net.py``:

    python train_net.py --config-file configs/COCO-Detection/gfl_R_50_FPN_1x.py --num-gpus 8
    python train_net.py --config-file ... --eval-only train.init_checkpoint=/path/model.pth
    python train_net.py --config-file ... --resume          # continue from the last checkpoint
    python train_net.py --config-file ... train.amp.enabled=True dataloader.train.total_batch_size=8

Overrides come last as ``key.sub=value``. The config must define ``model``, ``dataloader``
(train, test, evaluator), ``optimizer``, ``lr_multiplier`` and ``train`` (output_dir,
init_checkpoint, max_iter, amp.enabled, ddp, checkpointer, eval_period, log_period, device).
Training evaluates every ``train.eval_period`` iterations (0: at the end only).
"""
import sys

import gfocal  # noqa: F401  (registers the GFL meta-architecture and the built-in datasets)
from detectron2.config import LazyConfig
from detectron2.engine import default_argument_parser, default_setup, launch
from gfocal.engine import do_train, evaluate_checkpoint


def main(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    default_setup(cfg, args)
    if args.eval_only:
        try:
            return evaluate_checkpoint(cfg, cfg.train.init_checkpoint)
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
    do_train(cfg, resume=args.resume)


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
