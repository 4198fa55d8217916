#!/usr/bin/env python
"""Train GFL v1, GFL v2 and Detectron2's FCOS and RetinaNet on the quick-start data with the
same backbone (ResNet-18-FPN from scratch), head width, schedule, batch and seed, and print
their val box AP side by side.

    python tools/benchmark_quickstart.py                        # all four, the quick-start schedule
    python tools/benchmark_quickstart.py --models gfl fcos train.max_iter=400

Each run is `train_net.py --resume --config-file configs/Quickstart/<model>_shapes.py` into
output/quickstart_benchmark/<model>/: a killed run continues from its last checkpoint (not
bit-identical to an uninterrupted one), a finished one is reused (delete it to retrain).
"""

import argparse
import json
import os
import sys

from gfocal.analysis.plotting import final_metrics, training_minutes
from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.engine import TrainingRun, train_unless_finished
from gfocal.errors import GFocalError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "train_net.py")
MODELS = {"gfl": "GFL v1", "gflv2": "GFL v2", "fcos": "D2 FCOS", "retinanet": "D2 RetinaNet"}
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--output-root", default=os.path.join(REPO, "output/quickstart_benchmark"))
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="overrides for every run")
    args = checked_parser(parser).parse_args(argv)
    configs = {key: os.path.join(REPO, f"configs/Quickstart/{key}_shapes.py") for key in args.models}
    for config in configs.values():  # every override checked against every config before any training
        load_config(config, args.opts)
    outs = {key: os.path.join(args.output_root, key) for key in args.models}
    runs = [TrainingRun(MODELS[k], outs[k], configs[k], [f"train.output_dir={outs[k]}", *args.opts]) for k in outs]
    train_unless_finished(runs, TRAIN_NET)

    rows = {}
    for key, out in outs.items():
        metrics = final_metrics(os.path.join(out, "metrics.json"), METRICS)
        if metrics is None:
            raise GFocalError(f"no evaluation found in {out}/metrics.json")
        metrics["minutes"] = training_minutes(os.path.join(out, "log.txt")) or float("nan")
        rows[key] = metrics

    print("\n| model | " + " | ".join(METRICS) + " | training (min) |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    for key, m in rows.items():
        print(f"| {MODELS[key]} | " + " | ".join(f"{m[k]:.1f}" for k in METRICS) + f" | {m['minutes']:.1f} |")
    with open(os.path.join(args.output_root, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
