"""YOLO labels (gfocal_runtime.formats.yolo): Ultralytics' reading rules on a drawn dataset, the
write-back in place, and one clear line for each kind of bad input."""

import os

import pytest
from formats_testing import draw_wide_image as _image
from formats_testing import write_text as _text

from gfocal_runtime.formats import LabelFormatError, LabelSet, read_labels, write_labels


def _roboflow(root):
    """Roboflow's layout: data.yaml at the root naming ../train/images, names as a dict."""
    _text(root / "data.yaml", "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: {0: cat, 1: dog}\n")
    _image(str(root / "train/images/a.jpg"))  # 40 x 20
    _text(root / "train/labels/a.txt", "0 0.5 0.5 0.5 0.5\r\n1 0.25 0.25 0.5 0.5\r\n")
    _image(str(root / "train/images/b.png"))
    _text(root / "train/labels/b.txt", "")  # empty: background
    _image(str(root / "train/images/c.png"))  # no label file: background
    _image(str(root / "valid/images/d.jpg"), size=(40, 20), orientation=6)  # shown as 20 x 40
    # a polygon (a triangle) and a box whose right side is 1.000005 (an exporter's rounding)
    _text(root / "valid/labels/d.txt", "1 0.1 0.2 0.6 0.2 0.3 0.7\n0 0.75 0.5 0.500010 0.4\n")


def test_reads_ultralytics_layouts_exactly(tmp_path):
    _roboflow(tmp_path)
    labels = read_labels(f"yolo:{tmp_path / 'data.yaml'}")
    assert labels.classes == ["cat", "dog"]
    assert list(labels.splits) == ["train", "val"]
    train = {os.path.basename(r["file_name"]): r for r in labels.splits["train"]}
    assert sorted(train) == ["a.jpg", "b.png", "c.png"]
    a = train["a.jpg"]
    assert (a["width"], a["height"]) == (40, 20)
    assert [b["bbox"] for b in a["annotations"]] == [[10.0, 5.0, 30.0, 15.0], [0.0, 0.0, 20.0, 10.0]]
    assert [b["category_id"] for b in a["annotations"]] == [0, 1]
    assert train["b.png"]["annotations"] == [] and train["c.png"]["annotations"] == []
    (d,) = labels.splits["val"]
    assert (d["width"], d["height"]) == (20, 40)  # EXIF orientation 6: width and height swap
    polygon, clipped = d["annotations"]
    assert polygon["bbox"] == pytest.approx([2.0, 8.0, 12.0, 28.0])
    assert clipped["bbox"] == pytest.approx([9.9999, 12.0, 20.0, 28.0])  # 1.000005 clipped to the right edge


def test_image_lists_and_label_paths(tmp_path):
    """A .txt list of images (./ and bare relative lines resolve against the list's folder) and
    labels found by replacing the last /images/ of the path."""
    root = tmp_path / "images" / "set"  # a dataset inside a folder named images: only the last one is replaced
    _image(str(root / "images/x/one.png"))
    _image(str(root / "images/two.png"))
    _text(root / "labels/x/one.txt", "0 0.5 0.5 1 1\n")
    _text(root / "train.txt", "./images/x/one.png\nimages/two.png\n")
    _text(tmp_path / "d.yaml", "path: images/set\ntrain: train.txt\nnames: [thing]\n")
    two, one = read_labels(str(tmp_path / "d.yaml")).splits["train"]  # sorted by path
    assert one["annotations"][0]["bbox"] == [0.0, 0.0, 40.0, 20.0]
    assert one["source"]["label_file"] == str(root / "labels/x/one.txt")
    assert two["annotations"] == []


