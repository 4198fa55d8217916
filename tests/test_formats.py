"""Dataset specs (FORMAT:PATH[?images=DIR][#SPLIT]): the grammar, format detection, COCO json
read and written back, and registration with Detectron2 (gfocal.data.register_dataset), down to a
config that names a spec, trains a few iterations and evaluates."""

import json
import os

import pytest
from gfl_testing import REPO
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from gfocal.config import load_config
from gfocal.data import register_dataset
from gfocal.errors import DatasetError, InputError
from gfocal_runtime.formats import DatasetSpec, LabelFormatError, detect_format, parse_spec, read_labels, write_labels

COCO = {
    "images": [
        {"id": 3, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 9, "file_name": "sub/b.png", "width": 40, "height": 30},
    ],
    "annotations": [
        {"id": 1, "image_id": 3, "category_id": 7, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0, "extra": "x"},
        {"id": 2, "image_id": 3, "category_id": 5, "bbox": [5, 5, 4, 4], "area": 16, "iscrowd": 1},
        {"id": 4, "image_id": 9, "category_id": 7, "bbox": [0, 0, 40, 30], "area": 1200, "iscrowd": 0},
    ],
    "categories": [{"id": 7, "name": "dog"}, {"id": 5, "name": "cat"}],
}


def _coco(tmp_path, data=COCO):
    for image in data["images"]:
        path = tmp_path / "img" / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (image["width"], image["height"])).save(path)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def test_spec_grammar(tmp_path):
    path = _coco(tmp_path)
    assert parse_spec(f"coco:{path}?images={tmp_path / 'img'}") == DatasetSpec("coco", str(path), str(tmp_path / "img"))
    assert parse_spec(f"{path}#all") == DatasetSpec("coco", str(path), None, "all")  # detected, split kept
    (tmp_path / "x#1").mkdir()
    (tmp_path / "x#1" / "data.yaml").write_text("names: [a]\n")
    # '#' and '?' are read from the right: a path may hold them before the last one
    assert parse_spec(f"yolo:{tmp_path / 'x#1' / 'data.yaml'}#val") == DatasetSpec(
        "yolo", str(tmp_path / "x#1" / "data.yaml"), None, "val"
    )
    for text, message in [
        (f"yml:{path}", "unknown format 'yml'; expected one of yolo, voc, cvat, labelstudio, coco"),
        (f"coco:{tmp_path / 'missing.json'}", "missing.json does not exist"),
        (f"coco:{path}?images={tmp_path / 'nope'}", "images folder"),
        (f"coco:{path}?imgs=x", "the only option is ?images=DIR"),
        ("", "expected FORMAT:PATH[?images=DIR][#SPLIT]"),
    ]:
        with pytest.raises(LabelFormatError, match=message.replace("?", r"\?").replace("[", r"\[")):
            parse_spec(text)


def test_specs_and_registered_names_are_told_apart(tmp_path):
    from gfocal_runtime.formats import looks_like_spec

    assert looks_like_spec("yolo:data.yaml") and looks_like_spec("pascal:/data/x")  # a wrong format is a spec
    (tmp_path / "ann.json").write_text("{}")
    assert looks_like_spec(str(tmp_path / "ann.json"))
    assert not looks_like_spec("gfocal_shapes_train") and not looks_like_spec("coco_2017_val")


