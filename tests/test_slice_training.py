"""Training on slices (SliceTrainingMapper) and the large-image dataset (gfocal_shapes_large)."""

import json
import os

import cv2
import numpy as np
import pytest

from detectron2.structures import BoxMode

from gfocal.data import LargeShapesSpec, SliceTrainingMapper, ensure_large_shapes_dataset
from gfocal.data.slice_training import choose_crop, visible_annotations
from gfocal_runtime.slicing import tile_starts


def test_crops_around_an_object_contain_it_whole():
    rng = np.random.default_rng(0)
    box = np.array([[300.0, 200.0, 330.0, 260.0]])
    starts = []
    for _ in range(200):
        x, y, w, h = choose_crop((768, 1024), box, 128, object_prob=1.0, rng=rng)
        assert (w, h) == (128, 128) and 0 <= x <= 1024 - 128 and 0 <= y <= 768 - 128
        assert x <= 300 and x + w >= 330 and y <= 200 and y + h >= 260
        starts.append(x)
    assert np.ptp(starts) > 60  # placed at random among the positions that hold it (98 of them)


def test_an_object_larger_than_the_crop_holds_the_crop():
    rng = np.random.default_rng(1)
    box = np.array([[100.0, 100.0, 500.0, 150.0]])  # 400 px wide, 50 px tall
    for _ in range(100):
        x, y, w, h = choose_crop((768, 1024), box, 128, object_prob=1.0, rng=rng)
        assert 100 <= x and x + w <= 500  # inside the box along x
        assert y <= 100 and y + h >= 150  # around it along y


def test_random_crops_reach_everywhere_and_small_images_are_taken_whole():
    rng = np.random.default_rng(2)
    xs = [choose_crop((768, 1024), np.zeros((0, 4)), 256, 0.5, rng)[0] for _ in range(300)]
    assert min(xs) < 50 and max(xs) > 1024 - 256 - 50
    assert choose_crop((100, 90), np.zeros((0, 4)), 256, 0.5, rng) == (0, 0, 90, 100)


def _anno(x0, y0, x1, y1):
    return {"bbox": [x0, y0, x1 - x0, y1 - y0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}


def test_cut_boxes_are_kept_above_the_visible_share_and_side():
    crop = (100, 100, 50, 50)  # x 100..150, y 100..150
    annos = [
        _anno(110, 110, 120, 120),  # inside
        _anno(140, 120, 160, 130),  # half inside: kept (clipped later)
        _anno(148, 100, 168, 120),  # 2 of 20 px wide inside: 10%, kept
        _anno(149, 100, 169, 120),  # 1 px inside: 5% and a 1 px side, dropped
        _anno(90, 90, 190, 101.5),  # a 100 x 11.5 box with a 1.5 px strip inside: dropped (side)
        _anno(0, 0, 40, 40),  # outside
    ]
    kept = visible_annotations(annos, crop, min_visible=0.1, min_side=2.0)
    assert [a["bbox"] for a in kept] == [a["bbox"] for a in annos[:3]]


def test_mapper_crops_clips_and_shifts_the_boxes(tmp_path):
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.zeros((300, 400, 3), np.uint8))
    wide = _anno(50, 100, 300, 140)  # 250 px wide: wider than the 128 px crop
    record = {"file_name": path, "height": 300, "width": 400, "image_id": 1, "annotations": [wide]}
    mapper = SliceTrainingMapper(is_train=True, size=128, object_prob=1.0, augmentations=[], image_format="BGR")
    np.random.seed(0)
    tops = set()
    for _ in range(20):
        out = mapper(record)
        assert tuple(out["image"].shape) == (3, 128, 128)
        (box,) = out["instances"].gt_boxes.tensor.numpy()
        # Clipped to the crop along x (the crop lies inside the object), whole and shifted along y.
        assert box[0] == 0 and box[2] == 128 and box[3] - box[1] == pytest.approx(40)
        tops.add(float(box[1]))
    assert len(tops) > 5
    # Random crops of an image with one small object: mostly empty, the object clipped when cut.
    record["annotations"] = [_anno(300, 200, 320, 220)]
    mapper.object_prob = 0.0
    counts = [len(mapper(record)["instances"]) for _ in range(60)]
    assert 5 < sum(counts) < 55
    with pytest.raises(ValueError, match="size must be a positive integer"):
        SliceTrainingMapper(is_train=True, size=0, augmentations=[], image_format="BGR")


