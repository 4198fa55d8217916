"""GFL v1, R-50-FPN, 1x (90k iterations at batch 16), COCO 2017. Reference: 40.2 box AP (mmdet)."""

from ..common.coco_gfl import dataloader, optimizer, train
from ..common.gfl_schedule import lr_multiplier_1x as lr_multiplier
from ..common.models.gfl import model

# torchvision's ImageNet ResNet-50 (RGB, std-normalised, stride in the 3x3 conv).
train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/gfl_R_50_FPN_1x"
