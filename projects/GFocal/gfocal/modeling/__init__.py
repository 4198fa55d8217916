"""GFL modeling: importing this registers the ``GFL`` meta-architecture."""

from .atss import ATSSMatcher
from .backbone import DeformBottleneckBlock, DeformConv, make_resnet_stages
from .distill import LocalizationDistiller, localization_distillation_loss
from .fpn import LastLevelP6P7NoReLU
from .gfl import GFL, aligned_iou, bbox2distance, distance2bbox
from .head import GFLHead, Scale, distribution_statistics
from .losses import (
    distribution_focal_loss,
    generalized_focal_loss,
    giou_loss,
    quality_focal_loss,
    quality_focal_loss_with_prob,
)

__all__ = [
    "ATSSMatcher",
    "DeformBottleneckBlock",
    "DeformConv",
    "GFL",
    "GFLHead",
    "LastLevelP6P7NoReLU",
    "LocalizationDistiller",
    "Scale",
    "aligned_iou",
    "bbox2distance",
    "distance2bbox",
    "distribution_focal_loss",
    "distribution_statistics",
    "generalized_focal_loss",
    "localization_distillation_loss",
    "giou_loss",
    "make_resnet_stages",
    "quality_focal_loss",
    "quality_focal_loss_with_prob",
]
