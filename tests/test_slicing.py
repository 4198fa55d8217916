"""Sliced inference: the tile grid (SAHI's placement), cut sides, the three merges on drawn cases."""

import numpy as np
import pytest

from gfocal_runtime.boxes import side_std
from gfocal_runtime.slicing import (
    SlicingSettings,
    _greedy_groups,
    cut_sides,
    merge_detections,
    tile_grid,
    tile_starts,
)


def test_tile_starts_match_sahis_placement():
    # sahi.slicing.get_slice_bboxes(700, 1000, 512, 512, overlap 0.2) gives x 0, 410, 488 and y
    # 0, 188: step = 512 - int(0.2 * 512), the last tile moved back to end at the edge.
    assert tile_starts(1000, 512, 0.2).tolist() == [0, 410, 488]
    assert tile_starts(700, 512, 0.2).tolist() == [0, 188]
    assert tile_starts(1024, 256, 0.25).tolist() == [0, 192, 384, 576, 768]
    assert tile_starts(200, 256, 0.25).tolist() == [0]  # one tile covers the side


@pytest.mark.parametrize(
    "height,width,size,overlap", [(768, 1024, 256, 0.25), (333, 1001, 100, 0.0), (50, 80, 64, 0.5)]
)
def test_tiles_cover_the_image_and_overlap_as_asked(height, width, size, overlap):
    tiles = tile_grid(height, width, size, overlap)
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert x1 - x0 == min(size, width) and y1 - y0 == min(size, height)
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = np.unique(tiles[:, 0])
    if len(xs) > 1:  # neighbours share at least int(overlap * size) pixels
        assert (np.diff(xs) <= size - int(overlap * size)).all()


def test_one_tile_covering_the_image_means_no_tiles():
    settings = SlicingSettings(size=512)
    assert len(settings.tiles(300, 500)) == 0
    assert len(settings.tiles(300, 600)) == 2


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(size=0), "positive integer"),
        (dict(size=256.0), "positive integer"),
        (dict(size=True), "positive integer"),
        (dict(overlap=1.0), r"\[0, 1\)"),
        (dict(overlap=-0.1), r"\[0, 1\)"),
        (dict(merge="wbf"), "nms, greedy, distribution"),
        (dict(whole_image="yes"), "True or False"),
    ],
)
def test_bad_settings_name_what_is_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlicingSettings(**kwargs)
    with pytest.raises(ValueError, match="unknown slicing setting"):
        SlicingSettings.parse({"size": 256, "overlpa": 0.2})


def test_settings_parse_once_off_unless_enabled():
    assert SlicingSettings.parse(None) is None
    assert SlicingSettings.parse({"enabled": False, "size": -1}) is None  # off: not checked
    on = SlicingSettings.parse({"enabled": True, "size": 128, "merge": "nms"})
    assert on == SlicingSettings(size=128, merge="nms") and SlicingSettings.parse(on) is on
    assert SlicingSettings.parse({"size": 64}).size == 64  # no "enabled": a caller's dict means on


def test_cut_sides_only_on_inner_borders():
    image_hw = (100, 200)
    views = np.array([[0, 0, 120, 100], [80, 0, 200, 100], [0, 0, 200, 100]], np.float32)
    boxes = np.array([[10, 0, 120, 40], [81, 50, 150, 100], [0, 0, 200, 100]], np.float32)
    cut = cut_sides(boxes, views, image_hw)
    # Box 0 ends on tile 0's inner right border; its top is on the image's edge (not cut).
    assert cut.tolist() == [
        [False, False, True, False],
        [True, False, False, False],  # 1 px from tile 1's inner left border; bottom on the edge
        [False, False, False, False],  # the whole image has no inner border
    ]


def _sequential_groups(match):
    """Reference greedy grouping, one detection at a time (SAHI's GREEDYNMM loop)."""
    n = len(match)
    leader = -np.ones(n, int)
    for i in range(n):
        if leader[i] >= 0:
            continue
        leader[i] = i
        for j in range(i + 1, n):
            if leader[j] < 0 and match[i, j]:
                leader[j] = i
    return leader


def test_vectorised_greedy_grouping_equals_the_sequential_loop():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 60, 300):
        xy = rng.uniform(0, 100, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (n, 2))], 1)
        lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
        rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
        inter = np.clip(rb - lt, 0, None).prod(-1)
        area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
        match = inter / np.minimum(area[:, None], area[None]) >= 0.3
        np.testing.assert_array_equal(_sequential_groups(match), _greedy_groups(match))


