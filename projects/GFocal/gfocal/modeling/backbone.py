"""ResNet / ResNeXt stages with optional deformable convolutions from ``torchvision.ops``.

Detectron2's own ``DeformBottleneckBlock`` needs its compiled ops; this one runs wherever
torchvision does (CPU and CUDA). Both DCN v1 (18 offset channels per deformable group) and
modulated DCN v2 (27: offsets then a sigmoid mask, as mmcv lays them out) are supported; offsets
start at zero, so a fresh deformable block computes exactly what the plain block would.
"""

import logging
from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import deform_conv2d

from detectron2.layers import get_norm
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet

__all__ = ["DeformConv", "DeformBottleneckBlock", "make_resnet_stages"]

logger = logging.getLogger(__name__)


class DeformConv(nn.Module):
    """3x3 (modulated) deformable convolution with an optional norm; offsets come from outside.

    Parameters: ``weight`` (C_out, C_in / groups, k, k), optional ``norm``; no bias.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1, groups=1, norm=None):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
        self.norm = norm
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x: Tensor, offset: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x (N, C_in, H, W), offset (N, 2*g*k*k, H', W'), mask (N, g*k*k, H', W') or None."""
        out = deform_conv2d(
            x,
            offset.to(x.dtype),
            self.weight.to(x.dtype),
            None,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=None if mask is None else mask.to(x.dtype),
        )
        return self.norm(out) if self.norm is not None else out


class DeformBottleneckBlock(BottleneckBlock):
    """Detectron2's bottleneck block with a deformable 3x3 conv (``conv2``) whose offsets (and
    DCN v2 mask) come from a plain 3x3 conv ``conv2_offset`` initialised to zero."""

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        bottleneck_channels,
        stride=1,
        num_groups=1,
        norm="BN",
        stride_in_1x1=False,
        dilation=1,
        deform_modulated=False,
        deform_num_groups=1,
    ):
        super().__init__(
            in_channels,
            out_channels,
            bottleneck_channels=bottleneck_channels,
            stride=stride,
            num_groups=num_groups,
            norm=norm,
            stride_in_1x1=stride_in_1x1,
            dilation=dilation,
        )
        if num_groups != 1 and deform_num_groups != 1:
            logger.warning("grouped deformable conv: only the offsets are grouped by deform_num_groups")
        self.deform_modulated = deform_modulated
        stride_3x3 = 1 if stride_in_1x1 else stride
        plain = self.conv2
        self.conv2 = DeformConv(
            bottleneck_channels,
            bottleneck_channels,
            3,
            stride_3x3,
            dilation,
            dilation,
            groups=num_groups,
            norm=get_norm(norm, bottleneck_channels),
        )
        with torch.no_grad():
            self.conv2.weight.copy_(plain.weight)
        per_position = 3 if deform_modulated else 2
        self.conv2_offset = nn.Conv2d(
            bottleneck_channels,
            per_position * deform_num_groups * 9,
            kernel_size=3,
            stride=stride_3x3,
            padding=dilation,
            dilation=dilation,
        )
        nn.init.constant_(self.conv2_offset.weight, 0)
        nn.init.constant_(self.conv2_offset.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu_(self.conv1(x))
        offset = self.conv2_offset(out)
        mask = None
        if self.deform_modulated:
            o1, o2, mask = torch.chunk(offset, 3, dim=1)
            offset = torch.cat([o1, o2], dim=1)
            mask = mask.sigmoid()
        out = F.relu_(self.conv2(out, offset, mask))
        out = self.conv3(out)
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out + shortcut)


def make_resnet_stages(
    depth: int,
    *,
    norm: str = "FrozenBN",
    stride_in_1x1: bool = False,
    num_groups: int = 1,
    width_per_group: int = 64,
    deform_on_stages: Sequence[str] = (),
    deform_modulated: bool = False,
    deform_num_groups: int = 1,
    base_channels: int = 64,
) -> List[List[nn.Module]]:
    """Stages res2..res5 of a ResNet (``num_groups=1, width_per_group=64``) or ResNeXt
    (e.g. 32x4d: ``num_groups=32, width_per_group=4``), deformable on ``deform_on_stages``
    (e.g. ``("res3", "res4", "res5")`` for "c3-c5"). ``base_channels`` sets the width of
    ResNet-18/34 (64 as published; the quick start uses 32, to pair with a stem of that width).

    Returns:
        the ``stages`` argument of Detectron2's :class:`ResNet`.
    """
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}
    if depth not in blocks:
        raise ValueError(f"ResNet depth must be one of {sorted(blocks)}, got {depth}")
    unknown = set(deform_on_stages) - {"res2", "res3", "res4", "res5"}
    if unknown:
        raise ValueError(f"deform_on_stages must name res2..res5, got {sorted(unknown)}")
    basic = depth < 50
    if basic and (num_groups != 1 or deform_on_stages):
        raise ValueError("ResNet-18/34 have basic blocks: no groups or deformable convs")
    stages = []
    in_channels, out_channels = (base_channels, base_channels) if basic else (64, 256)
    bottleneck = num_groups * width_per_group
    for idx, num_blocks in enumerate(blocks[depth]):
        block_class, kwargs = BasicBlock, dict(norm=norm)
        if not basic:
            block_class = BottleneckBlock
            kwargs.update(bottleneck_channels=bottleneck, num_groups=num_groups, stride_in_1x1=stride_in_1x1)
        if f"res{idx + 2}" in deform_on_stages:
            block_class = DeformBottleneckBlock
            kwargs.update(deform_modulated=deform_modulated, deform_num_groups=deform_num_groups)
        stages.append(
            ResNet.make_stage(
                block_class=block_class,
                num_blocks=num_blocks,
                stride_per_block=[1 if idx == 0 else 2] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                **kwargs,
            )
        )
        in_channels, out_channels, bottleneck = out_channels, out_channels * 2, bottleneck * 2
    return stages
