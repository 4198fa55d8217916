"""Load-time dataset checks: bad boxes dropped or clipped, missing images, empty sets, classes."""

import copy
import json
import logging
import math
import os
import uuid

import numpy as np
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import BoxMode

from gfocal.data import checks
from gfocal.data.checks import (
    BoxCheck,
    check_image_files,
    check_num_classes,
    checked_dataset_dicts,
    classify_boxes,
    validate_annotations,
)

LOGGER = "gfocal.data.checks"
W, H = 100, 80  # image width, height of the hand-made set
INF, NAN = float("inf"), float("nan")

# name -> (XYWH box, XYXY box); all on a 100 x 80 image.
GOOD = {"good": ([10, 10, 20, 30], [10, 10, 30, 40]), "crowd": ([0, 0, 100, 80], [0, 0, 100, 80])}
BAD = {
    "nan": ([NAN, 5, 10, 10], [NAN, 5, 15, 15]),
    "inf_width": ([10, 10, INF, 20], [10, 10, INF, 30]),
    "zero_width": ([10, 10, 0, 20], [10, 10, 10, 30]),
    "negative_height": ([10, 10, 20, -5], [10, 10, 30, 5]),
    "outside": ([120, 10, 10, 10], [120, 10, 130, 20]),
}
PARTLY = ([90, 70, 20, 20], [90, 70, 110, 90])
PARTLY_CLIPPED = ([90.0, 70.0, 10.0, 10.0], [90.0, 70.0, 100.0, 80.0])


def make_set(mode):
    """One image per box (image_id = box name) plus one image holding a good and a bad box."""
    col = 0 if mode == BoxMode.XYWH_ABS else 1
    boxes = {**GOOD, **BAD, "partly": PARTLY}
    dicts = []
    for name, pair in boxes.items():
        ann = {"bbox": list(pair[col]), "bbox_mode": mode, "category_id": 1, "extra": name}
        if name == "crowd":
            ann["iscrowd"] = 1
        dicts.append(
            {
                "file_name": f"/img/{name}.jpg",
                "height": H,
                "width": W,
                "image_id": name,
                "annotations": [ann],
                "other_key": [name],
            }
        )
    dicts.append(
        {
            "file_name": "/img/mixed.jpg",
            "height": H,
            "width": W,
            "image_id": "mixed",
            "annotations": [
                {"bbox": list(GOOD["good"][col]), "bbox_mode": mode, "category_id": 0},
                {"bbox": list(BAD["inf_width"][col]), "bbox_mode": mode, "category_id": 2},
            ],
        }
    )
    return dicts


@pytest.mark.parametrize("mode", [BoxMode.XYWH_ABS, BoxMode.XYXY_ABS])
def test_each_bad_kind_counted_once_partly_outside_clipped(mode, caplog):
    col = 0 if mode == BoxMode.XYWH_ABS else 1
    dicts = make_set(mode)
    before = repr(dicts)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        out, report = validate_annotations(dicts, dataset_name="hand")

    assert report.counts == {"malformed": 0, "non_finite": 3, "non_positive_size": 2, "outside_image": 1, "clipped": 1}
    assert report.num_boxes == 10 and report.num_images == 9
    assert report.num_dropped == 6 and report.num_valid_boxes == 4
    assert report.num_valid_noncrowd_boxes == 3 and report.num_unsized_images == 0
    assert report.examples["non_finite"] == [
        "image_id=nan (nan.jpg)",
        "image_id=inf_width (inf_width.jpg)",
        "image_id=mixed (mixed.jpg)",
    ]
    # the input is untouched (repr: nan != nan)
    assert repr(dicts) == before
    by_id = {d["image_id"]: d for d in out}
    assert len(out) == len(dicts) and all(a is not b for a, b in zip(out, dicts))
    for name in BAD:
        assert by_id[name]["annotations"] == [], name
        assert by_id[name]["other_key"] == [name]
    (partly,) = by_id["partly"]["annotations"]
    assert partly["bbox"] == PARTLY_CLIPPED[col] and partly["bbox_mode"] == mode
    assert partly["extra"] == "partly"
    for name in GOOD:
        (ann,) = by_id[name]["annotations"]
        assert ann["bbox"] == GOOD[name][col] and ann["extra"] == name
        assert ann is not dicts[list(by_id).index(name)]["annotations"][0]
    assert [a["category_id"] for a in by_id["mixed"]["annotations"]] == [0]
    # one summary, logged once, as a warning table
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    msg = records[0].getMessage()
    assert "Annotation check of dataset 'hand': 10 boxes in 9 images; 6 dropped, 1 clipped" in msg
    for text, n in [
        ("non-finite coordinates (nan/inf)", 3),
        ("zero or negative width/height", 2),
        ("entirely outside the image", 1),
        ("partly outside the image", 1),
    ]:
        (line,) = [ln for ln in msg.splitlines() if text in ln]
        assert [c.strip() for c in line.split("|")][2] == str(n), line


