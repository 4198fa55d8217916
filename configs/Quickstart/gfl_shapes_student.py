"""The distillation student on the built-in data, trained plainly: the quick-start GFL at a
quarter of the teacher's backbone width (ResNet-18, base 16 channels) with a 64-channel FPN and
head. Same data, schedule and seed as the quick start (configs/Quickstart/gfl_shapes.py)."""

from detectron2.layers import ShapeSpec

from .gfl_shapes import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stem.out_channels = 16
model.backbone.bottom_up.stages.base_channels = 16
model.backbone.out_channels = 64
model.head.input_shape = [ShapeSpec(channels=64)] * 5
model.head.conv_dims = [64, 64]
train.output_dir = "./output/quickstart/student"
