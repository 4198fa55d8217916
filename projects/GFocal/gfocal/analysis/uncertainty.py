"""Does the shape of GFL's side distributions predict localisation quality? (GFLv2 paper, fig. 1)

For every detection: the IoU with the best-matching ground-truth box of its class, and statistics
of its four side distributions:

- ``spread_px``: mean over the four sides of each distribution's standard deviation, in pixels;
  this is ``spread``, the statistic plotted by default;
- ``spread_rel``: the same divided by the box's width (left/right) or height (top/bottom). It
  looks fairer against the scale-free 1 - IoU but correlates worse with it: even a sharp edge
  keeps about half a bin of spread, so the relative spread mostly measures 1 / box size;
- ``top1``: mean over the sides of the largest bin probability (GFLv2's DGQP uses the top-k);
- ``score``: the detection score.

``collect`` runs a predictor over Detectron2 dataset dicts; :func:`gfocal.analysis.plotting.plot_uncertainty_vs_error`
draws spread against 1 - IoU with the Pearson and Spearman correlations.
"""

from typing import Callable, Dict, Iterable

import numpy as np
import torch

from detectron2.structures import Boxes, BoxMode, Instances, pairwise_iou

from ..modeling.head import distribution_std

__all__ = ["side_spread", "distribution_stats", "match_detections", "collect", "pearson", "spearman", "FIELDS"]

FIELDS = ("iou", "error", "spread", "spread_px", "spread_rel", "top1", "score", "pred_class", "gt_index")


def _empty() -> Dict[str, np.ndarray]:
    out = {k: np.zeros(0, np.int64 if k in ("pred_class", "gt_index") else np.float64) for k in FIELDS}
    return {**out, "side_spread_px": np.zeros((0, 4), np.float64)}


def side_spread(instances: Instances) -> torch.Tensor:
    """(M, 4) standard deviation of each side's distribution (L, T, R, B), in the instances'
    image pixels: the spread of ``pred_dists`` (M, 4, n+1) in bins times ``pred_strides`` (M,)."""
    std_bins = distribution_std(instances.pred_dists.detach().float().cpu())
    return std_bins * instances.pred_strides.detach().float().cpu()[:, None]


def distribution_stats(instances: Instances) -> Dict[str, np.ndarray]:
    """Per-detection statistics of ``pred_dists`` (M, 4, n+1) and ``pred_strides`` (M,).

    Returns:
        dict of numpy arrays: ``side_spread_px`` (M, 4) standard deviation of each side (L, T,
        R, B) in pixels, ``spread_px`` (M,) its mean over sides, ``spread_rel`` (M,) the mean of
        each side's standard deviation over the box's width (L, R) or height (T, B), ``top1``
        (M,) the mean over sides of the largest bin probability.
    """
    probs = instances.pred_dists.detach().float().cpu()
    side_px = side_spread(instances)  # (M, 4)
    boxes = instances.pred_boxes.tensor.detach().float().cpu()
    extent = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6).repeat(1, 2)  # (M, 4): w, h, w, h
    return {
        "side_spread_px": side_px.double().numpy(),
        "spread_px": side_px.mean(1).double().numpy(),
        "spread_rel": (side_px / extent).mean(1).double().numpy(),
        "top1": probs.max(-1).values.mean(1).double().numpy(),
    }


