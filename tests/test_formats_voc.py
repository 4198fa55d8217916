"""Pascal VOC labels: layouts, classes, the 1-based pixel offset, bad input, in-place write-back."""

import logging
import os

import pytest
from formats_testing import draw_image as image
from formats_testing import write_text

from gfocal_runtime.formats import LabelFormatError, LabelSet, detect_format, make_box, read_labels, voc

# A small VOC root: a.jpg (20x16), b.png (named b.jpg in its XML), c.jpg stored 20x16 with EXIF
# orientation 6 (16x20 upright) while its XML states the stored size.
OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>{pose}</pose>
\t\t<truncated>{truncated}</truncated>
\t\t<difficult>{difficult}</difficult>
\t\t<bndbox>
\t\t\t<xmin>{0}</xmin>
\t\t\t<ymin>{1}</ymin>
\t\t\t<xmax>{2}</xmax>
\t\t\t<ymax>{3}</ymax>
\t\t</bndbox>
\t</object>
"""


def obj(name, *coords, difficult=0, truncated=0, pose="Unspecified"):
    return OBJECT.format(*coords, name=name, difficult=difficult, truncated=truncated, pose=pose)


def annotation(filename, objects, size=(20, 16)):
    size_xml = f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n\t</size>\n" if size else ""
    return (
        f"<annotation>\n\t<folder>VOC</folder>\n\t<filename>{filename}</filename>\n"
        f"\t<source>\n\t\t<database>Drawn</database>\n\t</source>\n{size_xml}"
        f"\t<!-- kept as it is -->\n\t<segmented>0</segmented>\n{''.join(objects)}</annotation>\n"
    )


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "VOC"
    image(str(root / "JPEGImages" / "a.jpg"))
    image(str(root / "JPEGImages" / "b.png"))
    image(str(root / "JPEGImages" / "c.jpg"), orientation=6)
    a = [obj("dog", 1, 1, 10, 8), obj("cat", 5, 6, 20, 16, difficult=1, truncated=1, pose="Left")]
    write_text(str(root / "Annotations" / "a.xml"), annotation("a.jpg", a))
    write_text(str(root / "Annotations" / "b.xml"), annotation("b.jpg", [obj("person", 3, 3, 3, 4)], size=None))
    write_text(str(root / "Annotations" / "c.xml"), annotation("c.jpg", [obj("person", 2, 3, 4, 5)]))
    write_text(str(root / "Annotations" / "unlisted.xml"), annotation("a.jpg", [obj("zebra", 1, 1, 2, 2)]))
    main = root / "ImageSets" / "Main"
    write_text(str(main / "train.txt"), "a\nb\n")
    write_text(str(main / "val.txt"), "c\n")
    write_text(str(main / "trainval.txt"), "a\r\nb\r\nc\r\n")
    write_text(str(main / "dog_train.txt"), "a  1\nb -1\n")
    return str(root)


def boxes(record):
    return [(b["bbox"], b["category_id"], b["iscrowd"]) for b in record["annotations"]]


def without_source(labels):
    """Records as comparable data: no ``source`` anywhere."""

    def strip(item):
        return {k: v for k, v in item.items() if k != "source"}

    return {
        split: [dict(strip(r), annotations=[strip(b) for b in r["annotations"]]) for r in records]
        for split, records in labels.splits.items()
    }


def test_reads_a_voc_root(root, caplog):
    with caplog.at_level(logging.WARNING):
        labels = voc.read(root)
    assert list(labels.splits) == ["train", "trainval", "val"]  # dog_train.txt is a per-class list
    assert labels.classes == ["cat", "dog", "person"]  # VOC's own classes in VOC's order
    a, b = labels.splits["train"]
    (c,) = labels.splits["val"]
    assert a is labels.splits["trainval"][0]  # one record per image, shared by its splits
    assert (a["image_id"], a["width"], a["height"]) == ("a", 20, 16)
    assert a["file_name"] == os.path.join(root, "JPEGImages", "a.jpg")
    # xmin and ymin lose 1 (1-based inclusive pixels), xmax and ymax stay: Detectron2's convention.
    assert boxes(a) == [([0.0, 0.0, 10.0, 8.0], 1, 0), ([4.0, 5.0, 20.0, 16.0], 0, 1)]
    assert a["annotations"][1]["attributes"] == {"pose": "Left", "truncated": 1, "difficult": 1}
    assert a["annotations"][0]["source"] == {"file": os.path.join(root, "Annotations", "a.xml"), "object": 0,
                                             "bbox": [0.0, 0.0, 10.0, 8.0], "category_id": 1}  # fmt: skip
    assert b["file_name"].endswith("b.png") and (b["width"], b["height"]) == (20, 16)  # found by its stem
    assert boxes(b) == [([2.0, 2.0, 3.0, 4.0], 2, 0)]  # xmin == xmax: one pixel wide
    assert (c["width"], c["height"]) == (16, 20)  # the upright image, not the stated <size>
    warnings = [r.getMessage() for r in caplog.records if r.name == voc.__name__]
    assert len(warnings) == 1 and "c.xml says 20x16, the image is 16x20" in warnings[0] and "swapped" in warnings[0]
    assert read_labels(f"voc:{root}#val").split("val")[0]["image_id"] == "c"
    assert detect_format(root) == "voc"


def test_without_image_sets_every_xml_is_split_all(root):
    for name in os.listdir(os.path.join(root, "ImageSets", "Main")):
        os.remove(os.path.join(root, "ImageSets", "Main", name))
    labels = voc.read(root)
    assert list(labels.splits) == ["all"]
    assert [r["image_id"] for r in labels.splits["all"]] == ["a", "b", "c", "unlisted"]
    assert labels.classes == ["dog", "cat", "person", "zebra"]  # not all VOC's: first appearance


def test_class_files(root):
    write_text(os.path.join(root, "labelmap.txt"), "# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
               "person:1,2,3::\ndog:4,5,6::\ncat:7,8,9::\n")  # fmt: skip
    assert voc.read(root).classes == ["person", "dog", "cat"]
    write_text(os.path.join(root, "labels.txt"), "dog\ncat\nperson\nbird\n")  # preferred to labelmap.txt
    labels = voc.read(root)
    assert labels.classes == ["dog", "cat", "person", "bird"]
    assert boxes(labels.splits["train"][0])[0][1] == 0
    write_text(os.path.join(root, "labels.txt"), "dog\ncat\n")
    with pytest.raises(LabelFormatError, match=r"b\.xml: object 1: class 'person' is not in .*labels\.txt"):
        voc.read(root)


def test_folder_of_images_with_xml_beside(tmp_path):
    flat = tmp_path / "flat"
    image(str(flat / "x.bmp"))
    write_text(str(flat / "x.xml"), annotation("x.bmp", [obj("widget", 2, 2, 9, 9), obj("gadget", 1, 1, 4, 4)]))
    labels = voc.read(str(flat))
    assert list(labels.splits) == ["all"] and labels.classes == ["widget", "gadget"]
    assert labels.splits["all"][0]["file_name"] == str(flat / "x.bmp")
    single = voc.read(str(flat / "x.xml"))  # one VOC file
    assert without_source(single) == without_source(labels)
    # Roboflow's export: one folder per split, images beside their XML.
    rf = tmp_path / "rf"
    for split, stem in (("train", "p"), ("valid", "q")):
        image(str(rf / split / f"{stem}.jpg"))
        write_text(str(rf / split / f"{stem}.xml"), annotation(f"{stem}.jpg", [obj("widget", 1, 1, 5, 5)]))
    labels = voc.read(str(rf))
    assert {s: [r["file_name"] for r in rs] for s, rs in labels.splits.items()} == {
        "train": [str(rf / "train" / "p.jpg")],
        "valid": [str(rf / "valid" / "q.jpg")],
    }


def test_images_option_and_path_fallback(root, tmp_path):
    elsewhere = tmp_path / "pictures"
    os.rename(os.path.join(root, "JPEGImages"), str(elsewhere))
    with pytest.raises(LabelFormatError, match=r"a\.xml: image not found: .*'a\.jpg'.*\?images=DIR"):
        voc.read(root)
    labels = voc.read(root, images=str(elsewhere))
    assert labels.splits["train"][0]["file_name"] == str(elsewhere / "a.jpg")
    # No image in the folder by <filename> or id: an existing absolute <path> is used.
    os.remove(str(elsewhere / "a.jpg"))
    path = f"<path>{elsewhere / 'c.jpg'}</path>"
    write_text(os.path.join(root, "Annotations", "a.xml"), annotation("gone.jpg", [path]))
    labels = voc.read(root, images=str(elsewhere))
    assert labels.splits["train"][0]["file_name"] == str(elsewhere / "c.jpg")
    image(str(elsewhere / "b.jpg"))  # b.jpg and b.png: <filename> b.jpg decides
    assert voc.read(root, images=str(elsewhere)).splits["train"][1]["file_name"] == str(elsewhere / "b.jpg")
    os.remove(str(elsewhere / "b.jpg"))
    image(str(elsewhere / "b.bmp"))
    with pytest.raises(LabelFormatError, match=r"b\.xml: several images for id 'b' .*\(b\.bmp, b\.png\)"):
        voc.read(root, images=str(elsewhere))


BAD = {
    "entity expansion": (
        '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;">]>\n'
        "<annotation><filename>&b;</filename></annotation>",
        r"a\.xml: refused \(EntitiesForbidden\)",
    ),
    "external entity": (
        '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
        "<annotation><filename>&e;</filename></annotation>",
        r"a\.xml: refused \(EntitiesForbidden\)",
    ),
    "not xml": ("<annotation><object></annotation>", r"a\.xml: not well-formed XML"),
    "cvat file": (
        "<annotations><version>1.1</version></annotations>",
        r"a\.xml: root element <annotations>; expected <annotation>",
    ),
    "no name": (annotation("a.jpg", [obj("", 1, 1, 5, 5)]), r"a\.xml: object 1: no <name>"),
    "no bndbox": (
        annotation("a.jpg", [obj("dog", 1, 1, 5, 5), "<object><name>cat</name></object>"]),
        r"a\.xml: object 2 \('cat'\): no <bndbox>",
    ),
    "not a number": (
        annotation("a.jpg", [obj("dog", 1, "one", 5, 5)]),
        r"a\.xml: object 1 \('dog'\): <ymin> 'one' is not a number",
    ),
    "missing coordinate": (
        annotation("a.jpg", [obj("dog", 1, 1, 5, 5).replace("<xmax>5</xmax>", "")]),
        r"<xmax> None is not a number",
    ),
    "inverted": (
        annotation("a.jpg", [obj("dog", 8, 1, 5, 5)]),
        r"a\.xml: object 1 \('dog'\): <bndbox> xmin=8 ymin=1 xmax=5 ymax=5; expected xmin <= xmax",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_xml_is_one_line_naming_the_file(root, case):
    text, message = BAD[case]
    write_text(os.path.join(root, "Annotations", "a.xml"), text)
    with pytest.raises(LabelFormatError, match=message) as error:
        voc.read(root)
    assert "\n" not in str(error.value) and os.path.join(root, "Annotations", "a.xml") in str(error.value)


def test_bad_layouts(root, tmp_path):
    write_text(os.path.join(root, "ImageSets", "Main", "val.txt"), "c\nmissing\n")
    with pytest.raises(LabelFormatError, match=r"val\.txt:2: no Annotations/missing\.xml"):
        voc.read(root)
    write_text(os.path.join(root, "ImageSets", "Main", "val.txt"), "c\nc d e\n")
    with pytest.raises(LabelFormatError, match=r"val\.txt:2: 'c d e'; expected one image id per line"):
        voc.read(root)
    os.makedirs(tmp_path / "empty" / "sub")
    with pytest.raises(LabelFormatError, match=r"empty: no Annotations/ folder and no \.xml files"):
        voc.read(str(tmp_path / "empty"))
    write_text(os.path.join(root, "ImageSets", "Main", "val.txt"), "c\n")
    with pytest.raises(LabelFormatError, match=r"no split 'test'; this voc dataset has 'train', 'trainval', 'val'"):
        voc.read(root).split("test")


def test_unchanged_write_is_byte_identical_and_reads_back_the_same(root, tmp_path):
    labels = voc.read(root)
    out = str(tmp_path / "out")
    written = voc.write(labels, out)
    assert sorted(os.path.relpath(p, out) for p in written) == sorted(
        [f"Annotations/{s}.xml" for s in "abc"] + [f"ImageSets/Main/{s}.txt" for s in ("train", "val", "trainval")]
    )
    for path in written:
        assert read_bytes(path) == read_bytes(os.path.join(root, os.path.relpath(path, out)))
    again = voc.read(out, images=os.path.join(root, "JPEGImages"))
    assert again.classes == labels.classes and without_source(again) == without_source(labels)


def test_write_back_changes_only_the_moved_side(root, tmp_path):
    labels = voc.read(root)
    a = labels.splits["train"][0]
    a["annotations"][0]["bbox"][2] = 13.0  # dog's right side moves 3 pixels
    out = str(tmp_path / "out")
    voc.write(labels, out)
    source = read_bytes(os.path.join(root, "Annotations", "a.xml"))
    assert read_bytes(os.path.join(out, "Annotations", "a.xml")) == source.replace(b"<xmax>10<", b"<xmax>13<", 1)
    for name in ("b.xml", "c.xml"):
        assert read_bytes(os.path.join(out, "Annotations", name)) == read_bytes(os.path.join(root, "Annotations", name))
    again = voc.read(out, images=os.path.join(root, "JPEGImages"))
    assert boxes(again.splits["train"][0]) == [([0.0, 0.0, 13.0, 8.0], 1, 0), ([4.0, 5.0, 20.0, 16.0], 0, 1)]
    # A sub-pixel move of a left side: VOC's integer pixels, written as xmin = x0 + 1.
    a["annotations"][0]["bbox"][0] = 2.4
    voc.write(labels, out)
    assert b"<xmin>3</xmin>" in read_bytes(os.path.join(out, "Annotations", "a.xml"))


def test_write_back_keeps_float_coordinates_as_floats(root, tmp_path):
    write_text(
        os.path.join(root, "Annotations", "c.xml"), annotation("c.jpg", [obj("person", "2.50", "3.", "4.5", "5.0")])
    )
    labels = voc.read(root)
    (c,) = labels.splits["val"]
    assert boxes(c) == [([1.5, 2.0, 4.5, 5.0], 2, 0)]
    c["annotations"][0]["bbox"] = [1.25, 2.0, 9.75, 5.0]
    voc.write(labels, str(tmp_path / "out"))
    text = read_bytes(str(tmp_path / "out" / "Annotations" / "c.xml")).decode()
    assert "<xmin>2.25</xmin>" in text and "<ymin>3.</ymin>" in text and "<xmax>9.8</xmax>" in text


def test_write_back_renames_removes_and_appends(root, tmp_path):
    labels = voc.read(root)
    a, b = labels.splits["train"]
    a["annotations"][1]["category_id"] = 2  # cat -> person
    del a["annotations"][0]  # dog removed
    a["annotations"].append(make_box([1.0, 2.0, 6.0, 7.0], 1, score=0.875))  # a suggestion
    b["annotations"].append(make_box([0.0, 0.0, 20.0, 16.0], 0))
    out = str(tmp_path / "out")
    voc.write(labels, out)
    text = read_bytes(os.path.join(out, "Annotations", "a.xml")).decode()
    original = read_bytes(os.path.join(root, "Annotations", "a.xml")).decode()
    dog = obj("dog", 1, 1, 10, 8)
    expected = original.replace(dog, "").replace("<name>cat</name>", "<name>person</name>")
    added = obj("dog", 2, 3, 6, 7).replace("\t\t<bndbox>", "\t\t<score>0.875</score>\n\t\t<bndbox>")
    assert text == expected.replace("</annotation>", added + "</annotation>")
    again = voc.read(out, images=os.path.join(root, "JPEGImages"))
    a2, b2 = again.splits["train"]
    assert boxes(a2) == [([4.0, 5.0, 20.0, 16.0], 2, 1), ([1.0, 2.0, 6.0, 7.0], 1, 0)]
    assert a2["annotations"][1]["score"] == 0.875 and a2["annotations"][0]["attributes"]["pose"] == "Left"
    assert boxes(b2) == [([2.0, 2.0, 3.0, 4.0], 2, 0), ([0.0, 0.0, 20.0, 16.0], 0, 0)]
    assert again.splits["trainval"][0] is a2


def test_a_conflicting_write_writes_nothing(root, tmp_path):
    labels = voc.read(root)
    labels.splits["trainval"][0] = {**labels.splits["train"][0], "annotations": []}
    labels.splits["train"][0]["annotations"].pop()
    with pytest.raises(LabelFormatError, match=r"a\.xml: the image is in several splits with different changes"):
        voc.write(labels, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def other_format(root, classes=("person", "cat")):
    """A LabelSet as another format would give it: records without VOC sources."""
    image(os.path.join(root, "one", "p.jpg"))
    image(os.path.join(root, "two", "p.jpg"), size=(30, 24))
    records = [
        {"file_name": os.path.join(root, "one", "p.jpg"), "height": 16, "width": 20, "image_id": 1,
         "annotations": [make_box([0.0, 0.0, 10.0, 8.0], 1), make_box([2.0, 3.0, 20.0, 16.0], 0, iscrowd=1)]},
        {"file_name": os.path.join(root, "two", "p.jpg"), "height": 24, "width": 30, "image_id": 2,
         "annotations": [make_box([4.6, 5.2, 11.4, 9.9], 1)]},
    ]  # fmt: skip
    return LabelSet("coco", os.path.join(root, "ann.json"), list(classes), {"all": records})


def test_conversion_writes_the_standard_layout(tmp_path):
    labels = other_format(str(tmp_path / "src"))
    out = str(tmp_path / "out")
    written = voc.write(labels, out)
    assert sorted(os.path.relpath(p, out) for p in written) == [
        "Annotations/p.xml", "Annotations/p_2.xml", "ImageSets/Main/all.txt", "labels.txt",  # not VOC's order
    ]  # fmt: skip
    again = voc.read(out)  # images by <path>
    assert again.classes == ["person", "cat"]
    one, two = again.splits["all"]
    assert one["file_name"] == str(tmp_path / "src" / "one" / "p.jpg") and (two["width"], two["height"]) == (30, 24)
    assert boxes(one) == [([0.0, 0.0, 10.0, 8.0], 1, 0), ([2.0, 3.0, 20.0, 16.0], 0, 1)]
    assert boxes(two) == [([5.0, 5.0, 11.0, 10.0], 1, 0)]  # integer pixels
    text = read_bytes(os.path.join(out, "Annotations", "p.xml")).decode()
    assert "<xmin>1</xmin>\n\t\t\t<ymin>1</ymin>\n\t\t\t<xmax>10</xmax>" in text
    # VOC's order for VOC's classes: no labels.txt needed.
    out2 = str(tmp_path / "out2")
    assert not any(
        p.endswith("labels.txt") for p in voc.write(other_format(str(tmp_path / "s2"), ("cat", "dog")), out2)
    )
    assert voc.read(out2).classes == ["cat", "dog"]


def test_detectron2_reads_what_is_written_the_same_way(tmp_path):
    """Detectron2's own VOC loader and evaluator parser read the written files with the same offset."""
    pytest.importorskip("detectron2")
    from detectron2.data.datasets.pascal_voc import load_voc_instances
    from detectron2.evaluation.pascal_voc_evaluation import parse_rec

    labels = other_format(str(tmp_path / "src"), ("cat", "dog"))
    for box in labels.splits["all"][1]["annotations"]:
        box["score"] = 0.5
    out = str(tmp_path / "out")
    voc.write(labels, out, predictions=True)
    ours = voc.read(out)
    theirs = load_voc_instances(out, "all", ours.classes)
    for mine, d2 in zip(ours.splits["all"], theirs):
        assert [b["bbox"] for b in mine["annotations"]] == [b["bbox"] for b in d2["annotations"]]
        assert [b["category_id"] for b in mine["annotations"]] == [b["category_id"] for b in d2["annotations"]]
    rec = parse_rec(os.path.join(out, "Annotations", "p.xml"))
    assert [(r["name"], r["difficult"], r["bbox"]) for r in rec] == [
        ("dog", 0, [1, 1, 10, 8]),
        ("cat", 1, [3, 4, 20, 16]),
    ]


