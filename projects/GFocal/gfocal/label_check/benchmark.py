"""Scoring a label-error ranking against injected noise (:mod:`gfocal.label_check.noise`): average
precision of each type's ranking, recall at the number injected, the quality of the suggested
boxes and classes, and the flags on untouched annotations. Plain data in, numbers out."""

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from gfocal_runtime.boxes import pairwise_iou, xywh_to_xyxy

from .scoring import ISSUE_TYPES

__all__ = ["ranking_ap", "injected", "positives_of", "evaluate_issues", "NOISE_TO_ISSUE"]

NOISE_TO_ISSUE = {
    "drop": "missing",
    "flip": "class",
    "shift1": "location",
    "shift2": "location",
    "spawn": "spurious",
    "duplicate": "duplicate",
}


def ranking_ap(is_positive: Sequence[bool], num_positives: int) -> Tuple[float, float]:
    """(average precision, recall at ``num_positives``) of a ranking, best first: the mean over
    all ``num_positives`` true issues of the precision at each one's rank (0 for those never
    ranked)."""
    hits = np.asarray(is_positive, bool)
    if num_positives == 0:
        return float("nan"), float("nan")
    ranks = np.nonzero(hits)[0]
    precision = np.arange(1, len(ranks) + 1) / (ranks + 1)
    return float(precision.sum() / num_positives), float(hits[:num_positives].sum() / num_positives)


def injected(kind: str, changes: List[Dict[str, Any]]) -> int:
    """How many of the injected ``changes`` are errors of issue type ``kind``."""
    return sum(1 for c in changes if NOISE_TO_ISSUE[c["type"]] == kind)


def positives_of(
    kind: str, candidates: List[Dict[str, Any]], changes: List[Dict[str, Any]], match_iou: float = 0.5
) -> List[bool]:
    """Which of ``candidates`` (one type's entries, ranked) are injected errors of that type.

    Annotation types match by annotation id (a duplicate also when it names the injected copy
    as ``duplicate_of``); ``missing`` candidates match a dropped box of their image at IoU >=
    ``match_iou`` (greedily, each dropped box once)."""
    noise = [c for c in changes if NOISE_TO_ISSUE[c["type"]] == kind]
    if kind == "missing":
        free: Dict[Any, List[np.ndarray]] = {}  # image id -> its dropped boxes not matched yet
        for c in noise:
            free.setdefault(c["image_id"], []).append(xywh_to_xyxy(c["clean_bbox"]))
        out = []
        for cand in candidates:
            pool = free.get(cand["image_id"], [])
            iou = pairwise_iou(xywh_to_xyxy(cand["suggested_bbox"]), np.stack(pool))[0] if pool else np.zeros(0)
            out.append(bool(len(iou) and iou.max() >= match_iou))
            if out[-1]:
                pool.pop(int(np.argmax(iou)))
        return out
    ids = {c["annotation_id"] for c in noise}
    if kind == "duplicate":
        return [c["annotation_id"] in ids or c.get("duplicate_of") in ids for c in candidates]
    return [c["annotation_id"] in ids for c in candidates]


def evaluate_issues(issues: List[Dict[str, Any]], changes: List[Dict[str, Any]], noisy: Dict, corrected: Dict) -> Dict:
    """Every figure of the benchmark table for one tool's ``issues`` (sorted, as
    ``label_issues.json``) on the ``noisy`` COCO dict, given its ``changes`` and the tool's
    ``corrected`` dict."""
    result: Dict[str, Any] = {"types": {}}
    for kind in ISSUE_TYPES:
        ranked = [x for x in issues if x["type"] == kind]
        num = injected(kind, changes)
        hits = positives_of(kind, ranked, changes)
        ap, recall = ranking_ap(hits, num)
        flagged = [h for h, x in zip(hits, ranked) if x.get("flagged")]
        result["types"][kind] = {
            "injected": num,
            "ap": ap,
            "recall_at_injected": recall,
            "flagged": len(flagged),
            "precision_flagged": float(np.mean(flagged)) if flagged else float("nan"),
            "recall_flagged": float(sum(flagged) / num) if num else float("nan"),
        }
    shifted = {c["annotation_id"]: c for c in changes if c["type"] in ("shift1", "shift2")}
    noisy_boxes = {a["id"]: a["bbox"] for a in noisy["annotations"]}
    fixed_boxes = {a["id"]: a["bbox"] for a in corrected["annotations"]}
    suggested = {x["annotation_id"]: x["suggested_bbox"] for x in issues if x["type"] == "location"}

    def mean_iou(boxes: Dict) -> float:
        pairs = [(boxes[i], c["clean_bbox"]) for i, c in shifted.items() if i in boxes]
        if not pairs:
            return float("nan")
        a = xywh_to_xyxy([p for p, _ in pairs])
        b = xywh_to_xyxy([q for _, q in pairs])
        return float(np.mean(np.diag(pairwise_iou(a, b))))

    result["moved_iou"] = {
        "noisy": mean_iou(noisy_boxes),
        "corrected": mean_iou(fixed_boxes),
        "suggested": mean_iou({**noisy_boxes, **{k: v for k, v in suggested.items() if k in shifted}}),
    }
    flips = {c["annotation_id"]: c["clean_category_id"] for c in changes if c["type"] == "flip"}
    class_sugg = {x["annotation_id"]: x["suggested_category_id"] for x in issues if x["type"] == "class"}
    result["class_restored"] = (
        float(np.mean([class_sugg.get(i) == c for i, c in flips.items()])) if flips else float("nan")
    )
    touched = {c["annotation_id"] for c in changes}
    untouched = [a["id"] for a in noisy["annotations"] if a["id"] not in touched]
    dup_of = {c["duplicate_of"] for c in changes if c["type"] == "duplicate"}
    flagged_ids = {
        x["annotation_id"]
        for x in issues
        if x.get("flagged")
        and x["annotation_id"] is not None
        and not (x["type"] == "duplicate" and x["annotation_id"] in dup_of)
    }
    result["flags_per_1000_untouched"] = 1000.0 * sum(1 for i in untouched if i in flagged_ids) / max(len(untouched), 1)
    return result
