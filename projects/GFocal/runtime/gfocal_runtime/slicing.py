"""Sliced inference for large images, in numpy: the tile grid, the settings and the merges.

Shared by the PyTorch model (:class:`gfocal.modeling.slicing.GFLWithSlicing`) and
:class:`gfocal_runtime.Detector`, so both slice and merge identically.

An image is covered by square tiles of ``size`` original pixels whose neighbours share
``overlap`` of it (the last tile of a row or column is aligned to the image's edge, as SAHI
places them); optionally the whole image is a view too. Each view's detections (after the
model's own NMS) are mapped to the original image and merged by one of :data:`MERGES`:

``nms``
    class-wise NMS over all views at the model's IoU threshold.
``greedy``
    SAHI's default merge (``GREEDYNMM``, match metric IoS >= 0.5, class-wise): in descending
    score order each remaining detection absorbs the remaining ones of its class that it
    overlaps by at least half of the smaller box; the merged box is the group's enclosing
    box, its score the best one's.
``distribution``
    the distribution-aware merge. Groups: as NMS (IoU > the model's threshold) plus any pair
    where the smaller box has a side on its tile's inner border (``cut``: the object runs out of
    that tile) and more than half of it lies in the other (IoS > 0.5), so a truncated box joins
    the object it is part of, while a small object lying on a big one of its class does not.
    Each side of a group's box is the mean of its members' edges for it weighted by score /
    (that side's standard deviation in original pixels^2 + a floor), over the members that saw
    the side uncut and scored at least ``MIN_SCORE_RATIO`` of the group's best (else those that
    saw it uncut); a side that every member has cut is the farthest of their edges (the object
    runs at least that far). The score is the best among the members that saw the object whole
    (no side cut), else the group's best. So an edge comes from the views that saw it whole and
    surest.
"""

import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np

from .boxes import side_std
from .postprocess import batched_nms

__all__ = [
    "MERGES",
    "DEFAULT_MERGE",
    "SlicingSettings",
    "OnceWarning",
    "tile_starts",
    "tile_grid",
    "cut_sides",
    "merge_detections",
    "sliced_detect",
]

MERGES = ("nms", "greedy", "distribution")
DEFAULT_MERGE = "distribution"
# A side within this many original pixels of its tile's inner border counts as cut by it.
CUT_MARGIN_PX = 3.0
# SAHI's GREEDYNMM default: IoS at least this joins a group.
GREEDY_IOS = 0.5
# Rounds of the vectorised greedy grouping before it falls back to one leader at a time.
FIXED_POINT_ROUNDS = 16
# The distribution merge's evidence for a side: members scoring at least this share of their
# group's best, weighted by score / (std^2 + this floor, px^2) (chosen on the built-in data:
# projects/GFocal/README.md#small-objects-in-large-images).
MIN_SCORE_RATIO = 0.7
SPREAD_FLOOR_PX2 = 1e-2
# Merges compare every pair of detections: at most this many (the best by score) are merged.
MAX_MERGE_CANDIDATES = 4000


def _is_number(value, kinds) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)


