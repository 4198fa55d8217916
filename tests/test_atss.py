"""ATSS on drawn cases whose answers are worked out by hand, and against a slow reference."""

import math

import torch

from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes, pairwise_iou

from gfocal.modeling import ATSSMatcher


def make_anchors(grids, strides):
    """Reference anchors: squares of side 8 x stride centred on (x*stride, y*stride)."""
    gen = DefaultAnchorGenerator(sizes=[[8 * s] for s in strides], aspect_ratios=[1.0], strides=strides, offset=0.0)
    features = [torch.zeros(1, 1, h, w) for h, w in grids]
    return gen(features)


def index(row, col, width=8):
    return row * width + col


def match(anchors, gt, valid=None):
    matched, ious = ATSSMatcher(topk=9)(anchors, Boxes(torch.tensor(gt, dtype=torch.float32)), valid)
    return matched, ious


def test_small_box_gets_only_the_anchor_at_its_centre():
    # 8x8 box centred on the stride-8 anchor (24, 24). Its 9 candidates (3x3 around it) all
    # contain the box: IoU 64 / 4096 each, std 0, so all pass the threshold; only (24, 24) has
    # its centre inside the box.
    anchors = make_anchors([(8, 8)], [8])
    matched, ious = match(anchors, [[20, 20, 28, 28]])
    expected = torch.full((64,), -1)
    expected[index(3, 3)] = 0
    assert torch.equal(matched, expected)
    assert ious[index(3, 3)] == 64 / 4096


def test_large_box_keeps_only_candidates_above_mean_plus_std():
    # Box = the whole 64x64 image, centre (32, 32). Candidates: the 3x3 block around (32, 32),
    # with IoUs 1 (centre), 3584/4608 (4 edge neighbours), 3136/5056 (4 corners).
    anchors = make_anchors([(8, 8)], [8])
    matched, _ = match(anchors, [[0, 0, 64, 64]])
    ious = torch.tensor([1.0] + [3584 / 4608] * 4 + [3136 / 5056] * 4)
    threshold = ious.mean() + ious.std()  # 0.8600: only the centre passes
    assert 0.85 < threshold < 0.87
    expected = torch.full((64,), -1)
    expected[index(4, 4)] = 0
    assert torch.equal(matched, expected)


def test_tiny_box_across_two_levels_gets_no_positive():
    # The threshold pools the candidates of every level: 9 at IoU 64/4096 (stride 8) and 9 at
    # IoU 64/16384 (stride 16) give mean + std = 0.00977 + 0.00603 = 0.01580 > 0.015625, so the
    # tiny box has no positive at all. A per-level threshold would give it one.
    anchors = make_anchors([(8, 8), (4, 4)], [8, 16])
    matched, _ = match(anchors, [[20, 20, 28, 28]])
    assert (matched == -1).all()


def test_overlapping_gts_compete_for_the_shared_anchor():
    # A = whole image (only the centre anchor passes, IoU 1); B = [8, 56]^2 with the same centre:
    # its 9 candidates all have IoU 2304/4096 and centres inside B, so all 9 pass. The centre
    # anchor is claimed by both and goes to A (IoU 1 > 0.5625).
    anchors = make_anchors([(8, 8)], [8])
    matched, ious = match(anchors, [[0, 0, 64, 64], [8, 8, 56, 56]])
    expected = torch.full((64,), -1)
    for r in (3, 4, 5):
        for c in (3, 4, 5):
            expected[index(r, c)] = 1
    expected[index(4, 4)] = 0
    assert torch.equal(matched, expected)
    assert ious[index(4, 4)] == 1.0 and ious[index(3, 3)] == 0.5625


def test_box_at_the_image_border():
    # 10x10 box in the corner, centre (5, 5). Its 9 nearest anchors all contain it (equal IoUs);
    # only (8, 8) has its centre strictly inside: (0, 0), (8, 0), (0, 8) lie on the box edge.
    anchors = make_anchors([(8, 8)], [8])
    matched, _ = match(anchors, [[0, 0, 10, 10]])
    expected = torch.full((64,), -1)
    expected[index(1, 1)] = 0
    assert torch.equal(matched, expected)


def test_no_gt_means_all_background():
    anchors = make_anchors([(8, 8), (4, 4)], [8, 16])
    matched, ious = ATSSMatcher()(anchors, Boxes(torch.zeros(0, 4)))
    assert matched.shape == (80,) and (matched == -1).all() and (ious == 0).all()


def test_invalid_anchors_are_never_candidates():
    # Same as the small-box case, but the anchor column x = 24 is marked invalid (padding):
    # the candidates move and no valid anchor has its centre inside the 8x8 box.
    anchors = make_anchors([(8, 8)], [8])
    valid = torch.ones(8, 8, dtype=torch.bool)
    valid[:, 3] = False
    matched, _ = match(anchors, [[20, 20, 28, 28]], valid.flatten())
    assert (matched == -1).all()


def reference_atss(anchors, gt, topk=9, eps=0.01):
    """Slow, literal ATSS: per gt, per level, python loops (the algorithm of the paper)."""
    all_anchors = Boxes.cat(anchors)
    centers = all_anchors.get_centers()
    ious = pairwise_iou(all_anchors, gt)  # (R, M)
    best = torch.full((len(all_anchors),), -1.0)
    assigned = torch.full((len(all_anchors),), -1)
    for m in range(len(gt)):
        g = gt.tensor[m]
        gc = ((g[0] + g[2]) / 2, (g[1] + g[3]) / 2)
        cands = []
        start = 0
        for level in anchors:
            d = [
                (math.hypot(centers[start + i, 0] - gc[0], centers[start + i, 1] - gc[1]), start + i)
                for i in range(len(level))
            ]
            cands += [i for _, i in sorted(d)[: min(topk, len(level))]]
            start += len(level)
        vals = torch.stack([ious[i, m] for i in cands])
        thr = vals.mean() + vals.std()
        for i in cands:
            x, y = centers[i]
            inside = min(x - g[0], y - g[1], g[2] - x, g[3] - y) > eps
            if ious[i, m] >= thr and inside and ious[i, m] > best[i]:
                best[i] = ious[i, m]
                assigned[i] = m
    return assigned


def test_matches_a_literal_reference_on_random_scenes():
    gen = torch.Generator().manual_seed(3)
    anchors = make_anchors([(16, 20), (8, 10), (4, 5)], [8, 16, 32])
    for _ in range(10):
        m = int(torch.randint(1, 7, (1,), generator=gen))
        xy = torch.rand(m, 2, generator=gen) * torch.tensor([140.0, 110.0])
        wh = torch.rand(m, 2, generator=gen) * 90 + 4
        gt = Boxes(torch.cat([xy, xy + wh], dim=1))
        matched, _ = ATSSMatcher(topk=9)(anchors, gt)
        expected = reference_atss(anchors, gt)
        # Distance ties could order candidates differently; random boxes make them unlikely.
        assert torch.equal(matched, expected)
