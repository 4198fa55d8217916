"""Pictures of GFL's side distributions (gfocal.analysis.visualization) and the uncertainty-vs-error
analysis (gfocal.analysis.uncertainty). CPU, hand-made Instances, seconds."""

import os

import cv2
import numpy as np
import pytest
import torch

from detectron2.structures import Boxes, BoxMode, Instances

from gfocal.analysis.plotting import plot_uncertainty_vs_error
from gfocal.analysis.uncertainty import collect, distribution_stats, match_detections, pearson, side_spread, spearman
from gfocal.analysis.visualization import (
    box_colors,
    draw_predictions,
    draw_side_distributions,
    select_boxes,
    side_bin_positions,
)

NBINS = 17  # reg_max 16
STRIDE = 8.0
BG = 100


def dist(**mass):
    """A distribution over NBINS bins from {"b3": 1.0}-style keyword masses."""
    p = np.zeros(NBINS)
    for key, value in mass.items():
        p[int(key[1:])] = value
    return p


def make_instances(centres, dists, scores=None, classes=None, image_size=(128, 128), stride=STRIDE):
    """Instances whose boxes are consistent with their distributions: a box predicted from
    location (cx, cy) has x0 = cx - E[L] * stride, x1 = cx + E[R] * stride, etc."""
    dists = np.asarray(dists, np.float64)  # (M, 4, NBINS)
    expect = (dists * np.arange(NBINS)).sum(-1) * stride  # (M, 4)
    c = np.asarray(centres, np.float64)
    boxes = np.stack(
        [c[:, 0] - expect[:, 0], c[:, 1] - expect[:, 1], c[:, 0] + expect[:, 2], c[:, 1] + expect[:, 3]], 1
    )
    m = len(boxes)
    inst = Instances(image_size)
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.scores = torch.tensor(scores if scores is not None else [0.9] * m, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes if classes is not None else [0] * m, dtype=torch.int64)
    inst.pred_dists = torch.tensor(dists, dtype=torch.float32)
    inst.pred_strides = torch.full((m,), stride)
    return inst


def gray(h=128, w=128):
    return np.full((h, w, 3), BG, np.uint8)


def changed(a, b, tol=8):
    return np.abs(a.astype(int) - b.astype(int)).max(-1) > tol


# Box from location (64, 64): L one-hot at bin 3 -> x0 = 40; T, R, B at bins 4 -> 32..96.
ONE_HOT_LEFT = [dist(b3=1.0), dist(b4=1.0), dist(b4=1.0), dist(b4=1.0)]


# ------------------------------------------------------------------ edges style


def test_one_hot_left_curve_peaks_on_the_left_edge_in_the_helper():
    inst = make_instances([(64, 64)], [ONE_HOT_LEFT])
    scale = 6.0
    boxes = inst.pred_boxes.tensor.numpy() * scale
    pos = side_bin_positions(inst.pred_boxes.tensor, inst.pred_dists, inst.pred_strides).numpy() * scale
    canvas = np.zeros((768, 768, 3), np.uint8)
    draw_side_distributions(canvas, boxes, pos, inst.pred_dists.numpy(), [(255, 0, 0)])
    ymid = int(round((boxes[0, 1] + boxes[0, 3]) / 2))
    # Only the left side's curve lives in this band (the top/bottom curves sit at x = 384).
    band = canvas[ymid - 60 : ymid + 60, :300].max(-1) > 0
    counts = band.sum(0)
    x0 = int(round(boxes[0, 0]))
    assert x0 == 240
    top = np.nonzero(counts == counts.max())[0]  # the (thick-outlined) tip
    assert top.mean() == pytest.approx(x0, abs=0.5) and top.max() - top.min() <= 6
    assert counts[x0] > 40  # a tall spike...
    cols = np.nonzero(counts)[0]
    one_bin = STRIDE * scale
    # ...whose support is one bin either side of the edge, and nothing anywhere else.
    assert cols.min() >= x0 - one_bin - 4 and cols.max() <= x0 + one_bin + 4  # + outline
    assert cols.min() <= x0 - one_bin + 4 and cols.max() >= x0 + one_bin - 4


