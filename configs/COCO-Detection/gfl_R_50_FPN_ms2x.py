"""GFL v1, R-50-FPN, multi-scale 2x. Reference: 42.9 box AP (mmdetection GFL)."""

from ..common.coco_gfl_ms2x import dataloader, lr_multiplier, optimizer, train
from ..common.models.gfl import model

train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/gfl_R_50_FPN_ms2x"
