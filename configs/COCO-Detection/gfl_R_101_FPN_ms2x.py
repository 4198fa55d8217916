"""GFL v1, R-101-FPN, multi-scale 2x. Reference: 44.7 box AP (mmdetection GFL)."""
from .gfl_R_50_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
# torchvision's ImageNet ResNet-101 (the reference's `torchvision://resnet101`); GFLCheckpointer
# converts torchvision names on load.
train.init_checkpoint = "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth"
train.output_dir = "./output/gfl_R_101_FPN_ms2x"
