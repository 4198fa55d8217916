"""Detectron2's FCOS on the built-in shapes dataset, with the quick-start GFL's backbone, head
width, schedule, batch and seed (for tools/benchmark_quickstart.py)."""

from detectron2.config import LazyCall as L
from detectron2.modeling.meta_arch.fcos import FCOS, FCOSHead

from .gfl_shapes import dataloader, lr_multiplier, optimizer, train
from .gfl_shapes import model as gfl

model = L(FCOS)(
    backbone=gfl.backbone,
    head=L(FCOSHead)(
        input_shape=gfl.head.input_shape,
        conv_dims=gfl.head.conv_dims,
        num_classes="${..num_classes}",
        prior_prob=0.01,
        norm="GN",
    ),
    head_in_features=gfl.head_in_features,
    num_classes=gfl.num_classes,
    test_score_thresh=0.05,  # as GFL; Detectron2's COCO config uses 0.2 for speed
    test_nms_thresh=0.6,
    pixel_mean=gfl.pixel_mean,
    pixel_std=gfl.pixel_std,
)
train.output_dir = "./output/quickstart/fcos"