def test_format_detection(tmp_path):
    (tmp_path / "data.yaml").write_text("names: [a, b]\ntrain: images\n")
    (tmp_path / "other.yaml").write_text("lr: 0.1\n")
    (tmp_path / "ls.json").write_text(json.dumps([{"id": 1, "data": {"image": "a.png"}, "annotations": []}]))
    (tmp_path / "cvat.xml").write_text("<?xml version='1.0'?>\n<annotations><version>1.1</version></annotations>")
    (tmp_path / "one.xml").write_text("<annotation><filename>a.jpg</filename></annotation>")
    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    assert detect_format(str(tmp_path / "data.yaml")) == "yolo"
    assert detect_format(str(_coco(tmp_path))) == "coco"
    assert detect_format(str(tmp_path / "ls.json")) == "labelstudio"
    assert detect_format(str(tmp_path / "cvat.xml")) == "cvat"
    assert detect_format(str(tmp_path / "voc")) == "voc"
    with pytest.raises(LabelFormatError, match="is not a dataset of a known format; name the format"):
        detect_format(str(tmp_path / "other.yaml"))
    (tmp_path / "voc" / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(LabelFormatError, match=r"fits several formats \(voc, yolo\)"):
        detect_format(str(tmp_path / "voc"))


def test_coco_reads_exactly_and_writes_back_in_place(tmp_path):
    path = _coco(tmp_path)
    labels = read_labels(f"coco:{path}?images={tmp_path / 'img'}")
    assert labels.classes == ["cat", "dog"]  # categories in id order, as Detectron2's load_coco_json
    a, b = labels.splits["all"]
    assert a["file_name"] == str(tmp_path / "img/a.png") and b["file_name"] == str(tmp_path / "img/sub/b.png")
    assert [(x["bbox"], x["category_id"], x["iscrowd"]) for x in a["annotations"]] == [
        ([1.0, 2.0, 11.0, 22.0], 1, 0),
        ([5.0, 5.0, 9.0, 9.0], 0, 1),
    ]
    write_labels(labels, str(tmp_path / "same"))
    assert (tmp_path / "same/ann.json").read_bytes() == path.read_bytes()  # nothing changed: identical
    a["annotations"][0]["bbox"][3] = 12.0  # move the bottom side
    a["annotations"].pop(1)  # drop the crowd box
    b["annotations"].append({"bbox": [1.0, 1.0, 3.0, 4.0], "category_id": 0, "score": 0.75})  # a suggestion
    write_labels(labels, str(tmp_path / "out"))
    out = json.loads((tmp_path / "out/ann.json").read_text())
    assert out["images"] == COCO["images"] and out["categories"] == COCO["categories"]
    assert out["annotations"] == [
        {
            "id": 1,
            "image_id": 3,
            "category_id": 7,
            "bbox": [1.0, 2.0, 10.0, 10.0],
            "area": 100.0,
            "iscrowd": 0,
            "extra": "x",
        },
        COCO["annotations"][2],
        {
            "id": 5,
            "image_id": 9,
            "category_id": 5,
            "bbox": [1.0, 1.0, 2.0, 3.0],
            "area": 6.0,
            "iscrowd": 0,
            "score": 0.75,
        },
    ]
    with pytest.raises(LabelFormatError, match="annotation 1: category_id 8 is not in 'categories'"):
        bad = dict(COCO, annotations=[dict(COCO["annotations"][0], category_id=8)])
        read_labels(f"coco:{_coco(tmp_path / 'bad', bad)}")


def _forget(names):
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_register_dataset_names_follow_the_labels(tmp_path):
    path = _coco(tmp_path)
    spec = f"coco:{path}?images={tmp_path / 'img'}"
    names = register_dataset(spec)
    assert list(names) == ["all"] and names["all"].startswith("coco_") and register_dataset(spec) == names
    dicts = DatasetCatalog.get(names["all"])
    assert [d["image_id"] for d in dicts] == [3, 9] and MetadataCatalog.get(names["all"]).thing_classes == [
        "cat",
        "dog",
    ]
    _forget(names.values())
    assert register_dataset(spec) == names  # the same labels: the same name in a new process
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"][0] = 2
    path.write_text(json.dumps(data))
    _forget(names.values())
    assert register_dataset(spec)["all"] != names["all"]  # edited labels: a new name (no stale cache)
    with pytest.raises(DatasetError, match="no split 'train'; this coco dataset has 'all'"):
        register_dataset(f"{spec}#train")


def test_config_with_a_spec_trains_evaluates_and_reloads(tmp_path):
    """Two classes from a YOLO yaml: model.num_classes follows, train_net trains and evaluates,
    and the saved config.yaml loads again in a new process (its specs registered again)."""
    root = tmp_path / "data"
    for split, n in (("train", 6), ("val", 2)):
        for i in range(n):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 64), (40 * i, 80, 120)).save(root / "images" / split / f"{i}.png")
            (root / "labels" / split / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.3\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n")
    overrides = [
        f"dataloader.train.dataset.names='yolo:{root / 'data.yaml'}#train'",
        f"dataloader.test.dataset.names='yolo:{root / 'data.yaml'}#val'",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "train.max_iter=2",
        f"train.output_dir={tmp_path / 'out'}",
    ]
    config = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")
    cfg = load_config(config, overrides)
    assert cfg.model.num_classes == 2
    assert cfg.dataloader.train.dataset.names.startswith("yolo_data-data_train_")
    import train_net

    assert train_net.invoke_main(["--config-file", config, *overrides]) == 0
    results = json.loads((tmp_path / "out/metrics.json").read_text().splitlines()[-1])
    assert "bbox/AP" in results
    saved = str(tmp_path / "out/config.yaml")
    _forget(cfg.dataloader.dataset_specs)
    again = load_config(saved)
    assert again.dataloader.test.dataset.names in DatasetCatalog.list()
    (root / "labels/val/0.txt").write_text("1 0.5 0.5 0.4 0.3\n")
    _forget(cfg.dataloader.dataset_specs)
    with pytest.raises(DatasetError, match="changed since this config was saved"):
        load_config(saved)
    with pytest.raises(DatasetError, match="data/labels/val/0.txt:1: class 2 is outside names"):
        (root / "labels/val/0.txt").write_text("2 0.5 0.5 0.4 0.3\n")
        load_config(config, overrides)


def test_a_spec_without_split_gives_training_its_train_split_and_testing_its_val_or_test(tmp_path):
    """`yolo:data.yaml` with train/val/test: training reads train, testing val; with train/test
    only, testing reads test."""
    root = tmp_path / "data"
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(root / "images" / split / "0.png")
        (root / "labels" / split / "0.txt").write_text("0 0.5 0.5 0.4 0.3\n")
    spec = f"yolo:{root / 'data.yaml'}"
    overrides = [f"dataloader.train.dataset.names='{spec}'", f"dataloader.test.dataset.names='{spec}'"]
    config = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\ntest: images/test\nnames: [cat]\n")
    cfg = load_config(config, overrides)
    assert cfg.dataloader.train.dataset.names.startswith("yolo_data-data_train_")
    assert cfg.dataloader.test.dataset.names.startswith("yolo_data-data_val_")
    (root / "data.yaml").write_text("train: images/train\ntest: images/test\nnames: [cat]\n")
    assert load_config(config, overrides).dataloader.test.dataset.names.startswith("yolo_data-data_test_")


def _voc_with_splits(root, splits):
    """One image and box under ``root``, listed in ImageSets/Main/<split>.txt for each split."""
    (root / "JPEGImages").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(root / "JPEGImages" / "a.jpg")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>32</width><height>32</height></size><object>"
        "<name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>"
    )
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split in splits:
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("a\n")
    spec = f"voc:{root}"
    return [f"dataloader.train.dataset.names='{spec}'", f"dataloader.test.dataset.names='{spec}'"]


