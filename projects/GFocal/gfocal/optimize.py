"""An inference-optimised copy of a trained detector, for CPU (and GPU) evaluation and demos.

``optimize_for_inference(model)`` returns a deep copy in eval mode with

- every eval-mode batch norm (Detectron2's ``FrozenBatchNorm2d``, or ``BatchNorm2d`` trained
  from scratch) folded into the convolution before it: ``w' = w * g / sqrt(v + eps)``,
  ``b' = (b - m) * g / sqrt(v + eps) + beta`` (GroupNorm depends on the input and stays);
- weights in ``channels_last`` memory format, which the CPU convolution kernels prefer (the
  activations follow the weights).

Outputs equal the plain model's to float rounding (tested within 1e-4). Run it under
``torch.inference_mode()``. Training is untouched: the copy is for inference only, and the
original model is not modified.
"""
import copy
import logging

import torch
from torch import nn

from detectron2.layers import Conv2d, FrozenBatchNorm2d

__all__ = ["fold_batch_norms", "optimize_for_inference"]

logger = logging.getLogger(__name__)


def _fold(conv: Conv2d) -> bool:
    """Fold ``conv.norm`` into ``conv`` if it is an eval-mode batch norm; True if folded."""
    norm = conv.norm
    if isinstance(norm, FrozenBatchNorm2d):
        eps = norm.eps
    elif isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training:
        if not norm.track_running_stats or norm.running_mean is None:
            return False
        eps = norm.eps
    else:
        return False
    with torch.no_grad():
        weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
        shift = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
        scale = weight * (norm.running_var + eps).rsqrt()  # (C_out,)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - norm.running_mean) * scale + shift, requires_grad=False)
    conv.norm = None
    return True


def fold_batch_norms(model: nn.Module) -> int:
    """Fold, in place, every eval-mode batch norm of Detectron2 ``Conv2d`` layers into their
    convolution. Returns the number of folded layers."""
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode (call model.eval() first)")
    return sum(_fold(m) for m in model.modules() if isinstance(m, Conv2d) and m.norm is not None)


def optimize_for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A deep copy of ``model`` in eval mode with batch norms folded and, optionally, weights in
    channels_last memory format. ``model`` itself is not changed."""
    fast = copy.deepcopy(model).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    folded = fold_batch_norms(fast)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    logger.info(f"Inference copy: {folded} batch norms folded, channels_last={channels_last}")
    return fast
