"""Built-in datasets, registered with Detectron2 on ``import gfocal``.

``gfocal_shapes_train`` / ``gfocal_shapes_val``: the generated quick-start dataset (see
:mod:`gfocal.data.shapes`). It is written under ``$DETECTRON2_DATASETS`` the first time either
split is requested (``DatasetCatalog.get``), and reused afterwards.
"""

import os
from typing import Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .checks import check_image_files, check_num_classes, checked_dataset_dicts, validate_annotations
from .shapes import CLASS_NAMES, ShapesSpec, ensure_shapes_dataset, generate_image, shapes_root

__all__ = [
    "register_shapes",
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


def _load_split(name: str, split: str, spec: Optional[ShapesSpec], root: Optional[str]):
    root = ensure_shapes_dataset(spec, root)
    return load_coco_json(os.path.join(root, "annotations", f"{split}.json"), os.path.join(root, split), name)


def register_shapes(
    prefix: str = "gfocal_shapes", spec: Optional[ShapesSpec] = None, root: Optional[str] = None
) -> None:
    """Register ``{prefix}_train`` and ``{prefix}_val`` (idempotent).

    Args:
        prefix: dataset name prefix.
        spec: generation parameters (default :class:`ShapesSpec`).
        root: where the files go (default ``$DETECTRON2_DATASETS/gfocal_shapes``).
    """
    root = root or shapes_root()
    for split in ("train", "val"):
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(name, lambda name=name, split=split: _load_split(name, split, spec, root))
        MetadataCatalog.get(name).set(
            thing_classes=list(CLASS_NAMES),
            json_file=os.path.join(root, "annotations", f"{split}.json"),
            image_root=os.path.join(root, split),
            evaluator_type="coco",
        )


register_shapes()
