"""The built-in large-image dataset for small objects: ``gfocal_shapes_large``.

Generated like :mod:`gfocal.data.shapes` (seeded, COCO json, nothing downloaded), but each image
is 1024x768 with many small shapes (sides 6-32 px, log-uniform), a few large ones (48-160 px)
and clutter that is not a class (irregular blobs, short strokes). About a fifth of the shapes are
centred on an inner border of the default tile grid (:func:`gfocal_runtime.slicing.tile_grid` with
``size=256, overlap=0.25``), so a sliced detector meets objects cut by tiles on purpose; their
annotations carry ``"on_tile_border": true``. As in the quick-start data, some shapes have
blurred edges and later shapes may hide at most half of an earlier one (``hidden``); boxes are
the full extent of each shape.

Resized to a network input of 256 px on the short side, as a detector trained on 256 px crops
sees a whole image, a 6 px shape shrinks to 2 px: the case slicing is for.

Layout under ``$DETECTRON2_DATASETS`` (default ``datasets/``)::

    gfocal_shapes_large/
      train/000000.jpg ...   val/000000.jpg ...   annotations/{train,val}.json   COMPLETE
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from gfocal_runtime.slicing import tile_starts

from .shapes import CLASS_NAMES, _background, _shape_mask, ensure_generated

__all__ = ["LargeShapesSpec", "generate_large_image", "ensure_large_shapes_dataset", "TILE_SIZE", "TILE_OVERLAP"]

VERSION = 1
# The tile grid the objects on tile borders are placed for (and the configs' default slicing).
TILE_SIZE = 256
TILE_OVERLAP = 0.25


@dataclass(frozen=True)
class LargeShapesSpec:
    """Generation parameters; a copy on disk is reused only when all of these match."""

    num_train: int = 400
    num_val: int = 100
    width: int = 1024
    height: int = 768
    seed: int = 0
    small_objects: Tuple[int, int] = (20, 60)  # per image, uniform
    small_side: Tuple[float, float] = (6.0, 32.0)  # px, log-uniform
    large_objects: Tuple[int, int] = (0, 3)
    large_side: Tuple[float, float] = (48.0, 160.0)
    clutter: Tuple[int, int] = (10, 40)
    on_border_prob: float = 0.2
    blur_prob: float = 0.2
    max_hidden: float = 0.5
    version: int = VERSION


def _border_lines(length: int) -> np.ndarray:
    """The inner tile borders (tile starts after the first, tile ends before the last) of the
    default grid along one image side."""
    starts = tile_starts(length, TILE_SIZE, TILE_OVERLAP)
    return np.unique(np.concatenate([starts[1:], starts[:-1] + TILE_SIZE]))


def _clutter(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Draw ``count`` non-class distractors in place: irregular blobs (random radii around a
    centre, not star-like) and short strokes, 4-24 px."""
    height, width = img.shape[:2]
    for _ in range(count):
        color = rng.uniform(0, 255, 3).tolist()
        cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        size = math.exp(rng.uniform(math.log(4), math.log(24)))
        if rng.uniform() < 0.6:
            n = int(rng.integers(5, 9))
            angles = np.sort(rng.uniform(0, 2 * math.pi, n))
            radius = size / 2 * rng.uniform(0.3, 1.0, n)
            pts = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
            cv2.fillPoly(img, [np.round(pts).astype(np.int32)], color)
        else:
            angle = rng.uniform(0, math.pi)
            dx, dy = size / 2 * math.cos(angle), size / 2 * math.sin(angle)
            p0, p1 = (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy))
            cv2.line(img, p0, p1, color, int(rng.integers(1, 3)))


