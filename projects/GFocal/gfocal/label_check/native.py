"""The label check on a dataset spec (``FORMAT:PATH...``, :mod:`gfocal_runtime.formats`): the
spec's records become a COCO json the check reads (``DIR/input.json``), and its corrections go
back into the input's own format and layout (``DIR/corrected/``, ``DIR/corrected_reviewed/``):
moved and relabelled boxes in place, removed boxes gone, added ones appended, every untouched
file byte-identical. A changed or added box carries the issue's ``score``, which the formats
write as their suggestion mark (CVAT ``source="auto"``, Label Studio ``predictions``, VOC
``<score>``); YOLO label files keep five columns.
"""

import copy
import json
import os
from typing import Dict, List, Tuple

from gfocal_runtime.formats import LabelFormatError, parse_spec, read_labels, write_labels

from ..errors import DatasetError, InputError

__all__ = ["spec_to_coco", "write_corrections"]


def _records(spec: str):
    try:
        parsed = parse_spec(spec)
        labels = read_labels(parsed)
        records = labels.split(parsed.split)
    except LabelFormatError as e:
        raise DatasetError(str(e)) from None
    unique = list({id(r): r for r in records}.values())  # VOC's trainval repeats train's records
    return labels, unique


def _coco(labels, records) -> Tuple[dict, str]:
    """The records as a COCO dict (image ids 1..N, annotation ids 1..M in record order, category
    ids 1..K) with file names relative to the images' common folder, and that folder."""
    root = os.path.commonpath([os.path.dirname(r["file_name"]) for r in records])
    images, annotations = [], []
    for image_id, record in enumerate(records, start=1):
        rel = os.path.relpath(record["file_name"], root)
        images.append({"id": image_id, "file_name": rel, "height": record["height"], "width": record["width"]})
        for box in record["annotations"]:
            x0, y0, x1, y1 = box["bbox"]
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(box["category_id"]) + 1}
            ann.update(bbox=[x0, y0, x1 - x0, y1 - y0], area=(x1 - x0) * (y1 - y0), iscrowd=int(box.get("iscrowd", 0)))
            annotations.append(ann)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(labels.classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, root


def spec_to_coco(spec: str, output: str) -> Tuple[str, str]:
    """Write the spec's records as ``output/input.json`` (:func:`_coco`) and ``output/native.json``
    (the spec); returns (json file, image root)."""
    labels, records = _records(spec)
    if not records:
        raise DatasetError(f"{spec}: no images")
    coco, root = _coco(labels, records)
    os.makedirs(output, exist_ok=True)
    json_file = os.path.join(output, "input.json")
    with open(json_file, "w") as f:
        json.dump(coco, f)
    with open(os.path.join(output, "native.json"), "w") as f:
        json.dump({"spec": spec, "format": labels.format}, f)
    return json_file, root


def _score(ann: dict) -> float:
    return max((i["score"] for i in ann.get("label_doctor", {}).get("issues", [])), default=1.0)


def write_corrections(output: str, corrected_json: str, folder: str) -> List[str]:
    """Apply a corrected json of a check on a spec (:func:`spec_to_coco` in ``output``) to the
    spec's labels and write them, in their format, under ``output/folder``; returns the paths.

    Raises:
        InputError: the spec's labels changed since the check.
    """
    with open(os.path.join(output, "native.json")) as f:
        spec = json.load(f)["spec"]
    labels, records = _records(spec)
    with open(os.path.join(output, "input.json")) as f:
        checked = json.load(f)
    if json.loads(json.dumps(_coco(labels, records)[0])) != checked:
        raise InputError(f"the labels of {spec} changed since the check: run it again")
    with open(corrected_json) as f:
        corrected = json.load(f)
    boxes: Dict[int, Tuple[dict, int]] = {}  # annotation id -> (record, index)
    for record in records:
        for index in range(len(record["annotations"])):
            boxes[len(boxes) + 1] = (record, index)
    kept = {a["id"]: a for a in corrected["annotations"] if a["id"] in boxes and "added" not in _changed(a)}
    new_boxes = {id(r): [] for r in records}
    for ann_id, (record, index) in boxes.items():
        if ann_id not in kept:
            continue  # removed by the check
        box, ann = copy.deepcopy(record["annotations"][index]), kept[ann_id]
        if _changed(ann):
            x, y, w, h = ann["bbox"]
            box.update(bbox=[x, y, x + w, y + h], category_id=ann["category_id"] - 1, score=_score(ann))
        new_boxes[id(record)].append(box)
    for ann in corrected["annotations"]:
        if "added" in _changed(ann):
            x, y, w, h = ann["bbox"]
            box = {"bbox": [x, y, x + w, y + h], "bbox_mode": 0, "category_id": ann["category_id"] - 1, "iscrowd": 0}
            new_boxes[id(records[ann["image_id"] - 1])].append(dict(box, score=_score(ann)))
    for record in records:
        record["annotations"] = new_boxes[id(record)]
    labels.meta.setdefault("model_version", "gfocal-label-check")
    return write_labels(labels, os.path.join(output, folder))


def _changed(ann: dict) -> list:
    return ann.get("label_doctor", {}).get("changed", [])
