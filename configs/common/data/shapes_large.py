"""Data of the built-in large-image dataset (gfocal_shapes_large: 1024x768 images, many 6-32 px
shapes, 4 classes): trained on 256 px slices (gfocal.data.SliceTrainingMapper) at short sides
224-288; tested at a 256 px short side, the whole image (341x256: a 6 px shape becomes 2 px) or
sliced into 256 px tiles with a quarter overlap (``dataloader.test.slicing``)."""

from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)

from gfocal.data import SliceTrainingMapper, checked_dataset_dicts
from gfocal.engine import FastCOCOEvaluator

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(checked_dataset_dicts)(names="gfocal_shapes_large_train", filter_empty=False),
    # One 256 px crop per sampled image: around an object half of the time, else anywhere; boxes
    # cut by the crop are clipped, and dropped under 10% visible (as SAHI's slice_coco).
    mapper=L(SliceTrainingMapper)(
        is_train=True,
        size=256,
        object_prob=0.5,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(224, 256, 288), max_size=4000, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="RGB",
        use_instance_mask=False,
    ),
    total_batch_size=8,
    num_workers=1,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="gfocal_shapes_large_val", filter_empty=False),
    # The network's input: a 256 px short side, for the whole image and for each tile alike.
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=256, max_size=4000)],
        image_format="RGB",
    ),
    num_workers=1,
)
# Sliced evaluation (gfocal.modeling.slicing): tiles of `size` original pixels sharing `overlap` of it with
# their neighbours, plus the whole image; merges: nms, greedy (SAHI's), distribution.
dataloader.test.slicing = dict(enabled=False, size=256, overlap=0.25, merge="distribution", whole_image=True)
dataloader.evaluator = L(FastCOCOEvaluator)(dataset_name="${..test.dataset.names}")
dataloader.tta = dict(enabled=False, min_sizes=[256, 320], max_size=4000, flip=True)
