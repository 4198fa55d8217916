"""Users' labels as they are: YOLO, Pascal VOC, CVAT, Label Studio and COCO, read exactly and
written back in place.

A dataset is named by one spec everywhere (configs, ``train_net.py``, ``demo/demo.py``,
``tools/find_label_errors.py``)::

    FORMAT:PATH[?images=DIR][#SPLIT]

- ``FORMAT``: ``yolo``, ``voc``, ``cvat``, ``labelstudio`` or ``coco``; without it the format is
  detected from ``PATH`` (a yaml with ``names``: yolo; a COCO json; a json list of tasks:
  labelstudio; a CVAT xml; a folder with ``Annotations/``: voc), and a path that fits none or
  several is an error.
- ``PATH``: the format's file or folder (a YOLO ``data.yaml``, a VOC root, a CVAT
  ``annotations.xml``, a Label Studio export json, a COCO json).
- ``?images=DIR``: where the images are when the format does not say (CVAT, Label Studio, COCO).
- ``#SPLIT``: one split of a format that has several (YOLO ``train``/``val``/``test``, VOC
  ``ImageSets/Main`` names); without it every split is read.

``?`` and ``#`` are read from the right, so a path may contain them only before the last of each.

    from gfocal_runtime.formats import read_labels, write_labels
    labels = read_labels("yolo:/data/mine/data.yaml")       # LabelSet: classes + records per split
    write_labels(labels, "corrected/")                      # the same layout; unchanged files identical

Each format module has ``read(path, images=None) -> LabelSet`` and ``write(labels, out_dir,
predictions=False) -> [paths written]``; records are :mod:`.records`.
"""

import importlib
import json
import os
from dataclasses import dataclass
from typing import List, Optional

from .records import FORMATS, IMAGE_EXTENSIONS, LabelFormatError, LabelSet, box_changed, image_size, make_box

__all__ = [
    "FORMATS",
    "DatasetSpec",
    "LabelFormatError",
    "LabelSet",
    "box_changed",
    "detect_format",
    "image_size",
    "make_box",
    "parse_spec",
    "read_labels",
    "save_predictions",
    "write_labels",
    "IMAGE_EXTENSIONS",
]

