import math

import pytest
import torch
from fvcore.nn import sigmoid_focal_loss

from gfocal.modeling import (
    distribution_focal_loss,
    generalized_focal_loss,
    quality_focal_loss,
    quality_focal_loss_with_prob,
)


def test_qfl_hand_computed():
    # s = sigmoid(log 3) = 0.75, y = 0.25: |0.5|^2 * -(0.75 log 0.25 + 0.25 log 0.75)
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0]])
    targets = torch.tensor([[0.25, 1.0, 0.5]])
    expected = torch.tensor(
        [
            [
                0.25 * -(0.75 * math.log(0.25) + 0.25 * math.log(0.75)),
                0.25 * math.log(2.0),  # s = 0.5, y = 1
                0.0,  # s = y: no loss at all
            ]
        ]
    )
    out = quality_focal_loss(logits, targets)
    assert out.shape == (1, 3)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(quality_focal_loss(logits, targets, reduction="sum"), expected.sum())


@pytest.mark.parametrize("beta, modulator", [(1.0, 0.5), (3.0, 0.125)])
def test_qfl_other_exponents_hand_computed(beta, modulator):
    """|y - s|^beta with s - y = 0.5: 0.5 at beta 1 and 0.125 at beta 3, for both QFL forms."""
    logits = torch.tensor([[math.log(3.0), 0.0]])  # s = 0.75, 0.5
    targets = torch.tensor([[0.25, 1.0]])
    ce = [-(0.75 * math.log(0.25) + 0.25 * math.log(0.75)), math.log(2.0)]
    expected = torch.tensor([[modulator * ce[0], modulator * ce[1]]])
    torch.testing.assert_close(quality_focal_loss(logits, targets, beta=beta), expected)
    torch.testing.assert_close(quality_focal_loss_with_prob(logits.sigmoid(), targets, beta=beta), expected)


@pytest.mark.parametrize("y", [0.0, 0.1, 0.37, 0.5, 0.83, 1.0])
def test_qfl_global_minimum_at_sigmoid_equals_target(y):
    s = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    logits = torch.log(s / (1 - s))[:, None]
    loss = quality_focal_loss(logits, torch.full_like(logits, y))[:, 0]
    assert abs(s[loss.argmin()].item() - y) <= 0.0011
    assert loss.min() <= 1e-6
    # The gradient vanishes at s = y (interior targets only; 0 and 1 are limits).
    if 0 < y < 1:
        logit = torch.tensor([[math.log(y / (1 - y))]], requires_grad=True)
        quality_focal_loss(logit, torch.tensor([[y]])).sum().backward()
        assert abs(logit.grad.item()) < 1e-6


def test_dfl_hand_computed():
    # Uniform over 3 bins, y = 0.3: (0.7 + 0.3) * log 3.
    logits = torch.zeros(2, 3)
    # softmax([0, log 2, 0]) = [1/4, 1/2, 1/4], y = 1.25: 0.75 * log 2 + 0.25 * log 4.
    logits[1, 1] = math.log(2.0)
    target = torch.tensor([0.3, 1.25])
    expected = torch.tensor([math.log(3.0), 0.75 * math.log(2.0) + 0.25 * math.log(4.0)])
    torch.testing.assert_close(distribution_focal_loss(logits, target), expected)


@pytest.mark.parametrize("y", [0.0, 2.3, 7.75, 15.9])
def test_dfl_minimum_puts_mass_on_two_nearest_bins(y):
    n = 16
    logits = torch.zeros(1, n + 1, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.5)
    target = torch.tensor([y])
    for _ in range(800):
        opt.zero_grad()
        distribution_focal_loss(logits, target).sum().backward()
        opt.step()
    probs = logits.detach().softmax(dim=1)[0]
    i = int(math.floor(y))
    expected = torch.zeros(n + 1)
    expected[i] = (i + 1) - y
    expected[i + 1] = y - i
    torch.testing.assert_close(probs, expected, atol=0.01, rtol=0)
    expectation = (probs * torch.arange(n + 1.0)).sum()
    assert abs(expectation.item() - y) < 0.02


def test_fl_qfl_dfl_are_special_cases_of_gfl():
    torch.manual_seed(1)
    logits = torch.randn(50) * 3
    sig = logits.sigmoid()
    # QFL: y_l = 0, y_r = 1, p_r = sigmoid, p_l = 1 - sigmoid.
    y = torch.rand(50)
    gfl = generalized_focal_loss(1 - sig, sig, 0.0, 1.0, y, beta=2.0)
    torch.testing.assert_close(gfl, quality_focal_loss(logits[:, None], y[:, None])[:, 0])
    # FL (no alpha): QFL with hard labels, beta = gamma.
    hard = (torch.rand(50) > 0.5).float()
    gfl = generalized_focal_loss(1 - sig, sig, 0.0, 1.0, hard, beta=2.0)
    fl = sigmoid_focal_loss(logits, hard, alpha=-1, gamma=2.0, reduction="none")
    torch.testing.assert_close(gfl, fl)
    # DFL: beta = 0, the two bins around y.
    dist_logits = torch.randn(50, 17)
    target = torch.rand(50) * 15.9
    probs = dist_logits.softmax(dim=1)
    left = target.floor().long()
    p_l = probs.gather(1, left[:, None])[:, 0]
    p_r = probs.gather(1, left[:, None] + 1)[:, 0]
    gfl = generalized_focal_loss(p_l, p_r, left.float(), left.float() + 1, target, beta=0.0)
    torch.testing.assert_close(gfl, distribution_focal_loss(dist_logits, target))


def test_v2_qfl_equals_naive_formula_on_probabilities():
    probs = torch.rand(40, 5, dtype=torch.float64) * 0.98 + 0.01
    targets = torch.rand(40, 5, dtype=torch.float64) * (torch.rand(40, 5) > 0.7)
    naive = -(targets * probs.log() + (1 - targets) * (1 - probs).log()) * (targets - probs).abs() ** 2
    out = quality_focal_loss_with_prob(probs.float(), targets.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), naive, rtol=1e-5, atol=1e-6)
    # Where the logit exists (quality = 1), the two QFLs agree.
    logits = torch.randn(40, 5)
    torch.testing.assert_close(
        quality_focal_loss_with_prob(logits.sigmoid(), targets.float()),
        quality_focal_loss(logits, targets.float()),
        rtol=1e-4,
        atol=1e-6,
    )


def test_losses_are_float32_under_bf16_autocast():
    logits = torch.randn(30, 4)
    targets = torch.rand(30, 4)
    dist_logits = torch.randn(30, 17)
    dist_target = torch.rand(30) * 15
    ref_qfl = quality_focal_loss(logits, targets)
    ref_v2 = quality_focal_loss_with_prob(logits.sigmoid(), targets)
    ref_dfl = distribution_focal_loss(dist_logits, dist_target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lin = torch.nn.Linear(4, 4)
        with torch.no_grad():
            lin.weight.copy_(torch.eye(4))
            lin.bias.zero_()
        low = lin(logits)  # bf16 under autocast, as a head's output would be
        assert low.dtype == torch.bfloat16
        qfl = quality_focal_loss(low, targets)
        v2 = quality_focal_loss_with_prob(low.sigmoid(), targets)
        dfl = distribution_focal_loss(dist_logits.bfloat16(), dist_target)
    for out, ref in [(qfl, ref_qfl), (v2, ref_v2), (dfl, ref_dfl)]:
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, rtol=0.05, atol=0.02)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="one shape"):
        quality_focal_loss(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="expected logits"):
        distribution_focal_loss(torch.zeros(3, 17), torch.zeros(4))
