"""COCO json labels: ``images``, ``annotations`` (``bbox`` as XYWH in pixels) and ``categories``.

Classes are the categories in id order (as Detectron2's ``load_coco_json``); an image's
``file_name`` is relative to ``?images=DIR`` (default: the json's folder). One split, ``all``.
Crowd annotations are kept with ``iscrowd`` 1. A box refers to its annotation by ``id``.

Writing: a write-back is the same json with changed annotations' ``bbox``/``category_id``/``area``
updated, removed ones dropped and new ones appended (every other key kept); an unchanged dataset
is a byte-identical copy. ``predictions=True`` writes a COCO json whose annotations carry
``score``: a dataset to import as pre-annotations, and its ``annotations`` list is COCO results.
"""

import json
import os
import shutil
from typing import List, Optional

from .records import LabelFormatError, LabelSet, box_changed, load_json, make_box

__all__ = ["read", "write"]


def _load(path: str) -> dict:
    data = load_json(path)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
        raise LabelFormatError(f"{path}: a COCO json needs 'images' and 'annotations' lists")
    return data


def read(path: str, images: Optional[str] = None) -> LabelSet:
    """Read a COCO json (see the module doc)."""
    path = os.path.abspath(path)
    data = _load(path)
    categories = sorted(data.get("categories") or [], key=lambda c: c["id"])
    if not categories:
        raise LabelFormatError(f"{path}: no 'categories'; expected [{{'id': ..., 'name': ...}}, ...]")
    index = {c["id"]: i for i, c in enumerate(categories)}
    image_root = images or os.path.dirname(path)
    by_image = {}
    for position, ann in enumerate(data["annotations"]):
        by_image.setdefault(ann.get("image_id"), []).append((position, ann))
    records = []
    for image in data["images"]:
        boxes = []
        for position, ann in by_image.get(image["id"], []):
            where = f"{path}: annotation {ann.get('id', position)}"
            if ann.get("category_id") not in index:
                raise LabelFormatError(f"{where}: category_id {ann.get('category_id')} is not in 'categories'")
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                raise LabelFormatError(f"{where}: 'bbox' must be [x, y, width, height]") from None
            source = {"id": ann.get("id"), "position": position}
            boxes.append(make_box([x, y, x + w, y + h], index[ann["category_id"]], source, int(ann.get("iscrowd", 0))))
        records.append(
            {
                "file_name": os.path.join(image_root, image["file_name"]),
                "height": int(image["height"]),
                "width": int(image["width"]),
                "image_id": image["id"],
                "annotations": boxes,
                "source": {"id": image["id"], "boxes": len(boxes)},
            }
        )
    classes = [str(c.get("name", c["id"])) for c in categories]
    return LabelSet(
        "coco", path, classes, {"all": records}, images, meta={"category_ids": [c["id"] for c in categories]}
    )


def _annotation(box: dict, image_id, ann_id: int, category_ids: List[int], predictions: bool) -> dict:
    x0, y0, x1, y1 = (float(v) for v in box["bbox"])
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_ids[int(box["category_id"])],
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": (x1 - x0) * (y1 - y0),
        "iscrowd": int(box.get("iscrowd", 0)),
    }
    if predictions or "score" in box:
        ann["score"] = float(box.get("score", 1.0))
    return ann


def write(labels: LabelSet, out_dir: str, predictions: bool = False) -> List[str]:
    """Write ``labels`` as one COCO json under ``out_dir`` (see the module doc); images are referred
    to by their path relative to the dataset's image folder (or absolute, for a conversion)."""
    os.makedirs(out_dir, exist_ok=True)
    records = labels.split(None)
    if labels.format == "coco":
        target = os.path.join(out_dir, os.path.basename(labels.path))
        changed = [r for r in records if _record_changed(r)]
        if not changed:
            shutil.copyfile(labels.path, target)
            return [target]
        data = _load(labels.path)
        category_ids = labels.meta["category_ids"]
        by_position = {}
        next_id = max([a.get("id", 0) for a in data["annotations"]] + [0]) + 1
        added = []
        for record in changed:
            for position, ann in enumerate(data["annotations"]):
                if ann.get("image_id") == record["source"]["id"]:
                    by_position[position] = None  # removed unless a box still refers to it
            for box in record["annotations"]:
                if "source" in box:
                    ann = _annotation(box, record["source"]["id"], box["source"]["id"], category_ids, predictions)
                    by_position[box["source"]["position"]] = ann if box_changed(box) or "score" in box else "keep"
                else:
                    added.append(_annotation(box, record["source"]["id"], next_id, category_ids, predictions))
                    next_id += 1
        annotations = []
        for position, ann in enumerate(data["annotations"]):
            new = by_position.get(position, "keep")
            if new == "keep":
                annotations.append(ann)
            elif new is not None:
                annotations.append({**ann, **new})
        data["annotations"] = annotations + added
        with open(target, "w", encoding="utf-8") as f:
            json.dump(data, f)
        return [target]
    target = os.path.join(out_dir, "predictions.json" if predictions else "annotations.json")
    category_ids = list(range(1, len(labels.classes) + 1))
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        images.append(
            {
                "id": image_id,
                "file_name": os.path.abspath(record["file_name"]),
                "height": record["height"],
                "width": record["width"],
            }
        )
        for box in record["annotations"]:
            annotations.append(_annotation(box, image_id, len(annotations) + 1, category_ids, predictions))
    categories = [{"id": i, "name": name} for i, name in zip(category_ids, labels.classes)]
    with open(target, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return [target]


def _record_changed(record: dict) -> bool:
    boxes = record["annotations"]
    kept = sum("source" in b for b in boxes)
    return kept != record["source"]["boxes"] or len(boxes) != kept or any(box_changed(b) or "score" in b for b in boxes)
