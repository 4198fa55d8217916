"""Labels as records: the one shape every reader returns and every writer takes.

A :class:`LabelSet` holds a dataset as read from its own format: the class names in the
source's order and, per split, a list of records. A record is a Detectron2 dataset dict::

    {"file_name": "/abs/img.jpg", "height": H, "width": W, "image_id": "img",  # H, W after EXIF
     "annotations": [box, ...], "source": {...}}                               # where it came from
    box = {"bbox": [x0, y0, x1, y1], "bbox_mode": 0,      # XYXY, absolute pixels, float
           "category_id": k,                              # index into LabelSet.classes
           "iscrowd": 0 | 1,                              # 1: ignored by COCO AP (VOC difficult)
           "source": {...},                               # absent on a box that was not read
           # optional: "score" (a prediction), "attributes" {name: value}, "occluded" bool}

``source`` (image and box) is the format's own bookkeeping: which file, line, element or result
a box was read from and what it was, so a writer can put a changed box back in place and leave
everything else as it was. A box whose ``bbox`` and ``category_id`` still equal
``source["bbox"]`` and ``source["category_id"]`` is unchanged.

Readers and writers are pure Python (standard library, PyYAML, Pillow, defusedxml): no torch,
no Detectron2. Mistakes in the input raise :class:`LabelFormatError` with one line naming the
file (and line) and what was expected.
"""

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

__all__ = [
    "FORMATS",
    "LabelFormatError",
    "LabelSet",
    "make_box",
    "box_changed",
    "image_size",
    "IMAGE_EXTENSIONS",
    "finite_number",
    "load_json",
    "write_bytes_or_copy",
]

FORMATS = ("yolo", "voc", "cvat", "labelstudio", "coco")
XYXY_ABS = 0  # detectron2.structures.BoxMode.XYXY_ABS (an IntEnum: equal to this int)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm", ".heic")


class LabelFormatError(ValueError):
    """A label file or dataset layout that cannot be read as its format; the message names the
    file (and line) and what was expected."""


@dataclass
class LabelSet:
    """A dataset as read from one source.

    Attributes:
        format: one of :data:`FORMATS`.
        path: the file or folder the spec named (absolute).
        classes: class names; a box's ``category_id`` indexes this list.
        splits: ``{split: [record, ...]}`` (one split, ``"all"``, for formats without splits).
        images: the image folder given with ``?images=`` (None when the format says where).
        meta: format-specific facts a writer needs (e.g. the YOLO yaml's text).
    """

    format: str
    path: str
    classes: List[str]
    splits: Dict[str, List[dict]]
    images: Optional[str] = None
    meta: dict = field(default_factory=dict)

    def split(self, name: Optional[str]) -> List[dict]:
        """The records of split ``name`` (None: all splits in order); an unknown split is an error."""
        if name is None:
            return [r for records in self.splits.values() for r in records]
        if name not in self.splits:
            raise LabelFormatError(
                f"{self.path}: no split {name!r}; this {self.format} dataset has {', '.join(map(repr, self.splits))}"
            )
        return self.splits[name]


def make_box(bbox: Sequence[float], category_id: int, source: Optional[dict] = None, iscrowd: int = 0, **extra) -> dict:
    """A box record (see the module doc); ``source`` also remembers the box as read."""
    box = {"bbox": [float(v) for v in bbox], "bbox_mode": XYXY_ABS, "category_id": int(category_id), "iscrowd": iscrowd}
    if source is not None:
        box["source"] = dict(source, bbox=list(box["bbox"]), category_id=box["category_id"])
    box.update(extra)
    return box


def box_changed(box: dict, tolerance: float = 1e-6) -> bool:
    """True for a box without ``source`` (added) or whose box or class differs from what was read."""
    source = box.get("source")
    if source is None or "bbox" not in source:
        return True
    if int(box["category_id"]) != source["category_id"]:
        return True
    return any(abs(float(a) - float(b)) > tolerance for a, b in zip(box["bbox"], source["bbox"]))


# EXIF orientations 5-8 are transposed: Detectron2's read_image (and Pillow's exif_transpose)
# swap width and height for them.
_TRANSPOSED = {5, 6, 7, 8}


def image_size(path: str) -> tuple:
    """``(width, height)`` of an image file after its EXIF orientation, reading only the header.

    Raises:
        LabelFormatError: the file is missing or not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.format in ("JPEG", "MPO", "TIFF", "WEBP", "PNG") and image.getexif().get(0x0112) in _TRANSPOSED:
                width, height = height, width
    except FileNotFoundError:
        raise LabelFormatError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise LabelFormatError(f"{path}: not a readable image ({e})") from None
    return width, height


def finite_number(text, where: str, what: str) -> float:
    """``float(text)``, or one line saying that ``what`` at ``where`` is not a finite number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise LabelFormatError(f"{where}: {what} {text!r} is not a number")
    return value


def load_json(path: str):
    """A json file's content; invalid JSON is one line naming the file."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except ValueError as e:
        raise LabelFormatError(f"{path}: not valid JSON ({e})") from None


def write_bytes_or_copy(source: str, target: str, content: Optional[bytes]) -> str:
    """Write ``content`` to ``target`` (its folder made), or copy ``source`` byte for byte when
    ``content`` is None (nothing changed); returns ``target``."""
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    if content is None:
        shutil.copyfile(source, target)
    else:
        with open(target, "wb") as f:
            f.write(content)
    return target


def relative_to(path: str, root: str) -> str:
    """``path`` relative to ``root`` with forward slashes (for output layouts)."""
    return os.path.relpath(path, root).replace(os.sep, "/")
