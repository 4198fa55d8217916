"""Every term of the GFL loss (paper eq. 8) on a case small enough to compute by hand.

`GFL.losses` is called directly with chosen head outputs and a chosen matching (ATSS has its
own tests), and each of `loss_qfl`, `loss_box` and `loss_dfl` is recomputed here in plain
Python floats, step by step, from the paper's definitions: the decoded box is the expectation
of the distributions, the class target is the IoU of that box with its gt, GIoU and DFL follow
their papers, and the box terms are weighted by each positive's predicted quality (the max over
classes of its score) and divided by the summed weights, the QFL by the positives per image.

The case: 2 images, 2 classes, reg_max n = 4, two levels (strides 8 and 16) of 4x4 locations.
Image 0 has two positives, A (stride 8, centre (16, 16), class 0) and B (stride 16, centre
(32, 48), class 1); image 1 has none, so the QFL normaliser is max(2, 1) + max(0, 1) = 3.
"""

import math

import pytest
import torch
from gfl_testing import small_gfl_cfg

from detectron2.config import instantiate
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

K, N_BINS = 2, 5  # classes; bins 0..4 (reg_max 4)
STRIDES = (8, 16)
GRID = 4
A, B = 10, GRID * GRID + 3 * GRID + 2  # anchor indices: level 0 (x 2, y 2), level 1 (x 2, y 3)

# Side distributions (left, top, right, bottom) of the two positives, bins 0..4.
P_A = [
    [0.1, 0.2, 0.4, 0.2, 0.1],  # expectation 2.0
    [0.2, 0.4, 0.2, 0.1, 0.1],  # 1.5
    [0.1, 0.1, 0.1, 0.3, 0.4],  # 2.8
    [0.1, 0.1, 0.1, 0.2, 0.5],  # 2.9
]
P_B = [[0.1, 0.2, 0.4, 0.2, 0.1]] * 4  # 2.0 each side
GT_A = (0.0, 4.0, 48.0, 36.0)  # pixels; in stride-8 units (0, 0.5, 6, 4.5): right distance 4 > n - 0.1
GT_B = (16.0, 16.0, 64.0, 96.0)  # pixels; in stride-16 units (1, 1, 4, 6)
# Class probabilities of the positives. Neither has its max at its gt class (A: class 0, B:
# class 1), and the maxima are at different classes: the weight is the max over classes.
S_A = (0.3, 0.8)
S_B = (0.9, 0.5)


def logit(p):
    return math.log(p / (1 - p))


def anchors():
    per_level = []
    for stride in STRIDES:
        ys, xs = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        c = torch.stack([xs.flatten(), ys.flatten()], dim=1).float() * stride
        half = 4 * stride
        per_level.append(Boxes(torch.cat([c - half, c + half], dim=1)))
    return per_level


def case(quality=None, seed=0):
    """Head outputs (one row per location, as GFL.losses takes them) and the matching."""
    gen = torch.Generator().manual_seed(seed)
    R = 2 * GRID * GRID
    logits = torch.randn(2, R, K, generator=gen)  # negatives: arbitrary
    dists = torch.randn(2, R, 4 * N_BINS, generator=gen)
    logits[0, A] = torch.tensor([logit(p) for p in S_A])
    logits[0, B] = torch.tensor([logit(p) for p in S_B])
    dists[0, A] = torch.tensor(P_A).log().flatten()
    dists[0, B] = torch.tensor(P_B).log().flatten()
    gt_labels = [torch.full((R,), K), torch.full((R,), K)]
    gt_labels[0][A], gt_labels[0][B] = 0, 1
    gt_boxes = [torch.zeros(R, 4), torch.zeros(R, 4)]
    gt_boxes[0][A], gt_boxes[0][B] = torch.tensor(GT_A), torch.tensor(GT_B)
    logits.requires_grad_(True)
    dists.requires_grad_(True)
    outs = {
        "logits": logits,
        "dists": dists,
        "quality": quality,
        "gt_labels": gt_labels,
        "gt_boxes": gt_boxes,
    }
    return outs, logits, dists


def model(use_dgqp):
    cfg = small_gfl_cfg(use_dgqp, num_classes=K)
    cfg.head.reg_max = N_BINS - 1
    return instantiate(cfg)


# ------------------------------------------------------------------ hand computations


def expectation(p):
    return sum(i * pi for i, pi in enumerate(p))


def decoded(center, p):
    """Box in stride units from a centre and the four side distributions."""
    left, top, right, bottom = (expectation(side) for side in p)
    return (center[0] - left, center[1] - top, center[0] + right, center[1] + bottom)


def area(box):
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def iou_and_giou(a, b):
    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inter
    hull = area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    iou = inter / union
    return iou, iou - (hull - union) / hull


def dfl(p, y):
    """-((y_{i+1} - y) log p_i + (y - y_i) log p_{i+1}), y_i = floor(y)."""
    i = math.floor(y)
    return -((i + 1 - y) * math.log(p[i]) + (y - i) * math.log(p[i + 1]))


def qfl(s, y, beta=2.0):
    return -(abs(y - s) ** beta) * ((1 - y) * math.log(1 - s) + y * math.log(s))


def positive_terms(center, stride, gt_pixels, p):
    gt = tuple(v / stride for v in gt_pixels)
    box = decoded(center, p)
    iou, giou = iou_and_giou(box, gt)
    targets = (center[0] - gt[0], center[1] - gt[1], gt[2] - center[0], gt[3] - center[1])
    clamped = [min(max(t, 0.0), N_BINS - 1 - 0.1) for t in targets]
    mean_dfl = sum(dfl(side, y) for side, y in zip(p, clamped)) / 4
    return iou, 1 - giou, mean_dfl