@dataclass(frozen=True)
class SlicingSettings:
    """How an image is sliced and its views merged (checked; see :meth:`parse`).

    Attributes:
        size: a tile's side in the original image's pixels.
        overlap: the share of ``size`` that neighbouring tiles have in common, in [0, 1).
        merge: one of :data:`MERGES`.
        whole_image: add the whole image (at the model's usual input size) as a view.
        batch_size: tiles run through the model at once (bounds memory on huge images).
    """

    size: int = 256
    overlap: float = 0.25
    merge: str = DEFAULT_MERGE
    whole_image: bool = True
    batch_size: int = 8

    def __post_init__(self):
        size, overlap, batch = self.size, self.overlap, self.batch_size
        if not (_is_number(size, (int, np.integer)) and size >= 1):
            raise ValueError(f"slicing size must be a positive integer (a tile's side in pixels), got {size!r}")
        if not (_is_number(overlap, (int, float, np.integer, np.floating)) and 0 <= overlap < 1):
            raise ValueError(f"slicing overlap must be a number in [0, 1) (a share of the tile size), got {overlap!r}")
        if self.merge not in MERGES:
            raise ValueError(f"slicing merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        if not isinstance(self.whole_image, bool):
            raise ValueError(f"slicing whole_image must be True or False, got {self.whole_image!r}")
        if not (_is_number(batch, (int, np.integer)) and batch >= 1):
            raise ValueError(f"slicing batch_size must be a positive integer, got {batch!r}")

    @classmethod
    def parse(cls, settings: Optional[Mapping]) -> Optional["SlicingSettings"]:
        """The checked settings of a dict such as ``dataloader.test.slicing``, or None when it is
        None or not ``enabled``; an unknown key or a bad value is a ValueError naming it."""
        if settings is None or isinstance(settings, cls):
            return settings
        if not settings.get("enabled", True):
            return None
        allowed = {"enabled", "size", "overlap", "merge", "whole_image", "batch_size"}
        unknown = sorted(set(settings) - allowed)
        if unknown:
            raise ValueError(f"unknown slicing setting(s) {unknown}; expected some of {sorted(allowed)}")
        return cls(**{k: v for k, v in settings.items() if k != "enabled"})

    def tiles(self, height: int, width: int) -> np.ndarray:
        """:func:`tile_grid` of an image; no tiles (the whole image alone is the view) when one
        tile covers it."""
        if self.size >= height and self.size >= width:
            return np.zeros((0, 4), np.int64)
        return tile_grid(height, width, self.size, self.overlap)


def tile_starts(length: int, size: int, overlap: float) -> np.ndarray:
    """(T,) int64 starts of the tiles along one image side of ``length`` pixels: every
    ``size - int(overlap * size)`` pixels, the last one moved back so that it ends at the edge;
    ``[0]`` when a tile covers the whole side."""
    if size >= length:
        return np.zeros(1, np.int64)
    step = max(1, size - int(overlap * size))  # as SAHI's get_slice_bboxes
    starts = np.arange(0, length - size, step, dtype=np.int64)
    return np.append(starts, length - size)


def tile_grid(height: int, width: int, size: int, overlap: float) -> np.ndarray:
    """(T, 4) int64 tiles ``x0, y0, x1, y1`` covering an image row by row (each ``size`` x
    ``size``, clipped to the image)."""
    xs, ys = tile_starts(width, size, overlap), tile_starts(height, size, overlap)
    x0, y0 = np.meshgrid(xs, ys)
    x0, y0 = x0.ravel(), y0.ravel()
    return np.stack([x0, y0, np.minimum(x0 + size, width), np.minimum(y0 + size, height)], 1)


def cut_sides(boxes: np.ndarray, views: np.ndarray, image_hw, margin: float = CUT_MARGIN_PX) -> np.ndarray:
    """(N, 4) bool: which sides (left, top, right, bottom) of (N, 4) XYXY ``boxes`` lie on an
    inner border of the view (N, 4) XYXY they were seen in, within ``margin`` pixels. A view's
    border on the image's edge is not inner: an object really ends there."""
    height, width = image_hw
    views = views.astype(np.float32)
    inner = np.stack([views[:, 0] > 0, views[:, 1] > 0, views[:, 2] < width, views[:, 3] < height], 1)
    near = np.concatenate([boxes[:, :2] - views[:, :2], views[:, 2:] - boxes[:, 2:]], 1) <= margin
    return inner & near


def _pairwise(boxes: np.ndarray):
    """(N, N) IoU, (N, N) intersection over the smaller box and (N,) areas of (N, 4) XYXY
    float32 boxes (one coordinate at a time: no (N, N, 2) temporaries)."""
    x0, y0, x1, y1 = boxes.T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    iw = np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None])
    ih = np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    iou = inter / np.maximum(area[:, None] + area[None] - inter, 1e-9)
    ios = inter / np.maximum(np.minimum(area[:, None], area[None]), 1e-9)
    return iou, ios, area


def _groups(boxes: np.ndarray, classes: np.ndarray, cut: np.ndarray, merge: str, nms_thresh: float) -> np.ndarray:
    """(N,) each detection's group leader (see :func:`_greedy_groups`) for ``greedy`` or
    ``distribution`` matching, detections sorted by descending score; class by class, so the
    pairwise work is the classes' sizes squared."""
    leader = np.arange(len(boxes))
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)  # still by descending score
        iou, ios, area = _pairwise(boxes[idx])
        if merge == "greedy":
            match = ios >= GREEDY_IOS
        else:
            any_cut = cut[idx].any(1)
            smaller_cut = np.where(area[:, None] <= area[None, :], any_cut[:, None], any_cut[None, :])
            match = (iou > nms_thresh) | ((ios > GREEDY_IOS) & smaller_cut)
        leader[idx] = idx[_greedy_groups(match)]
    return leader


