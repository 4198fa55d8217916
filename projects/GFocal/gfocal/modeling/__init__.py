"""GFL modeling: importing this registers the ``GFL`` meta-architecture.

The detector (:mod:`.gfl`, :mod:`.head`, :mod:`.atss`, :mod:`.losses`, :mod:`.fpn`,
:mod:`.backbone`), the light parts (:mod:`.timm_backbone`: any timm model as a backbone;
:mod:`.light`: a depthwise-separable PAN and head), Localization Distillation
(:mod:`.distill`), and what wraps or rewrites a trained one: test-time augmentation
(:mod:`.tta`), sliced inference on large images (:mod:`.slicing`) and the inference-optimised
copy (:mod:`.optimize`).
"""

from .atss import ATSSMatcher
from .backbone import DeformBottleneckBlock, DeformConv, make_resnet_stages
from .distill import LocalizationDistiller, fold_distribution, localization_distillation_loss
from .fpn import LastLevelP6P7NoReLU
from .gfl import GFL, aligned_iou, bbox2distance, distance2bbox
from .head import FusedTowers, GFLHead, GFLHeadOutputs, Scale, distribution_statistics, distribution_std
from .light import DepthwiseSeparable, LightGFLHead, LightPAN
from .losses import (
    distribution_focal_loss,
    generalized_focal_loss,
    giou_loss,
    quality_focal_loss,
    quality_focal_loss_with_prob,
)
from .optimize import fold_batch_norms, fuse_head_towers, optimize_for_inference
from .slicing import GFLWithSlicing, slicing_settings
from .timm_backbone import TimmBackbone
from .tta import GFLWithTTA, check_tta_settings

__all__ = [
    "ATSSMatcher",
    "DeformBottleneckBlock",
    "DeformConv",
    "DepthwiseSeparable",
    "FusedTowers",
    "GFL",
    "GFLHead",
    "GFLHeadOutputs",
    "GFLWithSlicing",
    "GFLWithTTA",
    "LastLevelP6P7NoReLU",
    "LightGFLHead",
    "LightPAN",
    "LocalizationDistiller",
    "Scale",
    "TimmBackbone",
    "aligned_iou",
    "bbox2distance",
    "check_tta_settings",
    "distance2bbox",
    "distribution_focal_loss",
    "distribution_statistics",
    "distribution_std",
    "fold_batch_norms",
    "fold_distribution",
    "fuse_head_towers",
    "generalized_focal_loss",
    "localization_distillation_loss",
    "giou_loss",
    "make_resnet_stages",
    "optimize_for_inference",
    "quality_focal_loss",
    "quality_focal_loss_with_prob",
    "slicing_settings",
]
