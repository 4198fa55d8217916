"""CVAT for images 1.1: one ``annotations.xml`` with ``<meta>`` labels and one ``<image>`` per image.

Read by CVAT's rules (``PATH``: the ``annotations.xml``, or the export's folder holding it):

- Classes: the ``<label>`` names of the ``<labels>`` under ``<meta>`` (``task``, ``project`` or
  ``job``), in their order, leaving out skeleton parts (a ``<parent>``) and labels whose ``<type>``
  can never be a box (tag, points, polyline, skeleton, cuboid, ellipse, mask); without ``<labels>``
  the classes are the shapes' labels in order of first appearance. A shape whose label is not a
  class is refused.
- ``<box xtl ytl xbr ybr>``: continuous pixel coordinates, Detectron2's XYXY_ABS as they are (no
  offset, no clipping); a coordinate that is not a number, or ``xbr < xtl``, is refused. A
  ``rotation`` (degrees clockwise about the box centre) other than 0 becomes the enclosing
  axis-aligned box of the turned rectangle, with one warning per dataset.
- ``<polygon points="x,y;x,y;...">``: its enclosing box. ``<polyline>``, ``<points>``, ``<mask>``,
  ``<tag>``, ``<cuboid>``, ``<ellipse>``, ``<skeleton>`` are left out with one warning per dataset;
  ``<track>`` (CVAT for video) is refused.
- A record's ``source`` names the xml, the ``<image>`` (its index among the root's children, its
  name) and the indices of the shapes read from it.
- A box keeps ``occluded`` (bool), ``attributes`` (``{name: text}`` of its ``<attribute>``
  children) and ``z_order``; its ``source`` names the element (its index in ``<image>``, its tag)
  and the ``source`` attribute as ``origin`` (manual, auto, semi-auto).
- Images: the ``name`` attribute, looked for as ``DIR/name``, ``DIR/subset/name`` and
  ``DIR/basename`` in ``?images=DIR``, else in ``images/`` beside the xml (CVAT's export layout)
  and the xml's folder. ``width``/``height`` are checked against the file's EXIF-corrected size:
  where they differ, the file's size is used, with one warning per dataset.
- Splits: the images' ``subset`` (images without one: ``default``, as CVAT names it); one split,
  ``all``, when no image has one.
- XML with entity declarations or external references (billion laughs, XXE) is refused
  (defusedxml), as is a root other than ``<annotations>`` (e.g. a Pascal VOC file).

Writing back (labels read from CVAT): the same file with only the changed shapes edited, byte for
byte elsewhere: a moved box gets its moved sides' ``xtl ytl xbr ybr`` anew (``%.2f``, as CVAT
writes them; a rotated one all four, and loses its ``rotation``), a relabelled shape a new
``label``, a polygon whose box changed becomes a ``<box>`` in its place (its other attributes and
children kept), removed shapes are cut out and new boxes are appended to their ``<image>``
(records without a ``source``, new images, are refused: write those as a fresh file). A box with
a ``score`` (a suggestion) is marked ``source="auto"``, CVAT's mark for automatic annotation,
and carries ``score`` as an XML attribute (CVAT's importer ignores attributes it does not know).
``attributes``, ``occluded`` and ``z_order`` are written for new boxes only. An unchanged file
is a byte-identical copy.
``predictions=True``, or labels of another format: a fresh ``annotations.xml`` (meta labels, one
``<image>`` per record, ``subset`` when the splits are not just ``all``, boxes ``source="auto"``
when scored), image names relative to the images' common folder (the original names for records
read from CVAT): read it back with ``?images=`` that folder. CVAT has no crowd flag: ``iscrowd``
(VOC's difficult) is not written.
"""

import math
import os
import re
import warnings
from collections import Counter
from typing import Dict, List, Optional
from xml.sax.saxutils import escape

from .records import (
    LabelFormatError,
    LabelSet,
    box_changed,
    finite_number,
    image_size,
    make_box,
    relative_to,
    write_bytes_or_copy,
)

__all__ = ["read", "write"]

_SHAPES = ("box", "polygon")
_NOT_BOX_TYPES = ("tag", "points", "polyline", "skeleton", "cuboid", "ellipse", "mask")
_CORNERS = ("xtl", "ytl", "xbr", "ybr")
# A start tag, and one attribute of it: exact for well-formed XML (a value cannot hold its quote).
_ATTRIBUTE = re.compile(rb"""(\s+)([^\s=/>]+)(\s*=\s*)("[^"]*"|'[^']*')""")
_START_TAG = re.compile(rb"""<[^\s/>]+(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>""")