def _greedy_groups(match: np.ndarray) -> np.ndarray:
    """Greedy grouping of detections sorted by descending score: detection i leads a group
    unless an earlier leader matches it, and then joins the first such leader. ``match`` (N, N)
    bool, symmetric. Returns (N,) the index of each one's leader.

    The leader set L is the fixed point of ``L[j] = not any(L[i] and match[i, j] for i < j)``,
    which iterating from "all lead" reaches in as many rounds as the longest chain of overlaps
    (after round t the first t are final): a few on real detections. Should it take more than
    ``FIXED_POINT_ROUNDS`` (an adversarial chain), the leaders are found one by one instead,
    O(N^2) in all rather than O(N^3)."""
    n = match.shape[0]
    earlier = np.triu(match, 1)  # [i, j]: i before j and they match
    leader = np.ones(n, bool)
    for _ in range(FIXED_POINT_ROUNDS):
        new = ~(earlier & leader[:, None]).any(0)
        if np.array_equal(new, leader):
            break
        leader = new
    else:
        leader = np.ones(n, bool)
        for i in range(n):
            if leader[i]:
                leader[i + 1 :] &= ~earlier[i, i + 1 :]
    led_by = earlier & leader[:, None]
    first = np.argmax(led_by, axis=0)  # the first leader matching each one (if any)
    return np.where(leader, np.arange(n), first)


def merge_detections(
    detections: Dict[str, np.ndarray],
    cut: np.ndarray,
    merge: str,
    nms_thresh: float,
    max_detections: int,
) -> Dict[str, np.ndarray]:
    """Merge the detections of all views of one image (see the module docstring).

    Args:
        detections: every view's detections in the original image's pixels: "boxes" (N, 4)
            XYXY, "scores" (N,), "classes" (N,), optionally "dists" (N, 4, n+1) and "strides"
            (N,) (``distribution`` weighs sides by them; without, by score alone).
        cut: (N, 4) bool, the sides on their view's inner border (:func:`cut_sides`).
        merge: one of :data:`MERGES`.
        nms_thresh: the model's NMS IoU threshold (``nms`` and ``distribution``).
        max_detections: keep at most this many, by score.

    Returns:
        the merged detections, the same keys, by descending score. For a group the
        distributions (and strides) are those of its best-scored member.
    """
    if merge not in MERGES:
        raise ValueError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")
    scores = np.asarray(detections["scores"], np.float32)
    order = np.argsort(-scores, kind="stable")[:MAX_MERGE_CANDIDATES]
    dets = {k: np.asarray(v)[order] for k, v in detections.items()}
    cut = np.asarray(cut, bool)[order]
    boxes, classes, scores = dets["boxes"].astype(np.float32), dets["classes"], dets["scores"]
    if merge == "nms":
        keep = batched_nms(boxes, scores, classes, nms_thresh, max_detections)
        return {k: v[keep] for k, v in dets.items()}
    n = boxes.shape[0]
    if n == 0:
        return dets
    leader = _groups(boxes, classes, cut, merge, nms_thresh)
    leaders = np.flatnonzero(leader == np.arange(n))  # by descending score
    group = np.searchsorted(leaders, leader)  # each detection's group (leaders are sorted)
    out = {k: v[leaders] for k, v in dets.items()}
    if merge == "greedy":
        out["boxes"] = _enclosing(boxes, group, len(leaders))
        return {k: v[:max_detections] for k, v in out.items()}
    out["boxes"], out["scores"] = _distribution_merge(dets, cut, group, leaders)
    best = np.argsort(-out["scores"], kind="stable")[:max_detections]
    return {k: v[best] for k, v in out.items()}


def _enclosing(boxes: np.ndarray, group: np.ndarray, num_groups: int) -> np.ndarray:
    """(G, 4) float32 box enclosing each group's members ((N,) ``group`` of (N, 4) ``boxes``)."""
    lows, highs = np.full((num_groups, 2), np.inf), np.full((num_groups, 2), -np.inf)
    np.minimum.at(lows, group, boxes[:, :2])
    np.maximum.at(highs, group, boxes[:, 2:])
    return np.concatenate([lows, highs], 1).astype(np.float32)