def test_one_hot_left_curve_sits_on_the_upscaled_left_edge_in_the_picture():
    inst = make_instances([(64, 64)], [ONE_HOT_LEFT])
    with_d = draw_predictions(gray(), inst, show_distributions=True)
    without = draw_predictions(gray(), inst, show_distributions=False)
    assert with_d.shape == (768, 768, 3)
    diff = changed(with_d, without)
    ymid = 384
    counts = diff[ymid - 60 : ymid + 60, :300].sum(0)
    cols = np.nonzero(counts)[0]
    x0, one_bin = 240, STRIDE * 6
    assert cols.size > 0
    assert cols.min() >= x0 - one_bin - 3 and cols.max() <= x0 + one_bin + 3
    # The box line covers the very peak column; the curve around it is centred on it.
    centre = (counts * np.arange(len(counts))).sum() / counts.sum()
    assert abs(centre - x0) < 1.5
    # Nothing drawn elsewhere on the left of the box.
    assert not diff[:, : x0 - int(one_bin) - 3].any()


def test_two_peaked_distribution_gives_two_maxima_at_the_bins():
    # Left: half at bin 1, half at bin 5 -> E = 3 -> drawn edge at 64 - 24 = 40; the bins lie
    # at x = 64 - 8 = 56 and 64 - 40 = 24 (image), i.e. 336 and 144 after x6.
    dists = [dist(b1=0.5, b5=0.5), dist(b4=1.0), dist(b4=1.0), dist(b4=1.0)]
    inst = make_instances([(64, 64)], [dists])
    with_d = draw_predictions(gray(), inst)
    without = draw_predictions(gray(), inst, show_distributions=False)
    counts = changed(with_d, without)[384 - 60 : 384 + 60, :380].sum(0).astype(float)
    left, right = counts[:240], counts[240:]
    peak_a, peak_b = int(np.argmax(left)), 240 + int(np.argmax(right))
    assert abs(peak_a - 144) <= 1 and abs(peak_b - 336) <= 1
    assert left[peak_a] > 20 and right[peak_b - 240] > 20
    # Between the two peaks (bins 2..4 carry nothing) the curve is back on its axis.
    assert counts[200:230].max() <= 0.2 * counts.max()
    assert counts[250:280].max() <= 0.2 * counts.max()


def test_clipped_side_uses_the_centre_from_the_opposite_side():
    # A box predicted from (10, 64) with E[L] = 3 (x0 = -14) is clipped to x0 = 0; its left
    # bins must still lie at 10 - 8 i, not be shifted onto the clipped edge.
    dists = np.array([[dist(b3=1.0), dist(b4=1.0), dist(b4=1.0), dist(b4=1.0)]])
    boxes = torch.tensor([[0.0, 32.0, 42.0, 96.0]])
    pos = side_bin_positions(boxes, torch.tensor(dists), torch.tensor([STRIDE]), (128, 128))
    torch.testing.assert_close(pos[0, 0, :4], torch.tensor([10.0, 2.0, -6.0, -14.0]))
    torch.testing.assert_close(pos[0, 2, :2], torch.tensor([10.0, 18.0]))
    unclipped = side_bin_positions(boxes, torch.tensor(dists), torch.tensor([STRIDE]))
    torch.testing.assert_close(unclipped[0, 0, 3], torch.tensor(0.0))  # own edge without image_size


def test_two_boxes_of_one_class_get_different_colours():
    d = [dist(b2=1.0)] * 4
    inst = make_instances([(30, 64), (98, 64)], [d, d], scores=[0.9, 0.8], classes=[2, 2])
    pic = draw_predictions(gray(), inst, show_distributions=False)
    colours = []
    for x0 in (14 * 6, 82 * 6):  # left edges of the two boxes
        row = pic[384, x0 - 6 : x0 + 7].astype(int)
        strongest = row[np.abs(row - BG).sum(-1).argmax()]
        assert np.abs(strongest - BG).sum() > 30  # the box line is there
        colours.append(strongest)
    assert np.abs(colours[0] - colours[1]).max() > 40
    assert len(set(box_colors(12))) == 12
    # The curves take their box's colour too.
    pic = draw_predictions(gray(), inst)
    fill = [pic[384, (30 - 16) * 6 - 20].astype(int), pic[384, (98 - 16) * 6 - 20].astype(int)]
    assert all(np.abs(f - BG).sum() > 30 for f in fill)
    assert np.abs(fill[0] - fill[1]).max() > 40