def _parse(path: str, data: bytes):
    """The root ``<annotations>`` element, parsed with defusedxml."""
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as SafeElementTree
    from defusedxml import DefusedXmlException

    try:
        root = SafeElementTree.fromstring(data)
    except DefusedXmlException as e:
        raise LabelFormatError(
            f"{path}: refused: the XML declares entities or external references ({type(e).__name__}); "
            "expected a plain CVAT for images 1.1 export"
        ) from None
    except ParseError as e:
        raise LabelFormatError(f"{path}: not well-formed XML ({e})") from None
    if root.tag != "annotations":
        hint = " (a Pascal VOC file? name it voc:)" if root.tag == "annotation" else ""
        raise LabelFormatError(
            f"{path}: root element <{root.tag}>{hint}; expected CVAT for images 1.1 (<annotations> with <image>s)"
        )
    if root.find("track") is not None:
        raise LabelFormatError(
            f"{path}: <track> elements (CVAT for video); expected CVAT for images 1.1: export the task in that format"
        )
    return root


def _meta_classes(root) -> Optional[List[str]]:
    meta = root.find("meta")
    labels = next(meta.iter("labels"), None) if meta is not None else None
    if labels is None:
        return None
    names = []
    for label in labels.findall("label"):
        name = (label.findtext("name") or "").strip()
        if name and not (label.findtext("parent") or "").strip():
            if (label.findtext("type") or "").strip() not in _NOT_BOX_TYPES and name not in names:
                names.append(name)
    return names


def _number(element, key: str, where: str, default: Optional[float] = None) -> float:
    text = element.get(key)
    return default if text is None and default is not None else finite_number(text, where, key)


def _shape_box(element, where: str) -> tuple:
    """``([x0, y0, x1, y1], rotation)`` of a ``<box>`` or ``<polygon>``."""
    if element.tag == "polygon":
        try:
            pairs = [pair for pair in element.get("points", "").split(";") if pair.strip()]
            points = [[float(v) for v in pair.split(",")] for pair in pairs] or [[]]
        except ValueError:
            points = [[]]
        if not all(len(p) == 2 and all(map(math.isfinite, p)) for p in points):
            raise LabelFormatError(f"{where}: points={element.get('points')!r}; expected 'x,y;x,y;...'")
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return [min(xs), min(ys), max(xs), max(ys)], 0.0
    x0, y0, x1, y1 = (_number(element, key, where) for key in _CORNERS)
    if x1 < x0 or y1 < y0:
        raise LabelFormatError(f"{where}: xbr < xtl or ybr < ytl; expected the top-left corner first")
    rotation = _number(element, "rotation", where, default=0.0)
    if rotation % 360 == 0:
        return [x0, y0, x1, y1], 0.0
    turn = math.radians(rotation)
    cos, sin = abs(math.cos(turn)), abs(math.sin(turn))
    w, h = x1 - x0, y1 - y0
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, (w * cos + h * sin) / 2, (w * sin + h * cos) / 2
    return [cx - half_w, cy - half_h, cx + half_w, cy + half_h], rotation


def _find_image(name: str, subset: Optional[str], xml_path: str, images: Optional[str]) -> str:
    folder = os.path.dirname(xml_path)
    tried = []
    for root in [images] if images else [os.path.join(folder, "images"), folder]:
        for rel in (name, f"{subset}/{name}" if subset else None, os.path.basename(name)):
            candidate = os.path.normpath(os.path.join(root, rel)) if rel else None
            if candidate and candidate not in tried:
                if os.path.isfile(candidate):
                    return candidate
                tried.append(candidate)
    hint = "" if images else "; give the image folder with ?images=DIR"
    raise LabelFormatError(f'{xml_path}: <image name="{name}"> not found; looked for {", ".join(tried)}{hint}')