_MODULES = {"yolo": "yolo", "voc": "voc", "cvat": "cvat", "labelstudio": "labelstudio", "coco": "coco"}


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed ``FORMAT:PATH[?images=DIR][#SPLIT]`` (``path`` and ``images`` absolute)."""

    format: str
    path: str
    images: Optional[str] = None
    split: Optional[str] = None

    def __str__(self) -> str:
        text = f"{self.format}:{self.path}"
        if self.images:
            text += f"?images={self.images}"
        return text + (f"#{self.split}" if self.split else "")


def looks_like_spec(text) -> bool:
    """True for a string that names a dataset by spec (a format prefix, even a wrong one, before
    a path, or an existing path), False for a registered Detectron2 dataset name."""
    if not isinstance(text, str):
        return False
    prefix, sep, rest = text.partition(":")
    if sep and (prefix in FORMATS or (prefix.isidentifier() and rest[:1] in ("/", ".", "~"))):
        return True
    return os.path.exists(text.split("?images=")[0].rsplit("#", 1)[0])


def parse_spec(text: str) -> DatasetSpec:
    """Parse a dataset spec (see the module doc); the format is detected when not given.

    Raises:
        LabelFormatError: an unknown format, a missing path or images folder, an undetectable format.
    """
    if not isinstance(text, str) or not text.strip():
        raise LabelFormatError(f"dataset spec {text!r}: expected FORMAT:PATH[?images=DIR][#SPLIT]")
    rest, split = text, None
    if "#" in rest:
        rest, split = rest.rsplit("#", 1)
        split = split or None
    images = None
    if "?images=" in rest:
        rest, images = rest.rsplit("?images=", 1)
    elif "?" in rest and not os.path.exists(rest):
        raise LabelFormatError(f"dataset spec {text!r}: the only option is ?images=DIR")
    fmt, sep, path = rest.partition(":")
    if not sep or (fmt not in FORMATS and os.path.exists(rest)):
        fmt, path = None, rest
    elif fmt not in FORMATS:
        raise LabelFormatError(f"dataset spec {text!r}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise LabelFormatError(f"dataset spec {text!r}: {path} does not exist")
    if images is not None:
        images = os.path.abspath(os.path.expanduser(images))
        if not os.path.isdir(images):
            raise LabelFormatError(f"dataset spec {text!r}: images folder {images} does not exist")
    return DatasetSpec(fmt or detect_format(path), path, images, split)


def _json_kind(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return "coco"
    if isinstance(data, list) and all(isinstance(t, dict) and "data" in t for t in data[:20]):
        return "labelstudio"
    return None


def _xml_kind(path: str) -> Optional[str]:
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"<annotations" in head:
        return "cvat"
    if b"<annotation" in head:
        return "voc"
    return None


def detect_format(path: str) -> str:
    """The format of a bare path (see the module doc).

    Raises:
        LabelFormatError: the path fits no format or several.
    """
    found = []
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, "Annotations")):
            found.append("voc")
        yamls = [n for n in ("data.yaml", "dataset.yaml") if os.path.isfile(os.path.join(path, n))]
        if yamls:
            found.append("yolo")
    else:
        ext = os.path.splitext(path)[1].lower()
        if ext in (".yaml", ".yml"):
            import yaml

            try:
                with open(path, encoding="utf-8") as f:
                    data = yaml.safe_load(f)
            except (OSError, yaml.YAMLError):
                data = None
            if isinstance(data, dict) and "names" in data:
                found.append("yolo")
        elif ext == ".json":
            kind = _json_kind(path)
            if kind:
                found.append(kind)
        elif ext == ".xml":
            kind = _xml_kind(path)
            if kind:
                found.append(kind)
    if len(found) != 1:
        what = "fits several formats (" + ", ".join(found) + ")" if found else "is not a dataset of a known format"
        raise LabelFormatError(f"{path} {what}; name the format: FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    return found[0]


def _module(fmt: str):
    if fmt not in _MODULES:
        raise LabelFormatError(f"unknown label format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return importlib.import_module(f".{_MODULES[fmt]}", __name__)


def read_labels(spec) -> LabelSet:
    """Read the dataset a spec (string or :class:`DatasetSpec`) names: every split, whatever
    ``#SPLIT`` says (use :meth:`LabelSet.split` for one)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.format == "yolo" and os.path.isdir(spec.path):
        yamls = [os.path.join(spec.path, n) for n in ("data.yaml", "dataset.yaml")]
        spec = DatasetSpec("yolo", next(p for p in yamls if os.path.isfile(p)), spec.images, spec.split)
    labels = _module(spec.format).read(spec.path, images=spec.images)
    if spec.split is not None:
        labels.split(spec.split)  # an unknown split fails here, before anything is registered
    return labels


def write_labels(labels: LabelSet, out_dir: str, predictions: bool = False, fmt: Optional[str] = None) -> List[str]:
    """Write ``labels`` under ``out_dir`` in format ``fmt`` (default: its own), in the source's
    layout: unchanged files are byte-identical copies, changed boxes are put back in place,
    records without ``source`` get new files. ``predictions``: boxes carry ``score`` and are
    written as the format's pre-annotations. Returns the paths written."""
    return _module(fmt or labels.format).write(labels, out_dir, predictions=predictions)


def save_predictions(predictions, class_names, fmt: str, out_dir: str, min_score: float = 0.0) -> List[str]:
    """Write detections as pre-annotations in format ``fmt`` under ``out_dir`` (model-assisted
    labelling: import them into the annotation tool and correct them there).

    Args:
        predictions: ``(file_name, (height, width), output)`` per image, ``output`` as
            ``gfocal_runtime.Detector`` returns it: ``boxes`` (M, 4) XYXY pixels, ``scores`` (M,),
            ``classes`` (M,).
        class_names: the model's classes.
        min_score: detections below it are left out.

    Returns:
        the paths written.
    """
    records = []
    for image_id, (file_name, (height, width), output) in enumerate(predictions):
        boxes = [
            make_box(box, cls, score=float(score))
            for box, score, cls in zip(output["boxes"], output["scores"], output["classes"])
            if score >= min_score
        ]
        records.append(
            {
                "file_name": os.path.abspath(file_name),
                "height": int(height),
                "width": int(width),
                "image_id": image_id,
                "annotations": boxes,
            }
        )
    labels = LabelSet("predictions", os.path.abspath(out_dir), [str(c) for c in class_names], {"all": records})
    return write_labels(labels, out_dir, predictions=True, fmt=fmt)
