"""gfocal_runtime.boxes, the one numpy definition of box geometry: hand-computed values."""

import numpy as np
import torch

from gfocal.modeling import distribution_std
from gfocal_runtime.boxes import (
    coco_detections,
    greedy_nms,
    pairwise_ios,
    pairwise_iou,
    side_std,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_conversions_round_trip_and_keep_shape():
    xywh = np.array([[[1.5, 2, 3, 4]], [[0, 0, 0, 0]]])  # (2, 1, 4)
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [[[1.5, 2, 4.5, 6]], [[0, 0, 0, 0]]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), xywh)
    assert xywh_to_xyxy([10, 20, 1, 2]).tolist() == [10, 20, 11, 22]  # one box, input untouched


def test_iou_and_intersection_over_the_smaller_box():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [2, 2, 4, 4], [20, 20, 30, 30], [3, 3, 3, 3]]
    np.testing.assert_allclose(pairwise_iou(a, b), [[50 / 150, 4 / 100, 0, 0]])
    np.testing.assert_allclose(pairwise_ios(a, b), [[50 / 100, 1.0, 0, 0]])
    assert pairwise_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_greedy_nms_visits_by_score_and_the_threshold_is_strict_unless_inclusive():
    boxes = [[0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 10], [10, 0, 20, 10]]
    scores = [0.5, 0.9, 0.5, 0.8]  # a tie between 0 and 2: lower index first
    # IoU(1, 0) = IoU(1, 3) = 1/3, IoU(0, 2) = 1, IoU(0, 3) = 0.
    assert greedy_nms(boxes, scores, 0.5).tolist() == [1, 3, 0]
    assert greedy_nms(boxes, scores, 1 / 3).tolist() == [1, 3, 0]
    assert greedy_nms(boxes, scores, 1 / 3, inclusive=True).tolist() == [1]


def test_side_std_in_bins_and_pixels_equals_the_torch_twin():
    dists = np.zeros((2, 4, 5), np.float32)
    dists[:, :, 2] = 1.0  # all mass on one bin: no spread
    dists[1, 0] = [0.5, 0, 0, 0, 0.5]  # bins 0 and 4 half each: std 2
    std = side_std(dists)
    np.testing.assert_allclose(std, [[0, 0, 0, 0], [2, 0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(side_std(dists, np.array([8.0, 16.0])), [[0, 0, 0, 0], [32, 0, 0, 0]], atol=1e-5)
    np.testing.assert_allclose(distribution_std(torch.from_numpy(dists)).numpy(), std, atol=1e-6)


def test_coco_detections_are_xywh_rows_with_the_given_ids_and_rounding():
    rows = coco_detections(7, [[1.234, 2, 4.5, 6.0]], [0.123456], [42], box_decimals=2, score_decimals=3)
    assert rows == [{"image_id": 7, "category_id": 42, "bbox": [1.23, 2.0, 3.27, 4.0], "score": 0.123}]
    assert coco_detections(1, np.zeros((0, 4)), [], []) == []
