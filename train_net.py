#!/usr/bin/env python
"""Train and evaluate GFL with Detectron2's LazyConfig system.

Follows Detectron2's ``tools/lazyconfig_train_net.py``:

    python train_net.py --config-file configs/COCO-Detection/gfl_R_50_FPN_1x.py --num-gpus 8
    python train_net.py --config-file ... --eval-only train.init_checkpoint=/path/model.pth
    python train_net.py --config-file ... --resume          # continue from the last checkpoint
    python train_net.py --config-file ... train.amp.enabled=True dataloader.train.total_batch_size=8

Overrides come last as ``key.sub=value``; a key the config does not have is an error (write
``+key=value`` to add one on purpose). The config must define ``model``, ``dataloader`` (train,
test, evaluator), ``optimizer``, ``lr_multiplier`` and ``train`` (output_dir, init_checkpoint,
max_iter, amp.enabled, ddp, checkpointer, eval_period, log_period, device). Training evaluates
every ``train.eval_period`` iterations (0: at the end only). ``--eval-only`` evaluates an
inference-optimised copy of the model (``--no-optimize``: the model as built). Mistakes in the
input end with one line on stderr and exit status 2 (``--debug`` shows the traceback).
``--metric voc07|voc12`` evaluates Pascal VOC AP50 (11-point / all-point) from the test set's
records instead of COCO AP (``--metric coco``, the default: the config's own evaluator).
"""

import sys

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
from detectron2.config import LazyCall as L
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.engine import VOCEvaluator, check_inputs, do_train, evaluate_checkpoint


def get_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--no-optimize",
        action="store_true",
        help="--eval-only: evaluate the model as built, not its inference-optimised copy",
    )
    parser.add_argument(
        "--metric",
        choices=("coco", "voc07", "voc12"),
        default="coco",
        help="coco: the config's evaluator; voc07/voc12: Pascal VOC AP50, 11-point/all-point (default: coco)",
    )
    return checked_parser(parser)


def main(args):
    cfg = load_config(args.config_file, args.opts)
    if args.metric != "coco":
        cfg.dataloader.evaluator = L(VOCEvaluator)(dataset_name="${..test.dataset.names}", metric=args.metric)
    default_setup(cfg, args)
    # Our own warnings (data checks, fine-tuning, resume) go to the console and log.txt too.
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="gfocal")
    if args.eval_only:
        return evaluate_checkpoint(cfg, cfg.train.init_checkpoint, optimize=not args.no_optimize)
    do_train(cfg, resume=args.resume)


def invoke_main(argv=None) -> int:
    def checked_launch():
        args = get_parser().parse_args(argv)
        # Input errors surface here, before any worker starts or anything is written.
        processes = args.num_gpus * args.num_machines
        check_inputs(load_config(args.config_file, args.opts), args.eval_only, processes)
        return launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )

    return run(checked_launch, argv)


if __name__ == "__main__":
    sys.exit(invoke_main())
