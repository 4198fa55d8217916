"""A reference GFL forward pass in plain torch with mmdetection's module names and semantics,
so that checkpoint conversion can be tested without installing mmdetection.

Backbone: torchvision's ResNet (mmdetection's ResNet uses the same names and, with
style="pytorch", the same stride placement); DCN blocks as mmcv's DeformConv2dPack /
ModulatedDeformConv2dPack (``conv2.weight`` + ``conv2.conv_offset``). Neck: mmdetection's FPN with
start_level=1, add_extra_convs="on_output", no ReLU before the extra convs, nearest upsampling to
the lateral's size. Head: mmdetection's GFLHead (ConvModule = conv without bias + GN + ReLU) and
GFocalV2's DGQP (``reg_conf``).

The two parts that GFocal computes with code of its own (deformable convolution and the DGQP
statistics) are stated here independently of it, from the official definitions, not with the
same calls: deformable convolution as explicit bilinear sampling at the offset kernel points
(``F.grid_sample``, no ``torchvision.ops``), and the DGQP input by sorting each side's
probabilities and laying the 20 statistics out in GFocalV2's channel order.
"""

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.resnet import Bottleneck, ResNet


class MMDeformConv(nn.Module):
    """mmcv's (Modulated)DeformConv2dPack: ``weight`` and an offset conv ``conv_offset``."""

    def __init__(self, channels, stride, modulated, groups=1):
        super().__init__()
        self.stride, self.modulated = stride, modulated
        self.weight = nn.Parameter(torch.randn(channels, channels // groups, 3, 3) * 0.05)
        self.conv_offset = nn.Conv2d(channels, (27 if modulated else 18), 3, stride, 1)
        nn.init.normal_(self.conv_offset.weight, std=0.02)

    def forward(self, x):
        out = self.conv_offset(x)
        if self.modulated:  # mmcv: chunk into (o1, o2, mask); offset = cat(o1, o2); sigmoid mask
            o1, o2, mask = torch.chunk(out, 3, dim=1)
            out, mask = torch.cat([o1, o2], dim=1), mask.sigmoid()
        else:
            mask = torch.ones_like(out[:, :9])
        return deformable_conv_by_sampling(x, out, mask, self.weight, self.stride, padding=1)


def deformable_conv_by_sampling(x, offset, mask, weight, stride, padding):
    """Deformable convolution (Dai et al. 2017; modulated: Zhu et al. 2019) from its definition:

        y(p) = sum_k w_k * m_k(p) * x(p * stride - padding + p_k + delta_k(p))

    with kernel points p_k = (i, j), i, j in 0..2 (row-major, k = 3 i + j), offsets delta_k =
    (offset[2k], offset[2k+1]) = (dy, dx) as mmcv and the original DCN lay them out, x sampled
    bilinearly with zeros outside the image. One offset group; ``weight`` (C_out, C_in/g, 3, 3).
    """
    N, C, H, W = x.shape
    Ho, Wo = offset.shape[-2:]
    base_y = (torch.arange(Ho, dtype=x.dtype) * stride - padding)[:, None]  # (Ho, 1)
    base_x = (torch.arange(Wo, dtype=x.dtype) * stride - padding)[None, :]  # (1, Wo)
    samples = []
    for k in range(9):
        i, j = divmod(k, 3)
        y = base_y + i + offset[:, 2 * k]  # (N, Ho, Wo)
        xx = base_x + j + offset[:, 2 * k + 1]
        # grid_sample with align_corners=True maps -1..1 to pixel centres 0..size-1.
        grid = torch.stack([2 * xx / (W - 1) - 1, 2 * y / (H - 1) - 1], dim=-1)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        samples.append(sampled * mask[:, k : k + 1])  # (N, C, Ho, Wo)
    cols = torch.stack(samples, dim=2)  # (N, C, 9, Ho, Wo)
    groups = C // weight.shape[1]
    cols = cols.reshape(N, groups, C // groups, 9, Ho, Wo)
    w = weight.reshape(groups, weight.shape[0] // groups, C // groups, 9)
    out = torch.einsum("ngckhw,gock->ngohw", cols, w)
    return out.reshape(N, weight.shape[0], Ho, Wo)


def dgqp_statistics(dist_logits, reg_max):
    """GFocalV2's DGQP input, in its channel order: for side s (left, top, right, bottom) the 4
    largest probabilities in decreasing order, then their mean, at channels 5 s .. 5 s + 4
    (GFocalV2 reshapes (N, 4, 5, H, W) to (N, 20, H, W))."""
    N, _, H, W = dist_logits.shape
    channels = []
    for side in range(4):
        logits = dist_logits[:, side * (reg_max + 1) : (side + 1) * (reg_max + 1)]
        prob = logits.exp() / logits.exp().sum(dim=1, keepdim=True)
        top4 = prob.sort(dim=1, descending=True).values[:, :4]
        channels += [top4[:, r] for r in range(4)] + [top4.mean(dim=1)]
    return torch.stack(channels, dim=1)


class ConvModule(nn.Module):
    def __init__(self, cin, cout, k, stride=1, gn=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=not gn)
        if gn:
            self.gn = nn.GroupNorm(32, cout)

    def forward(self, x):
        x = self.conv(x)
        return F.relu(self.gn(x)) if hasattr(self, "gn") else x


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return x * self.scale


class MMGFL(nn.Module):
    def __init__(
        self,
        depth=50,
        groups=1,
        width_per_group=64,
        dcn_stages=(),
        modulated=False,
        num_classes=80,
        reg_max=16,
        dgqp=False,
        channels=256,
        stacked=4,
        cls_out=None,
    ):
        super().__init__()
        layers = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]
        self.backbone = ResNet(Bottleneck, layers, groups=groups, width_per_group=width_per_group)
        for stage in dcn_stages:  # "res3" -> layer2
            for block in getattr(self.backbone, f"layer{int(stage[3]) - 1}"):
                block.conv2 = MMDeformConv(
                    block.conv2.in_channels, block.conv2.stride[0], modulated, block.conv2.groups
                )
        self.neck = nn.Module()
        self.neck.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in (512, 1024, 2048))
        self.neck.fpn_convs = nn.ModuleList(
            [ConvModule(channels, channels, 3) for _ in range(3)]
            + [ConvModule(channels, channels, 3, stride=2) for _ in range(2)]
        )
        self.bbox_head = nn.Module()
        h = self.bbox_head
        h.cls_convs = nn.ModuleList(ConvModule(channels, channels, 3, gn=True) for _ in range(stacked))
        h.reg_convs = nn.ModuleList(ConvModule(channels, channels, 3, gn=True) for _ in range(stacked))
        h.gfl_cls = nn.Conv2d(channels, cls_out or num_classes, 3, padding=1)
        h.gfl_reg = nn.Conv2d(channels, 4 * (reg_max + 1), 3, padding=1)
        h.scales = nn.ModuleList(Scale() for _ in range(5))
        if dgqp:
            h.reg_conf = nn.Sequential(nn.Conv2d(20, 64, 1), nn.ReLU(), nn.Conv2d(64, 1, 1), nn.Sigmoid())
        self.reg_max, self.dgqp = reg_max, dgqp
        h.register_buffer("integral_project", torch.linspace(0, reg_max, reg_max + 1))
        self.randomize()

    @torch.no_grad()
    def randomize(self):
        """Random weights, BN statistics and per-level scales (so every tensor matters)."""
        gen = torch.Generator().manual_seed(0)
        for name, p in self.named_parameters():
            if "bn" in name or "downsample.1" in name or ".gn." in name:
                p.copy_(
                    1 + 0.1 * torch.randn(p.shape, generator=gen)
                    if name.endswith("weight")
                    else 0.1 * torch.randn(p.shape, generator=gen)
                )
            elif name.endswith("scale"):
                p.fill_(float(0.5 + torch.rand(1, generator=gen)))
            elif "conv_offset" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = max(p[0].numel(), 1)
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
        for name, b in self.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))

    def mmdet_state_dict(self, version="2.28.2"):
        state = {k.replace("integral_project", "integral.project"): v for k, v in self.state_dict().items()}
        return {"state_dict": state, "meta": {"mmdet_version": version}}

    def forward(self, x):
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        c2 = b.layer1(x)
        c3 = b.layer2(c2)
        c4 = b.layer3(c3)
        c5 = b.layer4(c4)
        lat = [conv(c) for conv, c in zip(self.neck.lateral_convs, (c3, c4, c5))]
        for i in (2, 1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
        outs = [self.neck.fpn_convs[i](lat[i]) for i in range(3)]
        outs.append(self.neck.fpn_convs[3](outs[-1]))
        outs.append(self.neck.fpn_convs[4](outs[-1]))
        cls_scores, dists = [], []
        h = self.bbox_head
        for feat, scale in zip(outs, h.scales):
            cf, rf = feat, feat
            for conv in h.cls_convs:
                cf = conv(cf)
            for conv in h.reg_convs:
                rf = conv(rf)
            reg = scale(h.gfl_reg(rf))
            cls = h.gfl_cls(cf)
            if self.dgqp:
                cls = cls.sigmoid() * h.reg_conf(dgqp_statistics(reg, self.reg_max))
            cls_scores.append(cls)
            dists.append(reg)
        return cls_scores, dists
