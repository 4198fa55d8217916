"""A small GFL for the quick start: ResNet-18 + 128-channel FPN trained from scratch (BN),
a 2-conv head. Everything else (ATSS, anchors, losses, inference) is the reference GFL."""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import ResNet

from .gfl import model

model.backbone.bottom_up.stem.norm = "BN"
model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="BN")
model.backbone.bottom_up.freeze_at = 0
model.backbone.out_channels = 128
model.head.input_shape = [ShapeSpec(channels=128)] * 5
model.head.conv_dims = [128, 128]
model.num_classes = 4
