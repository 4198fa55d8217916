"""Light parts for a GFL on CPUs and edge devices: depthwise-separable convolutions, a PAN neck
(:class:`LightPAN`) and a head whose class and box predictions read one tower
(:class:`LightGFLHead`), in the spirit of NanoDet-Plus and PP-PicoDet.

Widths, kernel sizes and ``reg_max`` are constructor arguments; the convolutions are Detectron2
``Conv2d`` with their norm and activation, so :func:`~gfocal.modeling.fold_batch_norms` folds them.
"""

import math
from typing import Dict, List

from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import Backbone

from ..errors import ConfigError
from .head import GFLHeadOutputs, distribution_statistics

__all__ = ["DepthwiseSeparable", "LightPAN", "LightGFLHead", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class DepthwiseSeparable(nn.Sequential):
    """A k x k depthwise convolution (stride 1 or 2) then a 1x1 pointwise one, each with a norm
    and an activation: (N, C_in, H, W) -> (N, C_out, H / stride, W / stride)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 1, norm="BN", activation="relu"
    ):
        pad = kernel_size // 2
        super().__init__(
            Conv2d(
                in_channels,
                in_channels,
                kernel_size,
                stride=stride,
                padding=pad,
                groups=in_channels,
                bias=not norm,
                norm=get_norm(norm, in_channels),
                activation=_activation(activation),
            ),
            Conv2d(
                in_channels,
                out_channels,
                1,
                bias=not norm,
                norm=get_norm(norm, out_channels),
                activation=_activation(activation),
            ),
        )


class LightPAN(Backbone):
    """A path-aggregation neck of depthwise-separable convolutions over a bottom-up network.

    Each input level is reduced to ``out_channels`` by a 1x1 conv; a top-down pass adds each
    upsampled coarser level to the finer one and mixes the sum with a depthwise-separable conv; a
    bottom-up pass adds each downsampled finer output (depthwise-separable, stride 2) to the
    coarser level and mixes again; ``num_extra_levels`` more levels come from the coarsest output
    by stride-2 depthwise-separable convs. Outputs ``p{log2(stride)}``, finest first.

    Args:
        bottom_up: a Backbone (e.g. :class:`~gfocal.modeling.TimmBackbone`).
        in_features: its outputs to read, finest first, consecutive strides (x2 apart).
        out_channels: width of every level.
        kernel_size: depthwise kernel (5 as NanoDet-Plus and PicoDet).
        num_extra_levels: levels added on top (e.g. 1: stride 64 over strides 8-32).
        norm, activation: of every conv ("BN"; "relu", "leaky_relu" or "hardswish").
    """

    def __init__(
        self,
        *,
        bottom_up: Backbone,
        in_features: List[str],
        out_channels: int = 96,
        kernel_size: int = 5,
        num_extra_levels: int = 1,
        norm: str = "BN",
        activation: str = "leaky_relu",
    ):
        super().__init__()
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ConfigError(f"LightPAN: in_features {missing} are not outputs of the backbone ({sorted(shapes)})")
        strides = [shapes[f].stride for f in in_features]
        if any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise ConfigError(f"LightPAN: in_features {in_features} must have strides x2 apart, got {strides}")
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        c, k = out_channels, kernel_size

        def ds(stride=1):
            return DepthwiseSeparable(c, c, k, stride, norm, activation)

        self.reduce = nn.ModuleList(
            Conv2d(shapes[f].channels, c, 1, bias=not norm, norm=get_norm(norm, c), activation=_activation(activation))
            for f in in_features
        )
        self.top_down = nn.ModuleList(ds() for _ in in_features[:-1])
        self.downsample = nn.ModuleList(ds(2) for _ in in_features[:-1])
        self.bottom_up_mix = nn.ModuleList(ds() for _ in in_features[:-1])
        self.extra = nn.ModuleList(ds(2) for _ in range(num_extra_levels))
        all_strides = strides + [strides[-1] * 2 ** (i + 1) for i in range(num_extra_levels)]
        self._out_features = [f"p{int(math.log2(s))}" for s in all_strides]
        self._out_feature_strides = dict(zip(self._out_features, all_strides))
        self._out_feature_channels = {f: c for f in self._out_features}

    @property
    def size_divisibility(self) -> int:
        return self._out_feature_strides[self._out_features[-1]]

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """(N, 3, H, W) -> {"p3": (N, C, H/8, W/8), ...} for the strides of ``output_shape()``."""
        feats = self.bottom_up(x)
        levels = [conv(feats[f]) for conv, f in zip(self.reduce, self.in_features)]
        for i in range(len(levels) - 2, -1, -1):  # top-down, coarsest first
            up = F.interpolate(levels[i + 1], size=levels[i].shape[-2:], mode="nearest")
            levels[i] = self.top_down[i](levels[i] + up)
        outs = [levels[0]]
        for i in range(1, len(levels)):  # bottom-up
            outs.append(self.bottom_up_mix[i - 1](levels[i] + self.downsample[i - 1](outs[-1])))
        for conv in self.extra:
            outs.append(conv(outs[-1]))
        return dict(zip(self._out_features, outs))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(channels=self._out_feature_channels[f], stride=self._out_feature_strides[f])
            for f in self._out_features
        }


class LightGFLHead(nn.Module):
    """A GFL head for light models: per level, one tower of depthwise-separable convs read by
    both predictions, then one 1x1 conv to K class logits and 4*(n+1) side-distribution logits
    (side-major, as :class:`~gfocal.modeling.GFLHead`). Towers are per level (BatchNorm statistics
    differ between levels), as NanoDet-Plus's. With ``use_dgqp`` (GFLv2) the quality net reads
    the distributions' statistics, as in GFLHead.

    Args:
        input_shape: one ShapeSpec per level, equal channels.
        num_classes: K.
        conv_dims: channels of each depthwise-separable conv of a tower (e.g. [96, 96]).
        kernel_size: their depthwise kernel.
        reg_max: n; each side is a distribution over 0..n (stride units).
        norm, activation: of the tower's convs.
        prior_prob: initial foreground probability.
        use_dgqp, dgqp_topk, dgqp_add_mean, dgqp_channels: GFLv2's quality predictor.
    """

    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        conv_dims: List[int],
        kernel_size: int = 5,
        reg_max: int = 7,
        norm: str = "BN",
        activation: str = "leaky_relu",
        prior_prob: float = 0.01,
        use_dgqp: bool = False,
        dgqp_topk: int = 4,
        dgqp_add_mean: bool = True,
        dgqp_channels: int = 64,
    ):
        super().__init__()
        if reg_max < 1:
            raise ConfigError(f"reg_max must be >= 1, got {reg_max}")
        if len({s.channels for s in input_shape}) != 1:
            channels = [s.channels for s in input_shape]
            raise ConfigError(f"LightGFLHead needs equal channels on every level, got {channels}")
        if use_dgqp and not 1 <= dgqp_topk <= reg_max + 1:
            raise ConfigError(f"dgqp_topk must be in [1, reg_max + 1], got {dgqp_topk}")
        self.num_classes, self.reg_max, self.use_dgqp = num_classes, reg_max, use_dgqp
        self.dgqp_topk, self.dgqp_add_mean = dgqp_topk, dgqp_add_mean
        in_channels = input_shape[0].channels
        last = conv_dims[-1] if conv_dims else in_channels

        def tower():
            layers, c = [], in_channels
            for out in conv_dims:
                layers.append(DepthwiseSeparable(c, out, kernel_size, 1, norm, activation))
                c = out
            return nn.Sequential(*layers)

        self.towers = nn.ModuleList(tower() for _ in input_shape)
        self.predictors = nn.ModuleList(nn.Conv2d(last, num_classes + 4 * (reg_max + 1), 1) for _ in input_shape)
        for predictor in self.predictors:
            nn.init.normal_(predictor.weight, std=0.01)
            nn.init.constant_(predictor.bias, 0)
            nn.init.constant_(predictor.bias[:num_classes], -math.log((1 - prior_prob) / prior_prob))
        if use_dgqp:
            self.reg_conf = nn.Sequential(
                nn.Conv2d(4 * (dgqp_topk + int(dgqp_add_mean)), dgqp_channels, 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(dgqp_channels, 1, 1),
                nn.Sigmoid(),
            )

    def forward(self, features: List[Tensor]) -> GFLHeadOutputs:
        """Per-level (N, C, Hi, Wi) features -> :class:`GFLHeadOutputs` (no per-level scale: the
        1x1 predictor of each level has its own weights)."""
        if len(features) != len(self.towers):
            raise ValueError(f"LightGFLHead built for {len(self.towers)} levels, got {len(features)}")
        cls_logits, dist_logits, quality = [], [], []
        for feature, tower, predictor in zip(features, self.towers, self.predictors):
            out = predictor(tower(feature))
            cls_logits.append(out[:, : self.num_classes])
            dist_logits.append(out[:, self.num_classes :])
            if self.use_dgqp:
                stat = distribution_statistics(dist_logits[-1], self.reg_max, self.dgqp_topk, self.dgqp_add_mean)
                quality.append(self.reg_conf(stat))
        return GFLHeadOutputs(cls_logits, dist_logits, quality if self.use_dgqp else None)
