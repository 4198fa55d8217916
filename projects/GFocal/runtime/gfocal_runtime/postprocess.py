"""Pure-numpy post-processing that reproduces Detectron2 + PyTorch GFL inference exactly.

Each step mirrors one piece of the PyTorch model (CPU):

* :func:`select_candidates` - ``GFL.candidates_single_image`` (``_select_level``):
  per level, (location, class) pairs with score > threshold, the top-k of them by score.
* :func:`clip_boxes` - ``Boxes.clip``.
* :func:`batched_nms` - ``torchvision.ops.batched_nms`` on the CPU, float32 arithmetic included.
* :func:`rescale_boxes` - ``detector_postprocess`` (scale, clip, ``Boxes.nonempty``).
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "level_sizes",
    "num_locations",
    "select_candidates",
    "clip_boxes",
    "batched_nms",
    "rescale_boxes",
    "postprocess_outputs",
]

# torchvision.ops.batched_nms on CPU uses its "coordinate trick" (one NMS over class-offset
# boxes) up to this many box coordinates (boxes.numel()) and per-class NMS above it.
TORCHVISION_CPU_TRICK_MAX_NUMEL = 4000


def level_sizes(input_hw: Tuple[int, int], strides: Sequence[int]) -> List[Tuple[int, int]]:
    """Feature-map sizes of the levels of a padded (Hp, Wp) input: [(ceil(Hp / s), ceil(Wp / s))
    for s in strides]."""
    hp, wp = input_hw
    return [(-(-hp // s), -(-wp // s)) for s in strides]


def num_locations(input_hw: Tuple[int, int], strides: Sequence[int]) -> int:
    """R, the number of locations over all levels (the length of the outputs' R axis)."""
    return sum(h * w for h, w in level_sizes(input_hw, strides))


def _topk_desc(values: np.ndarray, k: int) -> np.ndarray:
    """(min(k, N),) int64 positions of the k largest of (N,) ``values``, by descending value
    (ties: lower position first)."""
    n = values.shape[0]
    if k <= 0 or n == 0:
        return np.zeros((0,), dtype=np.int64)
    if n > k:
        kth = np.partition(values, n - k)[n - k]  # the k-th largest value
        above = np.flatnonzero(values > kth)
        ties = np.flatnonzero(values == kth)[: k - above.shape[0]]
        chosen = np.sort(np.concatenate([above, ties]))
    else:
        chosen = np.arange(n)
    order = np.argsort(-values[chosen], kind="stable")
    return chosen[order].astype(np.int64)


def select_candidates(
    scores: np.ndarray,
    sizes: Sequence[int],
    score_thresh: float,
    topk_per_level: int,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per level, keep (location, class) pairs with score > ``score_thresh`` (strictly, compared
    in float32 as torch does), then the ``topk_per_level`` highest of those; concatenate levels.

    Args:
        scores: (R, K) float32 joint scores, levels concatenated along R (level-major).
        sizes: number of locations R_l of each level (sum == R).

    Returns:
        (locations, classes, cand_scores, levels), each (M,): int64 index into R, int64 class,
        float32 score, int64 level index. Within a level, by descending score (ties: lower
        flattened (location, class) index first).
    """
    scores = np.asarray(scores)
    num_classes = scores.shape[1]
    if sum(sizes) != scores.shape[0]:
        raise ValueError(f"level sizes sum to {sum(sizes)} but scores have {scores.shape[0]} rows")
    thresh = np.asarray(score_thresh, dtype=scores.dtype)
    locs, classes, kept, levels = [], [], [], []
    start = 0
    for level, size in enumerate(sizes):
        flat = scores[start : start + size].reshape(-1)
        passing = np.flatnonzero(flat > thresh)
        top = passing[_topk_desc(flat[passing], topk_per_level)]
        locs.append(start + top // num_classes)
        classes.append(top % num_classes)
        kept.append(flat[top])
        levels.append(np.full(top.shape, level, dtype=np.int64))
        start += size
    return (
        np.concatenate(locs).astype(np.int64),
        np.concatenate(classes).astype(np.int64),
        np.concatenate(kept).astype(np.float32, copy=False),
        np.concatenate(levels),
    )


def clip_boxes(boxes: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """Clip (N, 4) XYXY float32 boxes: x to [0, w], y to [0, h] (as ``Boxes.clip``). New array."""
    h, w = hw
    return np.clip(boxes, np.asarray(0, dtype=boxes.dtype), np.asarray([w, h, w, h], dtype=boxes.dtype))


def _float32_threshold(threshold: float) -> np.float32:
    """The largest float32 f <= ``threshold``: for float32 x, ``x > f`` iff ``x > threshold``
    compared in float64 (as torchvision's kernel compares its float IoU with a double)."""
    f = np.float32(threshold)
    if float(f) > threshold:
        f = np.nextafter(f, np.float32(-np.inf))
    return f


NMS_BLOCK = 128  # NMS visits the boxes this many at a time


def _coordinates(boxes: np.ndarray) -> Tuple[np.ndarray, ...]:
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i]) for i in range(4))
    return x1, y1, x2, y2, (x2 - x1) * (y2 - y1)


