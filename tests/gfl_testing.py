"""Helpers shared by the tests: a small GFL built from the real config, and generated inputs."""

import os

import torch

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import ResNet
from detectron2.structures import Boxes, Instances

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_gfl_cfg(use_dgqp=False, num_classes=4):
    """configs/common/models/gfl.py with a ResNet-18, 64-channel FPN and a 2-conv head."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs/common/models/gfl.py"))
    model = cfg.model
    model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="FrozenBN")
    model.backbone.out_channels = 64
    model.head.input_shape = [ShapeSpec(channels=64)] * 5
    model.head.conv_dims = [64, 64]
    model.head.use_dgqp = use_dgqp
    model.num_classes = num_classes
    return model


def small_gfl(use_dgqp=False, num_classes=4, seed=0):
    torch.manual_seed(seed)
    return instantiate(small_gfl_cfg(use_dgqp, num_classes))


def make_input(h, w, boxes=(), classes=(), seed=0):
    """A noisy image (C, H, W) float 0..255 with filled rectangles at ``boxes``."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=gen) * 60
    for (x0, y0, x1, y1), c in zip(boxes, classes):
        color = torch.tensor([60.0 + 60 * (c % 3), 200.0 - 50 * (c % 4), 120.0 + 40 * (c % 2)])
        image[:, int(y0) : int(y1), int(x0) : int(x1)] = color[:, None, None]
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor(list(boxes), dtype=torch.float32).reshape(-1, 4))
    inst.gt_classes = torch.tensor(list(classes), dtype=torch.int64)
    return {"image": image, "instances": inst, "height": h, "width": w}