def test_small_images_are_upscaled_and_large_ones_not():
    inst = make_instances([(40, 40)], [[dist(b2=1.0)] * 4], image_size=(100, 200))
    assert draw_predictions(gray(100, 200), inst).shape == (768, 1536, 3)
    big = make_instances([(400, 300)], [[dist(b2=1.0)] * 4], image_size=(800, 1000))
    assert draw_predictions(gray(800, 1000), big).shape == (800, 1000, 3)
    assert draw_predictions(gray(), inst[:0]).shape == (768, 768, 3)  # no detections


def test_caps_and_near_duplicates():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30], [40, 40, 50, 50]], float)
    scores = np.array([0.5, 0.9, 0.8, 0.7])
    assert select_boxes(boxes, scores, 10, 0.7) == [1, 2, 3]  # box 0 duplicates box 1
    assert select_boxes(boxes, scores, 2, 0.7) == [1, 2]
    assert select_boxes(boxes, scores, 10, 0.95) == [1, 2, 3, 0]
    # In the picture: a duplicate gets no curves; the kept box still does.
    d = [dist(b3=1.0)] * 4
    one = make_instances([(64, 64)], [d])
    two = make_instances([(64, 64), (65, 64)], [d, d], scores=[0.9, 0.8])
    base = draw_predictions(gray(), two, show_distributions=False)
    extra = changed(draw_predictions(gray(), two), base)
    ref = changed(draw_predictions(gray(), one), draw_predictions(gray(), one, show_distributions=False))
    assert abs(int(extra.sum()) - int(ref.sum())) < 0.05 * ref.sum()
    capped = changed(draw_predictions(gray(), two, max_panels=0), base)
    assert not capped.any()


def test_confidence_threshold_hides_boxes():
    inst = make_instances([(64, 64)], [ONE_HOT_LEFT], scores=[0.2])
    pic = draw_predictions(gray(), inst, confidence_threshold=0.3)
    assert not changed(pic, gray(768, 768)).any()


def test_positional_call_of_the_quickstart_still_works():
    from types import SimpleNamespace

    inst = make_instances([(64, 64)], [ONE_HOT_LEFT], classes=[1])
    metadata = SimpleNamespace(get=lambda key, default=None: ["a", "bee", "c"] if key == "thing_classes" else default)
    assert draw_predictions(gray(), inst, metadata, 0.3).shape == (768, 768, 3)


# ------------------------------------------------------------------ spreads and matching


def test_spread_of_one_hot_and_two_point_distributions():
    inst = make_instances(
        [(64, 64), (64, 64)],
        [ONE_HOT_LEFT, [dist(b2=0.5, b7=0.5), dist(b4=1.0), dist(b1=0.5, b3=0.5), dist(b4=1.0)]],
    )
    s = side_spread(inst)
    torch.testing.assert_close(s[0], torch.zeros(4))
    torch.testing.assert_close(s[1], torch.tensor([20.0, 0.0, 8.0, 0.0]))  # |i-j|/2 * stride
    stats = distribution_stats(inst)
    np.testing.assert_allclose(stats["spread_px"], [0.0, 7.0])
    w = 8 * (4.5 + 2)  # box 1: E[L] = 4.5, E[R] = 2
    np.testing.assert_allclose(stats["spread_rel"], [0.0, (20 / w + 8 / w) / 4], rtol=1e-6)
    np.testing.assert_allclose(stats["top1"], [1.0, 0.75])


def _boxes_instances(boxes, classes, scores):
    m = len(boxes)
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.tensor(classes)
    p = np.zeros((m, 4, NBINS))
    p[:, :, 2] = 1.0
    inst.pred_dists = torch.tensor(p, dtype=torch.float32)
    inst.pred_strides = torch.full((m,), STRIDE)
    return inst


GT_BOXES = np.array([[0, 0, 10, 10], [50, 50, 70, 70]], np.float32)
GT_CLASSES = np.array([0, 1])


