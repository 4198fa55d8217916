"""GFL v2 (DGQP), R-50-FPN, 1x, COCO 2017. Reference: 41.0 box AP (official GFocalV2)."""

from ..common.coco_gfl import dataloader, optimizer, train
from ..common.gfl_schedule import lr_multiplier_1x as lr_multiplier
from ..common.models.gflv2 import model

train.init_checkpoint = "detectron2://ImageNetPretrained/torchvision/R-50.pkl"
train.output_dir = "./output/gflv2_R_50_FPN_1x"
