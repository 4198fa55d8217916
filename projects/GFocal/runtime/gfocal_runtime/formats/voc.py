"""Pascal VOC labels: one ``<annotation>`` XML per image.

Layouts (``voc:PATH``):

- A VOC root: ``Annotations/ID.xml``, images in ``JPEGImages/``, splits listed in
  ``ImageSets/Main/SPLIT.txt`` (one id per line). A list whose lines are ``ID  1|0|-1`` is a
  per-class list of the classification task (``cat_train.txt``) and is not a split. Without split
  lists, one split ``all`` holds every ``Annotations/*.xml``.
- XML beside the images: a folder of images each with a same-stem ``.xml`` (split ``all``), or a
  folder of such folders, one split each (Roboflow's ``train/``, ``valid/``, ``test/``); or one
  ``.xml`` file.

An image is ``<filename>`` in the image folder (``?images=DIR``, else ``JPEGImages/`` or the XML's
folder; with split folders, ``DIR/SPLIT`` when it exists), else the id with any image extension
there, else ``<path>`` when that file exists. Its size is the image file's (EXIF-corrected):
``<size>`` is often wrong in VOC files, so a ``<size>`` that disagrees is not trusted, with one
warning per dataset.

Classes: VOC files carry no class list. A ``labels.txt`` or ``classes.txt`` (one name per line)
or CVAT's ``labelmap.txt`` (``name:color:parts:actions``; ``background`` skipped) at the root
gives them, in that order of preference, and a name outside it is refused. Otherwise the names
in order of first appearance over the splits' XML files sorted by path, except that names which
are all Pascal VOC's own classes take VOC's canonical order (Detectron2's ``CLASS_NAMES``),
keeping only those that occur.

Pixels: VOC coordinates are 1-based inclusive pixel indices, so ``xmin=1, xmax=W`` covers the
image. As Detectron2's ``load_voc_instances``, reading subtracts 1 from ``xmin`` and ``ymin``
only: ``bbox = [xmin - 1, ymin - 1, xmax, ymax]``, the convention its VOC evaluator (which adds
1 back) expects; writing adds the 1 back. ``xmin == xmax`` is a one-pixel box; ``xmax < xmin``
(or ``ymax < ymin``), a missing ``<bndbox>`` or ``<name>`` or a coordinate that is not a number
is refused with the file and object number (1-based).

An object's ``difficult`` is kept as ``iscrowd`` 1 (COCO AP ignores it, as VOC AP does);
``pose``, ``truncated`` and ``difficult`` go to the box's ``attributes``, ``occluded`` to its
``occluded``, and a ``<score>`` (written by :func:`write` for predictions and suggestions) to
its ``score``. XML with entity declarations (entity expansion, external entities) is refused.

Writing: a write-back mirrors the source layout under ``out_dir``. An XML none of whose boxes
changed is a byte-identical copy; a changed one is the source text with only the changed
``<name>`` and ``<bndbox>`` values replaced (a coordinate keeps integer or the source's decimals),
removed objects cut out and new ones appended, every other tag kept. Split lists and the class
file are copied when unchanged; per-class lists are not written. A conversion from another
format or ``predictions=True`` writes the standard layout: ``Annotations/STEM.xml`` (``<filename>``
and ``<path>`` name the image, integer pixels), ``ImageSets/Main/SPLIT.txt``. Objects with a
``score`` carry ``<score>``, beside the ``pose``, ``truncated`` and ``difficult`` that Detectron2's
VOC evaluator requires. A ``labels.txt`` is written whenever reading the files back would not
otherwise give ``labels.classes`` in order.
"""

import logging
import math
import os
import re
import shutil
from typing import Dict, List, Optional, Tuple
from xml.parsers import expat
from xml.sax.saxutils import escape

from .records import IMAGE_EXTENSIONS, LabelFormatError, LabelSet, box_changed, finite_number, image_size, make_box

__all__ = ["read", "write", "VOC_CLASSES"]

logger = logging.getLogger(__name__)