@pytest.mark.parametrize(
    "splits, chosen",
    [
        (["test", "train", "trainval", "val"], ("train", "val")),  # VOC2007's four: by preference, not by order
        (["test", "trainval"], ("trainval", "test")),
        (["test", "trainval", "val"], ("trainval", "test")),  # val is inside trainval: never tested on
    ],
)
def test_voc_splits_without_split_never_test_on_training_images(tmp_path, splits, chosen):
    overrides = _voc_with_splits(tmp_path / "VOC", splits)
    cfg = load_config(os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"), overrides)
    names = cfg.dataloader.train.dataset.names, cfg.dataloader.test.dataset.names
    assert tuple(n.rsplit("_", 2)[1] for n in names) == chosen


@pytest.mark.parametrize(
    "splits, message",
    [
        (["first", "second"], r"train.dataset.names=voc:.*: its labels have the splits first, second; name one, e.g."),
        (["trainval", "val"], r"test.dataset.names=voc:.*: its labels have the splits trainval, val \(val is inside"),
    ],
)
def test_splits_that_fit_no_role_are_one_line(tmp_path, splits, message):
    overrides = _voc_with_splits(tmp_path / "VOC", splits)
    with pytest.raises(DatasetError, match=message):
        load_config(os.path.join(REPO, "configs/Quickstart/gfl_shapes.py"), overrides)


def _yolo_set(root, labels):
    for i, text in enumerate(labels):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (100, 50)).save(root / "images" / f"{i}.png")
        (root / "labels" / f"{i}.txt").write_text(text)
    (root / "data.yaml").write_text("train: images\nnames: [cat, dog]\n")
    return f"yolo:{root / 'data.yaml'}"


def test_label_check_corrections_go_back_in_the_input_format(tmp_path):
    """The check's corrected json, applied to a YOLO spec: the moved box's line changes, the
    spurious one goes, the missing one is appended, the untouched file stays byte-identical."""
    from gfocal.label_check import apply_issues, spec_to_coco, write_corrections

    spec = _yolo_set(tmp_path / "data", ["0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n", "1 0.5 0.5 0.5 0.5\n"])
    out = tmp_path / "check"
    json_file, root = spec_to_coco(spec, str(out))
    coco = json.loads(open(json_file).read())
    assert root == str(tmp_path / "data/images")
    expected = [[40.0, 20.0, 20.0, 10.0], [5.0, 2.5, 10.0, 5.0], [25.0, 12.5, 50.0, 25.0]]
    assert [a["bbox"] for a in coco["annotations"]] == [pytest.approx(b) for b in expected]
    issues = [
        {"type": "location", "annotation_id": 1, "score": 0.9, "suggested_bbox": [40.0, 20.0, 30.0, 10.0]},
        {"type": "spurious", "annotation_id": 2, "score": 0.8},
        {"type": "missing", "image_id": 1, "score": 0.7, "suggested_bbox": [0, 0, 10, 5], "suggested_category_id": 2},
    ]
    with open(out / "corrected.json", "w") as f:
        json.dump(apply_issues(coco, issues), f)
    write_corrections(str(out), str(out / "corrected.json"), "corrected")
    assert (out / "corrected/labels/0.txt").read_text() == "0.550000 0.500000 0.300000 0.200000\n".join(
        ["0 ", "1 0.050000 0.050000 0.100000 0.100000\n"]
    )
    assert (out / "corrected/labels/1.txt").read_bytes() == (tmp_path / "data/labels/1.txt").read_bytes()
    (tmp_path / "data/labels/1.txt").write_text("0 0.5 0.5 0.5 0.5\n")  # edited since the check
    with pytest.raises(InputError, match="changed since the check"):
        write_corrections(str(out), str(out / "corrected.json"), "corrected")