def test_match_detections_hand_case():
    inst = _boxes_instances(
        [[0, 0, 10, 5], [50, 50, 70, 70], [50, 50, 70, 60], [0, 0, 5, 5], [0, 0, 10, 10], [0, 0, 10, 9]],
        [0, 1, 0, 0, 0, 1],
        [0.9, 0.8, 0.7, 0.6, 0.1, 0.5],
    )
    out = match_detections(inst, GT_BOXES, GT_CLASSES, iou_min=0.1, score_thresh=0.3)
    # det 2 overlaps only the class-1 gt (dropped: its own class has IoU 0); det 4 scores 0.1;
    # det 5 is class 1 and its class-1 gt does not overlap it.
    np.testing.assert_allclose(out["iou"], [0.5, 1.0, 0.25])
    np.testing.assert_allclose(out["error"], [0.5, 0.0, 0.75])
    np.testing.assert_array_equal(out["gt_index"], [0, 1, 0])
    np.testing.assert_allclose(out["score"], [0.9, 0.8, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(out["pred_class"], [0, 1, 0])
    assert set(out) >= {"spread", "spread_px", "spread_rel", "top1"}
    assert all(len(v) == 3 for v in out.values())
    # A lower iou_min keeps nothing extra for zero-overlap boxes; a higher one drops the 0.25.
    np.testing.assert_allclose(match_detections(inst, GT_BOXES, GT_CLASSES, 0.3, 0.3)["iou"], [0.5, 1.0])
    assert len(match_detections(inst, GT_BOXES[:0], GT_CLASSES[:0])["iou"]) == 0


def test_collect_converts_boxes_and_concatenates(tmp_path):
    files = []
    for i in range(2):
        f = str(tmp_path / f"{i}.png")
        cv2.imwrite(f, np.full((100, 100, 3), i * 50, np.uint8))
        files.append(f)
    records = [
        {
            "file_name": files[0],
            "annotations": [
                {"bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
                {"bbox": [50, 50, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1},
            ],
        },
        {
            "file_name": files[1],
            "annotations": [
                {"bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
            ],
        },
    ]
    seen = []

    def predict(image):
        seen.append(int(image[0, 0, 0]))
        inst = _boxes_instances([[0, 0, 10, 5], [50, 50, 70, 70]], [0, 1], [0.9, 0.8])
        return {"instances": inst} if len(seen) == 1 else inst

    out = collect(predict, records, score_thresh=0.3)
    assert seen == [0, 50]
    np.testing.assert_allclose(out["iou"], [0.5, 1.0, 0.5])  # image 2 has no class-1 gt
    np.testing.assert_array_equal(out["image_index"], [0, 0, 1])
    np.testing.assert_allclose(out["spread"], out["spread_px"])
    res = plot_uncertainty_vs_error(out, str(tmp_path / "u.png"))
    assert res["n"] == 3 and os.path.isfile(tmp_path / "u.png")


# ------------------------------------------------------------------ statistics and plot


def _reference_spearman(x, y):
    def ranks(a):
        r = np.empty(len(a))
        for i, v in enumerate(a):  # average rank of ties, the slow obvious way
            r[i] = (a < v).sum() + ((a == v).sum() - 1) / 2
        return r

    return np.corrcoef(ranks(np.asarray(x)), ranks(np.asarray(y)))[0, 1]


def test_correlations_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    xt, yt = np.round(x), np.round(y * 2)  # with ties
    assert spearman(xt, yt) == pytest.approx(_reference_spearman(xt, yt), abs=1e-12)
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert np.isnan(pearson([1.0], [2.0])) and np.isnan(pearson([1, 1, 1], [1, 2, 3]))


def test_plot_returns_numpy_correlations_and_writes_png(tmp_path):
    spread = np.linspace(0.01, 0.3, 60)
    iou = 1.0 - spread**2 * 5  # monotone, not linear
    data = {"spread": spread, "iou": iou, "score": np.linspace(0.3, 1.0, 60), "top1": 1 - spread}
    out = str(tmp_path / "sub" / "unc.png")
    res = plot_uncertainty_vs_error(data, out, title="test")
    assert res["spearman"] == pytest.approx(1.0)
    assert res["pearson"] == pytest.approx(np.corrcoef(spread, 1 - iou)[0, 1], abs=1e-9)
    assert res["pearson"] < 0.999  # not linear: Pearson below Spearman
    assert res["n"] == 60
    assert res["others"]["top1"]["spearman"] == pytest.approx(-1.0)
    assert os.path.isfile(out) and cv2.imread(out) is not None
    # Empty input still writes a picture.
    empty = plot_uncertainty_vs_error({"spread": np.zeros(0), "iou": np.zeros(0)}, str(tmp_path / "e.png"))
    assert empty["n"] == 0 and os.path.isfile(tmp_path / "e.png")