# Detectron2's detectron2.data.datasets.pascal_voc.CLASS_NAMES, in its order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
_CLASS_FILES = ("labels.txt", "classes.txt", "labelmap.txt")
_COORDS = ("xmin", "ymin", "xmax", "ymax")
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = ("1", "true", "yes")


# Reading


def _load_xml(path: str):
    """The ``<annotation>`` root of a VOC file, parsed with defusedxml."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, parse

    try:
        root = parse(path).getroot()
    except DefusedXmlException as e:
        raise LabelFormatError(
            f"{path}: refused ({type(e).__name__}): declares entities or external references; a VOC file has none"
        ) from None
    except ParseError as e:
        raise LabelFormatError(f"{path}: not well-formed XML ({e})") from None
    if root.tag != "annotation":
        raise LabelFormatError(f"{path}: root element <{root.tag}>; expected <annotation> (a Pascal VOC file)")
    return root


def _objects(root, path: str) -> List[dict]:
    """The objects of one VOC file: name, VOC coordinates and the extras a box keeps."""
    objects = []
    for index, obj in enumerate(root.findall("object")):
        where = f"{path}: object {index + 1}"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise LabelFormatError(f"{where}: no <name>; expected <name>CLASS</name>")
        where += f" ({name!r})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise LabelFormatError(f"{where}: no <bndbox>; expected <bndbox> with xmin, ymin, xmax, ymax")
        coords = []
        for tag in _COORDS:
            coords.append(finite_number(bndbox.findtext(tag), where, f"<{tag}>"))
        xmin, ymin, xmax, ymax = coords
        if xmax < xmin or ymax < ymin:
            raise LabelFormatError(
                f"{where}: <bndbox> xmin={xmin:g} ymin={ymin:g} xmax={xmax:g} ymax={ymax:g}; "
                "expected xmin <= xmax and ymin <= ymax"
            )
        extra = {}
        attributes = {}
        for tag in ("pose", "truncated", "difficult"):
            text = obj.findtext(tag)
            if text is not None:
                text = text.strip()
                attributes[tag] = int(text) if _INTEGER.fullmatch(text) and tag != "pose" else text
        if attributes:
            extra["attributes"] = attributes
        if obj.findtext("occluded") is not None:
            extra["occluded"] = obj.findtext("occluded").strip().lower() in _TRUE
        score = obj.findtext("score")
        if score is not None:
            try:
                extra["score"] = float(score)
            except ValueError:
                raise LabelFormatError(f"{where}: <score> {score!r} is not a number") from None
        iscrowd = int(str(attributes.get("difficult", "0")).lower() in _TRUE)
        objects.append({"name": name, "bbox": [xmin - 1, ymin - 1, xmax, ymax], "iscrowd": iscrowd, "extra": extra})
    return objects


def _split_ids(path: str) -> Optional[List[Tuple[int, str]]]:
    """``[(line, id)]`` of a split list; None for a per-class list (``ID  1|0|-1`` lines)."""
    with open(path, encoding="utf-8-sig") as f:
        lines = [(n + 1, line.split()) for n, line in enumerate(f.read().splitlines()) if line.strip()]
    if lines and len(lines[0][1]) == 2 and lines[0][1][1] in ("1", "0", "-1"):
        return None
    for number, parts in lines:
        if len(parts) != 1:
            raise LabelFormatError(f"{path}:{number}: {' '.join(parts)!r}; expected one image id per line")
    return [(number, parts[0]) for number, parts in lines]


def _xml_files(folder: str) -> List[str]:
    return sorted(
        n for n in os.listdir(folder) if n.lower().endswith(".xml") and os.path.isfile(os.path.join(folder, n))
    )


def _layout(path: str, images: Optional[str]) -> dict:
    """Where the XML files, split lists and images of a VOC dataset are (see the module doc)."""
    if os.path.isfile(path):
        root = os.path.dirname(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        return {
            "root": root,
            "splits": {"all": [(stem, path)]},
            "split_files": {},
            "image_dirs": {"all": images or root},
        }
    root = path
    annotations = os.path.join(root, "Annotations")
    if os.path.isdir(annotations):
        main = os.path.join(root, "ImageSets", "Main")
        splits, split_files = {}, {}
        names = sorted(n for n in os.listdir(main) if n.endswith(".txt")) if os.path.isdir(main) else []
        for name in names:
            list_path = os.path.join(main, name)
            ids = _split_ids(list_path)
            if ids is None:
                continue
            entries = []
            for number, ident in ids:
                xml = os.path.join(annotations, ident + ".xml")
                if not os.path.isfile(xml):
                    raise LabelFormatError(f"{list_path}:{number}: no Annotations/{ident}.xml for id {ident!r}")
                entries.append((ident, xml))
            splits[name[:-4]], split_files[name[:-4]] = entries, list_path
        if not splits:
            splits = {"all": [(n[:-4], os.path.join(annotations, n)) for n in _xml_files(annotations)]}
        image_dir = images or os.path.join(root, "JPEGImages")
        return {
            "root": root,
            "splits": splits,
            "split_files": split_files,
            "image_dirs": dict.fromkeys(splits, image_dir),
        }
    xmls = _xml_files(root)
    if xmls:
        folders = {"all": root}
    else:
        subs = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))
        folders = {n: os.path.join(root, n) for n in subs if _xml_files(os.path.join(root, n))}
    if not folders:
        raise LabelFormatError(
            f"{root}: no Annotations/ folder and no .xml files in it or its subfolders; "
            "expected a Pascal VOC root or a folder of images each with a same-stem .xml"
        )
    splits = {s: [(n[:-4], os.path.join(f, n)) for n in _xml_files(f)] for s, f in folders.items()}
    image_dirs = {}
    for split, folder in folders.items():
        if images is None:
            image_dirs[split] = folder
        else:
            per_split = os.path.join(images, split)
            image_dirs[split] = per_split if split != "all" and os.path.isdir(per_split) else images
    return {"root": root, "splits": splits, "split_files": {}, "image_dirs": image_dirs}


class _ImageFinder:
    """Finds the image of a VOC file in a folder, listing each folder once."""

    def __init__(self):
        self._folders: Dict[str, tuple] = {}

    def _listing(self, folder: str) -> tuple:
        if folder not in self._folders:
            names = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            stems: Dict[str, List[str]] = {}
            for name in sorted(names):
                stem, ext = os.path.splitext(name)
                if ext.lower() in IMAGE_EXTENSIONS:
                    stems.setdefault(stem, []).append(name)
            self._folders[folder] = (names, stems)
        return self._folders[folder]

    def find(self, folder: str, ident: str, root, xml: str) -> str:
        sub = os.path.join(folder, os.path.dirname(ident))
        names, stems = self._listing(sub)
        filename = os.path.basename((root.findtext("filename") or "").strip().replace("\\", "/"))
        if filename and filename in names:
            return os.path.join(sub, filename)
        found = stems.get(os.path.basename(ident), [])
        if len(found) > 1:
            raise LabelFormatError(
                f"{xml}: several images for id {ident!r} in {sub} ({', '.join(found)}); name one in <filename>"
            )
        if found:
            return os.path.join(sub, found[0])
        path = (root.findtext("path") or "").strip()
        if path and os.path.isabs(path) and os.path.isfile(path):
            return path
        looked = f"<filename> {filename!r} and " if filename else ""
        raise LabelFormatError(
            f"{xml}: image not found: looked for {looked}{os.path.basename(ident)}.* in {sub}; "
            "give the image folder with ?images=DIR"
        )


def _class_file(root: str) -> Tuple[Optional[str], Optional[List[str]]]:
    """The class list file at a VOC root and its names, or (None, None)."""
    for name in _CLASS_FILES:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8-sig") as f:
            lines = [line.strip() for line in f.read().splitlines()]
        names = [line for line in lines if line and not line.startswith("#")]
        if name == "labelmap.txt":
            names = [n.split(":")[0] for n in names if n.split(":")[0] != "background"]
        if not names or len(set(names)) != len(names):
            raise LabelFormatError(f"{path}: expected one distinct class name per line")
        return path, names
    return None, None


def _derived_classes(names) -> List[str]:
    """Classes from names in reading order: first appearance, or VOC's order for VOC's classes."""
    seen = list(dict.fromkeys(names))
    if seen and set(seen) <= set(VOC_CLASSES):
        return [c for c in VOC_CLASSES if c in seen]
    return seen


def read(path: str, images: Optional[str] = None) -> LabelSet:
    """Read a Pascal VOC dataset (see the module doc); ``images`` overrides the image folder."""
    path = os.path.abspath(path)
    layout = _layout(path, images)
    parsed = {}  # xml -> (root element, objects); a file in several splits is read once
    for entries in layout["splits"].values():
        for _, xml in entries:
            if xml not in parsed:
                root = _load_xml(xml)
                parsed[xml] = (root, _objects(root, xml))
    class_file, classes = _class_file(layout["root"])
    if classes is None:
        classes = _derived_classes(o["name"] for xml in sorted(parsed) for o in parsed[xml][1])
    index = {name: i for i, name in enumerate(classes)}
    finder = _ImageFinder()
    records: Dict[str, dict] = {}
    mismatched = []
    splits = {}
    for split, entries in layout["splits"].items():
        splits[split] = []
        for ident, xml in entries:
            if xml not in records:
                root, objects = parsed[xml]
                file_name = finder.find(layout["image_dirs"][split], ident, root, xml)
                width, height = image_size(file_name)
                stated = [_int_or_zero(root.findtext(f"size/{tag}")) for tag in ("width", "height")]
                if all(stated) and stated != [width, height]:
                    mismatched.append((xml, stated, (width, height)))
                boxes = []
                for number, obj in enumerate(objects):
                    if obj["name"] not in index:
                        raise LabelFormatError(
                            f"{xml}: object {number + 1}: class {obj['name']!r} is not in {class_file}"
                        )
                    source = {"file": xml, "object": number}
                    boxes.append(make_box(obj["bbox"], index[obj["name"]], source, obj["iscrowd"], **obj["extra"]))
                records[xml] = {
                    "file_name": file_name,
                    "height": height,
                    "width": width,
                    "image_id": ident,
                    "annotations": boxes,
                    "source": {"file": xml, "objects": len(objects)},
                }
            splits[split].append(records[xml])
    if mismatched:
        xml, (w, h), (iw, ih) = mismatched[0]
        hint = " (width and height swapped: an EXIF rotation the labelling tool ignored?)" if (w, h) == (ih, iw) else ""
        logger.warning(
            "%s: %d of %d VOC files state a <size> that is not their image's; the image's size is used "
            "(first: %s says %dx%d, the image is %dx%d%s)",
            path, len(mismatched), len(records), xml, w, h, iw, ih, hint,
        )  # fmt: skip
    meta = {
        "root": layout["root"],
        "split_files": layout["split_files"],
        "split_ids": {s: [i for i, _ in e] for s, e in layout["splits"].items()},
        "xml_dirs": {s: os.path.dirname(e[0][1]) for s, e in layout["splits"].items() if e},
        "class_file": class_file,
    }
    return LabelSet("voc", path, classes, splits, images, meta)


def _int_or_zero(text: Optional[str]) -> int:
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return 0


# Writing


def _voc_texts(bbox, old: Optional[List[str]] = None) -> List[str]:
    """``xmin ymin xmax ymax`` texts of a box: an old text is kept when its value is unchanged,
    a changed one keeps the old text's integer or decimals, new ones are integers."""
    wanted = [bbox[0] + 1, bbox[1] + 1, bbox[2], bbox[3]]
    texts = []
    for i, value in enumerate(wanted):
        text = old[i] if old else None
        if text is not None and abs(float(text) - value) <= 1e-6:
            texts.append(text)
        elif text is None or _INTEGER.fullmatch(text):
            texts.append(str(math.floor(value + 0.5)))
        else:
            decimals = len(text.split(".")[1]) if "." in text and "e" not in text.lower() else 6
            texts.append(f"{value:.{max(decimals, 1)}f}")
    for low, high in ((0, 2), (1, 3)):
        if float(texts[high]) < float(texts[low]):
            texts[high] = texts[low]  # rounding kept a one-pixel box
    return texts


