"""GFL v1, ResNeXt-101 32x4d FPN, multi-scale 2x. Reference: 45.9 box AP (mmdetection GFL)."""

from ..common.backbones import X101_32X4D_IMAGENET, X101_32X4D_STAGES
from .gfl_R_50_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.update(X101_32X4D_STAGES)
train.init_checkpoint = X101_32X4D_IMAGENET
train.output_dir = "./output/gfl_X_101_32x4d_FPN_ms2x"
