"""The built-in quick-start dataset: generated shapes in COCO json format.

Deterministic from a seed, nothing downloaded. Images are small (128x128 by default) with 0-8
objects of 4 classes in varied colours on textured, noisy backgrounds; object sides span
8%-80% of the image side, about a quarter of the objects have blurred edges and later objects
may partly occlude earlier ones (at most half of an object is hidden), so box sides are
genuinely ambiguous; at least 5% of the images have no object. Boxes are the full (amodal)
extent of each shape.

Layout under ``$DETECTRON2_DATASETS`` (default ``datasets/``)::

    gfocal_shapes/
      train/000000.jpg ...        val/000000.jpg ...
      annotations/train.json      annotations/val.json
      COMPLETE                    written last; holds the generation parameters
"""

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CLASS_NAMES", "ShapesSpec", "generate_image", "ensure_shapes_dataset", "ensure_generated", "shapes_root"]

CLASS_NAMES = ["ellipse", "rectangle", "triangle", "star"]
VERSION = 1  # bump when the generator changes: existing copies are then regenerated


@dataclass(frozen=True)
class ShapesSpec:
    """Generation parameters; a copy on disk is reused only when all of these match."""

    num_train: int = 3000
    num_val: int = 300
    size: int = 128
    seed: int = 0
    max_objects: int = 8
    empty_prob: float = 0.06
    min_side: float = 0.08
    max_side: float = 0.8
    blur_prob: float = 0.25
    max_hidden: float = 0.5
    version: int = VERSION


def shapes_root(name: str = "gfocal_shapes") -> str:
    return os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), name)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise + stripes or blobs + pixel noise, (size, size, 3) float32."""
    cells = int(rng.integers(2, 9))
    low = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    img = 0.5 * img + 0.5 * rng.uniform(40, 200, 3).astype(np.float32)
    for _ in range(int(rng.integers(0, 6))):  # distractor lines
        p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        color = rng.uniform(0, 255, 3).tolist()
        cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), color, int(rng.integers(1, 3)))
    img += rng.normal(0, rng.uniform(4, 16), img.shape).astype(np.float32)
    return img


def _shape_mask(cls: int, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A (h, w) float mask of shape ``cls`` that touches all four sides of its box."""
    mask = np.zeros((h, w), np.float32)
    if cls == 0:  # ellipse
        cv2.ellipse(mask, (((w - 1) / 2, (h - 1) / 2), (w, h), 0.0), 1.0, -1)
    elif cls == 1:  # rectangle
        mask[:] = 1.0
    elif cls == 2:  # triangle: apex somewhere on one side, base on the opposite side
        a = rng.uniform(0, 1)
        pts = [(a * (w - 1), 0), (0, h - 1), (w - 1, h - 1)]
        if rng.uniform() < 0.5:  # upside down
            pts = [(x, h - 1 - y) for x, y in pts]
        cv2.fillPoly(mask, [np.round(np.array(pts)).astype(np.int32)], 1.0)
    else:  # five-pointed star, stretched to the box
        angles = -math.pi / 2 + np.arange(10) * math.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        xs, ys = radius * np.cos(angles), radius * np.sin(angles)
        xs = (xs - xs.min()) / (xs.max() - xs.min()) * (w - 1)
        ys = (ys - ys.min()) / (ys.max() - ys.min()) * (h - 1)
        cv2.fillPoly(mask, [np.round(np.stack([xs, ys], 1)).astype(np.int32)], 1.0)
    return mask


