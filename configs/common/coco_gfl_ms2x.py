"""The reference multi-scale 2x recipe: short side sampled in [480, 800] (GFL v1) per image,
max 1333, 180k iterations at batch 16 with x0.1 at 120k and 160k. GFLv2 uses [480, 960]."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .coco_gfl import dataloader, optimizer, train
from .gfl_schedule import lr_multiplier_2x as lr_multiplier

dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(480, 800), max_size=1333, sample_style="range"),
    L(T.RandomFlip)(horizontal=True),
]
train.max_iter = 180000