def _distribution_merge(dets, cut, group, leaders):
    """Each group's box and score for the ``distribution`` merge (the module docstring's rule):
    (G, 4) float32 boxes, (G,) float32 scores."""
    boxes, scores = dets["boxes"].astype(np.float64), dets["scores"].astype(np.float64)
    num_groups, n = len(leaders), len(scores)
    if "dists" in dets and "strides" in dets:
        spread = side_std(dets["dists"].astype(np.float32), dets["strides"].astype(np.float32)).astype(np.float64)
    else:
        spread = np.zeros((n, 4))
    confident = scores >= MIN_SCORE_RATIO * scores[leaders][group]
    # Evidence tiers per member and side: 0 uncut and confident, 1 uncut, 2 cut; a group uses
    # the best tier any of its members reaches for that side.
    tier = np.where(cut, 2, np.where(confident[:, None], 0, 1))
    best_tier = np.full((num_groups, 4), 2)
    np.minimum.at(best_tier, group, tier)
    weight = np.where(tier == best_tier[group], scores[:, None] / (spread**2 + SPREAD_FLOOR_PX2), 0.0)
    num, den = np.zeros((num_groups, 4)), np.zeros((num_groups, 4))
    np.add.at(num, group, weight * boxes)
    np.add.at(den, group, weight)
    merged = (num / np.maximum(den, 1e-300)).astype(np.float32)
    # Sides cut in every member: the farthest edge (min for left/top, max for right/bottom).
    merged = np.where(best_tier == 2, _enclosing(boxes, group, num_groups), merged)
    first = boxes[leaders].astype(np.float32)
    inverted = (merged[:, 2] <= merged[:, 0]) | (merged[:, 3] <= merged[:, 1])
    merged[inverted] = first[inverted]
    whole = ~cut.any(1)
    best_whole = np.zeros(num_groups)
    np.maximum.at(best_whole, group[whole], scores[whole])
    merged_scores = np.where(best_whole > 0, best_whole, scores[leaders]).astype(np.float32)
    return merged, merged_scores


class OnceWarning:
    """A warning a loop over images would repeat: logged the first time only."""

    def __init__(self, logger: logging.Logger):
        self.logger, self.said = logger, False

    def __call__(self, message: str) -> None:
        if not self.said:
            self.logger.warning(message + " (said once)")
            self.said = True


def _cat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def sliced_detect(
    image: np.ndarray,
    settings: SlicingSettings,
    detect_batch: Callable[[List[np.ndarray]], List[Dict[str, np.ndarray]]],
    nms_thresh: float,
    max_detections: int,
    on_whole_only: Optional[Callable[[str], None]] = None,
) -> Dict[str, np.ndarray]:
    """Detect on the tiles of ``image`` (and the whole image) and merge.

    Args:
        image: (H, W, C) array.
        settings: the grid, merge and batch size.
        detect_batch: a list of (h, w, C) views -> each view's detections in its own pixels
            ("boxes" (M, 4) XYXY, "scores", "classes", optionally "dists", "strides").
        nms_thresh, max_detections: the model's (see :func:`merge_detections`).
        on_whole_only: called with a message when one tile would cover the image (then the
            whole image alone is run).

    Tiles go ``settings.batch_size`` at a time and only detections are kept between batches
    (at most twice :data:`MAX_MERGE_CANDIDATES`, the best), so a huge image's tiles are never all
    in memory at once.
    """
    height, width = image.shape[:2]
    tiles = settings.tiles(height, width)
    parts: List[Dict[str, np.ndarray]] = []
    if len(tiles) == 0 and on_whole_only is not None:
        on_whole_only(
            f"slicing: a {settings.size} px tile covers the whole {width}x{height} image; "
            "running on the whole image only"
        )
    for start in range(0, len(tiles), settings.batch_size):
        batch = tiles[start : start + settings.batch_size]
        for (x0, y0, x1, y1), dets in zip(batch, detect_batch([image[y0:y1, x0:x1] for x0, y0, x1, y1 in batch])):
            dets = dict(dets, boxes=dets["boxes"] + np.array([x0, y0, x0, y0], np.float32))
            dets["views"] = np.repeat(np.array([[x0, y0, x1, y1]], np.float32), len(dets["scores"]), 0)
            parts.append(dets)
        if sum(len(p["scores"]) for p in parts) > 2 * MAX_MERGE_CANDIDATES:  # a huge image: keep the best
            merged = _cat(parts)
            best = np.argsort(-merged["scores"], kind="stable")[:MAX_MERGE_CANDIDATES]
            parts = [{k: v[best] for k, v in merged.items()}]
    if settings.whole_image or len(tiles) == 0:
        dets = dict(detect_batch([image])[0])
        dets["views"] = np.repeat(np.array([[0, 0, width, height]], np.float32), len(dets["scores"]), 0)
        parts.append(dets)
    dets = _cat(parts)
    views = dets.pop("views")
    cut = cut_sides(dets["boxes"].astype(np.float32), views, (height, width))
    return merge_detections(dets, cut, settings.merge, nms_thresh, max_detections)