@pytest.mark.parametrize("fmt", ["yolo", "voc", "cvat", "labelstudio", "coco"])
def test_predictions_as_pre_annotations(tmp_path, fmt):
    """Detector outputs -> each format's pre-annotations, carrying the boxes, classes and scores."""
    import numpy as np

    from gfocal_runtime.formats import save_predictions

    files = []
    for i in range(2):
        files.append(str(tmp_path / "img" / f"{i}.png"))
        os.makedirs(os.path.dirname(files[-1]), exist_ok=True)
        Image.new("RGB", (80, 60)).save(files[-1])
    outputs = [
        {
            "boxes": np.array([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 8.0, 8.0]]),
            "scores": np.array([0.9, 0.2]),
            "classes": np.array([1, 0]),
        },
        {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int)},
    ]
    written = save_predictions(
        [(f, (60, 80), o) for f, o in zip(files, outputs)], ["cat", "dog"], fmt, str(tmp_path / "out"), 0.5
    )
    assert written and all(os.path.isfile(p) for p in written)
    text = "".join(open(p, encoding="utf-8").read() for p in written if not p.endswith(".yaml"))
    if fmt == "yolo":
        assert "1 0.250000 0.250000 0.250000 0.333333 0.900000\n" in text  # Ultralytics' save_conf line
    elif fmt == "labelstudio":
        tasks = json.loads(open(written[0]).read())
        (result,) = tasks[0]["predictions"][0]["result"]
        assert result["value"]["rectanglelabels"] == ["dog"] and result["score"] == pytest.approx(0.9)
        assert result["value"]["x"] == pytest.approx(12.5) and tasks[1]["predictions"][0]["result"] == []
    else:
        spec = {"voc": str(tmp_path / "out"), "cvat": f"{written[0]}?images={tmp_path / 'img'}", "coco": written[0]}[
            fmt
        ]
        records = read_labels(f"{fmt}:{spec}").split(None)
        boxes = {
            os.path.basename(r["file_name"]): [(b["bbox"], b["category_id"]) for b in r["annotations"]] for r in records
        }
        assert boxes == {"0.png": [([10.0, 5.0, 30.0, 25.0], 1)], "1.png": []}
        assert "0.9" in text  # the score goes with the box


def test_built_in_data_in_every_format_reads_back_the_same(tmp_path):
    """The quick-start data written in each format reads back to the COCO json's boxes and
    classes, within the format's rounding (YOLO 6 decimals, VOC integer pixels, CVAT 2 decimals)."""
    from gfocal.data import ShapesSpec, ensure_shapes_dataset

    root = ensure_shapes_dataset(ShapesSpec(num_train=6, num_val=3, seed=4), str(tmp_path / "shapes"))
    source = read_labels(f"coco:{root}/annotations/train.json?images={root}/train")
    source.format = "coco-json"  # written as a conversion, not back in place
    expected = {os.path.basename(r["file_name"]): r for r in source.splits["all"]}
    tolerance = {"yolo": 128 * 1e-6, "voc": 0.5, "cvat": 0.005, "labelstudio": 1e-6, "coco": 0}
    for fmt, tol in tolerance.items():
        out = tmp_path / fmt
        written = write_labels(source, str(out), fmt=fmt)
        spec = {
            "yolo": f"yolo:{out / 'data.yaml'}",
            "voc": f"voc:{out}",
            "cvat": f"cvat:{written[0]}?images={root}/train",
            "labelstudio": f"labelstudio:{written[0]}?images={root}/train",
            "coco": f"coco:{written[0]}",
        }[fmt]
        labels = read_labels(spec)
        assert labels.classes == source.classes, fmt
        records = {os.path.basename(r["file_name"]): r for r in labels.split(None)}
        assert records.keys() == expected.keys(), fmt
        for name, record in records.items():
            want = expected[name]["annotations"]
            got = record["annotations"]
            assert (record["width"], record["height"]) == (expected[name]["width"], expected[name]["height"])
            assert [b["category_id"] for b in got] == [b["category_id"] for b in want], (fmt, name)
            for b, w in zip(got, want):
                assert b["bbox"] == pytest.approx(w["bbox"], abs=tol), (fmt, name)
