"""LD of GFL v1 R-18-FPN 1x under the official GFL R-101-FPN ms2x (as mmdetection's
configs/ld): main region, LD weight 0.25 at T 10. Published COCO val box AP of the student:
35.8 -> 36.5 (main region), 37.5 (full recipe).
The full recipe (HikariTJU/LD): ld(..., full_recipe=True)."""

from gfocal.model_zoo import MODELS

from ..common.backbones import R18_IMAGENET, R18_STAGES
from ..common.ld import ld
from .gfl_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.update(R18_STAGES)
model.backbone.bottom_up.stages.stride_in_1x1 = False
train.init_checkpoint = R18_IMAGENET
distill = ld("COCO-Detection/gfl_R_101_FPN_ms2x.py", MODELS["COCO-Detection/gfl_R_101_FPN_ms2x.py"].url)
train.output_dir = "./output/ld_gfl_R_18_FPN_1x"