def _object_lines(box: dict, classes: List[str], unit: str) -> List[str]:
    attributes = box.get("attributes") or {}
    texts = _voc_texts(box["bbox"])
    lines = [
        "<object>",
        f"{unit}<name>{escape(classes[int(box['category_id'])])}</name>",
        f"{unit}<pose>{escape(str(attributes.get('pose', 'Unspecified')))}</pose>",
        f"{unit}<truncated>{escape(str(attributes.get('truncated', 0)))}</truncated>",
        f"{unit}<difficult>{int(bool(box.get('iscrowd', 0)))}</difficult>",
    ]
    if "occluded" in box:
        lines.append(f"{unit}<occluded>{int(bool(box['occluded']))}</occluded>")
    if "score" in box:
        lines.append(f"{unit}<score>{float(box['score']):.6g}</score>")
    lines.append(f"{unit}<bndbox>")
    lines += [f"{unit}{unit}<{tag}>{text}</{tag}>" for tag, text in zip(_COORDS, texts)]
    return lines + [f"{unit}</bndbox>", "</object>"]


def _new_xml(record: dict, classes: List[str]) -> bytes:
    file_name = os.path.abspath(record["file_name"])
    lines = [
        "<annotation>",
        f"\t<folder>{escape(os.path.basename(os.path.dirname(file_name)))}</folder>",
        f"\t<filename>{escape(os.path.basename(file_name))}</filename>",
        f"\t<path>{escape(file_name)}</path>",
        "\t<source>",
        "\t\t<database>Unknown</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{int(record['width'])}</width>",
        f"\t\t<height>{int(record['height'])}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for box in record["annotations"]:
        lines += ["\t" + line for line in _object_lines(box, classes, "\t")]
    return ("\n".join(lines + ["</annotation>"]) + "\n").encode("utf-8")


def _tag_end(data: bytes, start: int) -> int:
    """The offset just past the ``>`` of the tag starting at ``start`` (quotes respected)."""
    quote = None
    for i in range(start, len(data)):
        c = data[i]
        if quote is not None:
            quote = None if c == quote else quote
        elif c in (34, 39):
            quote = c
        elif c == 62:
            return i + 1
    return len(data)


def _scan(data: bytes, path: str) -> dict:
    """Byte offsets of a VOC file's objects and of their ``<name>`` and coordinate texts."""

    def refuse(*args):
        raise LabelFormatError(f"{path}: refused: declares entities; a VOC file has none")

    parser = expat.ParserCreate()
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    info = {"encoding": "utf-8", "objects": [], "child": None, "close": len(data)}
    stack = []

    def start(tag, attrs):
        at = parser.CurrentByteIndex
        stack.append((tag, _tag_end(data, at)))
        if len(stack) == 2:
            info["child"] = at if info["child"] is None else info["child"]
            if tag == "object":
                info["objects"].append({"start": at, "fields": {}})

    def end(tag):
        at = parser.CurrentByteIndex
        _, inner_start = stack.pop()
        empty = data[inner_start - 2 : inner_start] == b"/>"
        inner = (inner_start, inner_start if empty else at)
        if not stack:
            info["close"] = at if not empty else inner_start
        elif len(stack) == 1 and tag == "object":
            info["objects"][-1]["end"] = inner_start if empty else data.index(b">", at) + 1
        elif len(stack) >= 2 and stack[1][0] == "object":
            inside = [t for t, _ in stack[2:]] + [tag]
            if inside == ["name"] or (len(inside) == 2 and inside[0] == "bndbox" and tag in _COORDS):
                text = data[inner[0] : inner[1]]
                first = inner[0] + len(text) - len(text.lstrip())
                info["objects"][-1]["fields"].setdefault(tag, (first, first + len(text.strip())))

    parser.XmlDeclHandler = lambda version, encoding, standalone: info.update(encoding=encoding or "utf-8")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise LabelFormatError(f"{path}: not well-formed XML ({e})") from None
    return info


def _own_line(data: bytes, at: int) -> Optional[int]:
    """Start of ``at``'s line when only blanks precede it there, else None."""
    start = data.rfind(b"\n", 0, at) + 1
    return None if data[start:at].strip() else start


def _edit(record: dict, classes: List[str]) -> Tuple[bytes, List[str]]:
    """The record's source XML with its changes applied, and the written objects' class names."""
    path = record["source"]["file"]
    with open(path, "rb") as f:
        data = f.read()
    _load_xml(path)
    info = _scan(data, path)
    objects = info["objects"]
    if len(objects) != record["source"]["objects"]:
        raise LabelFormatError(
            f"{path}: has {len(objects)} objects, {record['source']['objects']} when read; read it again"
        )
    encoding = info["encoding"]
    newline = "\r\n" if b"\r\n" in data else "\n" if b"\n" in data else ""
    kept: Dict[int, dict] = {}
    added = []
    for box in record["annotations"]:
        source = _source(box)
        if source.get("file") == path and source.get("object") not in kept and "object" in source:
            kept[source["object"]] = box
        else:
            added.append(box)
    edits = []  # (start, end, replacement)
    names = []
    for number, obj in enumerate(objects):
        box = kept.get(number)
        if box is None:
            start, end = _own_line(data, obj["start"]), obj["end"]
            if start is not None and newline and data[end : end + len(newline)] == newline.encode():
                end += len(newline)
            edits.append((obj["start"] if start is None else start, end, b""))
            continue
        names.append(classes[int(box["category_id"])])
        if not box_changed(box):
            continue
        fields = obj["fields"]
        if box["category_id"] != box["source"]["category_id"]:
            edits.append((*fields["name"], escape(names[-1]).encode(encoding, "xmlcharrefreplace")))
        old = [data[slice(*fields[t])].decode(encoding) for t in _COORDS]
        for tag, before, after in zip(_COORDS, old, _voc_texts(box["bbox"], old)):
            if after != before:
                edits.append((*fields[tag], after.encode(encoding)))
    if added:
        first = objects[0]["start"] if objects else info["child"]
        indent = _own_line(data, first) if first is not None else None
        unit = (data[indent:first].decode(encoding) if indent is not None else "") or ("\t" if newline else "")
        lines = [unit + line for box in added for line in _object_lines(box, classes, unit)]
        at = _own_line(data, info["close"]) if newline else None
        if at is None:
            at, text = info["close"], newline + newline.join(lines) + newline
        else:
            text = "".join(line + newline for line in lines)
        edits.append((at, at, text.encode(encoding, "xmlcharrefreplace")))
        names += [classes[int(b["category_id"])] for b in added]
    for start, end, replacement in sorted(edits, key=lambda e: e[0], reverse=True):
        data = data[:start] + replacement + data[end:]
    return data, names


def _unchanged(record: dict) -> bool:
    source = record["source"]
    boxes = record["annotations"]
    indices = {_source(b).get("object") for b in boxes if _source(b).get("file") == source["file"]} - {None}
    return len(indices) == len(boxes) == source["objects"] and not any(box_changed(b) for b in boxes)


def _signature(record: dict) -> list:
    return [(b["bbox"], b["category_id"], b.get("score"), _source(b).get("object")) for b in record["annotations"]]


def _source(item: dict) -> dict:
    return item.get("source") or {}


def _relative_id(xml: str, annotations: str) -> str:
    return os.path.splitext(os.path.relpath(xml, annotations))[0].replace(os.sep, "/")


def _new_stem(record: dict, used: set) -> str:
    stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
    name, n = stem, 2
    while name in used:
        name, n = f"{stem}_{n}", n + 1
    used.add(name)
    return name


def _write_back(labels: LabelSet, out_dir: str) -> Tuple[Dict[str, object], Dict[str, List[str]]]:
    """Outputs ({target: bytes or source path to copy}) mirroring the source layout, and the class
    names of each written XML."""
    meta = labels.meta
    root = meta["root"]
    chosen: Dict[str, dict] = {}
    for split, records in labels.splits.items():
        for record in records:
            xml = _source(record).get("file")
            if xml is None:
                continue
            other = chosen.get(xml)
            if other is None or other is record or _unchanged(record):
                chosen.setdefault(xml, record)
            elif _unchanged(other):
                chosen[xml] = record
            elif _signature(other) != _signature(record):
                raise LabelFormatError(f"{xml}: the image is in several splits with different changes; expected one")
    outputs: Dict[str, object] = {}
    names: Dict[str, List[str]] = {}
    for xml, record in chosen.items():
        relative = os.path.relpath(xml, root)
        if relative.startswith(".."):
            raise LabelFormatError(f"{xml}: outside the dataset root {root}; cannot mirror its layout")
        target = os.path.join(out_dir, relative)
        if _unchanged(record):
            outputs[target] = xml
            by_index = sorted(record["annotations"], key=lambda b: b["source"]["object"])
            names[target] = [labels.classes[int(b["category_id"])] for b in by_index]
        else:
            outputs[target], names[target] = _edit(record, labels.classes)
    used = {os.path.splitext(os.path.basename(x))[0] for x in chosen}
    new_ids = {}
    for split, records in labels.splits.items():
        folder = os.path.relpath(meta["xml_dirs"].get(split, os.path.join(root, "Annotations")), root)
        for record in records:
            if "source" not in record and id(record) not in new_ids:
                new_ids[id(record)] = _new_stem(record, used)
                target = os.path.join(out_dir, folder, new_ids[id(record)] + ".xml")
                outputs[target] = _new_xml(record, labels.classes)
                names[target] = [labels.classes[int(b["category_id"])] for b in record["annotations"]]
    annotations = os.path.join(root, "Annotations")
    for split, records in labels.splits.items():
        if not meta["split_files"]:
            break
        ids = [_relative_id(r["source"]["file"], annotations) if "source" in r else new_ids[id(r)] for r in records]
        source = meta["split_files"].get(split)
        target = os.path.join(out_dir, "ImageSets", "Main", split + ".txt")
        outputs[target] = source if source and ids == meta["split_ids"].get(split) else ("\n".join(ids) + "\n").encode()
    return outputs, names


def _standard(labels: LabelSet, out_dir: str) -> Tuple[Dict[str, object], Dict[str, List[str]]]:
    """Outputs of the standard layout (a conversion or predictions)."""
    outputs: Dict[str, object] = {}
    names: Dict[str, List[str]] = {}
    stems: Dict[str, str] = {}
    used: set = set()
    for split, records in labels.splits.items():
        ids = []
        for record in records:
            key = os.path.abspath(record["file_name"])
            if key not in stems:
                stems[key] = _new_stem(record, used)
                target = os.path.join(out_dir, "Annotations", stems[key] + ".xml")
                outputs[target] = _new_xml(record, labels.classes)
                names[target] = [labels.classes[int(b["category_id"])] for b in record["annotations"]]
            ids.append(stems[key])
        outputs[os.path.join(out_dir, "ImageSets", "Main", split + ".txt")] = ("\n".join(ids) + "\n").encode()
    return outputs, names


def write(labels: LabelSet, out_dir: str, predictions: bool = False) -> List[str]:
    """Write ``labels`` as Pascal VOC under ``out_dir`` (see the module doc): in the source's
    layout when read from VOC, else (or with ``predictions``) in the standard one. Everything is
    checked before the first file is written. Returns the paths written."""
    out_dir = os.path.abspath(out_dir)
    if labels.format == "voc" and not predictions:
        outputs, names = _write_back(labels, out_dir)
        class_file = labels.meta.get("class_file")
    else:
        outputs, names = _standard(labels, out_dir)
        class_file = None
    if class_file is not None and _class_file(os.path.dirname(class_file))[1] == list(labels.classes):
        outputs[os.path.join(out_dir, os.path.basename(class_file))] = class_file
    elif class_file is not None or _derived_classes(n for t in sorted(names) for n in names[t]) != list(labels.classes):
        outputs[os.path.join(out_dir, "labels.txt")] = "".join(f"{c}\n" for c in labels.classes).encode()
    for target, content in outputs.items():
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if isinstance(content, bytes):
            with open(target, "wb") as f:
                f.write(content)
        else:
            shutil.copyfile(content, target)
    return list(outputs)
