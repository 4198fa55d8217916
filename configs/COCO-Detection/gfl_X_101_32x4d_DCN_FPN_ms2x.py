"""GFL v1, ResNeXt-101 32x4d FPN with DCN v1 in c4-c5, multi-scale 2x.
Reference: 48.1 box AP (mmdetection GFL, gfl_x101_32x4d_fpn_dconv_c4-c5_mstrain_2x)."""

from .gfl_X_101_32x4d_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.deform_on_stages = ["res4", "res5"]
model.backbone.bottom_up.stages.deform_modulated = False
train.output_dir = "./output/gfl_X_101_32x4d_DCN_FPN_ms2x"
