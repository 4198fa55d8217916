"""The review page of a label check: one self-contained folder, ``index.html`` (CSS and JS inline,
no CDN) and ``images/``, that works offline and reads with JavaScript off.

Each issue is a card, in score order: the image region with the annotated box (white, dashed)
and the suggestion (green) drawn with the side distributions of the detection that supports it
(:func:`gfocal.analysis.visualization.draw_side_distributions`), the type, the score, what
would change. A few lines of plain JS add a filter by type, accept / reject per card and a
button that saves the decisions as ``decisions.json``; ``tools/find_label_errors.py --apply``
writes the corrected json from that file.
"""

import html
import os
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch

from gfocal_runtime.boxes import pairwise_iou, xywh_to_xyxy

from ..analysis.visualization import draw_side_distributions, side_bin_positions
from .scoring import ISSUE_TYPES

__all__ = ["draw_issue", "write_review_page"]

ANNOTATED = (255, 255, 255)
SUGGESTED = (40, 220, 90)
CARD_PX = 240  # a card's picture is this wide at least


def _dashed_rect(canvas: np.ndarray, box: np.ndarray, color, thickness: int = 2, dash: int = 6) -> None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, length, 2 * dash):
            t0, t1 = start / max(length, 1), min(start + dash, length) / max(length, 1)
            p0 = (int(ax + (bx - ax) * t0), int(ay + (by - ay) * t0))
            p1 = (int(ax + (bx - ax) * t1), int(ay + (by - ay) * t1))
            cv2.line(canvas, p0, p1, (20, 20, 20), thickness + 2, cv2.LINE_AA)
            cv2.line(canvas, p0, p1, color, thickness, cv2.LINE_AA)


def draw_issue(image_rgb: np.ndarray, issue: Dict, detections: Optional[Dict[str, np.ndarray]] = None) -> np.ndarray:
    """The picture of one issue: the region around its boxes, enlarged to at least
    ``CARD_PX`` wide, with the annotated box dashed white and the suggestion green, drawn with the
    side distributions of the detection that overlaps the suggestion most (if any).

    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        issue: an entry of :func:`gfocal.label_check.scoring.find_label_issues`.
        detections: the image's detections ({"boxes" (M, 4), "dists" (M, 4, n+1), "strides" (M,)}).

    Returns:
        (h, w, 3) uint8 RGB picture.
    """
    height, width = image_rgb.shape[:2]
    boxes = [xywh_to_xyxy(b) for b in (issue.get("bbox"), issue.get("suggested_bbox")) if b is not None]
    union = np.concatenate([np.minimum.reduce(boxes)[:2], np.maximum.reduce(boxes)[2:]])
    margin = max(0.5 * max(union[2] - union[0], union[3] - union[1]), 12.0)
    x0, y0 = int(max(union[0] - margin, 0)), int(max(union[1] - margin, 0))
    x1, y1 = int(min(union[2] + margin, width)), int(min(union[3] + margin, height))
    crop = np.ascontiguousarray(image_rgb[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)])
    scale = max(1.0, CARD_PX / crop.shape[1])
    canvas = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    offset = np.array([x0, y0, x0, y0], np.float64)

    def to_canvas(box):
        return (np.asarray(box, np.float64) - offset) * scale

    suggested = issue.get("suggested_bbox")
    if suggested is not None and detections is not None and len(detections["boxes"]):
        target = xywh_to_xyxy(suggested)
        iou = pairwise_iou(target[None], detections["boxes"])[0]
        best = int(np.argmax(iou))
        if iou[best] > 0.3:
            det_box = torch.as_tensor(detections["boxes"][best : best + 1], dtype=torch.float32)
            probs = torch.as_tensor(detections["dists"][best : best + 1].astype(np.float32))
            strides = torch.as_tensor(detections["strides"][best : best + 1], dtype=torch.float32)
            # The distributions of the supporting detection, placed on the suggested box's edges.
            pos = side_bin_positions(det_box, probs, strides, (height, width)).numpy()[0]
            pos = pos + (target - det_box.numpy()[0])[:, None]
            pos = (pos - offset[:, None]) * scale
            draw_side_distributions(canvas, to_canvas(target)[None], pos[None], probs.numpy(), [SUGGESTED])
    if suggested is not None:
        b = to_canvas(xywh_to_xyxy(suggested)).round().astype(int)
        cv2.rectangle(canvas, tuple(b[:2]), tuple(b[2:]), (20, 20, 20), 4, cv2.LINE_AA)
        cv2.rectangle(canvas, tuple(b[:2]), tuple(b[2:]), SUGGESTED, 2, cv2.LINE_AA)
    if issue.get("bbox") is not None:
        _dashed_rect(canvas, to_canvas(xywh_to_xyxy(issue["bbox"])), ANNOTATED)
    return canvas


