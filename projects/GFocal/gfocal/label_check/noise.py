"""A seeded annotation-noise injector for COCO dicts: the errors a hurried annotator makes, with
a record of each, so a label-error finder can be scored against the truth.

Kinds (rates are shares of the clean annotations; one annotation gets at most one of the first
three):

- ``drop``: the annotation is deleted (the object becomes unannotated: a ``missing`` issue);
- ``flip``: its category becomes another one, uniformly (``class``);
- ``shift1`` / ``shift2``: one side, or two different sides, each moved in or out by 10-30% of
  the box's extent along that side's axis (at least 3 px), the other sides exact, the box kept
  inside the image (``location``);
- ``spawn``: a box of the size and class of a random annotation of another image, placed where
  it overlaps no annotation of this image (IoU < 0.1; ``spurious``);
- ``duplicate``: a copy of an annotation, each side jittered by at most 3% of the extent
  (``duplicate``).

Added annotations get new ids after the largest; nothing else changes.
"""

import copy
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from gfocal_runtime.boxes import pairwise_iou, xywh_to_xyxy

__all__ = ["DEFAULT_RATES", "inject_noise"]

DEFAULT_RATES = {"drop": 0.04, "flip": 0.04, "shift1": 0.04, "shift2": 0.03, "spawn": 0.03, "duplicate": 0.02}


def _shift(rng, box: List[float], sides: List[int], width: int, height: int) -> List[float]:
    x0, y0, x1, y1 = box
    out = [x0, y0, x1, y1]
    for side in sides:
        extent = (x1 - x0) if side in (0, 2) else (y1 - y0)
        limit = width if side in (0, 2) else height
        amount = max(rng.uniform(0.1, 0.3) * extent, 3.0)
        for sign in rng.permutation([-1.0, 1.0]):  # out or in; the other when it would not fit
            value = out[side] + sign * amount
            lo, hi = (0.0, out[side + 2] - 2.0) if side < 2 else (out[side - 2] + 2.0, float(limit))
            if lo <= value <= hi:
                out[side] = value
                break
    return out


def _change(kind: str, annotation_id, image_id, clean: Optional[Dict] = None, **extra) -> Dict:
    """The record of one change; ``clean``: the annotation as it was (None: an added one)."""
    return {
        "type": kind,
        "annotation_id": annotation_id,
        "image_id": image_id,
        "clean_bbox": None if clean is None else list(clean["bbox"]),
        "clean_category_id": None if clean is None else clean["category_id"],
        **extra,
    }


def inject_noise(coco: Dict[str, Any], rates: Dict[str, float] = None, seed: int = 0) -> Tuple[Dict, List[Dict]]:
    """Noisy copy of ``coco`` and the list of what was done.

    Returns:
        (noisy coco dict, changes): each change {"type": kind, "annotation_id": the id in the
        noisy dict (the deleted id for ``drop``), "image_id", "clean_bbox" (XYWH, None for added
        boxes), "clean_category_id", plus "duplicate_of" for duplicates}.
    """
    rates = dict(DEFAULT_RATES if rates is None else rates)
    unknown = set(rates) - set(DEFAULT_RATES)
    if unknown:
        raise ValueError(f"unknown noise kinds {sorted(unknown)}; expected some of {sorted(DEFAULT_RATES)}")
    rng = np.random.default_rng(seed)
    noisy = copy.deepcopy(coco)
    images = {im["id"]: im for im in noisy["images"]}
    anns = noisy["annotations"]
    cat_ids = sorted(c["id"] for c in noisy["categories"])
    n = len(anns)
    order = rng.permutation(n)
    counts = {k: int(round(rates.get(k, 0.0) * n)) for k in DEFAULT_RATES}
    changes: List[Dict] = []
    kinds = ("drop", "flip", "shift1", "shift2")  # one of these at most per annotation
    ends = np.cumsum([counts[kind] for kind in kinds])
    exclusive = {kind: order[end - counts[kind] : end].tolist() for kind, end in zip(kinds, ends)}
    for kind in ("flip", "shift1", "shift2"):
        for i in exclusive[kind]:
            a = anns[i]
            change = _change(kind, a["id"], a["image_id"], a)
            if kind == "flip":
                a["category_id"] = int(rng.choice([c for c in cat_ids if c != a["category_id"]]))
            else:
                im = images[a["image_id"]]
                x, y, w, h = a["bbox"]
                sides = rng.choice(4, size=1 if kind == "shift1" else 2, replace=False).tolist()
                x0, y0, x1, y1 = _shift(rng, [x, y, x + w, y + h], sides, im["width"], im["height"])
                a["bbox"] = [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]
                a["area"] = round(a["bbox"][2] * a["bbox"][3], 2)
                change["sides"] = sorted(sides)
            changes.append(change)
    next_id = max([a["id"] for a in anns] + [0]) + 1
    by_image: Dict[Any, List[Dict]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    added = []
    dropped = set(exclusive["drop"])
    pool = [a for i, a in enumerate(anns) if i not in dropped]
    for _ in range(counts["duplicate"]):
        a = pool[int(rng.integers(len(pool)))]
        x, y, w, h = a["bbox"]
        jitter = rng.uniform(-0.03, 0.03, 4) * np.array([w, h, w, h])
        x0, y0 = max(x + jitter[0], 0.0), max(y + jitter[1], 0.0)
        x1, y1 = x + w + jitter[2], y + h + jitter[3]
        added.append({**a, "id": next_id, "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]})
        changes.append(_change("duplicate", next_id, a["image_id"], duplicate_of=a["id"]))
        next_id += 1
    image_ids = list(images)
    for _ in range(counts["spawn"]):
        for _attempt in range(20):
            im = images[image_ids[int(rng.integers(len(image_ids)))]]
            src = pool[int(rng.integers(len(pool)))]
            if src["image_id"] == im["id"]:
                continue
            w, h = min(src["bbox"][2], im["width"] - 1), min(src["bbox"][3], im["height"] - 1)
            x0, y0 = rng.uniform(0, im["width"] - w), rng.uniform(0, im["height"] - h)
            box = np.array([[x0, y0, x0 + w, y0 + h]])
            others = [b["bbox"] for b in by_image.get(im["id"], []) + [b for b in added if b["image_id"] == im["id"]]]
            if others and pairwise_iou(box, xywh_to_xyxy(others)).max() >= 0.1:
                continue
            bbox = [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)]
            new = {"id": next_id, "image_id": im["id"], "category_id": src["category_id"], "bbox": bbox}
            added.append({**new, "area": round(w * h, 2), "iscrowd": 0})
            changes.append(_change("spawn", next_id, im["id"]))
            next_id += 1
            break
    for i in exclusive["drop"]:
        changes.append(_change("drop", anns[i]["id"], anns[i]["image_id"], anns[i]))
    noisy["annotations"] = [a for i, a in enumerate(anns) if i not in dropped] + added
    return noisy, changes
