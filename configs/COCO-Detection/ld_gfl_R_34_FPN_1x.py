"""LD of GFL v1 R-34-FPN 1x under the official GFL R-101-FPN ms2x (as mmdetection's configs/ld):
the R-18 recipe with a ResNet-34. Published COCO val box AP of the student: 38.9 -> 39.8 (main
region) / 41.0 (full recipe)."""

from ..common.backbones import R34_IMAGENET, R34_STAGES
from .ld_gfl_R_18_FPN_1x import dataloader, distill, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.update(R34_STAGES)
train.init_checkpoint = R34_IMAGENET
train.output_dir = "./output/ld_gfl_R_34_FPN_1x"
