"""CVAT for images 1.1 (gfocal_runtime.formats.cvat): CVAT's rules on a drawn export, the write-back
in place (only the edited elements change), predictions and conversions as fresh files, and one
clear line for each kind of bad input."""

import copy
import os
import warnings
from xml.etree import ElementTree

import pytest
from formats_testing import draw_wide_image as _image
from formats_testing import write_text as _text

from gfocal_runtime.formats import LabelFormatError, LabelSet, cvat, detect_format, make_box, read_labels, write_labels

META = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>pets</name>
      <labels>
        <label>
          <name>cat</name>
          <color>#ff0000</color>
          <type>any</type>
          <attributes>
            <attribute>
              <name>pose</name>
              <input_type>select</input_type>
            </attribute>
          </attributes>
        </label>
        <label>
          <name>scene</name>
          <type>tag</type>
        </label>
        <label>
          <name>dog</name>
          <type>rectangle</type>
        </label>
        <label>
          <name>nose</name>
          <type>points</type>
          <parent>dog</parent>
        </label>
      </labels>
    </task>
    <dumped>2024-01-01 00:00:00</dumped>
  </meta>
"""

IMAGES = """  <image id="0" name="a.jpg" width="40" height="20">
    <box label="cat" source="manual" occluded="1" xtl="2.50" ytl="3.00" xbr="20.00" ybr="15.25" z_order="2">
      <attribute name="pose">sitting</attribute>
    </box>
    <polygon label="dog" source="semi-auto" occluded="0" points="30.00,2.00;38.50,10.00;33.00,18.00" z_order="0">
      <attribute name="tail">up &amp; down</attribute>
    </polygon>
    <points label="dog" source="manual" occluded="0" points="1.00,1.00" z_order="0">
    </points>
    <tag label="scene" source="manual">
    </tag>
  </image>
  <image id="1" name="sub/b.png" width="20" height="16">
    <box label="dog" source="manual" xtl="2.00" ytl="4.00" xbr="10.00" ybr="8.00" z_order="0" rotation="90.00">
    </box>
    <polyline label="cat" source="manual" occluded="0" points="1.00,1.00;5.00,5.00" z_order="0">
    </polyline>
  </image>
  <image id="2" name="c.jpg" width="20" height="40">
    <box label="dog" source="auto" xtl="1.00" ytl="2.00" xbr="11.00" ybr="32.00" z_order="0" rotation="180.00">
    </box>
  </image>
  <image id="3" name="d.png" width="20" height="16">
  </image>
</annotations>
"""


def _export(root, images=IMAGES):
    """CVAT's export layout: annotations.xml with images/ beside it; c.jpg carries EXIF orientation 6."""
    _image(str(root / "images/a.jpg"))
    _image(str(root / "images/sub/b.png"), size=(20, 16))
    _image(str(root / "images/c.jpg"), orientation=6)  # stored 40 x 20, shown 20 x 40
    _image(str(root / "images/d.png"), size=(20, 16))
    _text(root / "annotations.xml", META + images)
    return str(root / "annotations.xml")


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _read(path, images=None):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        labels = cvat.read(path, images)
    return labels, [str(w.message) for w in caught]


def test_reads_cvat_export_exactly(tmp_path):
    path = _export(tmp_path)
    labels, messages = _read(path)
    assert labels.format == "cvat" and labels.classes == ["cat", "dog"]  # no tag label, no skeleton part
    (records,) = labels.splits.values()
    assert list(labels.splits) == ["all"]
    a, b, c, d = records
    assert [r["image_id"] for r in records] == ["a.jpg", "sub/b.png", "c.jpg", "d.png"]
    assert a["file_name"] == str(tmp_path / "images/a.jpg") and (a["width"], a["height"]) == (40, 20)
    box, polygon = a["annotations"]
    assert box["bbox"] == [2.5, 3.0, 20.0, 15.25] and box["category_id"] == 0  # continuous pixels, no offset
    assert box["occluded"] is True and box["attributes"] == {"pose": "sitting"} and box["z_order"] == 2
    assert box["source"]["element"] == 0 and box["source"]["origin"] == "manual"
    assert polygon["bbox"] == [30.0, 2.0, 38.5, 18.0] and polygon["category_id"] == 1
    assert polygon["occluded"] is False and polygon["attributes"] == {"tail": "up & down"}
    assert polygon["source"]["tag"] == "polygon" and polygon["source"]["origin"] == "semi-auto"
    (rotated,) = b["annotations"]  # 8 x 4 about (6, 6), turned a quarter: 4 x 8
    assert rotated["bbox"] == pytest.approx([4.0, 2.0, 8.0, 10.0])
    assert (c["width"], c["height"]) == (20, 40)  # EXIF-corrected, agrees with the XML: no warning
    assert c["annotations"][0]["bbox"] == pytest.approx([1.0, 2.0, 11.0, 32.0])  # half a turn: the same box
    assert d["annotations"] == [] and d["source"]["elements"] == []
    assert all(r["annotations"][i]["iscrowd"] == 0 for r in records for i in range(len(r["annotations"])))
    assert len(messages) == 2  # one per dataset, however many shapes
    assert "1 <points>, 1 <polyline>, 1 <tag>" in messages[0] and path in messages[0]
    assert "2 rotated box(es)" in messages[1] and "sub/b.png <box> #0, rotation 90" in messages[1]


