"""GFL v2, ResNeXt-101 32x4d FPN with deformable convs in c4-c5, multi-scale 2x (480-960).
Reference: 48.8 box AP (GFocalV2)."""
from .gflv2_R_50_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
model.backbone.bottom_up.stages.num_groups = 32
model.backbone.bottom_up.stages.width_per_group = 4
model.backbone.bottom_up.stages.deform_on_stages = ["res4", "res5"]
model.backbone.bottom_up.stages.deform_modulated = False
train.init_checkpoint = "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d-a5af3160.pth"
train.output_dir = "./output/gflv2_X_101_32x4d_DCN_FPN_ms2x"
