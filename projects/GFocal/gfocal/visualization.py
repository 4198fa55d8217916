"""Pictures of GFL predictions: Detectron2's boxes and labels plus each box's four learned
side distributions (the "general distribution" of GFL, paper fig. 3).

Each drawn box gets a small panel of four bar charts (L, T, R, B). Bar i of a side is the
predicted probability that the side lies i bins (``pred_strides`` pixels each) from the
location that predicted the box; the tick marks the expectation, i.e. the drawn edge. A single
sharp bar means a confident edge; a flat or two-peaked chart means an ambiguous one (blurred or
occluded edges). The number under each chart is the spread (standard deviation) in pixels.
"""
from typing import Optional, Tuple

import cv2
import numpy as np
import torch

from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer, _create_text_labels

__all__ = ["draw_predictions", "side_spread", "SIDE_NAMES"]

SIDE_NAMES = ("L", "T", "R", "B")
# One colour per class for boxes and their panels (RGB).
_PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207),
            (227, 119, 194), (188, 189, 34), (140, 86, 75), (127, 127, 127)]


def side_spread(instances: Instances) -> torch.Tensor:
    """(M, 4) standard deviation of each side's distribution, in output-image pixels."""
    probs = instances.pred_dists.float()  # (M, 4, n+1)
    bins = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
    mean = (probs * bins).sum(-1, keepdim=True)
    std = ((probs * (bins - mean) ** 2).sum(-1)).sqrt()
    return std * instances.pred_strides.float()[:, None]


def _panel(probs: np.ndarray, spread: np.ndarray, color: Tuple[int, int, int], bar_w: int) -> np.ndarray:
    """A (h, w, 3) uint8 RGB panel: 2x2 bar charts of the four (n+1)-bin distributions."""
    nbins = probs.shape[1]
    cell_w, chart_h, label_h, pad = max(nbins * bar_w, 48), 24, 11, 2
    cell_h = chart_h + label_h
    panel = np.full((2 * cell_h + 3 * pad, 2 * cell_w + 3 * pad, 3), 255, np.uint8)
    bins = np.arange(nbins)
    for side in range(4):
        r, c = divmod(side, 2)
        x0, y0 = pad + c * (cell_w + pad), pad + r * (cell_h + pad)
        base = y0 + chart_h
        cv2.line(panel, (x0, base), (x0 + cell_w - 1, base), (120, 120, 120), 1)
        for i, p in enumerate(probs[side]):
            h = int(round(float(p) * (chart_h - 2)))
            if h > 0:
                cv2.rectangle(panel, (x0 + i * bar_w, base - h), (x0 + (i + 1) * bar_w - 2, base - 1), color, -1)
        mean = float((probs[side] * bins).sum())
        mx = int(round(x0 + (mean + 0.5) * bar_w - 1))
        cv2.line(panel, (mx, y0), (mx, y0 + 4), (0, 0, 0), 1)
        text = f"{SIDE_NAMES[side]} {spread[side]:.1f}px"
        cv2.putText(panel, text, (x0, base + label_h - 2), cv2.FONT_HERSHEY_PLAIN, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(panel, (0, 0), (panel.shape[1] - 1, panel.shape[0] - 1), color, 1)
    return panel


def _place(canvas: np.ndarray, panel: np.ndarray, box: np.ndarray, taken: list) -> None:
    """Paste ``panel`` next to ``box`` (right, left, below, above, inside), avoiding panels
    already placed where possible."""
    H, W = canvas.shape[:2]
    ph, pw = panel.shape[:2]
    x0, y0, x1, y1 = box
    candidates = [(x1 + 2, y0), (x0 - pw - 2, y0), (x0, y1 + 2), (x0, y0 - ph - 2), (x0 + 2, y0 + 2)]
    clipped = [(int(np.clip(x, 0, max(W - pw, 0))), int(np.clip(y, 0, max(H - ph, 0)))) for x, y in candidates]

    def overlap(x, y):
        return sum(
            max(0, min(x + pw, tx + tw) - max(x, tx)) * max(0, min(y + ph, ty + th) - max(y, ty))
            for tx, ty, tw, th in taken
        )

    x, y = min(clipped, key=lambda xy: overlap(*xy))
    region = canvas[y : y + ph, x : x + pw]
    region[:] = panel[: region.shape[0], : region.shape[1]]
    taken.append((x, y, pw, ph))


def draw_predictions(
    image_rgb: np.ndarray,
    instances: Instances,
    metadata=None,
    confidence_threshold: float = 0.3,
    show_distributions: bool = True,
    max_panels: int = 12,
    min_size: int = 768,
) -> np.ndarray:
    """Draw boxes, class names and scores with Detectron2's Visualizer, and optionally the
    side distributions of each box.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image the instances refer to.
        instances: predictions in (H, W) coordinates; ``pred_dists`` (M, 4, n+1) and
            ``pred_strides`` (M,) are needed for the distributions.
        metadata: Detectron2 Metadata with ``thing_classes`` (or None).
        confidence_threshold: instances below this score are not drawn.
        show_distributions: add the L/T/R/B panels.
        max_panels: panels for at most this many boxes (highest scores first).
        min_size: small images are upscaled so that the shorter side is at least this.

    Returns:
        (H', W', 3) uint8 RGB picture.
    """
    instances = instances.to("cpu")
    instances = instances[instances.scores >= confidence_threshold]
    scale = max(1.0, min_size / min(image_rgb.shape[:2]))
    classes = instances.pred_classes.tolist()
    colors = [_PALETTE[c % len(_PALETTE)] for c in classes]
    vis = Visualizer(image_rgb, metadata, scale=scale)
    labels = _create_text_labels(
        classes, instances.scores, metadata.get("thing_classes", None) if metadata is not None else None
    )
    canvas = vis.overlay_instances(
        boxes=instances.pred_boxes, labels=labels, assigned_colors=[tuple(c / 255 for c in rgb) for rgb in colors]
    ).get_image().copy()
    if not show_distributions or len(instances) == 0 or not instances.has("pred_dists"):
        return canvas
    order = instances.scores.argsort(descending=True)[:max_panels]
    spread = side_spread(instances).numpy()
    probs = instances.pred_dists.float().numpy()
    boxes = instances.pred_boxes.tensor.numpy() * scale
    bar_w = 3 if probs.shape[-1] <= 24 else 2
    taken = []
    for idx in order.tolist():
        _place(canvas, _panel(probs[idx], spread[idx], colors[idx], bar_w), boxes[idx], taken)
    return canvas