@pytest.mark.parametrize(
    "yaml_text, label, expected",
    [
        (
            "train: images\nnames: [a]\n",
            "0 0.5 0.5 0.2 0.2 0.9\n",
            "l.txt:1: 6 columns (a prediction with its confidence?)",
        ),
        ("train: images\nnames: [a]\n", "0 0.5 0.5 0.2\n", "l.txt:1: 4 columns"),
        ("train: images\nnames: [a]\n", "\n1 0.5 0.5 0.2 0.2\n", "l.txt:2: class 1 is outside names (0..0)"),
        ("train: images\nnames: [a]\n", "0 0.5 0.5 1.05 0.2\n", "l.txt:1: values outside [0, 1] by more than 1%"),
        ("train: images\nnames: [a]\n", "0 0.5 x 0.2 0.2\n", "l.txt:1: expected an integer class and numbers"),
        ("train: images\nnc: 2\n", "", "a YOLO data yaml needs 'names'"),
        ("train: images\nnc: 2\nnames: [a]\n", "", "'nc: 2' but 'names' has 1 entries"),
        ("train: images\nnames: {0: a, 2: b}\n", "", "'names' indices must be 0..1"),
        ("train: nowhere\nnames: [a]\n", "", "'train: nowhere'"),
    ],
)
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, yaml_text, label, expected):
    _image(str(tmp_path / "images/l.png"))
    _text(tmp_path / "labels/l.txt", label)
    _text(tmp_path / "data.yaml", yaml_text)
    with pytest.raises(LabelFormatError) as error:
        read_labels(f"yolo:{tmp_path / 'data.yaml'}")
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_write_back_changes_only_the_moved_line(tmp_path):
    _roboflow(tmp_path / "in")
    labels = read_labels(str(tmp_path / "in/data.yaml"))
    a = next(r for r in labels.splits["train"] if r["file_name"].endswith("a.jpg"))
    a["annotations"][1]["bbox"][2] = 24.0  # move one side of the second box
    written = write_labels(labels, str(tmp_path / "out"))
    assert sorted(os.path.relpath(p, tmp_path / "out") for p in written) == [
        "data.yaml",
        "train/labels/a.txt",
        "train/labels/b.txt",
        "train/labels/c.txt",
        "valid/labels/d.txt",
    ]
    before = (tmp_path / "in/train/labels/a.txt").read_bytes().split(b"\r\n")
    after = (tmp_path / "out/train/labels/a.txt").read_bytes().split(b"\r\n")
    assert after[0] == before[0] and after[2:] == before[2:] == [b""]  # CRLF and the first line kept
    assert after[1] == b"1 0.300000 0.250000 0.600000 0.500000"
    for name in ("valid/labels/d.txt", "train/labels/b.txt", "data.yaml"):  # unchanged: byte-identical
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "in" / name).read_bytes()
    assert (tmp_path / "out/train/labels/c.txt").read_bytes() == b""  # a missing file stays without boxes


def test_round_trip_and_removed_and_added_boxes(tmp_path):
    _roboflow(tmp_path / "in")
    labels = read_labels(str(tmp_path / "in/data.yaml"))
    d = labels.splits["val"][0]
    d["annotations"].pop(0)  # the polygon goes
    d["annotations"].append({"bbox": [0.0, 0.0, 10.0, 10.0], "category_id": 1, "score": 0.5})  # a suggestion
    write_labels(labels, str(tmp_path / "out"))
    # a suggestion is written as a label (5 columns: the corrected labels train as they are)
    assert (
        tmp_path / "out/valid/labels/d.txt"
    ).read_text() == "0 0.75 0.5 0.500010 0.4\n1 0.250000 0.125000 0.500000 0.250000\n"
    # unchanged: read -> write -> read gives the same boxes
    again = read_labels(str(tmp_path / "in/data.yaml"))
    write_labels(again, str(tmp_path / "copy"))
    for name in ("train/labels/a.txt", "valid/labels/d.txt"):
        assert (tmp_path / "copy" / name).read_bytes() == (tmp_path / "in" / name).read_bytes()


def test_conversion_and_predictions_read_back(tmp_path):
    """A LabelSet from another format is written in the standard layout; boxes come back within
    the format's 6 decimals; predictions are 6-column lines that reading refuses."""
    _image(str(tmp_path / "src/p.png"), size=(64, 48))
    record = {
        "file_name": str(tmp_path / "src/p.png"),
        "width": 64,
        "height": 48,
        "image_id": 7,
        "annotations": [{"bbox": [1.3, 2.7, 50.1, 47.9], "category_id": 1, "iscrowd": 0}],
    }
    other = LabelSet("coco", str(tmp_path / "x.json"), ["a", "b"], {"train": [record], "val": [record]})
    write_labels(other, str(tmp_path / "yolo"), fmt="yolo")
    back = read_labels(str(tmp_path / "yolo/data.yaml"))
    assert back.classes == ["a", "b"] and list(back.splits) == ["train", "val"]
    (box,) = back.splits["val"][0]["annotations"]
    assert box["category_id"] == 1 and box["bbox"] == pytest.approx(record["annotations"][0]["bbox"], abs=64e-6)
    record["annotations"][0]["score"] = 0.25
    write_labels(other, str(tmp_path / "pred"), predictions=True, fmt="yolo")
    assert (tmp_path / "pred/labels/val/p.txt").read_text().split()[-1] == "0.250000"
    with pytest.raises(LabelFormatError, match="6 columns"):
        read_labels(str(tmp_path / "pred/data.yaml"))
