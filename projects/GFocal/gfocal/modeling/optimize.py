"""An inference-optimised copy of a trained detector, for CPU (and GPU) evaluation and demos.

``optimize_for_inference(model)`` returns a deep copy in eval mode with every eval-mode batch
norm (Detectron2's ``FrozenBatchNorm2d``, or a ``BatchNorm2d`` trained from scratch) folded into
the convolution before it (``torch.nn.utils.fusion``; GroupNorm depends on the input and stays),
the class and box towers of each GFL head run as one stack (:class:`FusedTowers`: half the ops
per level, which is what a small head's time goes to), and weights in ``channels_last`` memory
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

__all__ = ["FusedTowers", "fold_batch_norms", "fuse_head_towers", "optimize_for_inference"]

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


class FusedTowers(nn.Module):
    """The class and box towers of a :class:`GFLHead` as one stack, for inference: conv i of both
    towers in one convolution (the first reads the shared input with both towers' filters; the
    later ones are 2-group convolutions, each half reading its own tower's channels), each pair of
    GroupNorms as one with twice the groups (the same groups of channels, so the same statistics),
    then ReLU. Same outputs as the two towers to float rounding, with half the ops per level.

    Returns (cls_feat, reg_feat): the first and second half of the channels, (N, C', H, W) each.
    """

    def __init__(self, cls_convs: nn.ModuleList, reg_convs: nn.ModuleList):
        super().__init__()
        layers = []
        for i, (a, b) in enumerate(zip(cls_convs, reg_convs)):
            conv = nn.Conv2d(
                a.in_channels * (1 if i == 0 else 2),
                2 * a.out_channels,
                a.kernel_size,
                a.stride,
                a.padding,
                a.dilation,
                groups=1 if i == 0 else 2,
                bias=a.bias is not None,
            )
            conv.weight = nn.Parameter(torch.cat([a.weight, b.weight]), requires_grad=False)
            if a.bias is not None:
                conv.bias = nn.Parameter(torch.cat([a.bias, b.bias]), requires_grad=False)
            norm = nn.Identity()
            if a.norm is not None:
                norm = nn.GroupNorm(2 * a.norm.num_groups, 2 * a.out_channels, a.norm.eps, a.norm.affine)
                if a.norm.affine:
                    norm.weight = nn.Parameter(torch.cat([a.norm.weight, b.norm.weight]), requires_grad=False)
                    norm.bias = nn.Parameter(torch.cat([a.norm.bias, b.norm.bias]), requires_grad=False)
            layers += [conv, norm, nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.split = cls_convs[-1].out_channels

    def forward(self, x: torch.Tensor):
        x = self.layers(x)
        return x[:, : self.split], x[:, self.split :]

    @staticmethod
    def fusable(cls_convs: nn.ModuleList, reg_convs: nn.ModuleList) -> bool:
        """Both towers: equal non-empty stacks of Detectron2 ``Conv2d`` (one group) + ReLU, with
        GroupNorms of equal groups and eps, or no norm (none, or folded), and biases alike."""
        if len(cls_convs) != len(reg_convs) or not cls_convs:
            return False
        for a, b in zip(cls_convs, reg_convs):
            if not (isinstance(a, Conv2d) and isinstance(b, Conv2d)):
                return False
            if a.weight.shape != b.weight.shape or any(
                getattr(a, k) != getattr(b, k) for k in ("stride", "padding", "dilation", "groups")
            ):
                return False
            if a.groups != 1 or (a.bias is None) != (b.bias is None):
                return False
            if not (isinstance(a.activation, nn.ReLU) and isinstance(b.activation, nn.ReLU)):
                return False
            if a.norm is None and b.norm is None:
                continue
            if not (isinstance(a.norm, nn.GroupNorm) and isinstance(b.norm, nn.GroupNorm)):
                return False
            if (a.norm.num_groups, a.norm.eps, a.norm.affine) != (b.norm.num_groups, b.norm.eps, b.norm.affine):
                return False
        return True


def fuse_head_towers(model: nn.Module) -> int:
    """Run, in place, the towers of every GFL head of an eval-mode ``model`` as one
    :class:`FusedTowers` (after :func:`fold_batch_norms`). Returns the number of fused heads."""
    if model.training:
        raise ValueError("fuse_head_towers needs a model in eval mode (call model.eval() first)")
    fused = 0
    for head in model.modules():
        if isinstance(head, GFLHead) and head.fused_towers is None:
            if FusedTowers.fusable(head.cls_convs, head.reg_convs):
                head.fused_towers = FusedTowers(head.cls_convs, head.reg_convs)
                head.cls_convs, head.reg_convs = nn.ModuleList(), nn.ModuleList()
                fused += 1
    return fused


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
