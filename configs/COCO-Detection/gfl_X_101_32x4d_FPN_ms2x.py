"""GFL v1, ResNeXt-101 32x4d FPN, multi-scale 2x. Reference: 45.9 box AP (mmdetection GFL)."""
from .gfl_R_50_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
model.backbone.bottom_up.stages.num_groups = 32
model.backbone.bottom_up.stages.width_per_group = 4
# The reference's `open-mmlab://resnext101_32x4d` (ImageNet, mmdetection/torchvision names).
train.init_checkpoint = "https://download.openmmlab.com/pretrain/third_party/resnext101_32x4d-a5af3160.pth"
train.output_dir = "./output/gfl_X_101_32x4d_FPN_ms2x"
