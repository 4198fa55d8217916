"""Label Studio JSON export: reading (percent, rotation, polygons, upload prefixes, EXIF, which
annotation), the write-back as predictions, pre-annotations, conversion and bad input."""

import copy
import json
import logging
import os

import pytest
from formats_testing import draw_image as _image

from gfocal_runtime.formats import (
    LabelFormatError,
    LabelSet,
    detect_format,
    labelstudio,
    make_box,
    read_labels,
    write_labels,
)

LS = "gfocal_runtime.formats.labelstudio"


def _rect(rid, label, x, y, w, h, rotation=0, size=(20, 16), **extra):
    return {
        "id": rid,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": size[0],
        "original_height": size[1],
        "image_rotation": 0,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]},
        **extra,
    }


def _tasks():
    cat = _rect("r1", "cat", 10, 25, 50, 50)  # 20x16: [2, 4, 12, 12]
    dog = _rect("r2", "dog", 0, 0, 100, 12.5, origin="manual", meta={"text": ["a note"]})  # [0, 0, 20, 2]
    polygon = {
        "id": "p1",
        "type": "polygonlabels",
        "from_name": "poly",
        "to_name": "image",
        "original_width": 20,
        "original_height": 16,
        "value": {"points": [[10, 25], [50, 12.5], [30, 75]], "polygonlabels": ["dog"]},  # [2, 2, 10, 12]
    }
    return [
        {
            "id": 1,
            "data": {"image": "/data/upload/3/1a2b3c4d-a.png"},
            "annotations": [
                {"id": 10, "result": [cat, dog], "was_cancelled": False, "updated_at": "2024-01-02T10:00:00.000000Z"},
                {"id": 11, "result": [], "was_cancelled": False, "updated_at": "2024-01-01T10:00:00.000000Z"},
                {"id": 12, "result": [dog], "was_cancelled": True, "updated_at": "2024-01-03T10:00:00.000000Z"},
            ],
            "predictions": [{"model_version": "yolo", "result": [dog]}],
        },
        {
            "id": 2,
            "data": {"image": "/data/local-files/?d=data/sub/b%20x.jpg"},
            "annotations": [
                {"id": 20, "result": [polygon, {"id": "c", "type": "choices", "value": {"choices": ["day"]}}]}
            ],
        },
        {
            "id": 3,  # 20x16 stored, EXIF 6: shown 16x20
            "data": {"image": "https://host/static/c.jpg?token=abc"},
            "annotations": [{"id": 30, "result": [_rect("r3", "bird", 25, 10, 50, 50, size=(16, 20))]}],
        },
        {
            "id": 4,  # rotated 90 deg clockwise around (10, 4): w 5, h 4 -> [6, 4, 10, 9]
            "data": {"image": "s3://bucket/photos/d.png"},
            "annotations": [
                {"id": 40, "result": [_rect("r4", "cat", 50, 25, 25, 25, 90), _rect("r5", "cat", 0, 0, 10, 10, 360)]}
            ],
        },
        {"id": 5, "data": {"image": "/data/upload/3/deadbeef-e.png"}, "annotations": []},
        {"id": 6, "data": {"image": "e.png"}, "annotations": [{"id": 60, "result": []}]},
    ]


def _dataset(tmp_path, tasks=None, indent=2):
    images = tmp_path / "images"
    _image(str(images / "a.png"))
    _image(str(images / "sub" / "b x.jpg"))
    _image(str(images / "c.jpg"), orientation=6)
    _image(str(images / "d.png"))
    _image(str(images / "e.png"))
    path = tmp_path / "export" / "project-3.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_tasks() if tasks is None else tasks, indent=indent), encoding="utf-8")
    return str(path), str(images)


def _boxes(record):
    return [(b["category_id"], pytest.approx(b["bbox"])) for b in record["annotations"]]


def _plain(records):
    """Records without the source bookkeeping (for comparing two reads)."""
    return [
        {
            **{k: v for k, v in r.items() if k != "source"},
            "annotations": [{**b, "source": None} for b in r["annotations"]],
        }
        for r in records
    ]


