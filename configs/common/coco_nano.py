"""COCO 2017 data and recipe of the light models (GFocal-Nano) at an input size S: trained on
images scaled to fit S x S times 0.6-1.4 and cropped to S x S, with horizontal flip; tested
fitting S x S (the long side S). AdamW (lr 1e-3, weight decay 0.05, none on norms) at batch 96
with a cosine schedule over 300 epochs and a moving average of the weights, as NanoDet-Plus.
Set S with ``nano_input_size(dataloader, S)``."""

import torch

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from .coco_gfl import dataloader, train
from .gfl_schedule import cosine_schedule


def nano_input_size(dataloader, size: int) -> None:
    """Train and test augmentations of ``dataloader`` for an input of ``size`` x ``size``."""
    dataloader.train.mapper.augmentations = [
        L(T.ResizeScale)(min_scale=0.6, max_scale=1.4, target_height=size, target_width=size),
        L(T.FixedSizeCrop)(crop_size=(size, size), pad=False),
        L(T.RandomFlip)(horizontal=True),
    ]
    dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=size, max_size=size)]
    # For dataloader.train_last.fraction > 0: the last share trains without the scale jitter.
    dataloader.train_last.augmentations = [
        L(T.ResizeShortestEdge)(short_edge_length=size, max_size=size),
        L(T.RandomFlip)(horizontal=True),
    ]


dataloader.train.total_batch_size = 96
optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=1e-3,
    betas=(0.9, 0.999),
    weight_decay=0.05,
)
train.max_iter = 300 * 118287 // 96  # 300 epochs
train.checkpointer = dict(period=10000, max_to_keep=3)
train.ema = dict(enabled=True, decay=0.9998, warmup=2000, for_inference=True)
lr_multiplier = cosine_schedule(warmup=0.01, end_value=0.05)
