"""GFL modeling: importing this registers the ``GFL`` meta-architecture."""
from .atss import ATSSMatcher
from .fpn import LastLevelP6P7NoReLU
from .gfl import GFL, aligned_iou, bbox2distance, distance2bbox
from .head import GFLHead, Scale, distribution_statistics
from .losses import (
    distribution_focal_loss,
    generalized_focal_loss,
    quality_focal_loss,
    quality_focal_loss_with_prob,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
from .backbone import DeformBottleneckBlock, DeformConv, make_resnet_stages  # noqa: E402

__all__ += ["DeformBottleneckBlock", "DeformConv", "make_resnet_stages"]
