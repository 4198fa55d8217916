"""Image preprocessing that reproduces Detectron2's test-time input pipeline bit for bit.

BGR -> the model's channel order, ``ResizeShortestEdge`` (size rule of
``ResizeShortestEdge.get_output_shape``, pixels by PIL as ``ResizeTransform.apply_image`` does for
uint8 images), float32 CHW, bottom/right padding to ``size_divisibility`` with ``pad_value``.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .spec import INTERPOLATIONS

__all__ = ["resize_output_shape", "resize_image", "pad_to_divisible", "preprocess_image"]


def resize_output_shape(h: int, w: int, short_edge_length: int, max_size: Optional[int]) -> Tuple[int, int]:
    """The (new_h, new_w) that Detectron2's ``ResizeShortestEdge`` gives an (h, w) image
    (``short_edge_length`` 0: no resize; ``max_size`` None: no limit on the long edge)."""
    if short_edge_length == 0:
        return h, w
    size = short_edge_length * 1.0
    scale = size / min(h, w)
    if h < w:
        newh, neww = size, scale * w
    else:
        newh, neww = scale * h, size
    if max_size is not None and max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def resize_image(img: np.ndarray, new_h: int, new_w: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resize a uint8 (H, W, 3) or (H, W) image with PIL, as Detectron2's ``ResizeTransform``.

    Returns the input itself when the size is unchanged (PIL would return a copy of it).
    """
    if img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {img.dtype}")
    if img.shape[:2] == (new_h, new_w):
        return img
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {list(INTERPOLATIONS)}")
    pil = Image.fromarray(np.ascontiguousarray(img))
    return np.asarray(pil.resize((new_w, new_h), INTERPOLATIONS[interpolation]))


def pad_to_divisible(chw: np.ndarray, size_divisibility: int, pad_value: Sequence[float]) -> np.ndarray:
    """Pad a (C, H, W) float32 image at the bottom and right to multiples of ``size_divisibility``.

    Channel c of the padding is ``pad_value[c]``. ``size_divisibility`` <= 1: no padding
    (as Detectron2's ``ImageList.from_tensors``). Returns (C, Hp, Wp) float32.
    """
    c, h, w = chw.shape
    step = max(size_divisibility, 1)
    hp, wp = -(-h // step) * step, -(-w // step) * step
    if (hp, wp) == (h, w):
        return np.ascontiguousarray(chw, dtype=np.float32)
    if len(pad_value) != c:
        raise ValueError(f"pad_value has {len(pad_value)} values for {c} channels")
    out = np.full((c, hp, wp), np.asarray(pad_value, dtype=np.float32)[:, None, None], dtype=np.float32)
    out[:, :h, :w] = chw
    return out


def preprocess_image(image_bgr: np.ndarray, spec) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Turn a BGR uint8 image into the network input.

    Args:
        image_bgr: (H, W, 3) uint8, BGR (as ``cv2.imread`` gives).
        spec: an :class:`~gfocal_runtime.spec.ExportSpec`.

    Returns:
        (batch, (h, w)): batch (1, 3, Hp, Wp) float32 in ``spec.input_format`` order, values
        0-255, padded; (h, w) the resized image size before padding.
    """
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image array, got shape {getattr(image_bgr, 'shape', None)}")
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image_bgr.dtype}")
    if image_bgr.shape[0] < 1 or image_bgr.shape[1] < 1:
        raise ValueError(f"empty image of shape {image_bgr.shape}")
    img = image_bgr[:, :, ::-1] if spec.input_format == "RGB" else image_bgr
    if spec.resize is not None:
        new_h, new_w = resize_output_shape(*img.shape[:2], spec.resize.short_edge_length, spec.resize.max_size)
        img = resize_image(img, new_h, new_w, spec.resize.interpolation)
    h, w = img.shape[:2]
    chw = img.transpose(2, 0, 1).astype(np.float32)
    batch = pad_to_divisible(chw, spec.size_divisibility, spec.pad_value)[None]
    return np.ascontiguousarray(batch), (h, w)