def _greedy_nms(
    boxes: np.ndarray, classes: np.ndarray, order: np.ndarray, iou_threshold: float, max_keep: Optional[int]
) -> np.ndarray:
    """Class-wise greedy NMS as torchvision's CPU kernel over (N, 4) float32 XYXY ``boxes`` of
    (N,) ``classes``, visiting the (M,) indices ``order`` (by descending score) across classes;
    returns the kept indices in that order, stopping at ``max_keep``.

    Float32 IoU = inter / ((area_i + area_j) - inter); j is suppressed by a kept box of its class
    when IoU > threshold with the threshold a double; a NaN IoU (0/0) does not suppress. A
    class's decisions do not depend on the other classes, so visiting all in one score order
    gives each class's greedy result, and the kept boxes come out in the final order: the pass
    stops at the ``max_keep``-th. The boxes are visited :data:`NMS_BLOCK` at a time: a block
    first loses those that a box kept before it suppresses (one (kept, block) IoU matrix), then
    its greedy pass reads the (block, block) IoUs of the rest; the same float32 operations give
    the same values, so the same decisions, as a pass over all pairs.
    """
    thresh = _float32_threshold(iou_threshold)
    zero = np.float32(0)
    x1, y1, x2, y2, areas = _coordinates(boxes[order])  # (M,) each, by descending score
    cls = classes[order]

    def suppresses(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(len(rows), len(cols)) bool: the box at each row position suppresses each column's."""
        w = np.maximum(zero, np.minimum(x2[rows, None], x2[cols]) - np.maximum(x1[rows, None], x1[cols]))
        h = np.maximum(zero, np.minimum(y2[rows, None], y2[cols]) - np.maximum(y1[rows, None], y1[cols]))
        inter = w * h
        iou = inter / ((areas[rows, None] + areas[cols]) - inter)
        return (iou > thresh) & (cls[rows, None] == cls[cols])  # NaN (0/0) suppresses nothing

    kept: List[int] = []  # positions in ``order``
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, order.shape[0], NMS_BLOCK):
            block = np.arange(start, min(start + NMS_BLOCK, order.shape[0]))
            if kept:
                block = block[~suppresses(np.asarray(kept), block).any(axis=0)]
            within = suppresses(block, block)
            removed = np.zeros(block.shape[0], dtype=bool)
            for i in range(block.shape[0]):
                if removed[i]:
                    continue
                kept.append(int(block[i]))
                if max_keep is not None and len(kept) >= max_keep:
                    return order[kept]
                removed |= within[i]  # its columns before i are decided already
    return order[kept]


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float,
    max_keep: Optional[int] = None,
) -> np.ndarray:
    """Class-aware greedy NMS of (N, 4) float32 XYXY ``boxes`` with (N,) ``scores`` and (N,)
    ``classes``, the same as ``torchvision.ops.batched_nms`` on the CPU (suppress when IoU >
    ``iou_threshold``); ``max_keep``: return the first ``max_keep`` of the full result.

    For up to 1000 boxes torchvision runs one NMS over boxes shifted by ``class * (max
    coordinate + 1)`` in float32 (its "coordinate trick"); they are shifted the same way here so
    that rounding, and so every decision, is identical. Boxes are expected to have coordinates
    >= 0 (clipped), so that shifted classes never overlap.

    Returns:
        (M,) int64 indices of the kept boxes, by descending score (ties: lower index first).
    """
    boxes = np.asarray(boxes, dtype=np.float32)  # detectron2's batched_nms calls boxes.float()
    scores, classes = np.asarray(scores), np.asarray(classes)
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.int64)
    if boxes.size <= TORCHVISION_CPU_TRICK_MAX_NUMEL:
        max_coordinate = boxes.max()
        offsets = classes.astype(np.float32) * (max_coordinate + np.float32(1))
        boxes = boxes + offsets[:, None]
    order = np.argsort(-scores, kind="stable")
    return _greedy_nms(boxes, classes, order, iou_threshold, max_keep).astype(np.int64)


