#!/usr/bin/env python
"""Plot a Detectron2 run's metrics.json: losses, learning rate and box AP over iterations.

python tools/plot_metrics.py output/quickstart/gfl/metrics.json -o output/quickstart/gfl/curves.png
"""

import argparse
import os
import sys

from gfocal.analysis.plotting import plot, read_metrics
from gfocal.cli import checked_parser, run
from gfocal.errors import InputError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", help="path to metrics.json")
    parser.add_argument("-o", "--output", help="PNG path (default: curves.png next to metrics.json)")
    parser.add_argument("--title")
    args = checked_parser(parser).parse_args(argv)
    if not os.path.isfile(args.metrics):
        raise InputError(f"no such file {args.metrics}")
    try:
        output = plot(
            read_metrics(args.metrics),
            args.output or os.path.join(os.path.dirname(args.metrics), "curves.png"),
            args.title,
        )
    except ValueError as e:
        raise InputError(f"{args.metrics}: {e}") from None
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
