"""GFL v2, R-50-FPN, multi-scale 2x (short side 480-960). Reference: 43.9 box AP (GFocalV2)."""

from ..common.models.gflv2 import model
from .gfl_R_50_FPN_ms2x import dataloader, lr_multiplier, optimizer, train

dataloader.train.mapper.augmentations[0].short_edge_length = (480, 960)
train.output_dir = "./output/gflv2_R_50_FPN_ms2x"
