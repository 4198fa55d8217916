"""LD of GFL v1 R-101-FPN ms2x under the official GFL R-101-DCN-FPN ms2x (as mmdetection's
configs/ld): main region, LD weight 0.25 at T 10. Published COCO val box AP of the student:
44.6 -> 45.4 (HikariTJU/LD) / 45.5 (mmdetection)."""

from gfocal.model_zoo import MODELS

from ..common.ld import ld
from .gfl_R_101_FPN_ms2x import dataloader, lr_multiplier, model, optimizer, train

distill = ld("COCO-Detection/gfl_R_101_DCN_FPN_ms2x.py", MODELS["COCO-Detection/gfl_R_101_DCN_FPN_ms2x.py"].url)
train.output_dir = "./output/ld_gfl_R_101_FPN_ms2x"