def test_spec_detection_and_image_folder(tmp_path):
    """A bare path is detected as cvat; ?images= is searched as DIR/name, then DIR/basename."""
    _export(tmp_path / "job")
    os.rename(tmp_path / "job/images", tmp_path / "pictures")
    os.replace(tmp_path / "pictures/sub/b.png", tmp_path / "pictures/b.png")  # found by its basename
    xml = str(tmp_path / "job/annotations.xml")
    assert detect_format(xml) == "cvat"
    with pytest.raises(LabelFormatError, match=r"<image name=\"a.jpg\"> not found; looked for .*give the image"):
        read_labels(xml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = read_labels(f"{xml}?images={tmp_path / 'pictures'}")
    assert labels.images == str(tmp_path / "pictures")
    assert [r["file_name"] for r in labels.split(None)][:2] == [
        str(tmp_path / "pictures/a.jpg"),
        str(tmp_path / "pictures/b.png"),
    ]


def test_subsets_project_meta_and_sizes(tmp_path):
    """Project exports keep labels under meta/project; images' subset attribute names the split
    (images/<subset>/name in the export), images without one go to CVAT's 'default'; an XML size
    that disagrees with the file gives one warning and the file's size."""
    meta = (
        "<annotations><version>1.1</version><meta><project><labels>"
        "<label><name>b</name></label><label><name>a</name></label></labels></project></meta>"
    )
    _image(str(tmp_path / "images/Train/x.png"), size=(20, 16))
    _image(str(tmp_path / "images/Validation/y.png"), size=(20, 16))
    _image(str(tmp_path / "images/z.png"), size=(20, 16))
    body = (
        '<image id="0" name="x.png" subset="Train" width="20" height="16">'
        '<box label="a" xtl="1" ytl="1" xbr="2" ybr="2"/></image>'
        '<image id="1" name="y.png" subset="Validation" width="30" height="30"/>'
        '<image id="2" name="z.png" width="16" height="20"/></annotations>'
    )
    _text(tmp_path / "annotations.xml", meta + body)
    labels, messages = _read(str(tmp_path / "annotations.xml"))
    assert labels.classes == ["b", "a"] and list(labels.splits) == ["Train", "Validation", "default"]
    assert labels.splits["Train"][0]["annotations"][0]["category_id"] == 1
    assert labels.splits["Train"][0]["annotations"][0]["z_order"] == 0
    assert [(r["width"], r["height"]) for r in labels.split(None)] == [(20, 16)] * 3
    (message,) = messages
    assert "2 image(s) whose width/height differ" in message and "y.png: XML 30x30, file 20x16" in message
    with pytest.warns(UserWarning, match="differ from the file's"):
        validation = read_labels(f"cvat:{tmp_path / 'annotations.xml'}#Validation").split("Validation")
    assert validation[0]["image_id"] == "y.png"


def test_without_meta_labels_classes_in_order_of_appearance(tmp_path):
    """No <labels>: classes in order of appearance; the export's folder names its annotations.xml;
    a polygon's trailing ';' is no point."""
    _image(str(tmp_path / "a.png"), size=(20, 16))
    _text(
        tmp_path / "annotations.xml",
        '<annotations><image id="0" name="a.png"><box label="z" xtl="0" ytl="0" xbr="1" ybr="1"/>'
        '<polygon label="y" points="1,1;2,2;1,3;"/><box label="z" xtl="0" ytl="0" xbr="3" ybr="3"/>'
        "</image></annotations>",
    )
    labels = read_labels(f"cvat:{tmp_path}")
    assert labels.classes == ["z", "y"] and labels.path == str(tmp_path / "annotations.xml")
    assert [b["category_id"] for b in labels.split(None)[0]["annotations"]] == [0, 1, 0]
    assert labels.split(None)[0]["annotations"][1]["bbox"] == [1.0, 1.0, 2.0, 3.0]
    os.makedirs(tmp_path / "empty")
    with pytest.raises(LabelFormatError, match="empty/annotations.xml: not found; expected a CVAT"):
        read_labels(f"cvat:{tmp_path / 'empty'}")


XXE = """<?xml version="1.0"?>
<!DOCTYPE annotations [<!ENTITY secret SYSTEM "file:///etc/hostname">]>
<annotations><image id="0" name="a.jpg"><box label="&secret;" xtl="1" ytl="1" xbr="2" ybr="2"/></image></annotations>
"""
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE annotations [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>
<annotations><image id="0" name="a.jpg">&b;</image></annotations>
"""
VOC = "<annotation><filename>a.jpg</filename><object><name>cat</name></object></annotation>"
ONE = (
    "<annotations><meta><task><labels><label><name>cat</name></label></labels></task></meta>"
    '<image id="0" name="a.jpg">{}</image></annotations>'
)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            ONE.format('<box label="dog" xtl="1" ytl="1" xbr="2" ybr="2"/>'),
            "<image name=\"a.jpg\"> <box> #0: label 'dog' is not among the <meta> labels ['cat']",
        ),
        (ONE.format('<box xtl="1" ytl="1" xbr="2" ybr="2"/>'), "<box> #0: label None is not among"),
        (ONE.format('<polygon label="cat" points="1,1;2"/>'), "<polygon> #0: points='1,1;2'; expected 'x,y;x,y;...'"),
        (ONE.format('<box label="cat" xtl="1" ytl="a" xbr="2" ybr="2"/>'), "<box> #0: ytl 'a' is not a number"),
        (ONE.format('<box label="cat" xtl="1" ytl="1" xbr="nan" ybr="2"/>'), "<box> #0: xbr 'nan' is not a number"),
        (ONE.format('<box label="cat" xtl="3" ytl="1" xbr="2" ybr="2"/>'), "xbr < xtl or ybr < ytl"),
        (ONE.format("").replace('name="a.jpg"', 'name="gone.jpg"'), '<image name="gone.jpg"> not found; looked for'),
        (ONE.format("").replace(' name="a.jpg"', ""), "<image id='0'> has no name"),
        (BILLION_LAUGHS, "refused: the XML declares entities or external references (EntitiesForbidden)"),
        (XXE, "refused: the XML declares entities or external references (EntitiesForbidden)"),
        (VOC, "root element <annotation> (a Pascal VOC file? name it voc:)"),
        (
            '<annotations><track id="0" label="cat"><box frame="0"/></track></annotations>',
            "<track> elements (CVAT for video)",
        ),
        ("<annotations><image", "not well-formed XML"),
        ("<annotations><meta/></annotations>", "no <image> elements"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, text, expected):
    _image(str(tmp_path / "images/a.jpg"))
    _text(tmp_path / "annotations.xml", text)
    with pytest.raises(LabelFormatError) as error:
        read_labels(f"cvat:{tmp_path / 'annotations.xml'}")
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "annotations.xml"))
    assert expected in message


def _boxes(records):
    """What a record says about its boxes, ``source`` (and a suggestion's score) left out."""
    return [
        [
            (b["bbox"], b["category_id"], b.get("occluded", False), b.get("attributes", {}), b.get("z_order", 0))
            for b in r["annotations"]
        ]
        for r in records
    ]


def test_unchanged_write_is_a_byte_identical_copy_and_reads_back_the_same(tmp_path):
    path = _export(tmp_path / "src")
    labels, _ = _read(path)
    (out,) = write_labels(labels, str(tmp_path / "out"))
    assert out == str(tmp_path / "out/annotations.xml")
    assert _bytes(out) == _bytes(path)
    again, _ = _read(out, images=str(tmp_path / "src/images"))
    assert again.classes == labels.classes and list(again.splits) == list(labels.splits)
    for record in again.split(None):
        assert record["source"].pop("file") == out
    for record in labels.split(None):
        assert record["source"].pop("file") == path
    assert again.splits == labels.splits  # boxes and their sources included


def test_write_back_edits_only_the_changed_elements(tmp_path):
    path = _export(tmp_path / "src")
    labels, _ = _read(path)
    a, b, c, d = copy.deepcopy(labels.splits["all"])
    a["annotations"][0]["bbox"][2] = 31.5  # a moved side
    a["annotations"][1]["category_id"] = 0  # a relabelled polygon keeps its points
    b["annotations"][0]["bbox"] = [3.0, 2.0, 9.0, 10.0]  # a moved rotated box loses its rotation
    c["annotations"] = []  # a removed box
    d["annotations"].append(make_box([1, 2, 3, 4], 1, score=0.9))  # a suggestion
    d["annotations"].append(make_box([5, 6, 7, 8], 0, occluded=True, attributes={"pose": "lying"}))
    edited = LabelSet("cvat", labels.path, labels.classes, {"all": [a, b, c, d]}, labels.images)
    (out,) = write_labels(edited, str(tmp_path / "out"))
    old, new = _bytes(path).decode().splitlines(), _bytes(out).decode().splitlines()
    expected = list(old)
    line = next(i for i, x in enumerate(old) if 'xtl="2.50"' in x)
    expected[line] = expected[line].replace('xbr="20.00"', 'xbr="31.50"')
    line = next(i for i, x in enumerate(old) if "<polygon" in x)
    expected[line] = expected[line].replace('label="dog"', 'label="cat"')
    line = next(i for i, x in enumerate(old) if 'rotation="90.00"' in x)
    expected[line] = '    <box label="dog" source="manual" xtl="3.00" ytl="2.00" xbr="9.00" ybr="10.00" z_order="0">'
    line = next(i for i, x in enumerate(old) if 'rotation="180.00"' in x)
    del expected[line : line + 2]
    line = next(i for i, x in enumerate(expected) if 'name="d.png"' in x)
    expected[line + 1 : line + 1] = [
        '    <box label="dog" source="auto" occluded="0" xtl="1.00" ytl="2.00" xbr="3.00" ybr="4.00" z_order="0" '
        'score="0.9000" />',
        '    <box label="cat" source="manual" occluded="1" xtl="5.00" ytl="6.00" xbr="7.00" ybr="8.00" z_order="0">',
        '      <attribute name="pose">lying</attribute>',
        "    </box>",
    ]
    assert new == expected
    again, _ = _read(out, images=str(tmp_path / "src/images"))
    assert _boxes(again.splits["all"]) == _boxes([a, b, c, d])
    assert [r["file_name"] for r in again.splits["all"]] == [r["file_name"] for r in (a, b, c, d)]


def test_a_moved_polygon_becomes_a_box_in_its_place(tmp_path):
    path = _export(tmp_path / "src")
    labels, _ = _read(path)
    polygon = labels.splits["all"][0]["annotations"][1]
    polygon["bbox"] = [30.0, 2.0, 38.0, 18.0]
    polygon["score"] = 0.25  # a suggestion: marked automatic
    (out,) = write_labels(labels, str(tmp_path / "out"))
    text = _bytes(out).decode()
    assert (
        '    <box label="dog" source="auto" occluded="0" xtl="30.00" ytl="2.00" xbr="38.00" ybr="18.00" z_order="0" '
        'score="0.2500">\n'
        '      <attribute name="tail">up &amp; down</attribute>\n'
        "    </box>\n"
    ) in text
    assert "<polygon" not in text
    again, _ = _read(out, images=str(tmp_path / "src/images"))
    box = again.splits["all"][0]["annotations"][1]
    assert box["bbox"] == [30.0, 2.0, 38.0, 18.0] and box["attributes"] == {"tail": "up & down"}
    assert box["source"]["tag"] == "box" and box["source"]["origin"] == "auto"


def test_write_back_of_a_compact_file(tmp_path):
    """Self-closing elements, single quotes, CRLF and no indentation: a moved box keeps its
    neighbours, a removed inline box is cut out alone, a new box opens the self-closing image."""
    _image(str(tmp_path / "a.png"), size=(20, 16))
    _image(str(tmp_path / "b.png"), size=(20, 16))
    gone = "<box label='p' xtl='0' ytl='0' xbr='1' ybr='1' />"
    text = (
        "<?xml version='1.0' encoding='UTF-8'?>\r\n<annotations><meta><job><labels><label><name>p</name></label>"
        "</labels></job></meta>\r\n<image id='0' name='a.png'>"
        f"<box label='p' xtl='1' ytl='1' xbr='4' ybr='4' group_id='3'/>{gone}"
        "</image>\r\n<image id='1' name='b.png'/>\r\n</annotations>\r\n"
    )
    _text(tmp_path / "ann.xml", text)
    labels, _ = _read(str(tmp_path / "ann.xml"))
    a, b = labels.splits["all"]
    a["annotations"][0]["bbox"][3] = 5.0
    del a["annotations"][1]
    b["annotations"].append(make_box([2, 2, 6, 6], 0))
    (out,) = write_labels(labels, str(tmp_path / "out"))
    expected = text.replace("ybr='4'", 'ybr="5.00"').replace(gone, "")
    assert _bytes(out).decode() == expected.replace(
        "<image id='1' name='b.png'/>",
        "<image id='1' name='b.png'>\r\n  "
        '<box label="p" source="manual" occluded="0" xtl="2.00" ytl="2.00" xbr="6.00" ybr="6.00" z_order="0" />'
        "\r\n</image>",
    )
    again, _ = _read(out, images=str(tmp_path))
    assert [bx["bbox"] for r in again.split(None) for bx in r["annotations"]] == [[1, 1, 4, 5], [2, 2, 6, 6]]


def test_nothing_is_written_when_the_source_changed_since_it_was_read(tmp_path):
    path = _export(tmp_path / "src")
    labels, _ = _read(path)
    labels.splits["all"][1]["annotations"][0]["category_id"] = 0
    _text(tmp_path / "src/annotations.xml", META + IMAGES.split('  <image id="1"')[0] + "</annotations>\n")
    with pytest.raises(LabelFormatError, match="changed since it was read"):
        write_labels(labels, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")
    labels.splits["all"].append({"file_name": str(tmp_path / "new.png"), "height": 1, "width": 1, "annotations": []})
    with pytest.raises(LabelFormatError, match="a write-back cannot add images"):
        write_labels(labels, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_predictions_are_a_fresh_file_of_automatic_boxes(tmp_path):
    path = _export(tmp_path / "src")
    labels, _ = _read(path)
    for record in labels.split(None):
        record["annotations"] = [make_box([1.234, 2, 10.5, 12], 1, score=0.875)]
    (out,) = write_labels(labels, str(tmp_path / "pred"), predictions=True)
    assert out == str(tmp_path / "pred/annotations.xml")
    root = ElementTree.parse(out).getroot()
    assert root.findtext("version") == "1.1"
    assert [x.findtext("name") for x in root.iter("label")] == ["cat", "dog"]
    images = root.findall("image")
    assert [i.get("name") for i in images] == ["a.jpg", "sub/b.png", "c.jpg", "d.png"]  # the task's own names
    assert [(i.get("width"), i.get("height")) for i in images][2] == ("20", "40")
    assert all(i.get("subset") is None for i in images)
    box = images[0].find("box")
    assert box.attrib == {
        "label": "dog",
        "source": "auto",
        "occluded": "0",
        "xtl": "1.23",
        "ytl": "2.00",
        "xbr": "10.50",
        "ybr": "12.00",
        "z_order": "0",
        "score": "0.8750",
    }
    again, messages = _read(out, images=str(tmp_path / "src/images"))
    assert messages == [] and again.classes == ["cat", "dog"]
    assert [b["bbox"] for r in again.split(None) for b in r["annotations"]] == [[1.23, 2.0, 10.5, 12.0]] * 4


def test_conversion_writes_names_relative_to_the_common_image_folder(tmp_path):
    _image(str(tmp_path / "data/x/a.png"), size=(20, 16))
    _image(str(tmp_path / "data/y/b.png"), size=(20, 16))

    def record(name, boxes):
        path = str(tmp_path / "data" / name)
        return {"file_name": path, "height": 16, "width": 20, "image_id": name, "annotations": boxes}

    splits = {
        "train": [record("x/a.png", [make_box([0.5, 1.25, 10.126, 8], 1, iscrowd=1)])],
        "val": [record("y/b.png", [])],
    }
    coco = LabelSet("coco", str(tmp_path / "ann.json"), ["bird", "cat & dog"], splits)
    (out,) = write_labels(coco, str(tmp_path / "out"), fmt="cvat")
    images = ElementTree.parse(out).getroot().findall("image")
    assert [(i.get("name"), i.get("subset")) for i in images] == [("x/a.png", "train"), ("y/b.png", "val")]
    assert images[0].find("box").get("source") == "manual"
    again, _ = _read(out, images=str(tmp_path / "data"))
    assert again.classes == ["bird", "cat & dog"] and list(again.splits) == ["train", "val"]
    (box,) = again.splits["train"][0]["annotations"]
    assert box["bbox"] == [0.5, 1.25, 10.13, 8.0] and box["category_id"] == 1
    assert again.splits["val"][0]["annotations"] == []