def test_mapper_drops_boxes_mostly_outside_its_crop(tmp_path, monkeypatch):
    import gfocal.data.slice_training as slice_training

    path = str(tmp_path / "b.png")
    cv2.imwrite(path, np.zeros((300, 400, 3), np.uint8))
    annos = [_anno(120, 120, 140, 140), _anno(195, 110, 235, 130), _anno(160, 150, 220, 170)]
    for i, a in enumerate(annos):
        a["category_id"] = i
    record = {"file_name": path, "height": 300, "width": 400, "image_id": 1, "annotations": annos}
    monkeypatch.setattr(slice_training, "choose_crop", lambda *args, **kwargs: (100, 100, 100, 100))
    mapper = SliceTrainingMapper(is_train=True, size=100, augmentations=[], image_format="BGR")
    inst = mapper(record)["instances"]
    # Inside: kept; 5 of 40 px wide inside (12.5%): kept, clipped; 40 of 60 px: kept, clipped.
    assert inst.gt_classes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(inst.gt_boxes.tensor.numpy()[1], [95, 10, 100, 30])
    annos[1]["bbox"] = [197.0, 110.0, 40.0, 20.0]  # 3 of 40 px inside (7.5%): dropped
    assert mapper(record)["instances"].gt_classes.tolist() == [0, 2]


SPEC = LargeShapesSpec(num_train=3, num_val=2, width=640, height=480, small_objects=(30, 40))


def test_large_dataset_is_seeded_complete_and_has_objects_on_tile_borders(tmp_path):
    root = ensure_large_shapes_dataset(SPEC, str(tmp_path / "a"))
    other = ensure_large_shapes_dataset(SPEC, str(tmp_path / "b"))
    with open(os.path.join(root, "annotations", "train.json")) as f:
        data = json.load(f)
    with open(os.path.join(other, "annotations", "train.json")) as f:
        assert json.load(f) == data  # deterministic
    assert all((im["width"], im["height"]) == (640, 480) for im in data["images"])
    annos = data["annotations"]
    sides = np.array([a["bbox"][2:] for a in annos])
    assert len(annos) >= 3 * 25 and np.median(sides) < 32 and sides.min() >= 5
    xs = np.array([a["bbox"][0] for a in annos]), np.array([a["bbox"][0] + a["bbox"][2] for a in annos])
    assert (xs[0] >= 0).all() and (xs[1] <= 640).all()
    # The objects marked on_tile_border cross an inner border of the default 256 px grid.
    starts_x, starts_y = tile_starts(640, 256, 0.25), tile_starts(480, 256, 0.25)
    lines_x = np.concatenate([starts_x[1:], starts_x[:-1] + 256])
    lines_y = np.concatenate([starts_y[1:], starts_y[:-1] + 256])
    on = [a for a in annos if a["on_tile_border"]]
    assert 0.1 < len(on) / len(annos) < 0.35
    for a in on:
        x, y, w, h = a["bbox"]
        assert ((lines_x > x) & (lines_x < x + w)).any() or ((lines_y > y) & (lines_y < y + h)).any()
    # An interrupted copy (an image missing) is regenerated.
    os.remove(os.path.join(root, "val", "000001.jpg"))
    ensure_large_shapes_dataset(SPEC, root)
    assert os.path.getsize(os.path.join(root, "val", "000001.jpg")) > 0