def match_detections(
    instances: Instances,
    gt_boxes,
    gt_classes,
    iou_min: float = 0.1,
    score_thresh: float = 0.0,
) -> Dict[str, np.ndarray]:
    """Match each detection to the ground truth of its class it overlaps most.

    Args:
        instances: predictions with pred_boxes, scores, pred_classes, pred_dists, pred_strides,
            in the same pixel coordinates as ``gt_boxes``.
        gt_boxes: (G, 4) XYXY boxes (array, tensor or Boxes); gt_classes: (G,) class indices.
        iou_min: detections whose best same-class IoU is below this are dropped (false
            positives: their error says nothing about localising an object), as are those
            scoring below ``score_thresh``.

    Returns:
        dict of numpy arrays, one entry per kept detection (in the instances' order): ``iou``,
        ``error`` (1 - iou), ``spread`` (= ``spread_px``), :func:`distribution_stats`' arrays
        (``side_spread_px`` (N, 4)), ``score``, ``pred_class``, ``gt_index`` (the matched gt).
    """
    instances = instances.to("cpu")
    instances = instances[instances.scores >= score_thresh]
    if isinstance(gt_boxes, Boxes):
        gt = gt_boxes.tensor.detach().float().cpu()
    else:
        gt = torch.as_tensor(np.asarray(gt_boxes, dtype=np.float32)).reshape(-1, 4)
    gt_cls = torch.as_tensor(np.asarray(gt_classes, dtype=np.int64)).reshape(-1)
    if len(gt) != len(gt_cls):
        raise ValueError(f"{len(gt)} gt boxes but {len(gt_cls)} gt classes")
    if len(instances) == 0 or len(gt) == 0:
        return _empty()
    iou = pairwise_iou(instances.pred_boxes, Boxes(gt))  # (M, G)
    same = instances.pred_classes[:, None] == gt_cls[None, :]
    iou = torch.where(same, iou, torch.full_like(iou, -1.0))
    best_iou, best_gt = iou.max(dim=1)
    keep = best_iou >= iou_min
    stats = distribution_stats(instances)
    k = keep.numpy()
    out = {name: value[k] for name, value in stats.items()}
    out["iou"] = best_iou[keep].double().numpy()
    out["error"] = 1.0 - out["iou"]
    out["spread"] = out["spread_px"]
    out["score"] = instances.scores[keep].double().numpy()
    out["pred_class"] = instances.pred_classes[keep].numpy().astype(np.int64)
    out["gt_index"] = best_gt[keep].numpy().astype(np.int64)
    return out


def collect(
    predict_fn: Callable,
    dataset_dicts: Iterable[Dict],
    score_thresh: float = 0.3,
    iou_min: float = 0.1,
) -> Dict[str, np.ndarray]:
    """Run ``predict_fn`` over Detectron2 dataset dicts and match every detection.

    Args:
        predict_fn: ``image_bgr (H, W, 3) uint8 -> Instances`` (or the ``{"instances": ...}``
            dict a Detectron2 predictor returns), in the image's pixel coordinates, e.g. a
            :class:`gfocal.engine.predictor.LazyPredictor`.
        dataset_dicts: dicts as ``DatasetCatalog.get`` gives (crowd annotations are ignored).
        score_thresh, iou_min: see :func:`match_detections`.

    Returns:
        :func:`match_detections`' arrays concatenated over images, plus ``image_index``.
    """
    import cv2

    parts = []
    for index, record in enumerate(dataset_dicts):
        image = cv2.imread(record["file_name"], cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read image {record['file_name']!r}")
        out = predict_fn(image)
        instances = out["instances"] if isinstance(out, dict) else out
        anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = np.array(
            [BoxMode.convert(list(a["bbox"]), a.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS) for a in anns],
            dtype=np.float32,
        ).reshape(-1, 4)
        classes = np.array([a["category_id"] for a in anns], dtype=np.int64)
        matched = match_detections(instances, boxes, classes, iou_min=iou_min, score_thresh=score_thresh)
        matched["image_index"] = np.full(len(matched["iou"]), index, np.int64)
        parts.append(matched)
    if not parts:
        return {**_empty(), "image_index": np.zeros(0, np.int64)}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties given their average rank."""
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    return (start + (counts - 1) / 2.0)[inverse.reshape(-1)]


def pearson(x, y) -> float:
    """Pearson correlation of two 1-D arrays (nan with fewer than 2 points or no variance)."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"sizes differ: {x.size} vs {y.size}")
    if x.size < 2:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    return float((xc * yc).sum() / denom) if denom > 0 else float("nan")


def spearman(x, y) -> float:
    """Spearman rank correlation: Pearson's of the ranks (ties get average ranks)."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    return pearson(_ranks(x), _ranks(y)) if x.size == y.size else pearson(x, y)  # pearson raises
