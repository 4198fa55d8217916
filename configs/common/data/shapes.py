"""Data of the built-in quick-start dataset (gfocal_shapes, 128x128 images, 4 classes): trained
at short sides 128-160, tested at 192."""

from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)

from gfocal.data import checked_dataset_dicts
from gfocal.engine import FastCOCOEvaluator

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    # Training data is checked once when loaded (annotations, image files; see gfocal.data.checks).
    dataset=L(checked_dataset_dicts)(names="gfocal_shapes_train", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            # Multi-scale: each image's short side 128 (as generated), 144 or 160.
            L(T.ResizeShortestEdge)(short_edge_length=(128, 144, 160), max_size=4000, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        use_instance_mask=False,
    ),
    total_batch_size=16,
    num_workers=1,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="gfocal_shapes_val", filter_empty=False),
    # Tested upscaled to 192: the many small objects are found far better (projects/GFocal/README.md).
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=192, max_size=4000)],
        image_format="RGB",
    ),
    num_workers=1,
)
# Box AP by faster-coco-eval (pycocotools' numbers at compiled speed; see gfocal.engine.evaluation).
dataloader.evaluator = L(FastCOCOEvaluator)(dataset_name="${..test.dataset.names}")
# Milder augmentations for the last part of training (gfocal.engine.stages), off: a recipe with
# strong_augmentations() sets a fraction and these take over for the last of it.
dataloader.train_last = dict(fraction=0.0, augmentations=dataloader.train.mapper.augmentations)


def strong_augmentations():
    """Scale jitter over short sides 96-192 (about the mean image area of 128-160, but a batch is
    padded to its largest image: steps 3-5% slower, measured) and colour jitter, for
    ``dataloader.train.mapper.augmentations`` with ``dataloader.train_last.fraction`` > 0."""
    return [
        L(T.ResizeShortestEdge)(short_edge_length=(96, 192), max_size=4000, sample_style="range"),
        L(T.RandomFlip)(horizontal=True),
        L(T.RandomBrightness)(intensity_min=0.75, intensity_max=1.25),
        L(T.RandomContrast)(intensity_min=0.75, intensity_max=1.25),
        L(T.RandomSaturation)(intensity_min=0.7, intensity_max=1.3),
    ]


# Test-time augmentation for --eval-only (gfocal.modeling.tta.GFLWithTTA; Detectron2's TEST.AUG names).
dataloader.tta = dict(enabled=False, min_sizes=[192, 256], max_size=4000, flip=True)
# Sliced evaluation (gfocal.modeling.slicing), off: tiles of `size` original pixels sharing `overlap` of it
# with their neighbours, plus the whole image; merges: nms, greedy (SAHI's), distribution.
dataloader.test.slicing = dict(enabled=False, size=64, overlap=0.25, merge="distribution", whole_image=True)
