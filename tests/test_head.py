import pytest
import torch
from gfl_testing import small_gfl

from detectron2.layers import ShapeSpec

from gfocal.modeling import GFLHead, distribution_statistics


def make_head(**kwargs):
    return GFLHead(input_shape=[ShapeSpec(channels=32)] * 3, num_classes=5, conv_dims=[32, 32], **kwargs)


def test_output_shapes_per_level():
    head = make_head(reg_max=7)
    feats = [torch.randn(2, 32, 16, 20), torch.randn(2, 32, 8, 10), torch.randn(2, 32, 4, 5)]
    logits, dists, quality = head(feats)
    assert quality is None
    assert [tuple(x.shape) for x in logits] == [(2, 5, 16, 20), (2, 5, 8, 10), (2, 5, 4, 5)]
    assert [tuple(x.shape) for x in dists] == [(2, 32, 16, 20), (2, 32, 8, 10), (2, 32, 4, 5)]
    v2 = make_head(reg_max=7, use_dgqp=True)
    logits, dists, quality = v2(feats)
    assert [tuple(x.shape) for x in quality] == [(2, 1, 16, 20), (2, 1, 8, 10), (2, 1, 4, 5)]
    assert all(((q > 0) & (q < 1)).all() for q in quality)


def test_reference_initialisation_and_scales():
    head = make_head()
    # Class prior 0.01 and 0-dim per-level scales at 1, as the reference checkpoints store them.
    torch.testing.assert_close(head.gfl_cls.bias.sigmoid(), torch.full((5,), 0.01))
    assert [tuple(s.scale.shape) for s in head.scales] == [(), (), ()]
    feats = [torch.randn(1, 32, 4, 4)] * 3
    before = head(feats).dist_logits
    with torch.no_grad():
        head.scales[1].scale.fill_(2.0)
    after = head(feats).dist_logits
    torch.testing.assert_close(after[1], 2 * before[1])
    torch.testing.assert_close(after[0], before[0])


def test_side_major_layout_decodes_each_side():
    """Channel s*(n+1)+b carries bin b of side s (left, top, right, bottom)."""
    model = small_gfl()
    n = model.reg_max
    logits = torch.full((3, 4 * (n + 1)), -10.0)
    bins = [[0, 5, 9, 16], [3, 3, 1, 2], [16, 0, 7, 8]]
    for row, sides in enumerate(bins):
        for side, b in enumerate(sides):
            logits[row, side * (n + 1) + b] = 10.0
    probs, distances = model._integral(logits)
    assert probs.shape == (3, 4, n + 1)
    torch.testing.assert_close(distances, torch.tensor(bins, dtype=torch.float32), atol=1e-3, rtol=0)


def test_dgqp_statistics_are_top4_and_mean_per_side():
    n = 6
    logits = torch.randn(2, 4 * (n + 1), 3, 5)
    stat = distribution_statistics(logits, n, topk=4, add_mean=True)
    assert stat.shape == (2, 20, 3, 5)
    for side in range(4):
        probs = logits[:, side * (n + 1) : (side + 1) * (n + 1)].softmax(dim=1)
        top = probs.sort(dim=1, descending=True).values[:, :4]
        torch.testing.assert_close(stat[:, side * 5 : side * 5 + 4], top)
        torch.testing.assert_close(stat[:, side * 5 + 4], top.mean(dim=1))
    # A one-hot distribution gives (1, 0, 0, 0, 0.25) on every side.
    sharp = torch.full((1, 4 * (n + 1), 1, 1), -50.0)
    sharp[:, :: n + 1] = 50.0
    expected = torch.tensor([1.0, 0, 0, 0, 0.25] * 4).view(1, 20, 1, 1)
    torch.testing.assert_close(distribution_statistics(sharp, n, 4, True), expected)


def test_p7_is_computed_from_p6_without_relu():
    from torch.nn import functional as F

    from detectron2.modeling.backbone.fpn import LastLevelP6P7

    from gfocal.modeling import LastLevelP6P7NoReLU

    ours, stock = LastLevelP6P7NoReLU(8, 8), LastLevelP6P7(8, 8, in_feature="p5")
    stock.load_state_dict(ours.state_dict())
    assert ours.in_feature == "p5"
    p5 = torch.randn(1, 8, 16, 16)
    p6, p7 = ours(p5)
    torch.testing.assert_close(p7, F.conv2d(p6, ours.p7.weight, ours.p7.bias, stride=2, padding=1))
    assert (p6 < 0).any()  # so a ReLU would change P7
    assert not torch.allclose(p7, stock(p5)[1])


@pytest.mark.parametrize("norm", ["GN", "BN", ""])
@pytest.mark.parametrize("use_dgqp", [False, True])
def test_fused_towers_give_the_two_towers_outputs(norm, use_dgqp):
    """gfocal.modeling.optimize's inference copy runs both towers as one stack (one conv, GroupNorm and
    ReLU per layer for both): same outputs, half the tower convolutions."""
    import copy

    from gfocal.modeling import FusedTowers, optimize_for_inference

    torch.manual_seed(0)
    head = GFLHead(
        input_shape=[ShapeSpec(channels=64)] * 3, num_classes=5, conv_dims=[64, 64, 64], norm=norm, use_dgqp=use_dgqp
    )
    with torch.no_grad():  # towers, norms and outputs that differ, so that a swapped half shows
        for p in head.parameters():  # convolutions that keep the scale (no norm needed), the rest around 0.2
            p.normal_(0, p[0].numel() ** -0.5 if p.dim() == 4 else 0.2)
        for m in head.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    head.eval()
    before = copy.deepcopy(head.state_dict())
    fast = optimize_for_inference(head)
    assert isinstance(fast.fused_towers, FusedTowers) and head.fused_towers is None
    convs = [m for m in fast.fused_towers.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 and [c.groups for c in convs] == [1, 2, 2]
    feats = [torch.randn(2, 64, 12, 10), torch.randn(2, 64, 6, 5), torch.randn(1, 64, 3, 3).expand(2, -1, -1, -1)]
    with torch.inference_mode():
        for got, want in zip(fast(feats), head(feats)):
            assert (got is None) == (want is None)
            for g, w in zip(got or [], want or []):
                torch.testing.assert_close(g, w, atol=2e-5, rtol=1e-4)
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in before.items())  # the model is untouched


def test_towers_that_differ_are_not_fused():
    from detectron2.layers import Conv2d

    from gfocal.modeling import FusedTowers

    head = make_head().eval()
    assert FusedTowers.fusable(head.cls_convs, head.reg_convs)
    head.reg_convs[1] = Conv2d(32, 32, kernel_size=3, padding=1, bias=False, norm=torch.nn.GroupNorm(16, 32))
    assert not FusedTowers.fusable(head.cls_convs, head.reg_convs)  # other groups, no activation
    assert not FusedTowers.fusable(head.cls_convs, head.cls_convs[:1])