def test_read_boxes_classes_and_images(tmp_path, caplog):
    path, images = _dataset(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LS):
        labels = labelstudio.read(path, images)
    assert labels.format == "labelstudio" and labels.classes == ["cat", "dog", "bird"]
    records = labels.split("all")
    assert [r["image_id"] for r in records] == [1, 2, 3, 4, 6]  # task 5 has no annotation: not labelled yet
    assert [os.path.relpath(r["file_name"], images) for r in records] == [
        "a.png",
        os.path.join("sub", "b x.jpg"),
        "c.jpg",
        "d.png",
        "e.png",
    ]
    assert [(r["width"], r["height"]) for r in records] == [(20, 16), (20, 16), (16, 20), (20, 16), (20, 16)]
    assert _boxes(records[0]) == [(0, [2, 4, 12, 12]), (1, [0, 0, 20, 2])]  # annotation 10: latest not cancelled
    assert _boxes(records[1]) == [(1, [2, 2, 10, 12])]
    assert _boxes(records[2]) == [(2, [4, 2, 12, 12])]
    assert _boxes(records[3]) == [(0, [6, 4, 10, 9]), (0, [0, 0, 2, 1.6])]
    assert records[4]["annotations"] == []  # an empty result: a background image
    assert records[0]["source"]["annotation_id"] == 10
    source = records[0]["annotations"][1]["source"]
    assert (source["task"], source["annotation"], source["result"], source["result_id"]) == (0, 0, 1, "r2")
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("rotated" in w for w in warnings) == 1 and sum("task(s) without" in w for w in warnings) == 1
    assert any("1 choices" in w for w in warnings)


@pytest.mark.parametrize(
    "ref, names",
    [
        ("/data/upload/3/1a2b3c4d-photo.jpg", ["1a2b3c4d-photo.jpg", "photo.jpg"]),
        ("/data/upload/photo.jpg", ["photo.jpg"]),
        ("/data/local-files/?d=sets/a%20b/photo.jpg", ["sets/a b/photo.jpg", "a b/photo.jpg", "photo.jpg"]),
        ("s3://bucket/dir/photo.jpg", ["dir/photo.jpg", "photo.jpg"]),
        ("https://host/x/photo.jpg?sig=1", ["x/photo.jpg", "photo.jpg"]),
        ("../../etc/photo.jpg", ["etc/photo.jpg", "photo.jpg"]),
        ("sub\\photo.jpg", ["sub/photo.jpg", "photo.jpg"]),
    ],
)
def test_image_reference_candidates(ref, names):
    assert labelstudio._candidates(ref)[1] == names


def test_without_images_folder_paths_are_relative_to_the_json(tmp_path):
    _image(str(tmp_path / "pics" / "a.png"))
    tasks = [{"id": 7, "data": {"image": "/data/local-files/?d=pics/a.png"}, "annotations": [{"result": []}]}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    assert labelstudio.read(str(path)).split("all")[0]["file_name"] == str(tmp_path / "pics" / "a.png")
    assert detect_format(str(path)) == "labelstudio"
    labels = read_labels(f"{path}")
    assert labels.format == "labelstudio" and labels.classes == []


def test_spec_with_images_folder(tmp_path):
    path, images = _dataset(tmp_path)
    labels = read_labels(f"labelstudio:{path}?images={images}")
    assert labels.images == images and len(labels.split(None)) == 5


def test_missing_image_is_one_line_naming_task_path_and_folder(tmp_path):
    tasks = _tasks()
    tasks[2]["data"]["image"] = "/data/upload/3/0badf00d-nowhere.jpg"
    path, images = _dataset(tmp_path, tasks)
    with pytest.raises(LabelFormatError) as error:
        labelstudio.read(path, images)
    message = str(error.value)
    assert "\n" not in message and "task 3" in message and "0badf00d-nowhere.jpg" in message and images in message


def test_exif_rotated_image_annotated_without_its_rotation_is_refused(tmp_path):
    tasks = _tasks()
    tasks[2]["annotations"][0]["result"][0].update(original_width=20, original_height=16)
    path, images = _dataset(tmp_path, tasks)
    with pytest.raises(LabelFormatError, match=r"task 3: result r3: original size 20x16 .*16x20"):
        labelstudio.read(path, images)


def test_a_resized_copy_scales_the_percent(tmp_path):
    tasks = _tasks()[:1]
    for result in tasks[0]["annotations"][0]["result"]:
        result.update(original_width=200, original_height=160)
    path, images = _dataset(tmp_path, tasks)
    assert _boxes(labelstudio.read(path, images).split("all")[0]) == [(0, [2, 4, 12, 12]), (1, [0, 0, 20, 2])]


def test_values_just_outside_are_clipped(tmp_path):
    tasks = _tasks()[:1]
    tasks[0]["annotations"][0]["result"][1]["value"].update(x=-0.5, width=101)
    path, images = _dataset(tmp_path, tasks)
    assert _boxes(labelstudio.read(path, images).split("all")[0])[1] == (1, [0, 0, 20, 2])


def _bad(task_edit):
    def edit(tasks):
        task_edit(tasks[0])
        return tasks

    return edit


def _first(key="value", **changes):
    """An edit of the first result of task 1 (its ``value`` or the result itself)."""

    def edit(task):
        result = task["annotations"][0]["result"][0]
        (result[key] if key else result).update(changes)

    return _bad(edit)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda t: {"tasks": t}, "a list of tasks"),
        (lambda t: t + [{"image": "x.jpg", "label": []}], "task at position 6 has no 'data'.*JSON-MIN"),
        (_first(rectanglelabels=[]), "task 1: result r1: .*one label"),
        (_first(rectanglelabels=["a", "b"]), "one label"),
        (_first(x=60), r"r1: box .* more than 1% outside"),
        (_first(width=-3), "r1: negative width"),
        (_first(y=None), "r1: 'value' needs a number 'y'"),
        (_first(x=float("nan")), "r1: 'x' is nan"),
        (_first(None, image_rotation=90), "r1: image_rotation 90"),
        (_first(None, original_width=0), "r1: original_width/height must be positive"),
        (_bad(lambda t: t.update(data={"a": "x.png", "b": "y.png"})), "task 1: no image in 'data'"),
        (lambda t: [dict(x, annotations=[]) for x in t], "no task has a finished annotation"),
    ],
)
def test_bad_input_is_one_line(tmp_path, edit, expected):
    path, images = _dataset(tmp_path, edit(_tasks()))
    with pytest.raises(LabelFormatError, match=expected) as error:
        labelstudio.read(path, images)
    assert "\n" not in str(error.value) and path in str(error.value)


