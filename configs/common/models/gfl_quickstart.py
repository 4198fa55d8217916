"""A small GFL for the quick start: a half-width ResNet-18 (base 32 channels) + 96-channel FPN
trained from scratch (BN), and a 2-conv head. Everything else (ATSS, anchors, losses,
inference) is the reference GFL."""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from gfocal.modeling import make_resnet_stages

from .gfl import model

model.backbone.bottom_up.stem.norm = "BN"
model.backbone.bottom_up.stem.out_channels = 32
model.backbone.bottom_up.stages = L(make_resnet_stages)(depth=18, norm="BN", base_channels=32)
model.backbone.bottom_up.freeze_at = 0
model.backbone.out_channels = 96
model.head.input_shape = [ShapeSpec(channels=96)] * 5
model.head.conv_dims = [96, 96]
model.num_classes = 4
