"""Datasets named by spec (``FORMAT:PATH[?images=DIR][#SPLIT]``, see :mod:`gfocal_runtime.formats`)
registered with Detectron2, and configs whose dataset names are specs.

    from gfocal.data import register_dataset
    register_dataset("yolo:/data/mine/data.yaml")   # {"train": "yolo_mine-data_train_1a2b3c4d5e", "val": ...}

A registered name is derived from the path, the split and a hash of the labels read, so an
edited label set gets a new name and never reuses a stale evaluator cache
(``<output_dir>/<name>_coco_format.json``).
"""

import copy
import hashlib
import json
import logging
import os
import re
from typing import Dict, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from gfocal_runtime.formats import LabelFormatError, looks_like_spec, parse_spec, read_labels

from ..errors import DatasetError

__all__ = ["register_dataset", "resolve_dataset_specs", "looks_like_spec"]

logger = logging.getLogger("gfocal")

# Where a config names datasets (dotted keys, relative to the config's root).
DATASET_KEYS = ("dataloader.train.dataset.names", "dataloader.test.dataset.names", "dataloader.evaluator.dataset_name")


def _digest(classes, records) -> str:
    h = hashlib.sha1(json.dumps(classes).encode())
    for r in records:
        boxes = [(a["bbox"], a["category_id"], a.get("iscrowd", 0)) for a in r["annotations"]]
        h.update(json.dumps([r["file_name"], r["width"], r["height"], boxes]).encode())
    return h.hexdigest()[:10]


def _detectron2_records(records) -> list:
    out = []
    for index, record in enumerate(records):
        record = copy.copy(record)
        if not isinstance(record["image_id"], int):  # COCO evaluation wants integer image ids
            record["image_key"], record["image_id"] = record["image_id"], index
        record["annotations"] = [dict(a, bbox_mode=BoxMode.XYXY_ABS) for a in record["annotations"]]
        out.append(record)
    return out


def register_dataset(spec: str) -> Dict[str, str]:
    """Register every split a spec names with Detectron2 (idempotent) and return ``{split:
    registered_name}``; ``thing_classes`` are the source's classes in its order.

    Raises:
        DatasetError: the spec or the labels cannot be read (one line naming the file and line).
    """
    try:
        parsed = parse_spec(spec)
        labels = read_labels(parsed)
    except LabelFormatError as e:
        raise DatasetError(str(e)) from None
    stem = "-".join(p for p in os.path.splitext(parsed.path)[0].split(os.sep)[-2:] if p)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem)
    names = {}
    for split in [parsed.split] if parsed.split else list(labels.splits):
        records = labels.splits[split]
        name = f"{parsed.format}_{stem}_{split}_{_digest(labels.classes, records)}"
        if name not in DatasetCatalog.list():
            DatasetCatalog.register(name, lambda records=records: _detectron2_records(records))
            MetadataCatalog.get(name).set(
                thing_classes=list(labels.classes), evaluator_type="coco", label_spec=str(parsed), label_split=split
            )
        names[split] = name
    return names


# The split a spec without #SPLIT gives each key, in order of preference, when it has several.
# Testing never reads a split the training split holds: without "train", training reads
# "trainval" and testing "test" (VOC's "val" is inside "trainval").
TRAIN_KEY = "dataloader.train.dataset.names"


def _preferred_split(key: str, splits) -> str:
    if key == TRAIN_KEY:
        order = ("train", "trainval")
    else:
        order = ("val", "test") if "train" in splits or "trainval" not in splits else ("test",)
    return next((s for s in order if s in splits), None)


def _resolve(value, classes: list, key: str):
    """A dataset name, spec or list of them -> registered names; ``classes`` collects each spec's.
    A spec without #SPLIT whose source has several splits gives ``key`` its preferred one."""
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _as_list(_resolve(v, classes, key))]
    if not looks_like_spec(value):
        return value
    names = register_dataset(value)
    if len(names) > 1:
        split = _preferred_split(key, names)
        if split is None:
            inside = " (val is inside trainval, which training reads)" if "trainval" in names else ""
            raise DatasetError(
                f"{key}={value}: its labels have the splits {', '.join(names)}{inside}; name one, "
                f"e.g. {value}#{next(iter(names))}"
            )
        logger.info(f"{key}: the {split!r} split of {value} (another: add #SPLIT)")
        names = {split: names[split]}
    resolved = list(names.values())
    classes.append((value, resolved, MetadataCatalog.get(resolved[0]).thing_classes))
    return resolved[0] if len(resolved) == 1 else resolved


def _as_list(value):
    return value if isinstance(value, list) else [value]


def resolve_dataset_specs(cfg, overrides: Sequence[str] = ()):
    """Replace dataset specs in ``cfg`` (at :data:`DATASET_KEYS`) by registered names, in place,
    and record them in ``dataloader.dataset_specs`` (``{name: spec}``, registered again when a
    saved config is loaded).

    ``model.num_classes`` follows the training data's classes unless an override sets it (then
    one line says when they disagree); specs with different class lists are an error.
    """
    classes = []
    saved = cfg.get("dataloader", {}).get("dataset_specs", None) or {}
    for name, spec in dict(saved).items():  # a saved config: register its specs again
        if name not in register_dataset(spec).values():
            raise DatasetError(
                f"the labels of {spec} changed since this config was saved as {name}; name the spec again"
            )
    for key in DATASET_KEYS:
        parent_key, _, leaf = key.rpartition(".")
        parent = cfg
        for part in parent_key.split("."):
            parent = parent.get(part) if parent is not None and hasattr(parent, "get") else None
        if parent is None or leaf not in parent:
            continue
        value = parent[leaf]
        if isinstance(value, str) and value.startswith("${"):  # an interpolation of another key
            continue
        resolved = _resolve(list(value) if not isinstance(value, str) else value, classes, key)
        if resolved != value:
            parent[leaf] = resolved
    if not classes:
        return cfg
    # Remember which spec each name came from: a saved config.yaml then runs again as it is.
    specs = {name: spec for spec, names, _ in classes for name in names}
    cfg.dataloader.dataset_specs = {**dict(saved), **specs}
    lists = {tuple(c) for _, _, c in classes}
    if len(lists) > 1:
        raise DatasetError(
            "the config's dataset specs have different classes: "
            + "; ".join(f"{spec}: {', '.join(c)}" for spec, _, c in classes)
        )
    wanted = len(classes[0][2])
    model = cfg.get("model")
    if model is None or "num_classes" not in model:
        return cfg
    if any(o.split("=", 1)[0].lstrip("+") == "model.num_classes" for o in overrides):
        if model.num_classes != wanted:
            logger.warning(f"model.num_classes={model.num_classes} (override) but {classes[0][0]} has {wanted} classes")
    elif model.num_classes != wanted:
        logger.info(f"model.num_classes {model.num_classes} -> {wanted}: the classes of {classes[0][0]}")
        model.num_classes = wanted
    return cfg