def generate_image(rng: np.random.Generator, spec: ShapesSpec) -> Tuple[np.ndarray, List[Dict]]:
    """One image (size, size, 3) uint8 RGB and its objects [{"bbox": [x, y, w, h], "category_id",
    "blurred", "hidden"}], with category ids 1..4 and hidden = fraction covered by later shapes."""
    size = spec.size
    img = _background(rng, size)
    num = 0 if rng.uniform() < spec.empty_prob else int(rng.integers(1, spec.max_objects + 1))
    visible: List[np.ndarray] = []  # per placed object, its still-visible pixels
    objects: List[Dict] = []
    for _ in range(num):
        for _attempt in range(10):
            cls = int(rng.integers(len(CLASS_NAMES)))
            side = size * math.exp(rng.uniform(math.log(spec.min_side), math.log(spec.max_side)))
            aspect = math.exp(rng.uniform(-0.5, 0.5))
            lo, hi = round(spec.min_side * size), round(spec.max_side * size)
            w = int(np.clip(round(side * aspect), lo, hi))
            h = int(np.clip(round(side / aspect), lo, hi))
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            full = np.zeros((size, size), bool)
            mask = _shape_mask(cls, w, h, rng)
            full[y0 : y0 + h, x0 : x0 + w] = mask > 0.5
            # Reject a placement that would hide too much of an earlier object.
            ok = all((v & ~full).sum() >= (1 - spec.max_hidden) * o["area_px"] for v, o in zip(visible, objects))
            if ok:
                break
        else:
            continue
        blurred = rng.uniform() < spec.blur_prob
        alpha = np.zeros((size, size), np.float32)
        alpha[y0 : y0 + h, x0 : x0 + w] = mask
        if blurred:
            sigma = rng.uniform(1.0, 2.5) * max(1.0, side / 40)
            alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
        color = rng.uniform(0, 255, 3).astype(np.float32)
        shade = 1 + rng.normal(0, 0.08, (size, size, 1)).astype(np.float32)  # texture
        img = img * (1 - alpha[..., None]) + (color * shade) * alpha[..., None]
        visible = [v & ~full for v in visible]
        visible.append(full)
        objects.append({"bbox": [x0, y0, w, h], "category_id": cls + 1, "blurred": blurred, "area_px": int(full.sum())})
    for v, o in zip(visible, objects):
        o["hidden"] = round(1 - v.sum() / max(o.pop("area_px"), 1), 3)
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _write_split(root: str, split: str, count: int, spec, generate: Callable, name: str) -> None:
    from tqdm import tqdm

    rng = np.random.default_rng(spec.seed * 1000 + {"train": 1, "val": 2}[split])
    os.makedirs(os.path.join(root, split), exist_ok=True)
    images, annotations = [], []
    for idx in tqdm(range(count), desc=f"{name} {split}", unit="img", mininterval=1.0):
        img, objects = generate(rng, spec)
        file_name = f"{idx:06d}.jpg"
        cv2.imwrite(os.path.join(root, split, file_name), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 93])
        images.append({"id": idx + 1, "file_name": file_name, "height": img.shape[0], "width": img.shape[1]})
        for obj in objects:
            x, y, w, h = obj.pop("bbox")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": idx + 1,
                    "category_id": obj.pop("category_id"),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                    **obj,  # the generator's extras: blurred, hidden, ...
                }
            )
    data = {
        "info": {"description": f"GFocal generated shapes ({name})", "spec": asdict(spec)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)],
    }
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    tmp = os.path.join(root, "annotations", f"{split}.json.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, os.path.join(root, "annotations", f"{split}.json"))


def _is_complete(root: str, spec) -> bool:
    """The marker matches ``spec`` and every split's json and image files are present."""
    try:
        with open(os.path.join(root, "COMPLETE")) as f:
            if json.load(f) != json.loads(json.dumps(asdict(spec))):  # tuples are lists in json
                return False
        for split, count in (("train", spec.num_train), ("val", spec.num_val)):
            with open(os.path.join(root, "annotations", f"{split}.json")) as f:
                data = json.load(f)
            if len(data["images"]) != count:
                return False
            folder = os.path.join(root, split)
            for im in data["images"]:
                path = os.path.join(folder, im["file_name"])
                if not os.path.isfile(path) or os.path.getsize(path) == 0:
                    return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_generated(spec, root: Optional[str], generate: Callable, name: str) -> str:
    """Write ``spec.num_train`` / ``spec.num_val`` images of ``generate(rng, spec)`` (an RGB
    uint8 image and its objects, each ``{"bbox": XYWH, "category_id", **extras}``) under
    ``root`` (default :func:`shapes_root` ``(name)``) as COCO json, unless a complete copy with
    the same spec is there; returns the root. The ``COMPLETE`` marker is written last, so an
    interrupted run is regenerated."""
    root = root or shapes_root(name)
    if _is_complete(root, spec):
        return root
    logger.info(f"Generating the {name} dataset in {root} ...")
    marker = os.path.join(root, "COMPLETE")
    if os.path.exists(marker):
        os.remove(marker)
    for split, count in (("train", spec.num_train), ("val", spec.num_val)):
        _write_split(root, split, count, spec, generate, name)
    with open(marker, "w") as f:
        json.dump(asdict(spec), f)
    return root


def ensure_shapes_dataset(spec: Optional[ShapesSpec] = None, root: Optional[str] = None) -> str:
    """Generate the dataset under ``root`` unless a complete copy with the same spec is there;
    returns the dataset root."""
    return ensure_generated(spec or ShapesSpec(), root, generate_image, "gfocal_shapes")
