"""GFL v2, R-101-FPN, multi-scale 2x (480-960). Reference: 45.8 box AP (GFocalV2)."""
from .gflv2_R_50_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth"
train.output_dir = "./output/gflv2_R_101_FPN_ms2x"