def read(path: str, images: Optional[str] = None) -> LabelSet:
    """Read a CVAT for images 1.1 ``annotations.xml`` (see the module doc)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):  # an export's folder
        path = os.path.join(path, "annotations.xml")
    if not os.path.isfile(path):
        raise LabelFormatError(f"{path}: not found; expected a CVAT for images 1.1 annotations.xml")
    with open(path, "rb") as f:
        root = _parse(path, f.read())
    classes = _meta_classes(root)
    from_meta = classes is not None
    classes = classes or []
    ids = {name: k for k, name in enumerate(classes)}
    image_elements = [(position, e) for position, e in enumerate(root) if e.tag == "image"]
    if not image_elements:
        raise LabelFormatError(f"{path}: no <image> elements; expected a CVAT for images 1.1 export")
    with_subsets = any(e.get("subset") for _, e in image_elements)
    ignored, rotated, resized = Counter(), [], []
    splits: Dict[str, List[dict]] = {}
    for position, image in image_elements:
        name, subset = image.get("name"), image.get("subset")
        if not name:
            raise LabelFormatError(f'{path}: <image id={image.get("id")!r}> has no name; expected name="path"')
        file_name = _find_image(name, subset, path, images)
        width, height = image_size(file_name)
        where = f'{path}: <image name="{name}">'
        if image.get("width") is not None or image.get("height") is not None:
            stated = (round(_number(image, "width", where)), round(_number(image, "height", where)))
            if stated != (width, height):
                resized.append(f"{name}: XML {stated[0]}x{stated[1]}, file {width}x{height}")
        boxes, elements = [], []
        for index, shape in enumerate(image):
            if shape.tag not in _SHAPES:
                ignored[shape.tag] += 1
                continue
            at = f"{where} <{shape.tag}> #{index}"
            label = shape.get("label")
            if label not in ids:
                if from_meta or not label:
                    raise LabelFormatError(f"{at}: label {label!r} is not among the <meta> labels {classes}")
                ids[label] = len(classes)
                classes.append(label)
            bbox, rotation = _shape_box(shape, at)
            if rotation:
                rotated.append(f"{name} <box> #{index}, rotation {rotation:g}")
            source = {"element": index, "tag": shape.tag, "origin": shape.get("source", "manual"), "rotation": rotation}
            attributes = {a.get("name"): a.text or "" for a in shape.findall("attribute")}
            occluded, z_order = shape.get("occluded") == "1", int(_number(shape, "z_order", at, default=0.0))
            boxes.append(make_box(bbox, ids[label], source, occluded=occluded, attributes=attributes, z_order=z_order))
            elements.append(index)
        record = {
            "file_name": file_name,
            "height": height,
            "width": width,
            "image_id": name,
            "annotations": boxes,
            "source": {"file": path, "index": position, "name": name, "elements": elements},
        }
        splits.setdefault(subset or ("default" if with_subsets else "all"), []).append(record)
    if ignored:
        what = ", ".join(f"{n} <{tag}>" for tag, n in sorted(ignored.items()))
        warnings.warn(f"{path}: left out {what}; the reader takes <box> and <polygon> (as its enclosing box)")
    if rotated:
        warnings.warn(f"{path}: {len(rotated)} rotated box(es) read as their enclosing box (first: {rotated[0]})")
    if resized:
        warnings.warn(
            f"{path}: {len(resized)} image(s) whose width/height differ from the file's; "
            f"the file's size is used (first: {resized[0]})"
        )
    return LabelSet("cvat", path, classes, splits, images)


def _attr(value) -> str:
    return '"' + escape(str(value), {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}) + '"'


def _box_element(box: dict, classes: List[str], indent: str, newline: str) -> str:
    """A new ``<box>`` element (no leading whitespace); ``indent`` is its own line's indent."""
    values = [("label", classes[int(box["category_id"])]), ("source", "auto" if "score" in box else "manual")]
    values += [("occluded", int(bool(box.get("occluded"))))]
    values += [(key, f"{float(v):.2f}") for key, v in zip(_CORNERS, box["bbox"])]
    values += [("z_order", int(box.get("z_order", 0)))]
    if "score" in box:
        values.append(("score", f"{float(box['score']):.4f}"))
    head = "<box" + "".join(f" {key}={_attr(v)}" for key, v in values)
    attributes = box.get("attributes") or {}
    if not attributes:
        return head + " />"
    inner = "".join(
        f"{newline}{indent}  <attribute name={_attr(k)}>{escape(str(v))}</attribute>" for k, v in attributes.items()
    )
    return f"{head}>{inner}{newline}{indent}</box>"


