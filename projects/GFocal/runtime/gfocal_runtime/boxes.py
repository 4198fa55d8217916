"""Box geometry in numpy, the one definition every part of GFocal uses.

Box conversions (COCO's XYWH and XYXY), pairwise IoU and intersection over the smaller box,
class-agnostic greedy NMS, the spread of a side distribution and COCO results rows. The torch
twin of the spread is :func:`gfocal.modeling.distribution_std`; NMS that must match torchvision
bit for bit is :func:`gfocal_runtime.postprocess.batched_nms`.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["xywh_to_xyxy", "xyxy_to_xywh", "pairwise_iou", "pairwise_ios", "greedy_nms", "side_std", "coco_detections"]


def xywh_to_xyxy(boxes) -> np.ndarray:
    """(..., 4) ``x, y, w, h`` -> (..., 4) float64 ``x0, y0, x1, y1``."""
    b = np.array(boxes, dtype=np.float64)
    b[..., 2:] += b[..., :2]
    return b


def xyxy_to_xywh(boxes) -> np.ndarray:
    """(..., 4) ``x0, y0, x1, y1`` -> (..., 4) float64 ``x, y, w, h``."""
    b = np.array(boxes, dtype=np.float64)
    b[..., 2:] -= b[..., :2]
    return b


def _intersections(a, b):
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter, area_a, area_b


def pairwise_iou(a, b) -> np.ndarray:
    """(N, 4) x (M, 4) XYXY -> (N, M) float64 IoU (0 where the union is 0)."""
    inter, area_a, area_b = _intersections(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def pairwise_ios(a, b) -> np.ndarray:
    """(N, 4) x (M, 4) XYXY -> (N, M) float64 intersection over the smaller box's area (0 where
    that area is 0)."""
    inter, area_a, area_b = _intersections(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.where(smaller > 0, smaller, 1), 0.0)


def greedy_nms(boxes, scores, iou_threshold: float, inclusive: bool = False) -> np.ndarray:
    """Class-agnostic greedy NMS: visiting (N, 4) XYXY ``boxes`` by descending (N,) ``scores``
    (ties: lower index first), keep a box unless a kept one overlaps it with IoU > ``iou_threshold``
    (>= with ``inclusive``). Returns (K,) int64 indices of the kept boxes, by descending score."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    iou = pairwise_iou(np.asarray(boxes)[order], np.asarray(boxes)[order])
    suppresses = iou >= iou_threshold if inclusive else iou > iou_threshold
    keep = np.ones(len(order), bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1 :] &= ~suppresses[i, i + 1 :]
    return order[keep].astype(np.int64)


def side_std(dists: np.ndarray, strides: Optional[np.ndarray] = None) -> np.ndarray:
    """(..., 4) standard deviation of each side's distribution: (..., 4, n+1) bin probabilities
    ``dists``, in bins, or in pixels when the (...,) bin spacings ``strides`` are given. Computed
    in the dtype of ``dists``."""
    dists = np.asarray(dists)
    bins = np.arange(dists.shape[-1], dtype=dists.dtype)
    mean = (dists * bins).sum(-1, keepdims=True)
    std = np.sqrt(np.maximum((dists * (bins - mean) ** 2).sum(-1), 0))
    return std if strides is None else std * np.asarray(strides)[..., None]


def coco_detections(
    image_id,
    boxes_xyxy,
    scores: Sequence[float],
    category_ids: Sequence[int],
    box_decimals: Optional[int] = None,
    score_decimals: Optional[int] = None,
) -> List[Dict]:
    """COCO results rows (``image_id``, ``category_id``, ``bbox`` XYWH, ``score``) of one image's
    (M, 4) XYXY detections with their (M,) dataset category ids; boxes and scores rounded to
    ``box_decimals`` and ``score_decimals`` places when given."""
    xywh = xyxy_to_xywh(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4))
    scores = np.asarray(scores, np.float64)
    if box_decimals is not None:
        xywh = np.round(xywh, box_decimals)
    if score_decimals is not None:
        scores = np.round(scores, score_decimals)
    return [
        {"image_id": image_id, "category_id": int(c), "bbox": b, "score": float(s)}
        for b, s, c in zip(xywh.tolist(), scores.tolist(), category_ids)
    ]
