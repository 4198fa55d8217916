#!/usr/bin/env python
"""Small objects in large images: whole-image vs sliced inference on the built-in large-image val.

    python tools/benchmark_small_objects.py                  # trains the model first if needed
    python tools/benchmark_small_objects.py --weights W --images 50 --skip-runtime

On gfocal_shapes_large val (1024x768, many 6-32 px shapes; ``configs/Quickstart/gfl_shapes_large.py``,
trained on 256 px slices: ``train_net.py --config-file ...`` when ``--weights`` is not given and
the config's ``model_final.pth`` is missing), one table of COCO box AP, AP_small, AP_medium, AP on
the objects that cross an inner tile border, and seconds per image, for:

1. the whole image at the network's input (the config's test resize, 256 px short side);
2. sliced (``--size`` px tiles sharing ``--overlap``, plus the whole image) merged by ``nms``,
   ``greedy`` (GFocal's SAHI-style merge) and ``distribution`` (the distribution-aware merge);
   the views run once and each merge is timed on top of them;
3. sahi 0.12.8 itself (``get_sliced_prediction`` through ``GFocalDetectionModel``, its own
   slicing and GREEDYNMM merge, IoS 0.5, class-wise, with its whole-image prediction), at the
   score threshold tuned for it (``GREEDY_SCORE_THRESH``; GFocal's ``greedy`` row uses it too);
4. the torch-free runtime (ONNX, onnxruntime) in float32 and int8 (calibrated on 64 random 256 px
   crops of train images), sliced with the distribution merge; and one tile's time, against the
   target of (tiles + 1) x one tile per image.

Border AP: COCO AP with every other object made a crowd region (detections on them are ignored),
"crossing" meaning an inner border line of the tile grid runs through the box. Everything goes to
--output (default output/small_objects): results.json, results.md.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
import cv2
import numpy as np
from tabulate import tabulate

from detectron2.data import DatasetCatalog, MetadataCatalog

from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.data import first_dataset_name
from gfocal.engine import TrainingRun, cpu_name, faster_cocoeval, train_unless_finished
from gfocal.errors import ConfigError
from gfocal.export import export_unless_exported
from gfocal_runtime.boxes import coco_detections
from gfocal_runtime.slicing import MERGES, SlicingSettings, sliced_detect, tile_starts

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs/Quickstart/gfl_shapes_large.py")
# sahi's merge (and GFocal's greedy, its equal) keep detections above this score: GREEDYNMM's
# enclosing boxes swallow neighbours when low scores take part. Tuned for it on 100 train
# images over 0.2-0.6; NMS and the distribution merge keep the model's own 0.05.
GREEDY_SCORE_THRESH = 0.4


def get_parser():
    parser = argparse.ArgumentParser(
        description="Whole-image vs sliced inference on small objects",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default=CONFIG, metavar="FILE")
    parser.add_argument("--weights", metavar="W", help="a trained model (default: the config's model_final.pth)")
    parser.add_argument("--output", default="output/small_objects", metavar="DIR")
    parser.add_argument("--images", type=int, default=0, metavar="N", help="the first N val images (default: all)")
    parser.add_argument("--size", type=int, default=None, help="tile side in pixels (default: the config's)")
    parser.add_argument("--overlap", type=float, default=None, help="tile overlap share (default: the config's)")
    parser.add_argument("--skip-runtime", action="store_true", help="no exported (ONNX fp32 / int8) rows")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value, last")
    return checked_parser(parser)


def crossing(boxes_xywh: np.ndarray, height: int, width: int, settings: SlicingSettings) -> np.ndarray:
    """(N,) bool: an inner border line of the image's tile grid runs through the box."""
    lines = []
    for length in (width, height):
        starts = tile_starts(length, settings.size, settings.overlap)
        lines.append(np.unique(np.concatenate([starts[1:], starts[:-1] + settings.size])))
    x0, y0 = boxes_xywh[:, 0], boxes_xywh[:, 1]
    x1, y1 = x0 + boxes_xywh[:, 2], y0 + boxes_xywh[:, 3]
    cross_x = ((lines[0][None] > x0[:, None]) & (lines[0][None] < x1[:, None])).any(1)
    cross_y = ((lines[1][None] > y0[:, None]) & (lines[1][None] < y1[:, None])).any(1)
    return cross_x | cross_y