def expected_losses(scores, beta=2.0):
    """scores: (2, R, K) joint scores (probabilities) of every location, as a nested list."""
    iou_a, giou_a, dfl_a = positive_terms((2.0, 2.0), 8, GT_A, P_A)
    iou_b, giou_b, dfl_b = positive_terms((2.0, 3.0), 16, GT_B, P_B)
    targets = {(0, A, 0): iou_a, (0, B, 1): iou_b}
    qfl_sum = sum(
        qfl(scores[i][r][k], targets.get((i, r, k), 0.0), beta)
        for i in range(2)
        for r in range(len(scores[0]))
        for k in range(K)
    )
    w_a, w_b = max(scores[0][A]), max(scores[0][B])
    norm_pos = max(2, 1) + max(0, 1)
    norm_quality = max(w_a + w_b, 1.0)
    return {
        "loss_qfl": 1.0 * qfl_sum / norm_pos,
        "loss_box": 2.0 * (w_a * giou_a + w_b * giou_b) / norm_quality,
        "loss_dfl": 0.25 * (w_a * dfl_a + w_b * dfl_b) / norm_quality,
    }, (iou_a, iou_b, w_a + w_b)


def run_losses(m, outs):
    m.train()
    with EventStorage() as storage:
        losses = m.losses(anchors(), valid=None, **outs)
    return losses, storage


def test_the_hand_case_is_what_it_claims():
    """The case exercises what it is meant to: the quality normaliser is not clamped, one DFL
    target is clamped at n - 0.1, and GIoU differs from IoU for both positives."""
    iou_a, giou_a, _ = positive_terms((2.0, 2.0), 8, GT_A, P_A)
    iou_b, giou_b, _ = positive_terms((2.0, 3.0), 16, GT_B, P_B)
    assert abs((1 - giou_a) - iou_a) > 0.01 and abs((1 - giou_b) - iou_b) > 0.01
    assert max(S_A) + max(S_B) > 1
    assert GT_A[2] / 8 - 2.0 > N_BINS - 1 - 0.1


@pytest.mark.parametrize("beta", [2.0, 1.0])
def test_gfl_v1_losses_by_hand(beta):
    m = model(use_dgqp=False)
    assert m.qfl_beta == 2.0  # the reference's
    m.qfl_beta = beta
    outs, logits, _ = case()
    losses, storage = run_losses(m, outs)
    scores = logits.detach().sigmoid().tolist()
    expected, (iou_a, iou_b, weight_sum) = expected_losses(scores, beta)
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-5), key
    assert storage.history("gfl/norm_pos").latest() == 3
    assert storage.history("gfl/norm_quality").latest() == pytest.approx(weight_sum, rel=1e-6)
    assert storage.history("gfl/dfl_clamped_frac").latest() == pytest.approx(1 / 8)


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_gfl_v2_losses_by_hand_with_a_quality_that_is_not_one(beta):
    m = model(use_dgqp=True)
    assert m.qfl_beta == 2.0
    m.qfl_beta = beta
    R = 2 * GRID * GRID
    quality = torch.rand(2, R, 1, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1
    quality[0, A], quality[0, B] = 0.9, 0.95
    outs, logits, _ = case(quality=quality)
    losses, _ = run_losses(m, outs)
    scores = (logits.detach().sigmoid() * quality).tolist()
    expected, _ = expected_losses(scores, beta)
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-5), key


@pytest.mark.parametrize("use_dgqp", [False, True])
def test_qfl_targets_are_detached(use_dgqp):
    """The IoU target of QFL must not carry gradient into the distributions: the QFL term
    depends on the distribution logits only through that (detached) target."""
    m = model(use_dgqp)
    quality = torch.full((2, 2 * GRID * GRID, 1), 0.7) if use_dgqp else None
    outs, logits, dists = case(quality=quality)
    losses, _ = run_losses(m, outs)
    losses["loss_qfl"].backward()
    assert logits.grad.abs().sum() > 0
    assert dists.grad is None or (dists.grad == 0).all()


@pytest.mark.parametrize("use_dgqp", [False, True])
def test_box_weights_are_detached(use_dgqp):
    """The quality weights of the box terms are constants: the GIoU and DFL terms give no
    gradient to the class logits."""
    m = model(use_dgqp)
    quality = torch.full((2, 2 * GRID * GRID, 1), 0.7, requires_grad=True) if use_dgqp else None
    outs, logits, dists = case(quality=quality)
    losses, _ = run_losses(m, outs)
    (losses["loss_box"] + losses["loss_dfl"]).backward()
    assert dists.grad.abs().sum() > 0
    assert logits.grad is None or (logits.grad == 0).all()
    if use_dgqp:
        assert quality.grad is None or (quality.grad == 0).all()


def test_no_positive_anywhere():
    """Both images empty: box terms are exactly 0 and the QFL normaliser is 2 (1 per image)."""
    m = model(use_dgqp=False)
    outs, logits, _ = case()
    outs["gt_labels"] = [torch.full_like(g, K) for g in outs["gt_labels"]]
    losses, _ = run_losses(m, outs)
    scores = logits.detach().sigmoid().tolist()
    expected = sum(qfl(s, 0.0) for image in scores for loc in image for s in loc) / 2
    assert losses["loss_qfl"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["loss_box"].item() == 0 and losses["loss_dfl"].item() == 0
