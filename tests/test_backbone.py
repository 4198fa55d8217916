"""Deformable and ResNeXt stages built on torchvision.ops."""

import pytest
import torch

from detectron2.modeling.backbone.resnet import BottleneckBlock

from gfocal.modeling import DeformBottleneckBlock, make_resnet_stages


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize("groups", [1, 4])
def test_fresh_deformable_block_equals_the_plain_block(modulated, groups):
    """Offsets start at zero (and the v2 mask at sigmoid(0) = 0.5 is the reference's init too,
    so for v2 we check the exact relation: the 3x3 conv's output is halved)."""
    torch.manual_seed(0)
    kwargs = dict(bottleneck_channels=32, stride=2, num_groups=groups, norm="BN")
    plain = BottleneckBlock(64, 128, **kwargs).eval()
    deform = DeformBottleneckBlock(64, 128, deform_modulated=modulated, **kwargs).eval()
    deform.load_state_dict(plain.state_dict(), strict=False)
    assert (deform.conv2_offset.weight == 0).all() and (deform.conv2_offset.bias == 0).all()
    assert deform.conv2_offset.out_channels == (27 if modulated else 18)
    x = torch.randn(2, 64, 20, 24)
    if not modulated:
        torch.testing.assert_close(deform(x), plain(x), rtol=1e-4, atol=1e-5)
    else:
        with torch.no_grad():
            plain.conv2.weight.mul_(0.5)
        torch.testing.assert_close(deform(x), plain(x), rtol=1e-4, atol=1e-5)


def test_offsets_move_the_sampling():
    torch.manual_seed(0)
    block = DeformBottleneckBlock(64, 128, bottleneck_channels=32, norm="BN").eval()
    x = torch.randn(1, 64, 16, 16)
    before = block(x)
    with torch.no_grad():
        block.conv2_offset.bias.fill_(0.5)  # shift every sample by half a pixel
    assert not torch.allclose(before, block(x))
    block(x).sum().backward()
    assert block.conv2_offset.weight.grad is not None and block.conv2_offset.weight.grad.abs().sum() > 0


def test_stage_layouts():
    stages = make_resnet_stages(101, num_groups=32, width_per_group=4, deform_on_stages=["res4", "res5"])
    assert [len(s) for s in stages] == [3, 4, 23, 3]
    assert stages[0][0].conv2.weight.shape == (128, 4, 3, 3)  # 32 groups x 4 channels
    assert [type(s[0]).__name__ for s in stages] == ["BottleneckBlock"] * 2 + ["DeformBottleneckBlock"] * 2
    with pytest.raises(ValueError, match="res2..res5"):
        make_resnet_stages(50, deform_on_stages=["c3"])
    with pytest.raises(ValueError, match="depth"):
        make_resnet_stages(42)