@pytest.mark.parametrize("mode", [BoxMode.XYWH_ABS, BoxMode.XYXY_ABS])
def test_inf_box_is_dropped_never_clipped(mode):
    # Detectron2's mapper would clip x1=inf to the image border: a valid-looking box.
    dicts = [
        {
            "file_name": "a.jpg",
            "height": 480,
            "width": 640,
            "image_id": 1,
            "annotations": [{"bbox": [10, 10, INF, 20], "bbox_mode": mode, "category_id": 0}],
        }
    ]
    out, report = validate_annotations(dicts, log=False)
    assert out[0]["annotations"] == []
    assert report.counts["non_finite"] == 1 and report.counts["clipped"] == 0
    xywh = np.array([mode == BoxMode.XYWH_ABS])
    codes, _ = classify_boxes(np.array([[10, 10, INF, 20.0]]), xywh, np.array([[480, 640.0]]))
    assert codes.tolist() == [BoxCheck.NON_FINITE]


def test_overflow_and_edges():
    boxes = np.array(
        [
            [1e308, 0, 1e308, 10],  # XYWH: x0 + w overflows to inf
            [100, 10, 5, 5],  # starts on the right border: nothing left after clipping
            [-5, 10, 5, 5],  # ends on the left border
            [0, 0, 100, 80],  # exactly the image
            [-1, 0, 10, 10],  # partly outside on the left
            [5, 5, 10, 10],  # image size unknown: only intrinsic checks
            [200, 10, 0, 5],  # empty and outside: counted once, as empty
            [NAN, 5, -3, 10],  # nan and negative width: counted once, as non-finite
            [-INF, 5, 10, 10],  # non-finite and outside: counted once, as non-finite
        ]
    )
    hw = np.array([[80, 100]] * 5 + [[NAN, NAN]] + [[80, 100]] * 3, dtype=float)
    codes, clipped = classify_boxes(boxes, np.ones(9, bool), hw)
    assert codes.tolist() == [
        BoxCheck.NON_FINITE,
        BoxCheck.OUTSIDE_IMAGE,
        BoxCheck.OUTSIDE_IMAGE,
        BoxCheck.OK,
        BoxCheck.CLIPPED,
        BoxCheck.OK,
        BoxCheck.NON_POSITIVE_SIZE,
        BoxCheck.NON_FINITE,
        BoxCheck.NON_FINITE,
    ]
    assert clipped[4].tolist() == [0, 0, 9, 10]
    np.testing.assert_array_equal(clipped[[3, 5]], boxes[[3, 5]])


