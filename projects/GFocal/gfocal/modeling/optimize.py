"""An inference-optimised copy of a trained detector, for CPU (and GPU) evaluation and demos.

``optimize_for_inference(model)`` returns a deep copy in eval mode with every eval-mode batch
norm (Detectron2's ``FrozenBatchNorm2d``, or a ``BatchNorm2d`` trained from scratch) folded into
the convolution before it (``torch.nn.utils.fusion``; GroupNorm depends on the input and stays),
the class and box towers of each GFL head run as one stack (:meth:`GFLHead.fuse_towers`: half the
ops per level, which is what a small head's time goes to), and weights in ``channels_last`` memory
format, which the CPU convolution kernels prefer.

Outputs equal the plain model's to float rounding (tested within 1e-4). Run it under
``torch.inference_mode()``. The original model is not modified.
"""

import copy
import logging

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from detectron2.layers import Conv2d, FrozenBatchNorm2d

from .head import GFLHead

__all__ = ["fold_batch_norms", "fuse_head_towers", "optimize_for_inference"]

logger = logging.getLogger(__name__)


def _foldable(norm: nn.Module) -> bool:
    if isinstance(norm, FrozenBatchNorm2d):
        return True
    return isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training and norm.running_mean is not None


def fold_batch_norms(model: nn.Module) -> int:
    """Fold, in place, every eval-mode batch norm of Detectron2 ``Conv2d`` layers into their
    convolution. Returns the number of folded layers."""
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode (call model.eval() first)")
    folded = 0
    for conv in model.modules():
        if isinstance(conv, Conv2d) and _foldable(conv.norm):
            norm = conv.norm
            weight, bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
            )
            conv.weight, conv.bias, conv.norm = weight.requires_grad_(False), bias.requires_grad_(False), None
            folded += 1
    return folded


def fuse_head_towers(model: nn.Module) -> int:
    """Run, in place, the towers of every GFL head of an eval-mode ``model`` as one stack
    (:meth:`GFLHead.fuse_towers`, after :func:`fold_batch_norms`). Returns the number of fused heads."""
    if model.training:
        raise ValueError("fuse_head_towers needs a model in eval mode (call model.eval() first)")
    return sum(head.fuse_towers() for head in model.modules() if isinstance(head, GFLHead))


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A deep copy of ``model`` in eval mode with batch norms folded, GFL head towers fused and,
    optionally, weights in channels_last memory format. ``model`` itself is not changed."""
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    folded = fold_batch_norms(fast)
    heads = fuse_head_towers(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    logger.info(
        f"Inference copy: {folded} batch norms folded, {heads} heads' towers fused, channels_last={channels_last}"
    )
    return fast
