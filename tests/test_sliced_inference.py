"""Sliced inference end to end with an oracle detector (tests/slicing_testing.py): tiles batched
and mapped back, the whole-image view, what each merge makes of objects cut by tiles, sliced
evaluation through the config key, the predictor and the demo's flags."""

import json
import logging

import cv2
import numpy as np
import pytest
import torch
from gfl_testing import REPO
from slicing_testing import OracleGFL, drawn_large_image, iou

from detectron2.data import transforms as T

from gfocal.config import load_config
from gfocal.data import register_coco_json
from gfocal.engine import LazyPredictor, check_inputs, do_test
from gfocal.errors import ConfigError
from gfocal.modeling import GFLWithSlicing
from gfocal_runtime.slicing import SlicingSettings

LARGE = f"{REPO}/configs/Quickstart/gfl_shapes_large.py"
INPUT = [T.ResizeShortestEdge(256, 4000)]  # the large config's network input


def _sliced(merge="distribution", **kwargs):
    oracle = OracleGFL()
    model = GFLWithSlicing(oracle, INPUT, SlicingSettings(merge=merge, **kwargs))
    image, gt = drawn_large_image()
    out = model([{"image": torch.as_tensor(image.transpose(2, 0, 1).copy())}])[0]["instances"]
    return oracle, gt, out.pred_boxes.tensor.numpy(), out


def test_distribution_merge_recovers_every_object_exactly():
    """Tiny squares, objects across tile borders and objects wider than the overlap (no tile
    sees them whole): one detection each, its sides from the views that saw them uncut."""
    oracle, gt, boxes, out = _sliced("distribution")
    assert len(boxes) == len(gt)
    np.testing.assert_allclose(iou(gt, boxes).max(1), 1.0, atol=1e-6)
    # 20 tiles of 256 px (5 x 4 for 1024 x 768 at a quarter overlap) in batches of 8, then the whole image.
    assert oracle.batch_sizes == [8, 8, 4, 1]
    assert out.image_size == (768, 1024) and out.pred_dists.shape == (len(gt), 4, 17)


def test_nms_keeps_truncated_boxes_and_duplicates_at_tile_borders():
    _, gt, boxes, _ = _sliced("nms")
    best = iou(gt, boxes).max(1)
    # The objects wider than the overlap come back cut by a tile (140 px seen as ~106 px).
    assert (best[8:] < 0.8).all()
    assert len(boxes) > len(gt)  # a tiny square across a border: its cut piece survives NMS


def test_greedy_merge_finds_all_but_its_enclosing_boxes_are_looser():
    _, gt, boxes, _ = _sliced("greedy")
    best = iou(gt, boxes).max(1)
    assert len(boxes) == len(gt) and (best > 0.85).all()
    assert best.min() < 0.95  # the whole image's coarse box widens a group's enclosing box


@pytest.mark.parametrize("batch_size,batches", [(8, [8, 8, 4]), (19, [19, 1]), (1, [1] * 20)])
def test_every_tile_runs_once_in_batches(batch_size, batches):
    oracle, gt, boxes, _ = _sliced("distribution", whole_image=False, batch_size=batch_size)
    assert oracle.batch_sizes == batches  # no whole-image view
    np.testing.assert_allclose(iou(gt, boxes).max(1), 1.0, atol=1e-6)  # the last tile's square too


def test_tiles_alone_and_the_whole_image_alone(caplog):
    # A tile larger than the image: the whole image only, said once; the tiny squares vanish
    # at the network's input (3x smaller).
    oracle = OracleGFL()
    model = GFLWithSlicing(oracle, INPUT, SlicingSettings(size=2048))
    image, gt = drawn_large_image()
    with caplog.at_level(logging.WARNING, logger="gfocal.modeling.slicing"):
        for _ in range(2):
            out = model([{"image": torch.as_tensor(image.transpose(2, 0, 1).copy())}])[0]["instances"]
    assert oracle.batch_sizes == [1, 1]
    assert sum("covers the whole" in r.getMessage() for r in caplog.records) == 1
    # Without the whole-image view, a tile covering the image still runs the image once.
    lone = OracleGFL()
    tiles_only = GFLWithSlicing(lone, INPUT, SlicingSettings(size=2048, whole_image=False))
    assert len(tiles_only([{"image": torch.as_tensor(image.transpose(2, 0, 1).copy())}])[0]["instances"]) > 0
    assert lone.batch_sizes == [1]
    best = iou(gt, out.pred_boxes.tensor.numpy()).max(1) if len(out) else np.zeros(len(gt))
    assert (best[:6] == 0).all() and (best[6:] > 0.8).all()


def _drawn_dataset(tmp_path, count=3):
    """COCO json of ``count`` drawn large images (shifted copies), registered once."""
    image, gt = drawn_large_image()
    images, annotations = [], []
    for i in range(count):
        shifted, boxes = np.roll(image, 16 * i, axis=1), gt + np.array([16 * i, 0, 16 * i, 0])
        cv2.imwrite(str(tmp_path / f"{i}.png"), shifted)
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 768, "width": 1024})
        for b in boxes:
            x0, y0, x1, y1 = (float(v) for v in b)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(["ellipse", "rectangle", "triangle", "star"])]
    with open(tmp_path / "drawn.json", "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    name = f"drawn_large_{tmp_path.name}"
    register_coco_json(name, str(tmp_path / "drawn.json"), str(tmp_path))
    return name


def test_sliced_evaluation_through_the_config_key(tmp_path):
    """do_test with ``dataloader.test.slicing.enabled``: the loader keeps the original image, the
    model runs sliced; AP 100 on the drawn set, against the whole image's misses."""
    name = _drawn_dataset(tmp_path)
    overrides = [f"dataloader.test.dataset.names={name}", "dataloader.test.num_workers=0"]
    sliced = do_test(load_config(LARGE, overrides), OracleGFL())["bbox"]
    whole = do_test(load_config(LARGE, [*overrides, "dataloader.test.slicing.enabled=False"]), OracleGFL())["bbox"]
    assert sliced["AP"] > 99.0
    assert whole["APs"] < 60 and sliced["APs"] > whole["APs"] + 30


@pytest.mark.parametrize(
    "override,message",
    [
        ("dataloader.test.slicing.size=0", "slicing size must be a positive integer"),
        ("dataloader.test.slicing.overlap=1.0", r"overlap must be a number in \[0, 1\)"),
        ("dataloader.test.slicing.merge=wbf", "merge must be one of nms, greedy, distribution"),
        ("dataloader.tta.enabled=True", "both enabled"),
    ],
)
def test_bad_slicing_settings_are_refused_before_anything_runs(override, message):
    with pytest.raises(ConfigError, match=message):
        check_inputs(load_config(LARGE, ["train.device=cpu", override]))


def test_predictor_slices_as_asked():
    cfg = load_config(LARGE, ["train.device=cpu"])
    image, gt = drawn_large_image()
    sliced = LazyPredictor(cfg, model=OracleGFL(), optimize=False)  # the config's slicing
    whole = LazyPredictor(cfg, model=OracleGFL(), optimize=False, slicing=dict(enabled=False))
    boxes = sliced(image[:, :, ::-1].copy())["instances"].pred_boxes.tensor.numpy()
    np.testing.assert_allclose(iou(gt, boxes).max(1), 1.0, atol=1e-6)
    assert len(whole(image[:, :, ::-1].copy())["instances"]) < len(gt)
    with pytest.raises(ConfigError, match="slicing: slicing overlap"):
        LazyPredictor(cfg, model=OracleGFL(), optimize=False, slicing=dict(size=256, overlap=2))
