"""Pictures of GFL predictions: Detectron2's boxes and labels plus each box's four learned side
distributions (the "general distribution" of GFL, paper fig. 3).

GFL predicts, for every side of a box (left, top, right, bottom), a discrete distribution over
n+1 bins: bin i means "the side lies i * stride pixels from the location that predicted the box",
and the drawn edge is the expectation. Each distribution is drawn *where it lives*, across its
edge in image coordinates (see :func:`draw_side_distributions`): a confident edge is a thin spike
centred on the drawn edge; an ambiguous one (blurred, occluded) a low, wide or two-humped blob.
Every box has its own colour (not one per class), so two boxes of a class can be told apart.
"""

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torchvision.ops import nms

from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer, _create_text_labels

__all__ = [
    "draw_predictions",
    "draw_side_distributions",
    "side_bin_positions",
    "side_expectation",
    "box_colors",
    "select_boxes",
]

# Distinct colours (RGB), one per drawn box, assigned in score order.
# fmt: off
_PALETTE = [
    (230, 25, 75), (0, 130, 200), (60, 180, 75), (255, 140, 0), (145, 30, 180), (0, 190, 190),
    (240, 50, 230), (128, 128, 0), (170, 110, 40), (0, 0, 128), (128, 0, 0), (70, 240, 240),
]
# fmt: on


def box_colors(count: int) -> List[Tuple[int, int, int]]:
    """``count`` RGB colours, one per box; neighbours in the list differ (the palette cycles
    after 12)."""
    return [_PALETTE[i % len(_PALETTE)] for i in range(count)]


def side_expectation(probs: torch.Tensor) -> torch.Tensor:
    """(M, 4, n+1) probabilities -> (M, 4) expected bin index of each side."""
    bins = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
    return (probs * bins).sum(-1)


def side_bin_positions(
    boxes: torch.Tensor, probs: torch.Tensor, strides: torch.Tensor, image_size: Optional[Tuple[int, int]] = None
) -> torch.Tensor:
    """Pixel coordinate of every bin of every side, along the axis perpendicular to the side.

    Bin i of the left side is at x = cx - i * stride, of the right side at cx + i * stride, of the
    top at y = cy - i * stride and of the bottom at cy + i * stride, where (cx, cy) is the location
    that predicted the box, recovered from each side's own edge: cx = x0 + E[L] * stride for
    the left side, x1 - E[R] * stride for the right, so that each expectation lands exactly on
    its drawn edge. A side clipped to the border of the (height, width) ``image_size`` uses the
    centre recovered from the opposite side instead.

    Args:
        boxes: (M, 4) XYXY boxes. probs: (M, 4, n+1) side distributions (L, T, R, B).
        strides: (M,) bin spacing in the boxes' pixels.

    Returns:
        (M, 4, n+1) positions: x for L and R, y for T and B.
    """
    boxes, probs, strides = boxes.float(), probs.float(), strides.float()
    s = strides[:, None]
    expect = side_expectation(probs) * s  # (M, 4) in pixels
    x0, y0, x1, y1 = boxes.unbind(1)
    # Location of the predicting point seen from each side: (M, 4) = from L, T, R, B.
    centre = torch.stack([x0 + expect[:, 0], y0 + expect[:, 1], x1 - expect[:, 2], y1 - expect[:, 3]], 1)
    own = centre
    if image_size is not None:
        h, w = image_size
        eps = 1e-3
        at_border = torch.stack([x0 <= eps, y0 <= eps, x1 >= w - eps, y1 >= h - eps], 1)
        use_other = at_border & ~at_border[:, [2, 3, 0, 1]]  # clipped here, not on the opposite side
        own = torch.where(use_other, centre[:, [2, 3, 0, 1]], centre)
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0], device=probs.device)
    bins = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
    return own[..., None] + sign[None, :, None] * bins * s[..., None]


def select_boxes(boxes: np.ndarray, scores: np.ndarray, max_count: int, dedup_iou: float = 0.7) -> List[int]:
    """Indices of the boxes to draw distributions for: highest scores first, skipping any box
    with IoU > ``dedup_iou`` to one already chosen (greedy NMS), at most ``max_count``."""
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float64))
    scores = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    return nms(boxes, scores, dedup_iou)[: max(max_count, 0)].tolist()


