"""GFL v2, R-101-FPN, multi-scale 2x (480-960). Reference: 45.8 box AP (GFocalV2)."""

from ..common.backbones import R101_IMAGENET, R101_STAGES
from .gflv2_R_50_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.update(R101_STAGES)
train.init_checkpoint = R101_IMAGENET
train.output_dir = "./output/gflv2_R_101_FPN_ms2x"
