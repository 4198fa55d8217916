"""GFL v1, R-101-FPN, multi-scale 2x. Reference: 44.7 box AP (mmdetection GFL)."""

from ..common.backbones import R101_IMAGENET, R101_STAGES
from .gfl_R_50_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.update(R101_STAGES)
train.init_checkpoint = R101_IMAGENET
train.output_dir = "./output/gfl_R_101_FPN_ms2x"