def test_predictions_one_xml_per_image_with_scores(root, tmp_path):
    labels = voc.read(root)
    for record in labels.split(None):
        for box in record["annotations"]:
            box["score"] = 0.25
    out = str(tmp_path / "out")
    written = voc.write(labels, out, predictions=True)
    assert sorted(os.path.relpath(p, out) for p in written) == sorted(
        [f"Annotations/{s}.xml" for s in "abc"] + [f"ImageSets/Main/{s}.txt" for s in ("train", "val", "trainval")]
    )
    assert read_bytes(os.path.join(out, "ImageSets", "Main", "trainval.txt")) == b"a\nb\nc\n"
    again = voc.read(out)
    assert again.classes == labels.classes
    assert [boxes(r) for r in again.split(None)] == [boxes(r) for r in labels.split(None)]
    assert {b["score"] for r in again.split(None) for b in r["annotations"]} == {0.25}


def test_write_back_keeps_line_endings_encoding_and_class_file(root, tmp_path):
    text = annotation("a.jpg", [obj("dog", 1, 1, 10, 8)]).replace("\n", "\r\n").replace("Drawn", "Caf\xe9")
    with open(os.path.join(root, "Annotations", "a.xml"), "wb") as f:
        f.write(b'<?xml version="1.0" encoding="ISO-8859-1"?>\r\n' + text.encode("latin-1"))
    write_text(os.path.join(root, "classes.txt"), "dog\ncat\nperson\n")
    labels = voc.read(root)
    a = labels.splits["train"][0]
    a["annotations"][0]["bbox"][3] = 9.0
    a["annotations"].append(make_box([1.0, 1.0, 4.0, 4.0], 2))
    out = str(tmp_path / "out")
    written = voc.write(labels, out)
    assert read_bytes(os.path.join(out, "classes.txt")) == read_bytes(os.path.join(root, "classes.txt"))
    assert not any(p.endswith("labels.txt") for p in written)
    data = read_bytes(os.path.join(out, "Annotations", "a.xml"))
    assert b"Caf\xe9" in data and b"<ymax>9</ymax>" in data and data.count(b"\n") == data.count(b"\r\n")
    again = voc.read(out, images=os.path.join(root, "JPEGImages"))
    assert boxes(again.splits["train"][0]) == [([0.0, 0.0, 10.0, 9.0], 0, 0), ([1.0, 1.0, 4.0, 4.0], 2, 0)]
    # A one-line file takes its new object on the same line.
    write_text(os.path.join(root, "Annotations", "a.xml"), "<annotation><filename>a.jpg</filename></annotation>")
    labels = voc.read(root)
    labels.splits["train"][0]["annotations"].append(make_box([1.0, 1.0, 4.0, 4.0], 1))
    voc.write(labels, out)
    data = read_bytes(os.path.join(out, "Annotations", "a.xml"))
    assert data.startswith(b"<annotation><filename>a.jpg</filename><object><name>cat</name>") and b"\n" not in data


def test_write_back_of_images_with_xml_beside(tmp_path):
    rf = tmp_path / "rf"
    for split, stem in (("train", "p"), ("valid", "q")):
        image(str(rf / split / f"{stem}.jpg"))
        write_text(str(rf / split / f"{stem}.xml"), annotation(f"{stem}.jpg", [obj("widget", 1, 1, 5, 5)]))
    labels = voc.read(str(rf))
    labels.splits["valid"][0]["annotations"][0]["bbox"][0] = 1.0
    out = tmp_path / "out"
    assert sorted(voc.write(labels, str(out))) == [str(out / "train" / "p.xml"), str(out / "valid" / "q.xml")]
    assert read_bytes(str(out / "train" / "p.xml")) == read_bytes(str(rf / "train" / "p.xml"))
    again = voc.read(str(out), images=str(rf))  # ?images=DIR holds one folder per split
    assert again.splits["valid"][0]["file_name"] == str(rf / "valid" / "q.jpg")
    assert boxes(again.splits["valid"][0]) == [([1.0, 0.0, 5.0, 5.0], 0, 0)]
