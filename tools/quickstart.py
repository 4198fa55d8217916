#!/usr/bin/env python
"""The quick-start main job: train GFL on the built-in shapes dataset, evaluate COCO box AP on
its val split, and draw val predictions with their side distributions.

    make quickstart                      # = python tools/quickstart.py (after set-up)
    python tools/quickstart.py --config-file configs/Quickstart/gflv2_shapes.py
    python tools/quickstart.py train.max_iter=300        # overrides come last

A killed run continues from its last checkpoint when started again; a finished run is
re-evaluated and re-drawn without training again (delete the output folder to start over).
Writes into ``train.output_dir``: model_final.pth, metrics.json, log.txt, curves.png,
pictures/ (one PNG per val image with each box's side distributions drawn along its edges, plus
overview.png) and uncertainty.png (distribution spread against localisation error on val).
"""

import json
import logging
import os
import sys
import time

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
import cv2
import numpy as np
import torch

from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from gfocal.analysis.plotting import plot, plot_uncertainty_vs_error, read_metrics
from gfocal.analysis.uncertainty import collect
from gfocal.analysis.visualization import draw_predictions
from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.data import first_dataset_name
from gfocal.engine import LazyPredictor, check_inputs, describe_precision, do_train
from gfocal.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")
logger = logging.getLogger("gfocal.quickstart")


def draw_val_pictures(predictor, records, out_dir, threshold=0.3):
    """One picture per record (the distributions along each box side) + an overview."""
    os.makedirs(out_dir, exist_ok=True)
    tiles = []
    for record in records:
        image = cv2.imread(record["file_name"], cv2.IMREAD_COLOR)
        instances = predictor(image)["instances"]
        picture = draw_predictions(image[:, :, ::-1], instances, predictor.metadata, threshold)
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        cv2.imwrite(os.path.join(out_dir, f"{stem}.png"), picture[:, :, ::-1])
        tiles.append(cv2.resize(picture, (512, 512), interpolation=cv2.INTER_AREA))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    overview = os.path.join(out_dir, "overview.png")
    cv2.imwrite(overview, np.vstack(rows)[:, :, ::-1])
    return overview


def get_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.set_defaults(config_file=DEFAULT_CONFIG)
    parser.add_argument("--pictures", type=int, default=16, help="val images to draw")
    return checked_parser(parser)


def main(argv=None):
    args = get_parser().parse_args(argv)
    start = time.perf_counter()

    cfg = load_config(args.config_file, args.opts)
    check_inputs(cfg)  # device, slicing, timm backbones, a teacher: before anything is written
    if args.pictures < 1:
        raise ConfigError(f"--pictures must be at least 1, got {args.pictures}")
    default_setup(cfg, args)
    # Our own warnings (data checks, fine-tuning, resume) go to the console and log.txt too.
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="gfocal")
    torch.set_num_threads(os.cpu_count() or 1)
    out = cfg.train.output_dir

    logger.info("[1/4] dataset")
    names = cfg.dataloader.train.dataset.names
    for name in [names] if isinstance(names, str) else list(names):
        DatasetCatalog.get(name)  # the built-in dataset is generated here on first use
    logger.info(f"dataset ready ({time.perf_counter() - start:.0f}s)")

    precision = describe_precision(cfg.train.device, cfg.train.amp.enabled)
    logger.info(f"[2/4] training in {precision} (resumes from the last checkpoint if there is one)")
    trainer = do_train(cfg, resume=True)
    latest = {k: v for k, (v, _) in trainer.storage.latest().items()}
    ap = {k: latest[k] for k in ("bbox/AP", "bbox/AP50", "bbox/AP75") if k in latest}
    t_train = time.perf_counter() - start

    logger.info("[3/4] pictures: val predictions with their side distributions; uncertainty vs error")
    weights = os.path.join(out, "model_final.pth")
    predictor = LazyPredictor(cfg, weights=weights)
    val = DatasetCatalog.get(first_dataset_name(cfg.dataloader.test.dataset.names))
    overview = draw_val_pictures(predictor, val[: args.pictures], os.path.join(out, "pictures"))
    uncertainty = plot_uncertainty_vs_error(
        collect(predictor, val),
        os.path.join(out, "uncertainty.png"),
        title=f"{os.path.basename(args.config_file)}: distribution spread vs localisation error (val)",
    )

    logger.info("[4/4] training curves")
    curves = None
    metrics = os.path.join(out, "metrics.json")
    if os.path.isfile(metrics):
        curves = plot(read_metrics(metrics), os.path.join(out, "curves.png"), title=os.path.basename(args.config_file))

    total = time.perf_counter() - start
    summary = {
        "box_AP": ap,
        "uncertainty_vs_error": {k: uncertainty[k] for k in ("pearson", "spearman", "n")},
        "precision": precision,
        "seconds_total": round(total),
        "seconds_until_evaluated": round(t_train),
    }
    with open(os.path.join(out, "quickstart_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n=== GFocal quick start ===")
    ap_, ap50, ap75 = (ap.get(f"bbox/{k}", float("nan")) for k in ("AP", "AP50", "AP75"))
    print(f"val box AP: {ap_:.1f}  (AP50 {ap50:.1f}, AP75 {ap75:.1f})")
    print(f"weights:  {weights}")
    print(f"pictures: {os.path.dirname(overview)}/  (overview: {overview})")
    print(
        f"uncertainty: {uncertainty['output']}  (spread vs 1 - IoU over {uncertainty['n']} detections: "
        f"Spearman {uncertainty['spearman']:.2f}, Pearson {uncertainty['pearson']:.2f})"
    )
    if curves:
        print(f"curves:   {curves}")
    print(f"trained:  {precision}")
    print(f"time:     {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
