"""GFL v2, R-101-FPN with deformable convs in c3-c5, multi-scale 2x (480-960).
Reference: 48.0 box AP (GFocalV2). Its config builds mmcv's `DCN` (v1); a checkpoint with
modulated offsets needs model.backbone.bottom_up.stages.deform_modulated=True (the converter says)."""

from .gflv2_R_101_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.deform_on_stages = ["res3", "res4", "res5"]
model.backbone.bottom_up.stages.deform_modulated = False
train.output_dir = "./output/gflv2_R_101_DCN_FPN_ms2x"
