"""GFL v2, ResNeXt-101 32x4d FPN with deformable convs in c4-c5, multi-scale 2x (480-960).
Reference: 48.8 box AP (GFocalV2)."""

from ..common.backbones import X101_32X4D_IMAGENET, X101_32X4D_STAGES
from .gflv2_R_50_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.update(X101_32X4D_STAGES)
model.backbone.bottom_up.stages.deform_on_stages = ["res4", "res5"]
model.backbone.bottom_up.stages.deform_modulated = False
train.init_checkpoint = X101_32X4D_IMAGENET
train.output_dir = "./output/gflv2_X_101_32x4d_DCN_FPN_ms2x"