def test_not_json(tmp_path):
    path = tmp_path / "export.json"
    path.write_text("[{")
    with pytest.raises(LabelFormatError, match="not valid JSON"):
        labelstudio.read(str(path))


def test_unchanged_write_is_a_byte_identical_copy_and_reads_back_the_same(tmp_path):
    path, images = _dataset(tmp_path)
    labels = labelstudio.read(path, images)
    written = write_labels(labels, str(tmp_path / "out"))
    assert written == [str(tmp_path / "out" / "project-3.json")]
    with open(path, "rb") as a, open(written[0], "rb") as b:
        assert a.read() == b.read()
    assert _plain(labelstudio.read(written[0], images).split(None)) == _plain(labels.split(None))


def _task_texts(text):
    return [text[a:b] for a, b in labelstudio._task_spans(text, "x")]


@pytest.mark.parametrize("indent", [2, None])
def test_moved_side_becomes_a_prediction_and_nothing_else_changes(tmp_path, indent):
    path, images = _dataset(tmp_path, indent=indent)
    labels = labelstudio.read(path, images)
    labels.split("all")[0]["annotations"][0]["bbox"][2] = 16.0  # cat's right side 12 -> 16
    (out,) = labelstudio.write(labels, str(tmp_path / "out"))
    before, after = open(path).read(), open(out).read()
    old, new = _task_texts(before), _task_texts(after)
    assert old[1:] == new[1:]  # every other task byte for byte
    layout = json.dumps(json.loads(new[0]), indent=indent)  # the task's own layout, at its column
    assert new[0] == (layout.replace("\n", "\n  ") if indent else layout)
    original, task = json.loads(old[0]), json.loads(new[0])
    assert task["annotations"] == original["annotations"]  # the human annotation untouched
    assert task["predictions"][0] == original["predictions"][0]
    prediction = task["predictions"][1]
    assert prediction["model_version"] == "gfocal-label-check" and "score" not in prediction
    moved, kept = prediction["result"]
    assert kept == original["annotations"][0]["result"][1]
    assert moved["id"] == "r1" and moved["type"] == "rectanglelabels" and moved["from_name"] == "label"
    assert moved["value"] == {
        "x": pytest.approx(10),
        "y": pytest.approx(25),
        "width": pytest.approx(70),
        "height": pytest.approx(50),
        "rotation": 0,
        "rectanglelabels": ["cat"],
    }
    assert (moved["original_width"], moved["original_height"]) == (20, 16)
    assert _plain(labelstudio.read(out, images).split(None)) == _plain(labelstudio.read(path, images).split(None))


def test_a_removed_box_is_a_prediction_without_it(tmp_path):
    path, images = _dataset(tmp_path)
    labels = labelstudio.read(path, images)
    labels.split("all")[0]["annotations"].pop(0)  # cat removed, dog kept
    (out,) = labelstudio.write(labels, str(tmp_path / "out"))
    tasks = json.load(open(out))
    assert tasks[0]["predictions"][-1] == {
        "model_version": "gfocal-label-check",
        "result": [_tasks()[0]["annotations"][0]["result"][1]],
    }
    assert tasks[1:] == _tasks()[1:]