def draw_side_distributions(
    canvas: np.ndarray,
    boxes: np.ndarray,
    positions: np.ndarray,
    probs: np.ndarray,
    colors: Sequence[Tuple[int, int, int]],
    amplitude: Optional[float] = None,
    min_prob: float = 0.05,
    alpha: float = 0.55,
) -> np.ndarray:
    """Draw each side's distribution across its edge, in place, on an RGB uint8 ``canvas``.

    The left side's distribution is drawn at the middle of the left edge (y = (y0 + y1) / 2):
    bin i sits at x = ``positions[k, 0, i]`` and the curve extends p_i * ``amplitude`` above and
    below that line (a mirrored "violin"), linearly interpolated between bins, so its peak lies
    on the drawn edge and its width along x is the edge's uncertainty. The right side is drawn
    the same way, the top and bottom sides rotated (position along y, thickness along x).

    Args:
        canvas: (H, W, 3) uint8 RGB image, drawn on in place (and returned).
        boxes: (K, 4) XYXY boxes, positions: (K, 4, n+1) bin positions (see
            :func:`side_bin_positions`), both in canvas pixels; probs: (K, 4, n+1); colors: K RGB.
        amplitude: half-thickness of a bin with probability 1, in canvas pixels; default 4.5%
            of the canvas' shorter side, but at most 30% of the edge's length (at least 4 px).
        min_prob: bins outside the span of bins with at least this probability are not drawn
            (one more bin on either side is kept so the curve returns to its axis).
        alpha: opacity of the fill; the outline (box colour on a thin dark halo) is opaque.
    """
    H, W = canvas.shape[:2]
    if amplitude is None:
        amplitude = 0.045 * min(H, W)
    shift = 4  # sub-pixel precision for cv2 drawing
    one = 1 << shift
    fill_layer = canvas.copy()
    strokes = []
    nbins = probs.shape[-1]
    for k in range(len(boxes)):
        x0, y0, x1, y1 = [float(v) for v in boxes[k]]
        for side in range(4):
            p = probs[k, side].astype(np.float64)
            heavy = np.nonzero(p >= min_prob)[0]
            if heavy.size == 0:
                continue
            lo, hi = max(int(heavy[0]) - 1, 0), min(int(heavy[-1]) + 1, nbins - 1)
            pos = positions[k, side, lo : hi + 1].astype(np.float64)
            horizontal = side in (0, 2)  # L, R: positions along x, thickness along y
            edge_len = (y1 - y0) if horizontal else (x1 - x0)
            amp = p[lo : hi + 1] * max(min(amplitude, 0.3 * edge_len), 4.0)
            mid = (y0 + y1) / 2 if horizontal else (x0 + x1) / 2
            along = np.concatenate([pos, pos[::-1]])
            across = np.concatenate([mid - amp, (mid + amp)[::-1]])
            pts = np.stack([along, across], 1)
            if not horizontal:
                pts = pts[:, ::-1]
            # cv2 clips to the canvas, but huge coordinates overflow its fixed-point maths.
            pts = pts.clip(np.array([[-W, -H]]), np.array([[2 * W, 2 * H]]))
            ipts = np.round(pts * one).astype(np.int32)
            color = tuple(int(c) for c in colors[k])
            cv2.fillPoly(fill_layer, ipts[None], color, lineType=cv2.LINE_AA, shift=shift)
            strokes.append((ipts, color))
    cv2.addWeighted(fill_layer, alpha, canvas, 1 - alpha, 0, dst=canvas)
    # A thin dark halo under a coloured outline keeps the curves readable on busy images.
    thickness = max(1, int(round(min(H, W) / 500)))
    for ipts, _ in strokes:
        cv2.polylines(canvas, [ipts], True, (25, 25, 25), thickness + 2, cv2.LINE_AA, shift)
    for ipts, color in strokes:
        cv2.polylines(canvas, [ipts], True, color, thickness, cv2.LINE_AA, shift)
    return canvas


def draw_predictions(
    image_rgb: np.ndarray,
    instances: Instances,
    metadata=None,
    confidence_threshold: float = 0.3,
    show_distributions: bool = True,
    max_panels: int = 8,
    min_size: int = 768,
    dedup_iou: float = 0.7,
) -> np.ndarray:
    """Draw boxes, class names and scores with Detectron2's Visualizer, and optionally the
    side distributions of the boxes.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image the instances refer to.
        instances: predictions in (H, W) coordinates; ``pred_dists`` (M, 4, n+1) and
            ``pred_strides`` (M,) are needed for the distributions.
        metadata: Detectron2 Metadata with ``thing_classes`` (or None).
        max_panels, dedup_iou: distributions for at most ``max_panels`` boxes, highest scores
            first (see :func:`select_boxes`).
        min_size: small images are upscaled so that the shorter side is at least this.

    Returns:
        (H', W', 3) uint8 RGB picture, H' = H * scale, scale = max(1, min_size / min(H, W)).
    """
    instances = instances.to("cpu")
    instances = instances[instances.scores >= confidence_threshold]
    instances = instances[instances.scores.argsort(descending=True)]
    height, width = image_rgb.shape[:2]
    scale = max(1.0, min_size / min(height, width))
    out_w, out_h = int(round(width * scale)), int(round(height * scale))
    sx, sy = out_w / width, out_h / height
    canvas = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    if (out_w, out_h) != (width, height):
        canvas = cv2.resize(canvas, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    else:
        canvas = canvas.copy()

    colors = box_colors(len(instances))
    boxes = instances.pred_boxes.tensor.float().numpy() * np.array([sx, sy, sx, sy], np.float32)
    with_dists = show_distributions and len(instances) > 0 and instances.has("pred_dists")
    chosen = select_boxes(boxes, instances.scores.numpy(), max_panels, dedup_iou) if with_dists else []

    if chosen:
        probs = instances.pred_dists.float()
        pos = side_bin_positions(instances.pred_boxes.tensor, probs, instances.pred_strides, (height, width))
        pos = pos.numpy() * np.array([sx, sy, sx, sy], np.float32)[None, :, None]
        draw_side_distributions(canvas, boxes[chosen], pos[chosen], probs.numpy()[chosen], [colors[i] for i in chosen])

    vis = Visualizer(canvas, metadata, scale=1.0, font_size_scale=1.4)
    labels = _create_text_labels(
        instances.pred_classes.tolist(),
        instances.scores,
        metadata.get("thing_classes", None) if metadata is not None else None,
    )
    canvas = vis.overlay_instances(
        boxes=boxes, labels=labels, assigned_colors=[tuple(c / 255 for c in rgb) for rgb in colors]
    ).get_image()
    return np.ascontiguousarray(canvas[:out_h, :out_w])
