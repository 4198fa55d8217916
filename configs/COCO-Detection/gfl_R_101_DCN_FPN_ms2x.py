"""GFL v1, R-101-FPN with deformable convs (DCN v1) in c3-c5, multi-scale 2x.
Reference: 47.1 box AP (mmdetection GFL, gfl_r101_fpn_dconv_c3-c5_mstrain_2x)."""

from .gfl_R_101_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.deform_on_stages = ["res3", "res4", "res5"]
model.backbone.bottom_up.stages.deform_modulated = False
train.output_dir = "./output/gfl_R_101_DCN_FPN_ms2x"