def _describe(issue: Dict, class_names: Dict[int, str]) -> str:
    def name(key: str) -> str:  # the class of issue[key], for the page
        return html.escape(class_names.get(issue[key], str(issue[key])))

    kind = issue["type"]
    if kind == "location":
        moved = [
            f"{side} {v['annotated']:.1f} &rarr; {v['suggested']:.1f} (p {v['p_annotated']:.2f})"
            for side, v in issue["sides"].items()
            if abs(v["suggested"] - v["annotated"]) > 1e-6
        ]
        return "move " + "; ".join(moved)
    if kind == "class":
        return f"{name('category_id')} &rarr; {name('suggested_category_id')}"
    if kind == "missing":
        return f"add: {name('suggested_category_id')}"  # names take a or an
    if kind == "duplicate":
        return f"remove: a second box of annotation {html.escape(str(issue.get('duplicate_of')))}"
    return "remove: no object here"


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1em;background:#f4f4f4;color:#222}
header{margin-bottom:1em} .filters button{margin:0 .3em .3em 0}
.filters button.on{background:#225;color:#fff}
#cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ccc;border-radius:6px;padding:8px;width:260px}
.card img{width:100%;image-rendering:pixelated;display:block;background:#000}
.card.accept{border:3px solid #2a2} .card.reject{border:3px solid #c33;opacity:.6}
.type{font-weight:bold;text-transform:uppercase;font-size:12px} .score{float:right;font-weight:bold}
.what{margin:.4em 0} .meta{color:#666;font-size:12px} .hidden{display:none}
.legend span{display:inline-block;width:1em;height:.6em;margin:0 .3em 0 1em}
"""

_SCRIPT = """
(function(){
  var cards=[].slice.call(document.querySelectorAll('.card'));
  var shown=document.getElementById('shown');
  function count(){shown.textContent=cards.filter(function(c){return !c.classList.contains('hidden');}).length;}
  document.querySelectorAll('.filters button').forEach(function(b){
    b.addEventListener('click',function(){
      document.querySelectorAll('.filters button').forEach(function(o){o.classList.remove('on');});
      b.classList.add('on');
      var t=b.dataset.type;
      cards.forEach(function(c){c.classList.toggle('hidden',t!=='all'&&c.dataset.type!==t);});
      count();
    });
  });
  cards.forEach(function(c){
    c.querySelectorAll('input[type=radio]').forEach(function(r){
      r.addEventListener('change',function(){c.classList.remove('accept','reject');c.classList.add(r.value);});
    });
  });
  function decisions(){
    var out={};
    cards.forEach(function(c){var r=c.querySelector('input[type=radio]:checked');if(r){out[c.dataset.id]=r.value;}});
    return {format:'gfocal-label-decisions',version:1,
            issues_sha256:document.body.dataset.issuesSha256,decisions:out};
  }
  function setAll(value){
    cards.forEach(function(c){if(c.classList.contains('hidden'))return;
      var r=c.querySelector('input[value='+value+']');r.checked=true;r.dispatchEvent(new Event('change'));});
  }
  document.getElementById('accept-shown').addEventListener('click',function(){setAll('accept');});
  document.getElementById('reject-shown').addEventListener('click',function(){setAll('reject');});
  document.getElementById('save').addEventListener('click',function(){
    var blob=new Blob([JSON.stringify(decisions(),null,1)],{type:'application/json'});
    var a=document.createElement('a');a.href=URL.createObjectURL(blob);a.download='decisions.json';
    document.body.appendChild(a);a.click();a.remove();
  });
  window.labelDecisions=decisions;
  document.getElementById('controls').classList.remove('hidden');
  count();
})();
"""


def pick_cards(flagged: Sequence[Dict], max_cards: int) -> List[Dict]:
    """At most ``max_cards`` of the ``flagged`` issues (score order) for the page: when there are
    more, the cards are shared out evenly among the issue types (a type with fewer flagged gives
    the rest of its share to the others), each type's highest scores first, so that no type is
    crowded off the page by another whose scores run higher. Score order kept."""
    if len(flagged) <= max_cards:
        return list(flagged)
    by_type: Dict[str, List[Dict]] = {}
    for issue in flagged:
        by_type.setdefault(issue["type"], []).append(issue)
    quota, left = {t: 0 for t in by_type}, max_cards
    while left > 0:
        open_types = [t for t in by_type if quota[t] < len(by_type[t])]
        share = max(left // len(open_types), 1)
        for t in open_types:
            take = min(share, len(by_type[t]) - quota[t], left)
            quota[t] += take
            left -= take
    chosen = {id(x) for t, items in by_type.items() for x in items[: quota[t]]}
    return [x for x in flagged if id(x) in chosen]


def write_review_page(
    folder: str,
    issues: Sequence[Dict],
    issues_sha256: str,
    read_image: Callable[[Dict], Optional[np.ndarray]],
    detections: Dict,
    class_names: Dict[int, str],
    max_cards: int = 500,
) -> int:
    """Write ``folder/index.html`` and ``folder/images/`` for the flagged ``issues``.

    Args:
        issues: entries of :func:`find_label_issues` (only the flagged ones get a card, at most
            ``max_cards`` shared among the types (:func:`pick_cards`), in score order).
        issues_sha256: digest of the label_issues.json they come from (saved with the decisions).
        read_image: issue -> its (H, W, 3) uint8 RGB image, or None when it cannot be read.
        detections: image id -> that image's detections (for the distributions).
        class_names: category id -> name.

    Returns:
        the number of cards.
    """
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    cards: List[str] = []
    flagged = [x for x in issues if x.get("flagged")]
    total = len(flagged)
    flagged = pick_cards(flagged, max_cards)
    counts = {t: 0 for t in ISSUE_TYPES}
    for issue in flagged:
        image = read_image(issue)
        if image is None:
            continue
        picture = draw_issue(image, issue, detections.get(issue["image_id"]))
        name = f"images/{issue['id']}.jpg"
        cv2.imwrite(os.path.join(folder, name), picture[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        counts[issue["type"]] += 1
        key = html.escape(issue["id"])
        annotation = issue["annotation_id"]  # None for a missing box
        annotation = "" if annotation is None else f" &middot; annotation {html.escape(str(annotation))}"
        cards.append(
            f'<div class="card" data-id="{key}" data-type="{issue["type"]}">'
            f'<span class="type">{issue["type"]}</span><span class="score">{issue["score"]:.2f}</span>'
            f'<img src="{name}" alt="{key}" loading="lazy">'
            f'<div class="what">{_describe(issue, class_names)}</div>'
            f'<div class="meta">{html.escape(os.path.basename(str(issue["file_name"])))} &middot; image '
            f"{html.escape(str(issue['image_id']))}{annotation}</div>"
            f'<label><input type="radio" name="d-{key}" value="accept"> accept</label> '
            f'<label><input type="radio" name="d-{key}" value="reject"> reject</label></div>'
        )
    some = f"Cards for {len(cards)} of them, each type's highest scores (label_issues.json holds all). "
    buttons = "".join(f'<button data-type="{t}">{t} ({counts[t]})</button>' for t in ISSUE_TYPES if counts[t])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Label check: {len(cards)} issues</title>
<style>{_STYLE}</style></head>
<body data-issues-sha256="{issues_sha256}">
<header><h1>Label check: {total} flagged issues</h1>
<p class="legend">{some if len(cards) < total else ""}Sorted by score (the model's probability that the issue is real).
<span style="background:#fff;border:1px dashed #000"></span>annotated
<span style="background:rgb{SUGGESTED}"></span>suggested, with the model's side distributions</p>
<div id="controls" class="hidden"><div class="filters">
<button data-type="all" class="on">all ({len(cards)})</button>{buttons}</div>
<p><span id="shown">{len(cards)}</span> shown &middot;
<button id="accept-shown">accept shown</button> <button id="reject-shown">reject shown</button>
<button id="save">save decisions</button>
(then: <code>find_label_errors.py --apply decisions.json --output DIR</code>)</p></div>
</header>
<main id="cards">
{chr(10).join(cards)}
</main>
<script>{_SCRIPT}</script>
</body></html>
"""
    with open(os.path.join(folder, "index.html"), "w") as f:
        f.write(page)
    return len(cards)