def _dists(std_bins, n=16):
    """(N, 4, n+1) distributions with exactly the given (N, 4) standard deviations in bins:
    mass q at n/2 - k and n/2 + k, the rest at n/2 (variance 2 q k^2, k = ceil(std))."""
    std = np.asarray(std_bins, np.float64)
    k = np.maximum(np.ceil(std), 1).astype(int)
    q = std**2 / (2 * k**2)
    p = np.zeros(std.shape + (n + 1,))
    idx = np.indices(std.shape)
    p[(*idx, n // 2 - k)] += q
    p[(*idx, n // 2 + k)] += q
    p[(*idx, np.full_like(k, n // 2))] += 1 - 2 * q
    return p.astype(np.float32)


def test_side_std_in_pixels():
    d = np.zeros((2, 4, 17), np.float32)
    d[:, 0, [3, 5]] = 0.5  # two bins 2 apart: std 1 bin
    d[:, 1, 7] = 1.0  # one bin: std 0
    d[:, 2, [0, 1, 2]] = [0.25, 0.5, 0.25]  # variance 0.5
    d[:, 3, [0, 16]] = 0.5  # the two ends: std 8 bins
    std = side_std(d, np.array([8.0, 0.5], np.float32))
    np.testing.assert_allclose(std[0], [8.0, 0.0, 8 * 0.5**0.5, 64.0], atol=1e-4)
    np.testing.assert_allclose(std[1], std[0] / 16, atol=1e-4)


def _border_object():
    """One object [100, 40, 160, 80] crossing the inner border x = 128 of tile A (0..128), seen
    cut by A, whole by tile B (96..224), and loosely by the whole image; plus a small object of
    the same class lying on a big one (not cut anywhere)."""
    image_hw = (200, 300)
    views = np.array(
        [[0, 0, 128, 200], [96, 0, 224, 200], [0, 0, 300, 200], [0, 0, 300, 200], [0, 0, 300, 200]], np.float32
    )
    boxes = np.array(
        [
            [100.0, 40.5, 128.0, 80.0],  # tile A: right side on A's border (cut), left a bit off
            [101.0, 40.0, 160.0, 79.0],  # tile B: all sides seen, sharp except its bottom
            [99.0, 41.0, 161.0, 80.5],  # whole image: blurry everywhere
            [20.0, 120.0, 90.0, 190.0],  # a big object ...
            [40.0, 140.0, 52.0, 152.0],  # ... and a small one of the same class on it
        ],
        np.float32,
    )
    std = np.array([[0.4, 2.0, 0.3, 0.5], [1.0, 0.4, 0.6, 3.0], [2.5, 2.5, 2.5, 2.5], [0.5] * 4, [0.5] * 4], np.float32)
    dets = {
        "boxes": boxes,
        "scores": np.array([0.9, 0.7, 0.6, 0.8, 0.5], np.float32),
        "classes": np.zeros(5, np.int64),
        "dists": _dists(std),
        "strides": np.ones(5, np.float32),
    }
    return dets, cut_sides(boxes, views, image_hw)


def _weighted(edges, scores, stds, floor=1e-2):
    w = np.asarray(scores) / (np.asarray(stds) ** 2 + floor)
    return float((w * np.asarray(edges)).sum() / w.sum())


def test_distribution_merge_weighs_each_side_by_the_views_that_saw_it_uncut():
    dets, cut = _border_object()
    assert cut[0].tolist() == [False, False, True, False]
    np.testing.assert_allclose(side_std(dets["dists"], dets["strides"])[:2], [[0.4, 2, 0.3, 0.5], [1, 0.4, 0.6, 3]])
    out = merge_detections(dets, cut, "distribution", nms_thresh=0.6, max_detections=100)
    # Three objects: the border one once (A, B and the whole image grouped), the big one and the
    # small one on it (not cut: not grouped with it, unlike greedy). The border object's score
    # is B's, the best of the views that saw it whole (A's 0.9 rates its truncated box).
    np.testing.assert_allclose(out["scores"], [0.8, 0.7, 0.5])
    np.testing.assert_allclose(out["boxes"][0], [20.0, 120.0, 90.0, 190.0])
    np.testing.assert_allclose(out["boxes"][2], [40.0, 140.0, 52.0, 152.0])
    # Each side: the score / std^2 weighted mean over A and B (the whole image scores under 0.7 of
    # the best, 0.9: not evidence while confident views saw the side); the right side from B
    # alone, A's being cut by its tile.
    left = _weighted([100, 101], [0.9, 0.7], [0.4, 1.0])
    top = _weighted([40.5, 40], [0.9, 0.7], [2.0, 0.4])
    bottom = _weighted([80, 79], [0.9, 0.7], [0.5, 3.0])
    np.testing.assert_allclose(out["boxes"][1], [left, top, 160.0, bottom], atol=1e-4)
    assert 100 < left < 100.2 and 40 < top < 40.1  # near the sharper view's edge


def test_greedy_merge_is_sahis_enclosing_box_and_swallows_the_small_object():
    dets, cut = _border_object()
    out = merge_detections(dets, cut, "greedy", nms_thresh=0.6, max_detections=100)
    np.testing.assert_allclose(out["scores"], [0.9, 0.8])  # IoS >= 0.5: the small one joins the big one
    np.testing.assert_allclose(out["boxes"][0], [99.0, 40.0, 161.0, 80.5])  # the enclosing box
    np.testing.assert_allclose(out["boxes"][1], [20.0, 120.0, 90.0, 190.0])


def test_nms_merge_keeps_the_best_box_whole():
    dets, cut = _border_object()
    out = merge_detections(dets, cut, "nms", nms_thresh=0.6, max_detections=100)
    # A's truncated box has the best score; B's and the whole image's overlap it by IoU < 0.6.
    np.testing.assert_allclose(out["boxes"][0], [100.0, 40.5, 128.0, 80.0])
    assert len(out["scores"]) == 4
    np.testing.assert_allclose(out["boxes"][1], [20.0, 120.0, 90.0, 190.0])


def test_merges_keep_classes_apart_and_cap_the_count():
    dets, cut = _border_object()
    dets["classes"] = np.array([0, 1, 0, 0, 0])
    out = merge_detections(dets, cut, "distribution", nms_thresh=0.6, max_detections=3)
    # B (class 1) is alone; A and the whole image: the whole image's score (it saw the object
    # whole), A's left/top/bottom (the whole image is not confident enough to weigh in) and the
    # whole image's right (A's is cut: less confident evidence is used when it is the only one).
    np.testing.assert_allclose(out["scores"], [0.8, 0.7, 0.6])
    np.testing.assert_allclose(out["boxes"][2], [100.0, 40.5, 161.0, 80.0])
    empty = {k: v[:0] for k, v in dets.items()}
    for merge in ("nms", "greedy", "distribution"):
        assert len(merge_detections(empty, cut[:0], merge, 0.6, 100)["boxes"]) == 0


def test_greedy_merges_at_exactly_half_of_the_smaller_box():
    """SAHI's GREEDYNMM joins at IoS >= 0.5 (not >), comparing with the group's first box."""
    dets = {
        "boxes": np.array([[0, 0, 10, 10], [5, 0, 15, 10], [9, 0, 19, 10]], np.float32),
        "scores": np.array([0.9, 0.8, 0.7], np.float32),
        "classes": np.zeros(3, np.int64),
    }
    out = merge_detections(dets, np.zeros((3, 4), bool), "greedy", 0.6, 100)
    # The second joins the first (IoS 0.5); the third overlaps the first by 0.1 only: its own group.
    np.testing.assert_allclose(out["boxes"], [[0, 0, 15, 10], [9, 0, 19, 10]])


def test_overlap_pixels_are_truncated_as_sahi_does():
    # int(0.255 * 100) = 25 px shared, a step of 75 (rounding would share 26).
    assert tile_starts(300, 100, 0.255).tolist() == [0, 75, 150, 200]


def test_merges_read_unsorted_input_and_cap_every_merge():
    dets, cut = _border_object()
    order = np.array([4, 2, 0, 3, 1])  # not by score
    shuffled = {k: v[order] for k, v in dets.items()}
    for merge in ("nms", "greedy", "distribution"):
        want = merge_detections(dets, cut, merge, 0.6, 100)
        got = merge_detections(shuffled, cut[order], merge, 0.6, 100)
        np.testing.assert_allclose(got["boxes"], want["boxes"])
        capped = merge_detections(dets, cut, merge, 0.6, 1)
        assert len(capped["scores"]) == 1 and capped["scores"][0] == want["scores"].max()


def test_a_side_cut_in_every_view_is_the_farthest_edge():
    """An object at x 384..700 seen by two tiles, neither of which holds its left end... the
    left side is cut in both: the object runs at least to the farthest cut edge."""
    image_hw = (768, 1024)
    views = np.array([[384, 0, 640, 256], [576, 0, 832, 256]], np.float32)
    boxes = np.array([[384, 100, 640, 140], [576, 100, 700, 140]], np.float32)
    cut = cut_sides(boxes, views, image_hw)
    assert cut.tolist() == [[True, False, True, False], [True, False, False, False]]
    dets = {
        "boxes": boxes,
        "scores": np.array([0.9, 0.8], np.float32),
        "classes": np.zeros(2, np.int64),
        "dists": _dists(np.full((2, 4), 0.5)),
        "strides": np.ones(2, np.float32),
    }
    out = merge_detections(dets, cut, "distribution", 0.6, 100)
    np.testing.assert_allclose(out["boxes"], [[384, 100, 700, 140]])


def test_an_adversarial_chain_of_overlaps_groups_as_the_loop_does():
    """Boxes 2 px apart, each overlapping the next: more rounds than the fixed point is given,
    so the leaders are found one at a time, with the same result."""
    n = 200
    boxes = np.stack([np.arange(n) * 2.0, np.zeros(n), np.arange(n) * 2.0 + 10, np.full(n, 10.0)], 1)
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    match = inter / 100.0 >= 0.75  # each box matches its neighbours 1 step away only
    np.testing.assert_array_equal(_sequential_groups(match), _greedy_groups(match))
    assert len(np.unique(_greedy_groups(match))) == n // 2