def rescale_boxes(
    boxes: np.ndarray, image_hw: Tuple[int, int], output_hw: Tuple[int, int]
) -> Tuple[np.ndarray, np.ndarray, float]:
    """Boxes from the network's (resized) image to the output (original) image, as
    ``detector_postprocess``: scale x by out_w / w and y by out_h / h (in float32), clip to the
    output size, keep boxes with width > 0 and height > 0.

    Returns:
        (boxes, keep, stride_scale) for (N, 4) float32 XYXY ``boxes`` in the resized (h, w) image:
        the (N', 4) kept rescaled boxes; keep, the (N,) bool mask of kept inputs; stride_scale =
        sqrt(scale_x * scale_y), which GFL applies to ``pred_strides``.
    """
    h, w = image_hw
    out_h, out_w = output_hw
    scale_x, scale_y = out_w / w, out_h / h
    scaled = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
    scaled[:, 0::2] *= np.float32(scale_x)
    scaled[:, 1::2] *= np.float32(scale_y)
    scaled = clip_boxes(scaled, (out_h, out_w))
    keep = ((scaled[:, 2] - scaled[:, 0]) > 0) & ((scaled[:, 3] - scaled[:, 1]) > 0)
    return scaled[keep], keep, math.sqrt(scale_y * scale_x)


def postprocess_outputs(
    outputs: Dict[str, np.ndarray],
    spec,
    input_hw: Tuple[int, int],
    image_hw: Tuple[int, int],
    output_hw: Tuple[int, int],
    candidates: Optional[Tuple[np.ndarray, ...]] = None,
) -> Dict[str, np.ndarray]:
    """Detections of one image from the graph's outputs.

    Args:
        outputs: "scores" (1, R, K), "boxes" (1, R, 4) and, with distributions, "dists"
            (1, R, 4, n+1), as the exported graph returns them.
        spec: the :class:`~gfocal_runtime.spec.ExportSpec`.
        input_hw, image_hw, output_hw: the padded (Hp, Wp) network input, the resized (h, w)
            image before padding, the original (H, W) image.
        candidates: :func:`select_candidates` of these outputs, when already computed.

    Returns:
        "boxes" (M, 4) float32, "scores" (M,) float32, "classes" (M,) int64, and with
        distributions "dists" (M, 4, n+1) float32 and "strides" (M,) float32; by descending score.
    """
    sizes = [h * w for h, w in level_sizes(input_hw, spec.strides)]
    num_r = sum(sizes)
    expected = {"scores": (num_r, spec.num_classes), "boxes": (num_r, 4)}
    if spec.with_distributions:
        expected["dists"] = (num_r, 4, spec.reg_max + 1)
    arrays = {name: _check_output(outputs, name) for name in expected}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(
                f"output {name!r} has shape {arrays[name].shape} per image, expected {shape} for a {input_hw[0]}x"
                f"{input_hw[1]} input with strides {list(spec.strides)}, {spec.num_classes} classes and reg_max "
                f"{spec.reg_max}"
            )
    scores, boxes, dists = arrays["scores"], arrays["boxes"], arrays.get("dists")
    if candidates is None:
        candidates = select_candidates(scores, sizes, spec.score_thresh, spec.topk_per_level)
    locs, classes, cand_scores, levels = candidates
    cand_boxes = boxes[locs].astype(np.float32, copy=False)
    finite = np.isfinite(cand_boxes).all(axis=1)
    if not finite.all():
        locs, classes, cand_scores, levels, cand_boxes = (a[finite] for a in (*candidates, cand_boxes))
    cand_boxes = clip_boxes(cand_boxes, image_hw)
    keep = batched_nms(cand_boxes, cand_scores, classes, spec.nms_thresh, spec.max_detections)
    out_boxes, nonempty, stride_scale = rescale_boxes(cand_boxes[keep], image_hw, output_hw)
    keep = keep[nonempty]
    result = {"boxes": out_boxes, "scores": cand_scores[keep], "classes": classes[keep]}
    if dists is not None:
        result["dists"] = dists[locs[keep]].astype(np.float32, copy=False)
        result["strides"] = np.asarray(spec.strides, dtype=np.float32)[levels[keep]] * np.float32(stride_scale)
    return result


def _check_output(outputs: Dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in outputs:
        raise ValueError(f"the model has no output named {name!r} (outputs: {sorted(outputs)})")
    value = np.asarray(outputs[name])
    if value.ndim < 1 or value.shape[0] != 1:
        raise ValueError(f"output {name!r} has shape {value.shape}, expected a batch of 1")
    return value[0]