def test_malformed_and_unsized(caplog):
    dicts = [
        {
            "file_name": "a.jpg",
            "image_id": 1,
            "annotations": [  # no height/width
                {"bbox": [500, 500, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
                {"bbox": [1, 2, 3], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
                {"bbox": None, "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
                {"bbox": [1, 2, 3, 4], "category_id": 0},
                {"bbox": [1, 2, 3, 4], "bbox_mode": BoxMode.XYWH_ABS},
            ],
        },
        {"file_name": "b.jpg", "image_id": 2, "height": 10, "width": 10},  # no annotations key
    ]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        out, report = validate_annotations(dicts)
    assert report.counts["malformed"] == 4 and report.num_valid_boxes == 1
    assert out[0]["annotations"][0]["bbox"] == [500, 500, 10, 10]
    assert report.num_unsized_images == 1 and "annotations" not in out[1]
    assert "1 images with annotations have no usable height/width" in caplog.text
    with pytest.raises(ValueError, match="XYWHA_ABS is not supported"):
        validate_annotations(
            [
                {
                    "height": 5,
                    "width": 5,
                    "annotations": [{"bbox": [1, 1, 2, 2, 0], "bbox_mode": BoxMode.XYWHA_ABS, "category_id": 0}],
                }
            ]
        )


def test_strict_raises_with_the_summary():
    with pytest.raises(ValueError) as e:
        validate_annotations(make_set(BoxMode.XYWH_ABS), dataset_name="hand", strict=True)
    msg = str(e.value)
    for text in (
        "non-finite coordinates (nan/inf)",
        "zero or negative width/height",
        "entirely outside the image",
        "dataset 'hand'",
        "strict=True",
    ):
        assert text in msg
    # clipping is a fix, not an error, even when strict
    dicts = [
        {
            "file_name": "a.jpg",
            "height": H,
            "width": W,
            "image_id": 0,
            "annotations": [{"bbox": list(PARTLY[0]), "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}],
        }
    ]
    out, report = validate_annotations(dicts, strict=True, log=False)
    assert out[0]["annotations"][0]["bbox"] == PARTLY_CLIPPED[0]


def test_validation_is_one_vectorised_call_and_handles_200k_boxes(monkeypatch):
    n = 200_000
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(n, 2))
    wh = rng.uniform(1, 40, size=(n, 2))
    boxes = np.concatenate([xy, wh], axis=1)
    q = n // 4
    boxes[q : 2 * q, 0] = np.nan  # non-finite
    boxes[2 * q : 3 * q, 2] = 0  # empty
    boxes[3 * q :, 0] += 1000  # outside
    codes, clipped = classify_boxes(boxes, np.ones(n, bool), np.tile([[100.0, 100.0]], (n, 1)))
    assert np.bincount(codes, minlength=6).tolist() == [q, 0, 0, q, q, q]
    np.testing.assert_array_equal(clipped[:q], boxes[:q])

    # validate_annotations classifies the whole dataset in one call
    calls = []
    real = checks.classify_boxes

    def spy(b, x, hw):
        calls.append(len(b))
        return real(b, x, hw)

    monkeypatch.setattr(checks, "classify_boxes", spy)
    dicts = [
        {
            "file_name": f"{i}.jpg",
            "height": 100,
            "width": 100,
            "image_id": i,
            "annotations": [
                {"bbox": b, "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0} for b in boxes[i::1000].tolist()
            ],
        }
        for i in range(1000)
    ]
    out, report = validate_annotations(dicts, log=False)
    assert calls == [n]
    assert report.num_valid_boxes == q and sum(len(d["annotations"]) for d in out) == q


def write_images(root, names):
    for name in names:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"\xff\xd8\xff")


def test_missing_image_files(tmp_path, caplog):
    write_images(tmp_path, ["a.jpg", "b.jpg", "sub/c.jpg"])
    os.makedirs(tmp_path / "d.jpg")  # a directory is not an image
    names = ["a.jpg", "x1.jpg", "b.jpg", "sub/c.jpg", "sub/x2.jpg", "nodir/x3.jpg", "d.jpg"]
    dicts = [{"file_name": str(tmp_path / n), "image_id": i} for i, n in enumerate(names)]
    with pytest.raises(FileNotFoundError) as e:
        check_image_files(dicts, dataset_name="mine")
    msg = str(e.value)
    assert "Dataset 'mine': 4 of 7 image files are missing on disk" in msg
    for n in ("x1.jpg", "sub/x2.jpg", "nodir/x3.jpg"):
        assert str(tmp_path / n) in msg
    assert "d.jpg" not in msg  # only the first 3 examples
    assert "missing_images='drop'" in msg
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        kept = check_image_files(dicts, dataset_name="mine", missing="drop")
    assert [d["image_id"] for d in kept] == [0, 2, 3]
    assert "Dropping these 4 images" in caplog.text
    assert check_image_files(kept) == kept


@pytest.fixture
def registry():
    """Register datasets under unique names; remove them afterwards."""
    names = []

    def register(dicts, classes=None):
        name = f"test_checks_{uuid.uuid4().hex[:8]}"
        DatasetCatalog.register(name, lambda: copy.deepcopy(dicts))
        if classes is not None:
            MetadataCatalog.get(name).set(thing_classes=list(classes))
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def box(b, cat=0, **kw):
    return {"bbox": b, "bbox_mode": BoxMode.XYWH_ABS, "category_id": cat, **kw}


def test_all_invalid_training_set_raises(registry):
    dicts = [
        {
            "file_name": "a.jpg",
            "height": 10,
            "width": 10,
            "image_id": 0,
            "annotations": [box([1, 1, INF, 2]), box([1, 1, 0, 2])],
        },
        {
            "file_name": "b.jpg",
            "height": 10,
            "width": 10,
            "image_id": 1,
            "annotations": [box([1, 1, 2, 2], iscrowd=1)],
        },  # valid, but crowd: not trained on
        {"file_name": "c.jpg", "height": 10, "width": 10, "image_id": 2, "annotations": []},
    ]
    name = registry(dicts, ["a"])
    for filter_empty in (True, False):
        with pytest.raises(ValueError, match=f"'{name}'.*no image has a valid"):
            checked_dataset_dicts(name, filter_empty=filter_empty, check_images=False)


def test_validate_before_filter_empty(registry, tmp_path):
    write_images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    dicts = [
        {
            "file_name": str(tmp_path / "a.jpg"),
            "height": 10,
            "width": 10,
            "image_id": 0,
            "annotations": [box([1, 1, INF, 2])],
        },
        {
            "file_name": str(tmp_path / "b.jpg"),
            "height": 10,
            "width": 10,
            "image_id": 1,
            "annotations": [box([8, 8, 4, 4], cat=1)],
        },
        {"file_name": str(tmp_path / "c.jpg"), "height": 10, "width": 10, "image_id": 2, "annotations": []},
    ]
    first = registry(dicts, ["a", "b"])
    second = registry(dicts[:1], ["a", "b"])
    out = checked_dataset_dicts([first, second], num_classes=2)
    assert [d["image_id"] for d in out] == [1]
    assert out[0]["annotations"][0]["bbox"] == [8.0, 8.0, 2.0, 2.0]
    out = checked_dataset_dicts(first, filter_empty=False)
    assert [len(d["annotations"]) for d in out] == [0, 1, 0]
    with pytest.raises(ValueError, match="set model.num_classes=2"):
        checked_dataset_dicts(first, num_classes=1)
    with pytest.raises(ValueError, match="non-finite"):
        checked_dataset_dicts(first, strict=True)
    # missing images: an error by default, dropped on request (and then nothing is left)
    os.remove(tmp_path / "b.jpg")
    with pytest.raises(FileNotFoundError, match=f"Dataset '{first}': 1 of 1 image files"):
        checked_dataset_dicts(first)
    with pytest.raises(ValueError, match="after dropping missing images: no image has a valid"):
        checked_dataset_dicts(first, missing_images="drop")
    assert len(checked_dataset_dicts(first, check_images=False)) == 1


def test_check_num_classes(registry, caplog):
    name = registry([], ["a", "b", "c"])
    with pytest.raises(ValueError, match="set model.num_classes=3"):
        check_num_classes(name, 2)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert check_num_classes([name], 3) == 3
        assert caplog.records == []
        assert check_num_classes(name, 5) == 3
    (rec,) = caplog.records
    assert rec.levelno == logging.WARNING
    assert "2 classes will never be trained; set model.num_classes=3" in rec.getMessage()
    # the annotations can say more than the metadata
    dicts = [{"annotations": [box([0, 0, 1, 1], cat=4)]}]
    with pytest.raises(ValueError, match="max category_id 4.*set model.num_classes=5"):
        check_num_classes(name, 3, dicts)
    # nothing known: nothing checked
    assert check_num_classes(registry([]), 7) is None


def test_coco_json_round_trip(tmp_path, caplog):
    image_root = tmp_path / "images"
    write_images(image_root, ["1.jpg", "2.jpg", "3.jpg"])
    coco = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 60, "width": 80} for i in (1, 2, 3)],
        "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 9,
                "bbox": [70, 50, 20, 20],
                "area": 400,
                "iscrowd": 0,
            },  # partly outside
            {
                "id": 3,
                "image_id": 2,
                "category_id": 9,
                "bbox": [10, 10, math.inf, 20],
                "area": 400,
                "iscrowd": 0,
            },  # the only box of image 2
            {"id": 4, "image_id": 3, "category_id": 7, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
        ],
    }
    json_file = tmp_path / "train.json"
    json_file.write_text(json.dumps(coco))  # writes Infinity, which COCO's json.load reads
    name = f"test_checks_coco_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(json_file), str(image_root))
    try:
        with caplog.at_level(logging.INFO, logger=LOGGER):
            out = checked_dataset_dicts(name, num_classes=2)
        assert [d["image_id"] for d in out] == [1, 3]
        anns = out[0]["annotations"]
        assert [a["bbox"] for a in anns] == [[10, 10, 20, 20], [70.0, 50.0, 10.0, 10.0]]
        assert [a["category_id"] for a in anns] == [0, 1]
        assert all(a["bbox_mode"] == BoxMode.XYWH_ABS for a in anns)
        assert f"dataset '{name}': 4 boxes in 3 images; 1 dropped, 1 clipped" in caplog.text
        with pytest.raises(ValueError, match="set model.num_classes=2"):
            checked_dataset_dicts(name, num_classes=1)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
