"""Built-in datasets, registered with Detectron2 on ``import gfocal``.

- ``gfocal_shapes_train`` / ``gfocal_shapes_val``: the generated quick-start dataset (see
  :mod:`gfocal.data.shapes`), 128x128 images;
- ``gfocal_shapes_large_train`` / ``gfocal_shapes_large_val``: 1024x768 images with many small
  objects, for slicing (:mod:`gfocal.data.shapes_large`).

Users' own data in YOLO, Pascal VOC, CVAT, Label Studio or COCO is named by a spec
(``FORMAT:PATH[?images=DIR][#SPLIT]``) wherever a config names a dataset: see :mod:`.specs`.

Each is written under ``$DETECTRON2_DATASETS`` the first time one of its splits is requested
(``DatasetCatalog.get``), and reused afterwards.
"""

import copy
import json
import os
from typing import Optional

from detectron2.config import LazyCall as L
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .checks import check_image_files, check_num_classes, checked_dataset_dicts, validate_annotations
from .shapes import CLASS_NAMES, ShapesSpec, ensure_shapes_dataset, generate_image, shapes_root
from .shapes_large import LargeShapesSpec, ensure_large_shapes_dataset
from .slice_training import SliceTrainingMapper
from .specs import looks_like_spec, register_dataset, resolve_dataset_specs

__all__ = [
    "register_dataset",
    "looks_like_spec",
    "resolve_dataset_specs",
    "register_shapes",
    "register_large_shapes",
    "SliceTrainingMapper",
    "LargeShapesSpec",
    "ensure_large_shapes_dataset",
    "register_coco_json",
    "coco_json_dataset",
    "train_on_coco_json",
    "first_dataset_name",
    "checked_dataset_dicts",
    "check_image_files",
    "check_num_classes",
    "validate_annotations",
    "CLASS_NAMES",
    "ShapesSpec",
    "ensure_shapes_dataset",
    "generate_image",
]


def first_dataset_name(names) -> str:
    """The first of a config's ``dataset.names`` (a name or a list of names)."""
    return names if isinstance(names, str) else list(names)[0]


def _load_split(name: str, split: str, ensure, spec, root: str):
    root = ensure(spec, root)
    return load_coco_json(os.path.join(root, "annotations", f"{split}.json"), os.path.join(root, split), name)


def _register_generated(prefix: str, root: str, ensure, spec) -> None:
    for split in ("train", "val"):
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name, split=split: _load_split(name, split, ensure, spec, root))
        MetadataCatalog.get(name).set(
            thing_classes=list(CLASS_NAMES),
            json_file=os.path.join(root, "annotations", f"{split}.json"),
            image_root=os.path.join(root, split),
            evaluator_type="coco",
        )


def register_shapes(
    prefix: str = "gfocal_shapes", spec: Optional[ShapesSpec] = None, root: Optional[str] = None
) -> None:
    """Register ``{prefix}_train`` and ``{prefix}_val`` (idempotent).

    Args:
        prefix: dataset name prefix.
        spec: generation parameters (default :class:`ShapesSpec`).
        root: where the files go (default ``$DETECTRON2_DATASETS/gfocal_shapes``).
    """
    _register_generated(prefix, root or shapes_root(), ensure_shapes_dataset, spec)


def register_large_shapes(
    prefix: str = "gfocal_shapes_large", spec: Optional[LargeShapesSpec] = None, root: Optional[str] = None
) -> None:
    """Register ``{prefix}_train`` and ``{prefix}_val`` of the large-image dataset (idempotent;
    arguments as :func:`register_shapes`, default root ``$DETECTRON2_DATASETS/gfocal_shapes_large``)."""
    _register_generated(prefix, root or shapes_root("gfocal_shapes_large"), ensure_large_shapes_dataset, spec)


def register_coco_json(name: str, json_file: str, image_root: str) -> None:
    """Register a COCO json as Detectron2 dataset ``name`` (idempotent), with its class names
    (the json's categories, in id order) as ``thing_classes``."""
    if name in DatasetCatalog.list():
        return
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    with open(json_file) as f:
        categories = sorted(json.load(f).get("categories", []), key=lambda c: c["id"])
    MetadataCatalog.get(name).set(
        thing_classes=[str(c.get("name", c["id"])) for c in categories],
        json_file=json_file,
        image_root=image_root,
        evaluator_type="coco",
    )


def coco_json_dataset(names: str, json_file: str, image_root: str, **kwargs):
    """:func:`checked_dataset_dicts` of a COCO json that needs no registration beforehand: a
    lazy config's ``dataloader.train.dataset`` can name the file (it is registered as
    ``names`` first; ``kwargs`` go to :func:`checked_dataset_dicts`)."""
    register_coco_json(names, json_file, image_root)
    return checked_dataset_dicts(names, **kwargs)


def train_on_coco_json(cfg, json_file: str, image_root: str, name: str):
    """A copy of lazy config ``cfg`` that trains on a COCO json (``dataloader.train.dataset``
    becomes :func:`coco_json_dataset`, registered as ``name`` when the config is instantiated,
    keeping the config's ``filter_empty``). It stays serialisable: ``LazyConfig.save`` writes a
    yaml that ``train_net.py --config-file`` runs."""
    cfg = copy.deepcopy(cfg)
    filter_empty = cfg.dataloader.train.dataset.get("filter_empty", False)
    cfg.dataloader.train.dataset = L(coco_json_dataset)(
        names=name,
        json_file=os.path.abspath(json_file),
        image_root=os.path.abspath(image_root),
        filter_empty=filter_empty,
    )
    return cfg


register_shapes()
register_large_shapes()