def _fresh(labels: LabelSet, predictions: bool) -> str:
    records = labels.split(None)
    by_split = [(split, r) for split, rs in labels.splits.items() for r in rs]
    named = [r for r in records if labels.format != "cvat" or "source" not in r]
    folders = [os.path.dirname(os.path.abspath(r["file_name"])) for r in named]
    common = os.path.commonpath(folders) if folders else ""
    subsets = list(labels.splits) != ["all"]
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>", "  <meta>"]
    lines += ["    <task>", f"      <size>{len(records)}</size>", "      <mode>annotation</mode>", "      <labels>"]
    for name in labels.classes:
        lines += ["        <label>", f"          <name>{escape(name)}</name>", "        </label>"]
    lines += ["      </labels>", "    </task>", "  </meta>"]
    for image_id, (split, record) in enumerate(by_split):
        if labels.format == "cvat" and "source" in record:
            name = record["source"]["name"]
        else:
            name = relative_to(os.path.abspath(record["file_name"]), common)
        subset = f" subset={_attr(split)}" if subsets else ""
        head = f"  <image id={_attr(image_id)} name={_attr(name)}{subset}"
        lines.append(f"{head} width={_attr(record['width'])} height={_attr(record['height'])}>")
        for box in record["annotations"]:
            box = dict(box, score=box.get("score", 1.0)) if predictions else box
            lines.append("    " + _box_element(box, labels.classes, "    ", "\n"))
        lines.append("  </image>")
    return "\n".join(lines + ["</annotations>", ""])


def _record_changed(record: dict) -> bool:
    boxes = record["annotations"]
    kept = sorted(b["source"]["element"] for b in boxes if "source" in b)
    return kept != sorted(record["source"]["elements"]) or len(kept) != len(boxes) or any(_edited(b) for b in boxes)


def _edited(box: dict) -> bool:
    return box_changed(box) or "score" in box


def _spans(data: bytes) -> List[dict]:
    """Byte spans of the root's child elements and of their children: ``{"tag", "attrs", "start",
    "tag_end", "end", "children"}`` (end: after the element's last byte). Run on bytes defusedxml
    has already accepted."""
    from xml.parsers import expat

    parser = expat.ParserCreate()
    top = {"children": []}
    stack = [top]

    def start(tag, attrs):
        node = {"tag": tag, "attrs": attrs, "start": parser.CurrentByteIndex, "children": []}
        if len(stack) <= 3:  # the document, <annotations>, <image>
            stack[-1]["children"].append(node)
        stack.append(node)

    def end(tag):
        node = stack.pop()
        node["tag_end"] = _START_TAG.match(data, node["start"]).end()
        empty = data[node["tag_end"] - 2 : node["tag_end"]] == b"/>"
        node["close"] = None if empty else parser.CurrentByteIndex  # where </tag> starts
        node["end"] = node["tag_end"] if empty else data.index(b">", parser.CurrentByteIndex) + 1

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.Parse(data, True)
    return top["children"][0]["children"]


def _indent_before(data: bytes, position: int) -> bytes:
    line_start = data.rfind(b"\n", 0, position) + 1
    return data[line_start:position] if not data[line_start:position].strip() else b""


def _blank_before(data: bytes, position: int) -> int:
    """Where the blank run before ``position`` starts, its line's newline included; ``position``
    when text precedes it on its line."""
    newline = data.rfind(b"\n", 0, position)
    if newline < 0 or data[newline + 1 : position].strip():
        return position
    return newline - 1 if data[newline - 1 : newline] == b"\r" else newline


def _edit_start_tag(tag: bytes, changes: Dict[str, Optional[str]], encoding: str, rename=None, at=None) -> bytes:
    """``tag`` with attributes set (``changes[name] = value``) or removed (``None``); untouched
    attributes stay byte for byte. New corners go where attribute ``at`` was, the rest at the end."""
    name_end = re.match(rb"<[^\s/>]+", tag).end()
    parts, position = [], name_end
    while (match := _ATTRIBUTE.match(tag, position)) is not None:
        parts.append(match)
        position = match.end()
    present = {m.group(2).decode(encoding) for m in parts}
    new = {k: v for k, v in changes.items() if k not in present and v is not None}
    corners = {k: new.pop(k) for k in _CORNERS if k in new and at in present}

    def text(values: dict) -> bytes:
        return "".join(f" {k}={_attr(v)}" for k, v in values.items()).encode(encoding, "xmlcharrefreplace")

    out = [rename or tag[:name_end]]
    for match in parts:
        key = match.group(2).decode(encoding)
        if key not in changes:
            out.append(match.group(0))
        elif changes[key] is not None:
            value = _attr(changes[key]).encode(encoding, "xmlcharrefreplace")
            out.append(match.group(1) + match.group(2) + match.group(3) + value)
        if key == at:
            out.append(text(corners))
    return b"".join(out) + text(new) + tag[position:]