def test_suggestions_hold_the_full_box_set_with_scores(tmp_path):
    path, images = _dataset(tmp_path)
    labels = labelstudio.read(path, images)
    records = labels.split("all")
    records[0]["annotations"] = [records[0]["annotations"][0], make_box([1, 1, 5, 5], 2, score=0.9)]  # dog removed
    records[0]["annotations"][0]["score"] = 0.5  # unchanged, scored
    polygon = records[1]["annotations"][0]
    polygon["bbox"] = [2.0, 2.0, 10.0, 14.0]
    (out,) = labelstudio.write(labels, str(tmp_path / "out"))
    tasks = json.load(open(out))
    cat, added = tasks[0]["predictions"][-1]["result"]
    assert tasks[0]["predictions"][-1]["score"] == pytest.approx(0.7)
    assert cat == dict(_tasks()[0]["annotations"][0]["result"][0], score=0.5)
    assert added["value"]["rectanglelabels"] == ["bird"] and added["score"] == 0.9
    assert added["value"]["x"] == pytest.approx(5) and added["value"]["height"] == pytest.approx(25)
    (moved,) = tasks[1]["predictions"][-1]["result"]  # a polygon stays a polygon (its own control)
    assert moved["type"] == "polygonlabels" and moved["from_name"] == "poly" and moved["id"] == "p1"
    assert moved["value"]["points"] == [pytest.approx(p) for p in ([10, 12.5], [50, 12.5], [50, 87.5], [10, 87.5])]
    assert "predictions" not in tasks[2]
    # Running the check again on its own output replaces its earlier suggestion.
    again = labelstudio.read(out, images)
    again.split("all")[0]["annotations"].pop()
    (out2,) = labelstudio.write(again, str(tmp_path / "out2"))
    versions = [p["model_version"] for p in json.load(open(out2))[0]["predictions"]]
    assert versions == ["yolo", "gfocal-label-check"]


def test_predictions_for_pre_annotation(tmp_path):
    path, images = _dataset(tmp_path)
    labels = labelstudio.read(path, images)
    converted = LabelSet("coco", path, labels.classes, {"all": copy.deepcopy(labels.split("all"))}, images)
    for record in converted.split("all"):
        record.pop("source")
        record["annotations"] = [make_box(b["bbox"], b["category_id"], score=0.25) for b in record["annotations"]]
    (out,) = labelstudio.write(converted, str(tmp_path / "pre"), predictions=True)
    assert out == str(tmp_path / "pre" / "tasks.json")
    tasks = json.load(open(out))
    assert [t["data"]["image"] for t in tasks] == [
        "/data/local-files/?d=a.png",
        "/data/local-files/?d=sub/b%20x.jpg",
        "/data/local-files/?d=c.jpg",
        "/data/local-files/?d=d.png",
        "/data/local-files/?d=e.png",
    ]
    assert all(set(t) == {"id", "data", "predictions"} for t in tasks)
    (prediction,) = tasks[0]["predictions"]
    assert prediction["model_version"] == "gfocal" and prediction["score"] == 0.25
    first = prediction["result"][0]
    assert first["score"] == 0.25 and first["value"]["rectanglelabels"] == ["cat"]
    assert (first["from_name"], first["to_name"], first["type"]) == ("label", "image", "rectanglelabels")
    assert tasks[4]["predictions"][0] == {"model_version": "gfocal", "result": []}


def test_conversion_reads_back_the_same_boxes(tmp_path):
    path, images = _dataset(tmp_path)
    labels = labelstudio.read(path, images)
    records = copy.deepcopy(labels.split("all"))
    for record in records:
        record.pop("source")
        for box in record["annotations"]:
            box.pop("source")
    converted = LabelSet("voc", str(tmp_path), labels.classes, {"trainval": records}, images)
    (out,) = write_labels(converted, str(tmp_path / "conv"), fmt="labelstudio")
    tasks = json.load(open(out))
    assert all(len(t["annotations"]) == 1 and not t["annotations"][0]["was_cancelled"] for t in tasks)
    back = labelstudio.read(out, images)
    assert back.classes == labels.classes
    for a, b in zip(back.split("all"), records):
        assert (a["file_name"], a["width"], a["height"]) == (b["file_name"], b["width"], b["height"])
        assert _boxes(a) == [(x["category_id"], x["bbox"]) for x in b["annotations"]]


def test_nothing_is_written_when_a_check_fails(tmp_path):
    path, images = _dataset(tmp_path)
    labels = labelstudio.read(path, images)
    labels.split("all")[0]["annotations"][0]["category_id"] = 7
    with pytest.raises(LabelFormatError, match="category_id 7 outside the 3 classes"):
        labelstudio.write(labels, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
