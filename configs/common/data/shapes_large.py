"""Data of the built-in large-image dataset (gfocal_shapes_large: 1024x768 images, many 6-32 px
shapes, 4 classes): trained on 256 px slices (gfocal.data.SliceTrainingMapper) at short sides
224-288; tested at a 256 px short side, the whole image (341x256: a 6 px shape becomes 2 px) or
sliced into 256 px tiles with a quarter overlap (``dataloader.test.slicing``). Otherwise as the
quick-start data (``shapes.py``)."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from gfocal.data import SliceTrainingMapper

from .shapes import dataloader

dataloader.train.dataset.names = "gfocal_shapes_large_train"
# One 256 px crop per sampled image: around an object half of the time, else anywhere; boxes
# cut by the crop are clipped, and dropped under 10% visible (as SAHI's slice_coco).
dataloader.train.mapper = L(SliceTrainingMapper)(
    is_train=True,
    size=256,
    object_prob=0.5,
    augmentations=[
        L(T.ResizeShortestEdge)(short_edge_length=(224, 256, 288), max_size=4000, sample_style="choice"),
        L(T.RandomFlip)(horizontal=True),
    ],
    image_format="RGB",
    use_instance_mask=False,
)
dataloader.train.total_batch_size = 8
dataloader.train_last.augmentations = dataloader.train.mapper.augmentations
dataloader.test.dataset.names = "gfocal_shapes_large_val"
# The network's input: a 256 px short side, for the whole image and for each tile alike.
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=256, max_size=4000)]
dataloader.test.slicing.size = 256
dataloader.tta.min_sizes = [256, 320]