def _record_edits(record: dict, image: dict, data: bytes, classes: List[str], path: str, encoding: str) -> list:
    """``(start, end, new bytes)`` replacements that put one record back into its ``<image>``."""
    source = record["source"]
    if image["tag"] != "image" or image["attrs"].get("name") != source["name"]:
        raise LabelFormatError(f'{path}: changed since it was read (<image name="{source["name"]}"> moved)')
    children, edits = image["children"], []
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    boxes = [b for b in record["annotations"] if "source" in b]
    read_tags = {b["source"]["element"]: b["source"]["tag"] for b in boxes}
    for index in source["elements"]:
        tag = children[index]["tag"] if index < len(children) else None
        if tag not in _SHAPES or read_tags.get(index, tag) != tag:
            raise LabelFormatError(f'{path}: changed since it was read (<image name="{source["name"]}"> shapes)')
    kept = {b["source"]["element"] for b in boxes}
    for index in source["elements"]:
        if index not in kept:
            edits.append((_blank_before(data, children[index]["start"]), children[index]["end"], b""))
    for box in filter(_edited, boxes):
        child = children[box["source"]["element"]]
        changes, rename, at = {}, None, None
        if int(box["category_id"]) != box["source"]["category_id"]:
            changes["label"] = classes[int(box["category_id"])]
        moved = [abs(float(a) - float(b)) > 1e-6 for a, b in zip(box["bbox"], box["source"]["bbox"])]
        if any(moved):
            whole = child["tag"] == "polygon" or box["source"]["rotation"]  # the box read is not the XML's
            corners = zip(_CORNERS, box["bbox"], moved)
            changes.update({key: f"{float(v):.2f}" for key, v, m in corners if m or whole})
            if child["tag"] == "polygon":
                changes, rename, at = {"points": None, **changes}, b"<box", "points"
                if child["close"] is not None:
                    edits.append((child["close"], child["end"], b"</box>"))
            elif box["source"]["rotation"]:
                changes["rotation"] = None
        if "score" in box:
            changes.update(source="auto", score=f"{float(box['score']):.4f}")
        tag = _edit_start_tag(data[child["start"] : child["tag_end"]], changes, encoding, rename, at)
        edits.append((child["start"], child["tag_end"], tag))
    new = [b for b in record["annotations"] if "source" not in b]
    if new:
        image_indent = _indent_before(data, image["start"]).decode(encoding)
        first = children[0]["start"] if children else None
        indent = _indent_before(data, first).decode(encoding) if children else image_indent + "  "
        nl = newline.decode()
        text = "".join(nl + indent + _box_element(b, classes, indent, nl) for b in new)
        text = text.encode(encoding, "xmlcharrefreplace")
        closing = newline + image_indent.encode(encoding)
        if image["close"] is None:  # <image ... />: opened, then closed on a line of its own
            edits.append((image["tag_end"] - 2, image["tag_end"], b">" + text + closing + b"</image>"))
        else:  # after the last child, before the blank run that leads to </image>
            position = _blank_before(data, image["close"])
            edits.append((position, position, text if position != image["close"] else text + closing))
    return edits


def _write_back(labels: LabelSet) -> Optional[bytes]:
    """The source file with the records' changes applied; None when nothing changed."""
    records = labels.split(None)
    changed = [r for r in records if "source" in r and _record_changed(r)]
    if not changed and all("source" in r for r in records):
        return None
    if any("source" not in r for r in records):
        raise LabelFormatError(
            f"{labels.path}: a write-back cannot add images; write the new records as a fresh CVAT file"
        )
    with open(labels.path, "rb") as f:
        data = f.read()
    _parse(labels.path, data)
    declared = re.match(rb"""(?:\xef\xbb\xbf)?<\?xml[^>]*encoding\s*=\s*["']([^"']+)""", data)
    encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    images = _spans(data)
    edits = []
    for record in changed:
        index = record["source"]["index"]
        if index >= len(images):
            raise LabelFormatError(f"{labels.path}: changed since it was read (fewer elements)")
        edits += _record_edits(record, images[index], data, labels.classes, labels.path, encoding)
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        data = data[:start] + text + data[end:]
    return data


def write(labels: LabelSet, out_dir: str, predictions: bool = False) -> List[str]:
    """Write ``labels`` as CVAT for images 1.1 under ``out_dir`` (see the module doc): a write-back
    to ``out_dir/<the source's file name>``, else a fresh ``out_dir/annotations.xml``. Everything
    is checked and built in memory before the file is written."""
    out_dir = os.path.abspath(out_dir)
    if labels.format == "cvat" and not predictions:
        target = os.path.join(out_dir, os.path.basename(labels.path))
        return [write_bytes_or_copy(labels.path, target, _write_back(labels))]
    target = os.path.join(out_dir, "annotations.xml")
    text = _fresh(labels, predictions)
    os.makedirs(out_dir, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return [target]
