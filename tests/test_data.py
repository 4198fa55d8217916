"""The built-in shapes dataset: deterministic, valid COCO, reused, regenerated when broken."""

import json
import os

import numpy as np
from pycocotools.coco import COCO

from detectron2.data import DatasetCatalog, MetadataCatalog

from gfocal.data import CLASS_NAMES, ShapesSpec, ensure_shapes_dataset, register_shapes

SPEC = ShapesSpec(num_train=40, num_val=10, seed=3)


def read(root, split):
    with open(os.path.join(root, "annotations", f"{split}.json")) as f:
        return json.load(f)


def test_generation_is_deterministic_and_valid_coco(tmp_path):
    a = ensure_shapes_dataset(SPEC, str(tmp_path / "a"))
    b = ensure_shapes_dataset(SPEC, str(tmp_path / "b"))
    for split, count in (("train", 40), ("val", 10)):
        ja, jb = read(a, split), read(b, split)
        assert ja == jb and len(ja["images"]) == count
        for im in ja["images"][:5]:
            with (
                open(os.path.join(a, split, im["file_name"]), "rb") as fa,
                open(os.path.join(b, split, im["file_name"]), "rb") as fb,
            ):
                assert fa.read() == fb.read()
        coco = COCO(os.path.join(a, "annotations", f"{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASS_NAMES
        for ann in coco.loadAnns(coco.getAnnIds()):
            img = coco.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"]
            assert 0.08 * 128 - 1 <= min(w, h) and max(w, h) <= 0.8 * 128 + 1
    # A different seed gives different data.
    c = ensure_shapes_dataset(ShapesSpec(num_train=40, num_val=10, seed=4), str(tmp_path / "c"))
    assert read(c, "train") != read(a, "train")


def test_dataset_statistics_meet_the_brief(tmp_path):
    root = ensure_shapes_dataset(ShapesSpec(num_train=400, num_val=10, seed=1), str(tmp_path))
    data = read(root, "train")
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=401)[1:]
    assert per_image.max() <= 8
    assert (per_image == 0).mean() >= 0.03  # ~6% empty by construction
    anns = data["annotations"]
    ambiguous = np.mean([a["blurred"] or a["hidden"] > 0.05 for a in anns])
    assert ambiguous >= 0.2
    assert max(a["hidden"] for a in anns) <= 0.5 + 1e-3
    assert len({a["category_id"] for a in anns}) == 4


def test_reused_when_complete_and_regenerated_when_broken(tmp_path):
    root = ensure_shapes_dataset(SPEC, str(tmp_path))
    image = os.path.join(root, "train", "000003.jpg")
    mtime = os.path.getmtime(image)
    ensure_shapes_dataset(SPEC, str(tmp_path))
    assert os.path.getmtime(image) == mtime  # reused, not rewritten
    original = open(image, "rb").read()
    os.remove(image)
    ensure_shapes_dataset(SPEC, str(tmp_path))
    assert open(image, "rb").read() == original
    with open(os.path.join(root, "annotations", "val.json"), "w") as f:
        f.write("{ truncated")
    ensure_shapes_dataset(SPEC, str(tmp_path))
    assert len(read(root, "val")["images"]) == 10


def test_registered_with_detectron2(tmp_path):
    assert "gfocal_shapes_train" in DatasetCatalog.list()  # on import gfocal
    assert MetadataCatalog.get("gfocal_shapes_val").thing_classes == CLASS_NAMES
    register_shapes("test_shapes", SPEC, str(tmp_path))
    dicts = DatasetCatalog.get("test_shapes_val")
    assert len(dicts) == 10
    assert all(0 <= a["category_id"] < 4 for d in dicts for a in d["annotations"])
    assert os.path.exists(dicts[0]["file_name"])