def generate_large_image(rng: np.random.Generator, spec: LargeShapesSpec) -> Tuple[np.ndarray, List[Dict]]:
    """One (height, width, 3) uint8 RGB image and its objects [{"bbox": [x, y, w, h],
    "category_id" (1..4), "blurred", "hidden", "on_tile_border"}]. Shapes are composited in
    local patches (no full-image mask per object); an ``owner`` map tracks which shape each pixel
    shows, to refuse placements that would hide more than ``max_hidden`` of an earlier shape."""
    width, height = spec.width, spec.height
    # The quick start's background at 1/4 scale, upsampled: the same look at this size, 16x cheaper.
    img = cv2.resize(_background(rng, max(width, height) // 4), (width, height), interpolation=cv2.INTER_LINEAR)
    img += rng.normal(0, rng.uniform(4, 12), img.shape).astype(np.float32)
    _clutter(img, rng, int(rng.integers(spec.clutter[0], spec.clutter[1] + 1)))
    borders_x, borders_y = _border_lines(width), _border_lines(height)
    owner = np.full((height, width), -1, np.int32)
    visible: List[int] = []  # per placed object, its visible pixel count
    objects: List[Dict] = []
    num_large = int(rng.integers(spec.large_objects[0], spec.large_objects[1] + 1))
    num_small = int(rng.integers(spec.small_objects[0], spec.small_objects[1] + 1))
    # Large shapes first: small ones may then lie on them, as on a real scene's big objects.
    for side_range in [spec.large_side] * num_large + [spec.small_side] * num_small:
        for _attempt in range(10):
            cls = int(rng.integers(len(CLASS_NAMES)))
            side = math.exp(rng.uniform(math.log(side_range[0]), math.log(side_range[1])))
            aspect = math.exp(rng.uniform(-0.4, 0.4))
            w = int(np.clip(round(side * aspect), 5, width))
            h = int(np.clip(round(side / aspect), 5, height))
            on_border = rng.uniform() < spec.on_border_prob
            cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
            if on_border:  # the centre on one inner border line of the default tile grid
                if rng.uniform() < 0.5:
                    cx = float(rng.choice(borders_x)) + rng.uniform(-0.15, 0.15) * w
                else:
                    cy = float(rng.choice(borders_y)) + rng.uniform(-0.15, 0.15) * h
            x0 = int(np.clip(round(cx - w / 2), 0, width - w))
            y0 = int(np.clip(round(cy - h / 2), 0, height - h))
            mask = _shape_mask(cls, w, h, rng)
            inside = mask > 0.5
            covered = owner[y0 : y0 + h, x0 : x0 + w][inside]
            hidden_now = np.bincount(covered[covered >= 0], minlength=len(objects))
            # Refuse a placement that would hide too much of an earlier shape.
            if all(visible[i] - hidden_now[i] >= (1 - spec.max_hidden) * o["area_px"] for i, o in enumerate(objects)):
                break
        else:
            continue
        blurred = bool(rng.uniform() < spec.blur_prob)
        pad = 0
        alpha = mask
        if blurred:
            sigma = rng.uniform(0.8, 2.0) * max(1.0, side / 40)
            pad = int(math.ceil(3 * sigma))
            alpha = cv2.GaussianBlur(np.pad(mask, pad), (0, 0), sigma)
        # The patch (with the blur's margin), clipped to the image.
        px0, py0 = x0 - pad, y0 - pad
        ax0, ay0 = max(px0, 0), max(py0, 0)
        ax1, ay1 = min(px0 + alpha.shape[1], width), min(py0 + alpha.shape[0], height)
        a = alpha[ay0 - py0 : ay1 - py0, ax0 - px0 : ax1 - px0, None]
        color = rng.uniform(0, 255, 3).astype(np.float32)
        shade = 1 + rng.normal(0, 0.08, a.shape).astype(np.float32)
        region = img[ay0:ay1, ax0:ax1]
        img[ay0:ay1, ax0:ax1] = region * (1 - a) + color * shade * a
        for i, n in enumerate(hidden_now):
            visible[i] -= int(n)
        owner[y0 : y0 + h, x0 : x0 + w][inside] = len(objects)
        visible.append(int(inside.sum()))
        objects.append(
            {
                "bbox": [x0, y0, w, h],
                "category_id": cls + 1,
                "blurred": blurred,
                "on_tile_border": bool(on_border),
                "area_px": int(inside.sum()),
            }
        )
    for n, o in zip(visible, objects):
        o["hidden"] = round(1 - n / max(o.pop("area_px"), 1), 3)
    return np.clip(img, 0, 255).astype(np.uint8), objects


def ensure_large_shapes_dataset(spec: Optional[LargeShapesSpec] = None, root: Optional[str] = None) -> str:
    """Generate ``gfocal_shapes_large`` under ``root`` (default
    ``$DETECTRON2_DATASETS/gfocal_shapes_large``) unless a complete copy with the same spec is
    there; returns the dataset root."""
    return ensure_generated(spec or LargeShapesSpec(), root, generate_large_image, "gfocal_shapes_large")