def coco_results(image_id: int, dets, category_ids):
    """COCO results rows of ``dets`` (XYXY boxes, scores, class indices into ``category_ids``)."""
    return coco_detections(image_id, dets["boxes"], dets["scores"], [category_ids[int(c)] for c in dets["classes"]])


def evaluate(gt, border_gt, results, image_ids):
    """AP, AP_small, AP_medium and the border AP (percent)."""
    if not results:
        return {"AP": 0.0, "APs": 0.0, "APm": 0.0, "AP_border": 0.0}
    stats = faster_cocoeval(gt, results, image_ids).stats
    border = faster_cocoeval(border_gt, results, image_ids).stats
    return {"AP": 100 * stats[0], "APs": 100 * stats[3], "APm": 100 * stats[4], "AP_border": 100 * border[0]}


def calibration_crops(records, folder, size, count=64, seed=0):
    """``count`` random ``size`` px crops of train images (what the model sees when sliced)."""
    if os.path.isdir(folder) and len(os.listdir(folder)) >= count:
        return folder
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        rec = records[int(rng.integers(len(records)))]
        image = cv2.imread(rec["file_name"])
        y, x = int(rng.integers(0, image.shape[0] - size + 1)), int(rng.integers(0, image.shape[1] - size + 1))
        cv2.imwrite(os.path.join(folder, f"{i:03d}.png"), image[y : y + size, x : x + size])
    return folder


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.images < 0:
        raise ConfigError(f"--images must be 0 (all) or a positive number, got {args.images}")
    cfg = load_config(args.config_file, ["train.device=cpu", *args.opts])
    base = dict(cfg.dataloader.test.get("slicing", {}) or {})
    base.update({k: v for k, v in (("size", args.size), ("overlap", args.overlap)) if v is not None})
    try:
        settings = SlicingSettings(size=base.get("size", 256), overlap=base.get("overlap", 0.25))
    except ValueError as e:
        raise ConfigError(f"--size/--overlap: {e}") from None
    if args.weights and not os.path.isfile(args.weights):
        raise ConfigError(f"--weights: no such file {args.weights!r}")
    training = TrainingRun("train on slices", cfg.train.output_dir, args.config_file, args.opts)
    weights = args.weights or train_unless_finished([training], os.path.join(REPO, "train_net.py"))[0]
    os.makedirs(args.output, exist_ok=True)

    from sahi.predict import get_sliced_prediction

    from gfocal.engine import LazyPredictor, evaluation_input
    from gfocal.engine.sahi_model import GFocalDetectionModel
    from gfocal.modeling.slicing import GFLWithSlicing, numpy_detections
    from gfocal_runtime import Detector

    name = first_dataset_name(cfg.dataloader.test.dataset.names)
    records = DatasetCatalog.get(name)
    records = records[: args.images] if args.images else records
    with open(MetadataCatalog.get(name).json_file) as f:
        gt = json.load(f)
    category_ids = [c["id"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    border_gt = dict(gt, annotations=[dict(a) for a in gt["annotations"]])
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    boxes = np.array([a["bbox"] for a in gt["annotations"]], np.float64).reshape(-1, 4)
    heights = np.array([sizes[a["image_id"]][0] for a in gt["annotations"]])
    widths = np.array([sizes[a["image_id"]][1] for a in gt["annotations"]])
    crosses = np.zeros(len(boxes), bool)
    for h, w in set(zip(heights.tolist(), widths.tolist())):
        same = (heights == h) & (widths == w)
        crosses[same] = crossing(boxes[same], h, w, settings)
    for a, c in zip(border_gt["annotations"], crosses):
        a["iscrowd"] = 0 if c else 1
    image_ids = [r["image_id"] for r in records]

    predictor = LazyPredictor(cfg, weights=weights, slicing=dict(enabled=False))
    model = predictor.model
    wrapper = GFLWithSlicing(model, evaluation_input(cfg)[1], settings)
    sahi_model = GFocalDetectionModel(model=predictor, confidence_threshold=GREEDY_SCORE_THRESH)
    rows = {k: {"results": [], "seconds": 0.0} for k in ["whole", *MERGES, "sahi"]}
    views_seconds = 0.0
    num_tiles = []
    rgb_input = predictor.input_format == "RGB"
    print(f"{len(records)} images, {len(settings.tiles(768, 1024))} tiles of {settings.size} px each (1024x768)")
    for i, rec in enumerate(records):
        bgr = cv2.imread(rec["file_name"])
        start = time.perf_counter()
        inst = predictor(bgr)["instances"]
        rows["whole"]["seconds"] += time.perf_counter() - start
        rows["whole"]["results"] += coco_results(rec["image_id"], numpy_detections(inst), category_ids)
        image = np.ascontiguousarray(bgr[:, :, ::-1]) if rgb_input else bgr
        num_tiles.append(len(settings.tiles(*image.shape[:2])))
        cache = []
        start = time.perf_counter()
        for views in _views(image, settings):
            cache.append(wrapper._detect_batch(views))
        views_seconds += time.perf_counter() - start
        for merge in MERGES:
            floor = GREEDY_SCORE_THRESH if merge == "greedy" else 0.0
            replay = iter([[{k: v[d["scores"] >= floor] for k, v in d.items()} for d in batch] for batch in cache])
            start = time.perf_counter()
            merged = sliced_detect(
                image,
                dataclasses.replace(settings, merge=merge),
                lambda views: next(replay),
                model.test_nms_thresh,
                model.max_detections_per_image,
            )
            rows[merge]["seconds"] += time.perf_counter() - start
            rows[merge]["results"] += coco_results(rec["image_id"], merged, category_ids)
        start = time.perf_counter()
        result = get_sliced_prediction(
            np.ascontiguousarray(bgr[:, :, ::-1]),
            sahi_model,
            slice_height=settings.size,
            slice_width=settings.size,
            overlap_height_ratio=settings.overlap,
            overlap_width_ratio=settings.overlap,
            perform_standard_pred=True,
            postprocess_type="GREEDYNMM",
            postprocess_match_metric="IOS",
            postprocess_match_threshold=0.5,
            force_postprocess_type=True,
            batch_size=settings.batch_size,
            verbose=0,
        )
        rows["sahi"]["seconds"] += time.perf_counter() - start
        preds = result.object_prediction_list
        sahi_dets = {
            "boxes": np.array([p.bbox.to_xyxy() for p in preds], np.float64).reshape(-1, 4),
            "scores": np.array([p.score.value for p in preds]),
            "classes": np.array([p.category.id for p in preds], np.int64),
        }
        rows["sahi"]["results"] += coco_results(rec["image_id"], sahi_dets, category_ids)
        if (i + 1) % 10 == 0 or i + 1 == len(records):
            print(f"  {i + 1}/{len(records)} images", flush=True)
    for merge in MERGES:
        rows[merge]["seconds"] += views_seconds

    table = {}
    labels = {
        "whole": "whole image (network input, 256 px short side)",
        "nms": "sliced + whole, NMS merge",
        "greedy": f"sliced + whole, greedy merge (GFocal's SAHI-style, scores >= {GREEDY_SCORE_THRESH})",
        "sahi": f"sliced + whole, sahi 0.12.8 itself (GREEDYNMM, scores >= {GREEDY_SCORE_THRESH})",
        "distribution": "sliced + whole, distribution-aware merge",
    }
    for key, label in labels.items():
        metrics = evaluate(gt, border_gt, rows[key]["results"], image_ids)
        table[label] = dict(metrics, seconds_per_image=rows[key]["seconds"] / len(records))

    runtime = {}
    if not args.skip_runtime:
        train_records = DatasetCatalog.get(first_dataset_name(cfg.dataloader.train.dataset.names))
        calib = calibration_crops(train_records, os.path.join(args.output, "calib"), settings.size)
        # The model exported with its distributions (once), as tools/export_model.py would.
        overrides = [f"train.init_checkpoint={weights}", *args.opts]
        source = {"config": args.config_file, "weights": weights, "overrides": overrides}
        for kind, options in (("fp32", {}), ("int8", dict(int8=True, calib_images=calib))):
            folder = os.path.join(args.output, f"onnx_{kind}")
            export_cfg = load_config(args.config_file, overrides)
            export_unless_exported(export_cfg, folder, with_distributions=True, source=source, **options)
            sliced = Detector(folder, slicing=dict(size=settings.size, overlap=settings.overlap, merge="distribution"))
            results, seconds, tile_seconds = [], 0.0, []
            for rec in records:
                bgr = cv2.imread(rec["file_name"])
                start = time.perf_counter()
                dets = sliced(bgr)
                seconds += time.perf_counter() - start
                results += coco_results(rec["image_id"], dets, category_ids)
                tile = np.ascontiguousarray(bgr[: settings.size, : settings.size])
                start = time.perf_counter()
                sliced.detect_batch([tile])
                tile_seconds.append(time.perf_counter() - start)
            metrics = evaluate(gt, border_gt, results, image_ids)
            tile_s = float(np.median(tile_seconds))
            runtime[kind] = dict(
                metrics,
                seconds_per_image=seconds / len(records),
                seconds_per_tile=tile_s,
                budget_seconds=(np.mean(num_tiles) + 1) * tile_s,
            )
            table[f"runtime (ONNX Runtime, {kind}), sliced + whole, distribution merge"] = dict(
                metrics, seconds_per_image=seconds / len(records)
            )

    cpu = cpu_name()
    header = ["", "AP", "AP_small", "AP_medium", "AP border-crossing", "s / image"]
    columns = ("AP", "APs", "APm", "AP_border")
    lines = [[k, *(f"{v[m]:.1f}" for m in columns), f"{v['seconds_per_image']:.2f}"] for k, v in table.items()]
    text = tabulate(lines, header, tablefmt="github")
    on_val = np.isin([a["image_id"] for a in gt["annotations"]], image_ids)
    notes = [
        f"{len(records)} val images; tiles {settings.size} px, overlap {settings.overlap}, "
        f"{np.mean(num_tiles):.0f} tiles + the whole image each; {int(crosses[on_val].sum())} of "
        f"{int(on_val.sum())} objects cross an inner tile border",
        f"CPU: {cpu}; weights {weights}",
    ]
    for kind, r in runtime.items():
        notes.append(
            f"runtime {kind}: {r['seconds_per_image']:.3f} s / image sliced, one tile "
            f"{r['seconds_per_tile'] * 1000:.1f} ms (target (tiles + 1) x tile = {r['budget_seconds']:.3f} s)"
        )
    print(text)
    print("\n".join(notes))
    with open(os.path.join(args.output, "results.md"), "w") as f:
        f.write(text + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(
            {"table": table, "runtime": runtime, "cpu": cpu, "settings": dataclasses.asdict(settings)}, f, indent=1
        )
    return 0


def _views(image, settings: SlicingSettings):
    """The batches of views sliced_detect asks for, in its order (tiles, then the whole image)."""
    tiles = settings.tiles(*image.shape[:2])
    for start in range(0, len(tiles), settings.batch_size):
        yield [image[y0:y1, x0:x1] for x0, y0, x1, y1 in tiles[start : start + settings.batch_size]]
    if settings.whole_image or len(tiles) == 0:
        yield [image]


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
