#!/usr/bin/env python
"""Find annotation errors in a COCO detection dataset with GFL's side distributions: boxes never
drawn, wrong classes, boxes with a loose or shifted side, boxes on nothing, the same object twice;
for each, a score, what to change, and a review page.

    python tools/find_label_errors.py --config-file configs/Quickstart/gfl_shapes.py \\
        --json my/annotations.json --image-root my/images --output output/label_check
    python tools/find_label_errors.py --config-file ... --dataset gfocal_shapes_train --output DIR
    python tools/find_label_errors.py --config-file ... --dataset yolo:my/data.yaml#train --output DIR
    python tools/find_label_errors.py --config-file ... --json ... --image-root ... --output DIR \\
        --weights model_final.pth                   # the quick look: one given model scores all
    python tools/find_label_errors.py --apply DIR/decisions.json --output DIR

By default it trains ``--folds`` models with the config's recipe, each on the other folds, and
each scores the images it never saw (out-of-fold: a model judges the images it learned from too
kindly). The config's ``model.num_classes`` and class names follow the json's categories.
Fold trainings are ``train_net.py --resume`` runs in DIR/folds/foldK/ (a killed run continues;
``--num-gpus`` / ``--num-machines`` / ``--machine-rank`` / ``--dist-url`` go to each of them, as
with train_net.py). Overrides (``key=value``) go last and apply to the trainings and the scoring.

Writes into DIR (each file atomically; the input json is never touched): label_issues.json (every
scored issue, highest score first, ``flagged`` at ``--threshold``), predictions.json (the
detections in COCO results format), corrected.json (the input with every flagged issue applied),
index.html + images/ (the review page), run.json (settings, digests, times). ``--apply`` reads
the decisions saved from the page and writes DIR/corrected_reviewed.json with the accepted ones.
``--dataset`` given as a spec (``FORMAT:PATH[?images=DIR][#SPLIT]``: YOLO, VOC, CVAT, Label
Studio, COCO) also writes DIR/corrected/ (and DIR/corrected_reviewed/) in the input's own format
and layout, every untouched file byte-identical (see gfocal.label_check.native).
"""

import argparse
import math
import os
import sys

from gfocal.cli import checked_parser, run
from gfocal.data import looks_like_spec
from gfocal.errors import ConfigError, InputError
from gfocal.label_check import (
    ISSUE_TYPES,
    apply_decisions,
    check_labels,
    dataset_files,
    spec_to_coco,
    write_corrections,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help="the training recipe (a lazy config)")
    parser.add_argument("--json", help="COCO detection json to check")
    parser.add_argument("--image-root", help="folder the json's file_name entries are relative to")
    parser.add_argument(
        "--dataset",
        help="a dataset spec (FORMAT:PATH[?images=DIR][#SPLIT]) or a registered COCO dataset, instead of --json",
    )
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--folds", type=int, default=2, help="out-of-fold models to train (default 2)")
    parser.add_argument("--weights", help="score with this one model instead of training folds (fast, less fair)")
    parser.add_argument("--threshold", type=float, default=0.5, help="score that counts as flagged (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="fold split and simulation seed")
    parser.add_argument("--jobs", type=int, default=None, help="fold trainings at a time (CPU default: 2)")
    parser.add_argument("--max-cards", type=int, default=500, help="cards on the review page (highest scores)")
    parser.add_argument("--no-flip", action="store_true", help="score from the image alone, not also its mirror")
    parser.add_argument(
        "--scales",
        default=None,
        help="sizes the model sees each image at, as factors of the config's test input "
        "(default: 1,1.333 for the out-of-fold check, 1 with --weights, the quick look)",
    )
    parser.add_argument("--apply", metavar="DECISIONS", help="write DIR/corrected_reviewed.json from page decisions")
    parser.add_argument("--num-gpus", type=int, default=1, help="per fold training, as train_net.py")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default=None)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides, key=value")
    return checked_parser(parser)


def check(args) -> None:
    if not args.config_file:
        raise ConfigError("--config-file is required (the recipe the fold models train with or --weights fits)")
    if bool(args.json) == bool(args.dataset):
        raise ConfigError("give either --json FILE --image-root DIR or --dataset NAME")
    if args.json and not args.image_root:
        raise ConfigError("--json needs --image-root (the folder its file_name entries are relative to)")
    if args.image_root and not os.path.isdir(args.image_root):
        raise InputError(f"--image-root: no such folder {args.image_root!r}")
    if not 0.0 < args.threshold < 1.0:
        raise ConfigError(f"--threshold must be in (0, 1), got {args.threshold}")
    if not args.weights and args.folds < 2:
        raise ConfigError(f"--folds must be at least 2 (or give --weights), got {args.folds}")
    if args.weights and not os.path.isfile(args.weights):
        raise InputError(f"--weights: no such file {args.weights!r}")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    args.scales = parse_scales(args.scales if args.scales is not None else ("1" if args.weights else DEFAULT_SCALES))


DEFAULT_SCALES = "1,1.333"  # a second, larger look at each object: its small objects' edges over more pixels


def parse_scales(text: str) -> tuple:
    """ "1,1.333" -> (1.0, 1.333): positive factors, 1 among them (the detections' input)."""
    try:
        scales = tuple(float(x) for x in str(text).split(","))
    except ValueError:
        scales = ()
    if not scales or any(not (math.isfinite(x) and 0.25 <= x <= 4) for x in scales) or 1.0 not in scales:
        raise ConfigError(f"--scales must be comma-separated factors in [0.25, 4] that include 1, got {text!r}")
    return tuple(sorted(set(scales)))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.apply:
        out, accepted, rejected = apply_decisions(args.output, args.apply)
        print(f"{accepted} accepted, {rejected} rejected issues: {out}")
        if os.path.isfile(os.path.join(args.output, "native.json")):
            written = write_corrections(args.output, out, "corrected_reviewed")
            print(f"in the input's format: {os.path.join(args.output, 'corrected_reviewed')} ({len(written)} files)")
        return 0
    check(args)
    native = bool(args.dataset) and looks_like_spec(args.dataset)
    if args.json:
        json_file, image_root = args.json, args.image_root
    else:
        json_file, image_root = spec_to_coco(args.dataset, args.output) if native else dataset_files(args.dataset)
    train_args = ["--num-gpus", str(args.num_gpus), "--num-machines", str(args.num_machines)]
    train_args += ["--machine-rank", str(args.machine_rank)] + (["--dist-url", args.dist_url] if args.dist_url else [])
    summary, scored, cards = check_labels(
        args.config_file,
        args.opts,
        json_file,
        image_root,
        args.output,
        weights=args.weights,
        folds=args.folds,
        seed=args.seed,
        threshold=args.threshold,
        flip=not args.no_flip,
        scales=args.scales,
        max_cards=args.max_cards,
        jobs=args.jobs,
        train_net=os.path.join(REPO, "train_net.py"),
        train_args=train_args,
    )
    flagged = ", ".join(f"{summary['flagged'][t]} {t}" for t in ISSUE_TYPES)
    print(f"flagged at {args.threshold}: {flagged} (of {scored} scored)")
    out = args.output
    print(f"review page: {os.path.join(out, 'index.html')} ({cards} cards)")
    print(f"issues: {os.path.join(out, 'label_issues.json')}; corrected: {os.path.join(out, 'corrected.json')}")
    if native:
        written = write_corrections(out, os.path.join(out, "corrected.json"), "corrected")
        print(f"in the input's format: {os.path.join(out, 'corrected')} ({len(written)} files)")
    print(f"time: {summary['minutes']['total']:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
