"""The GFL head: shared class and distribution towers, with GFLv2's optional DGQP branch, and the
two towers as one stack for inference (:class:`FusedTowers`)."""

import math
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.layers import Conv2d, ShapeSpec, get_norm

__all__ = ["FusedTowers", "GFLHead", "GFLHeadOutputs", "Scale", "distribution_statistics", "distribution_std"]


class Scale(nn.Module):
    """A learnable scalar multiplier (one per FPN level), stored 0-dim as in the reference."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def distribution_statistics(dist_logits: Tensor, reg_max: int, topk: int, add_mean: bool) -> Tensor:
    """The DGQP input of GFLv2: top-k probabilities of each side's distribution (and their mean).

    Args:
        dist_logits: (N, 4*(n+1), H, W) side-major distribution logits, n = reg_max.
        reg_max: n.
        topk: probabilities kept per side.
        add_mean: append the mean of the top-k to each side's statistics.

    Returns:
        (N, 4*(topk + add_mean), H, W), side-major.
    """
    N, _, H, W = dist_logits.shape
    prob = F.softmax(dist_logits.reshape(N, 4, reg_max + 1, H, W), dim=2)
    stat = prob.topk(topk, dim=2).values  # (N, 4, topk, H, W)
    if add_mean:
        stat = torch.cat([stat, stat.mean(dim=2, keepdim=True)], dim=2)
    return stat.reshape(N, -1, H, W)


def distribution_std(probs: Tensor) -> Tensor:
    """(..., 4, n+1) bin probabilities -> (..., 4) standard deviation of each side, in bins (the
    torch twin of :func:`gfocal_runtime.boxes.side_std`)."""
    bins = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
    mean = (probs * bins).sum(-1, keepdim=True)
    return (probs * (bins - mean) ** 2).sum(-1).clamp(min=0).sqrt()


class GFLHeadOutputs(NamedTuple):
    """What :class:`GFLHead` returns: per FPN level, finest first."""

    cls_logits: List[Tensor]  # (N, K, Hi, Wi) raw class logits
    dist_logits: List[Tensor]  # (N, 4*(n+1), Hi, Wi) scaled side-distribution logits, side-major
    # GFLv2: (N, 1, Hi, Wi) DGQP quality in (0, 1), the joint score being sigmoid(cls) * quality;
    # GFL v1: None.
    quality: Optional[List[Tensor]]


class GFLHead(nn.Module):
    """Class and box-distribution predictor of GFL, shared across FPN levels.

    Each branch stacks 3x3 convs (norm + ReLU); the class branch ends in a 3x3 conv to K logits
    and the box branch in a 3x3 conv to 4*(n+1) distribution logits, side-major (channels
    ``[s*(n+1):(s+1)*(n+1)]`` hold side s of left, top, right, bottom). The distribution logits
    of level l are multiplied by a learnable scalar ``scales[l]``. With ``use_dgqp`` (GFLv2) a
    1x1 conv net reads the statistics of the four distributions and predicts a quality in
    (0, 1) that multiplies the class probability.
    """

    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        conv_dims: List[int],
        norm: str = "GN",
        reg_max: int = 16,
        prior_prob: float = 0.01,
        use_dgqp: bool = False,
        dgqp_topk: int = 4,
        dgqp_add_mean: bool = True,
        dgqp_channels: int = 64,
    ):
        """
        Args:
            input_shape: one ShapeSpec per FPN level fed to the head; all equal channels.
            num_classes: K, foreground classes.
            conv_dims: output channels of each stacked conv in each branch (4 x 256 in GFL).
            norm: Detectron2 norm name for the stacked convs ("GN" = GroupNorm(32)), or "".
            reg_max: n; each side is a distribution over the n+1 values 0..n (stride units).
            prior_prob: initial foreground probability of the class logits.
            use_dgqp: add GFLv2's Distribution-Guided Quality Predictor.
            dgqp_topk, dgqp_add_mean, dgqp_channels: DGQP statistics and hidden width.
        """
        super().__init__()
        if reg_max < 1:
            raise ValueError(f"reg_max must be >= 1, got {reg_max}")
        if len({s.channels for s in input_shape}) != 1:
            raise ValueError(f"GFLHead needs the same channels on every level, got {[s.channels for s in input_shape]}")
        if use_dgqp and not 1 <= dgqp_topk <= reg_max + 1:
            raise ValueError(f"dgqp_topk must be in [1, reg_max + 1], got {dgqp_topk}")
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.use_dgqp = use_dgqp
        self.dgqp_topk = dgqp_topk
        self.dgqp_add_mean = dgqp_add_mean
        self._num_levels = len(input_shape)

        in_channels = input_shape[0].channels
        self.cls_convs = self._tower(in_channels, conv_dims, norm)
        self.reg_convs = self._tower(in_channels, conv_dims, norm)
        last = conv_dims[-1] if conv_dims else in_channels
        self.gfl_cls = nn.Conv2d(last, num_classes, kernel_size=3, padding=1)
        self.gfl_reg = nn.Conv2d(last, 4 * (reg_max + 1), kernel_size=3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(self._num_levels)])
        self.fused_towers = None  # both towers as one stack, once :meth:`fuse_towers` ran
        if use_dgqp:
            stat_dim = 4 * (dgqp_topk + int(dgqp_add_mean))
            self.reg_conf = nn.Sequential(
                nn.Conv2d(stat_dim, dgqp_channels, kernel_size=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(dgqp_channels, 1, kernel_size=1),
                nn.Sigmoid(),
            )

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0, std=0.01)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.gfl_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    @staticmethod
    def _tower(in_channels: int, conv_dims: List[int], norm: str) -> nn.ModuleList:
        dims = [in_channels, *conv_dims]
        return nn.ModuleList(
            Conv2d(
                c_in, c_out, 3, padding=1, bias=not norm, norm=get_norm(norm, c_out), activation=nn.ReLU(inplace=True)
            )
            for c_in, c_out in zip(dims[:-1], dims[1:])
        )

    def fuse_towers(self) -> bool:
        """For inference: from now on run the class and box towers as one :class:`FusedTowers`
        (same outputs to float rounding, half the ops per level), replacing them, when
        :meth:`FusedTowers.fusable` says they can be. Returns whether it fused them now."""
        if self.training:
            raise ValueError("fuse_towers needs a head in eval mode (call .eval() first)")
        if self.fused_towers is not None or not FusedTowers.fusable(self.cls_convs, self.reg_convs):
            return False
        self.fused_towers = FusedTowers(self.cls_convs, self.reg_convs)
        self.cls_convs, self.reg_convs = nn.ModuleList(), nn.ModuleList()
        return True

    def _towers(self, feature: Tensor) -> Tuple[Tensor, Tensor]:
        """(N, C, H, W) feature of one level -> the class and box towers' (N, C', H, W) features."""
        if self.fused_towers is not None:
            return self.fused_towers(feature)
        cls_feat = reg_feat = feature
        for layer in self.cls_convs:
            cls_feat = layer(cls_feat)
        for layer in self.reg_convs:
            reg_feat = layer(reg_feat)
        return cls_feat, reg_feat

    def forward(self, features: List[Tensor]) -> GFLHeadOutputs:
        """Per-level FPN features (N, C, Hi, Wi) -> :class:`GFLHeadOutputs`."""
        if len(features) != self._num_levels:
            raise ValueError(f"GFLHead built for {self._num_levels} levels, got {len(features)}")
        cls_logits, dist_logits, quality = [], [], []
        for feature, scale in zip(features, self.scales):
            cls_feat, reg_feat = self._towers(feature)
            cls_logits.append(self.gfl_cls(cls_feat))
            dist = scale(self.gfl_reg(reg_feat))
            dist_logits.append(dist)
            if self.use_dgqp:
                stat = distribution_statistics(dist, self.reg_max, self.dgqp_topk, self.dgqp_add_mean)
                quality.append(self.reg_conf(stat))
        return GFLHeadOutputs(cls_logits, dist_logits, quality if self.use_dgqp else None)


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
