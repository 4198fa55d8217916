"""Detectron2's RetinaNet on the built-in shapes dataset, with the quick-start GFL's backbone,
head width, schedule, batch and seed (for tools/benchmark_quickstart.py). Anchors, matcher and
losses are Detectron2's COCO defaults."""

from detectron2 import model_zoo

from .gfl_shapes import dataloader, lr_multiplier, optimizer, train
from .gfl_shapes import model as gfl

model = model_zoo.get_config("common/models/retinanet.py").model
model.backbone = gfl.backbone
model.head.input_shape = gfl.head.input_shape
model.head.conv_dims = gfl.head.conv_dims
model.head.norm = "GN"  # as the GFL and FCOS heads
model.num_classes = gfl.num_classes
model.head_in_features = gfl.head_in_features
model.test_score_thresh = 0.05
model.pixel_mean = gfl.pixel_mean
model.pixel_std = gfl.pixel_std
model.input_format = "RGB"
train.output_dir = "./output/quickstart/retinanet"
