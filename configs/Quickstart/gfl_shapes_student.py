"""The distillation student on the built-in data, trained plainly: the quick-start GFL with a
quarter of the teacher's backbone width (ResNet-18, base 16 channels), a 64-channel FPN and a
head of two 32-channel convs per tower (the teacher: 96 channels). Same data and seed as the
quick start (configs/Quickstart/gfl_shapes.py), 2,000 iterations to its 1,500: alone it stays
~6 AP below the teacher, and LD brings it within 2 AP; at 3,000 iterations it passes the teacher
even without LD (projects/GFocal/README.md, LD section)."""

from detectron2.layers import ShapeSpec

from ..common.gfl_schedule import gfl_schedule
from .gfl_shapes import dataloader, model, optimizer, train

model.backbone.bottom_up.stem.out_channels = 16
model.backbone.bottom_up.stages.base_channels = 16
model.backbone.out_channels = 64
model.head.input_shape = [ShapeSpec(channels=64)] * 5
model.head.conv_dims = [32, 32]
train.max_iter = 2000
lr_multiplier = gfl_schedule(train.max_iter, (1500, 1870), warmup_iters=100)
train.output_dir = "./output/quickstart/student"
