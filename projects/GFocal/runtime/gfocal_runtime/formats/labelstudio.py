"""Label Studio labels: the JSON export of a project (a list of tasks).

A task is ``{"id", "data": {"image": REF}, "annotations": [{"id", "result": [...], "was_cancelled"}],
"predictions": [...]}``. Read by Label Studio's rules:

- Boxes: ``rectanglelabels`` results, ``value`` = ``x``, ``y`` (top-left corner), ``width``,
  ``height`` in percent of the image and ``rotation`` in degrees, clockwise around that corner; a
  rotated box becomes the box enclosing it (one warning per dataset). ``polygonlabels`` results
  (``points`` in percent) are reduced to their box. Every other result type is skipped (one
  warning naming the types). A result has exactly one label; values up to 1% outside the image are
  clipped, more is refused, as is an ``image_rotation`` other than 0.
- Percent is of the image file's EXIF-corrected size (the size the browser showed). A result's
  ``original_width``/``original_height`` must have that aspect ratio (a copy of another size is
  fine); a different one (typically an EXIF rotation the annotator's browser did not apply) is
  refused with the task, file and both sizes.
- Which annotation: the task's latest one not ``was_cancelled`` (largest ``updated_at``, else
  ``created_at``; ties and missing times by position, the later wins). A task without one is not
  labelled yet and is skipped (one warning); an annotation with an empty ``result`` is a background
  image (kept).
- Classes: the export holds no class list; they are the labels in order of first appearance over
  the tasks (file order) and their results.
- Images: ``data["image"]`` (or the task's only string in ``data``) with the prefixes Label Studio
  adds taken off: ``/data/upload/<project>/`` (uploads, whose names also get an ``<8 hex>-``
  prefix), ``/data/local-files/?d=`` (local storage) and a URL's scheme and host (``s3://``,
  ``gs://``, ``http(s)://``). The rest is looked for under ``?images=DIR`` (default: the json's
  folder): the whole path, then each shorter tail of it down to the file name, then the file name
  without the upload prefix. Not found: one error naming the task, the path and the folder.
- Splits: one, ``all``; ``image_id`` is the task id. A box's source is its task, annotation and
  result (id and position).

Writing. A write-back never edits the human annotations: a task whose boxes changed, were
added or removed, or carry a ``score`` (label check suggestions) gets a prediction
``{"model_version": "gfocal-label-check", "score": mean box score, "result": [...]}`` holding the
task's full suggested box set (a removed box is absent; unchanged boxes are their results as
read, changed ones keep their result id and type, added ones take the type and control names of
the dataset's first box, else ``rectanglelabels``), so a
reviewer accepts it in Label Studio. An earlier prediction of the same model version is replaced.
Every other task keeps its text byte for byte, and a file without changes is a byte-identical copy.
``labels.meta["model_version"]`` names another version. ``predictions=True`` (pre-annotations) and
conversions from another format write ``tasks.json``: one task per image with ``data.image`` =
``/data/local-files/?d=<path relative to the image folder>`` (the source's ``?images=``, else the
folder all images share: serve it as Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``, read the file
back with ``?images=`` that folder; a Label Studio source keeps its own references) and either one
annotation or one prediction (model version ``gfocal``) of ``rectanglelabels`` results named as
Label Studio's object detection template (``from_name`` ``label``, ``to_name`` ``image``); so is
a write-back whose records were not all read from the export.
"""

import codecs
import json
import logging
import math
import os
import re
from typing import Dict, List, Optional, Tuple
from urllib.parse import quote, unquote, urlsplit

from .records import LabelFormatError, LabelSet, box_changed, image_size, load_json, make_box, write_bytes_or_copy

__all__ = ["read", "write"]

logger = logging.getLogger(__name__)

_TOLERANCE = 0.01
_BOX_TYPES = ("rectanglelabels", "polygonlabels")
_UPLOAD = re.compile(r"^/data/upload/(\d+/)?")
_UPLOAD_NAME = re.compile(r"^[0-9a-f]{8}-(.+)$")
_DEFAULT_NAMES = {"type": "rectanglelabels", "from_name": "label", "to_name": "image"}


def _load(path: str) -> list:
    tasks = load_json(path)
    if not isinstance(tasks, list):
        raise LabelFormatError(f"{path}: expected a Label Studio JSON export, a list of tasks [{{'data': ...}}, ...]")
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise LabelFormatError(
                f"{path}: task at position {i} has no 'data' object; expected Label Studio's JSON export "
                "(not JSON-MIN or CSV)"
            )
    return tasks


def _image_ref(task: dict, where: str) -> str:
    data = task["data"]
    if isinstance(data.get("image"), str):
        return data["image"]
    strings = [k for k, v in data.items() if isinstance(v, str)]
    if len(strings) == 1:
        return data[strings[0]]
    raise LabelFormatError(f"{where}: no image in 'data' (expected 'image' or one string field; has {sorted(data)})")


def _candidates(ref: str) -> Tuple[Optional[str], List[str]]:
    """``(absolute path or None, relative names to try)`` for an image reference (see the module doc)."""
    if ref.startswith("/data/local-files/"):
        query = urlsplit(ref).query
        path = unquote(next((p[2:] for p in query.split("&") if p.startswith("d=")), ""))
    elif _UPLOAD.match(ref):
        path = unquote(_UPLOAD.sub("", ref))
    elif "://" in ref:
        path = unquote(urlsplit(ref).path)
    else:
        path = ref
    absolute = path if path == ref and os.path.isabs(path) else None
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    names = ["/".join(parts[i:]) for i in range(len(parts))]
    upload = _UPLOAD_NAME.match(parts[-1]) if parts else None
    if upload:
        names.append(upload.group(1))
    return absolute, names


def _find_image(ref: str, root: str, where: str) -> str:
    absolute, names = _candidates(ref)
    if absolute and os.path.isfile(absolute):
        return absolute
    for name in names:
        candidate = os.path.join(root, *name.split("/"))
        if os.path.isfile(candidate):
            return candidate
    raise LabelFormatError(f"{where}: image {ref!r} not found in {root} (tried {', '.join(names) or 'nothing'})")


def _chosen_annotation(task: dict) -> Optional[int]:
    """Position of the latest annotation not cancelled (see the module doc), or None."""
    done = [
        (str(a.get("updated_at") or a.get("created_at") or ""), j)
        for j, a in enumerate(task.get("annotations") or [])
        if isinstance(a, dict) and not a.get("was_cancelled")
    ]
    return max(done)[1] if done else None


def _number(value, key: str, where: str) -> float:
    try:
        number = float(value[key])
    except (KeyError, TypeError, ValueError):
        raise LabelFormatError(f"{where}: 'value' needs a number '{key}'") from None
    if not math.isfinite(number):
        raise LabelFormatError(f"{where}: '{key}' is {number}")
    return number


def _box(result: dict, width: int, height: int, where: str) -> Tuple[List[float], bool]:
    """``([x0, y0, x1, y1] in pixels, rotated)`` of a rectangle or polygon result."""
    value = result.get("value")
    if result["type"] == "polygonlabels":
        points = value.get("points") if isinstance(value, dict) else None
        try:
            xs, ys = zip(*((float(x) * width / 100, float(y) * height / 100) for x, y in points))
        except (TypeError, ValueError):
            raise LabelFormatError(f"{where}: 'points' must be a non-empty list of [x, y] in percent") from None
        return [min(xs), min(ys), max(xs), max(ys)], False
    x, y, w, h = (_number(value, k, where) for k in ("x", "y", "width", "height"))
    if w < 0 or h < 0:
        raise LabelFormatError(f"{where}: negative width or height ({w}, {h})")
    x, y, w, h = x * width / 100, y * height / 100, w * width / 100, h * height / 100
    angle = _number(value, "rotation", where) % 360 if "rotation" in value else 0.0
    if not angle:
        return [x, y, x + w, y + h], False
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    corners = [(dx * cos - dy * sin, dx * sin + dy * cos) for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    xs, ys = [x + cx for cx, _ in corners], [y + cy for _, cy in corners]
    return [min(xs), min(ys), max(xs), max(ys)], True


def _clip(box: List[float], width: int, height: int, strict: bool, where: str) -> List[float]:
    limits = (width, height, width, height)
    if strict and any(v < -_TOLERANCE * s or v > (1 + _TOLERANCE) * s for v, s in zip(box, limits)):
        raise LabelFormatError(f"{where}: box {box} lies more than 1% outside the {width}x{height} image")
    return [min(max(v, 0.0), float(s)) for v, s in zip(box, limits)]


def read(path: str, images: Optional[str] = None) -> LabelSet:
    """Read a Label Studio JSON export (see the module doc)."""
    path = os.path.abspath(path)
    if images is not None and not os.path.isdir(images):
        raise LabelFormatError(f"{path}: images folder {images} does not exist")
    tasks = _load(path)
    root = os.path.abspath(images) if images else os.path.dirname(path)
    classes: List[str] = []
    index: Dict[str, int] = {}
    records, unlabelled, rotated, ignored = [], [], 0, {}
    names = None  # from_name/to_name/type of the first box: what new boxes are written as
    for i, task in enumerate(tasks):
        task_id = task.get("id", i)
        where = f"{path}: task {task_id}"
        j = _chosen_annotation(task)
        if j is None:
            unlabelled.append(task_id)
            continue
        annotation = task["annotations"][j]
        results = annotation.get("result") or []
        if not isinstance(results, list):
            raise LabelFormatError(f"{where}: annotation {annotation.get('id', j)}: 'result' must be a list")
        ref = _image_ref(task, where)
        file_name = _find_image(ref, root, where)
        width, height = image_size(file_name)
        boxes, original = [], None
        for k, result in enumerate(results):
            kind = result.get("type") if isinstance(result, dict) else None
            if kind not in _BOX_TYPES:
                ignored[kind] = ignored.get(kind, 0) + 1
                continue
            at = f"{where}: result {result.get('id', k)}"
            if result.get("image_rotation", 0) not in (0, None):
                raise LabelFormatError(f"{at}: image_rotation {result['image_rotation']} is not supported; expected 0")
            size = (result.get("original_width"), result.get("original_height"))
            if None not in size:
                if not all(isinstance(v, (int, float)) and v > 0 for v in size):
                    raise LabelFormatError(f"{at}: original_width/height must be positive numbers, got {size}")
                if abs(size[0] * height - size[1] * width) > _TOLERANCE * size[1] * width:
                    raise LabelFormatError(
                        f"{at}: original size {size[0]}x{size[1]} does not fit {file_name} ({width}x{height} after "
                        "its EXIF orientation); was it annotated without its EXIF rotation, or is it another image?"
                    )
                original = original or list(size)
            value = result.get("value")
            labels = value.get(kind) if isinstance(value, dict) else None
            if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
                raise LabelFormatError(f"{at}: expected exactly one label in value['{kind}'], got {labels!r}")
            bbox, turned = _box(result, width, height, at)
            rotated += turned
            if labels[0] not in index:
                index[labels[0]] = len(classes)
                classes.append(labels[0])
            source = {
                "file": path,
                "task": i,
                "annotation": j,
                "result": k,
                "result_id": result.get("id"),
                "type": kind,
                "from_name": result.get("from_name"),
                "to_name": result.get("to_name"),
            }
            names = names or {n: source[n] for n in ("type", "from_name", "to_name")}
            boxes.append(make_box(_clip(bbox, width, height, not turned, at), index[labels[0]], source))
        records.append(
            {
                "file_name": file_name,
                "height": height,
                "width": width,
                "image_id": task_id,
                "annotations": boxes,
                "source": {
                    "file": path,
                    "task": i,
                    "task_id": task_id,
                    "annotation": j,
                    "annotation_id": annotation.get("id"),
                    "results": [b["source"]["result"] for b in boxes],
                    "image": ref,
                    "original_size": original,
                },
            }
        )
    if not records:
        raise LabelFormatError(f"{path}: no task has a finished annotation (one not 'was_cancelled')")
    if unlabelled:
        shown = ", ".join(map(str, unlabelled[:10])) + (", ..." if len(unlabelled) > 10 else "")
        logger.warning(f"{path}: {len(unlabelled)} task(s) without a finished annotation skipped (ids {shown})")
    if rotated:
        logger.warning(f"{path}: {rotated} rotated box(es) read as the axis-aligned boxes enclosing them")
    if ignored:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(ignored.items(), key=lambda kv: str(kv[0])))
        logger.warning(f"{path}: results other than {' and '.join(_BOX_TYPES)} skipped ({kinds})")
    meta = {"names": names or dict(_DEFAULT_NAMES)}
    return LabelSet("labelstudio", path, classes, {"all": records}, images, meta)


# Writing


def _check(labels: LabelSet, records: List[dict]) -> None:
    for record in records:
        for box in record["annotations"]:
            if not 0 <= int(box["category_id"]) < len(labels.classes):
                raise LabelFormatError(
                    f"{record['file_name']}: category_id {box['category_id']} outside the {len(labels.classes)} classes"
                )
        if not record.get("width") or not record.get("height"):
            raise LabelFormatError(f"{record['file_name']}: the record needs its width and height")


def _result(box: dict, labels: LabelSet, record: dict, names: dict, result_id: str) -> dict:
    """A new result for ``box`` (percent of the record's size) of ``names["type"]``."""
    width, height = record["width"], record["height"]
    x0, y0, x1, y1 = (float(v) for v in box["bbox"])
    x0, x1, y0, y1 = x0 * 100 / width, x1 * 100 / width, y0 * 100 / height, y1 * 100 / height
    kind, label = names["type"], [labels.classes[int(box["category_id"])]]
    if kind == "polygonlabels":
        value = {"points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], kind: label}
    else:
        value = {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0, "rotation": 0, kind: label}
    size = (record.get("source") or {}).get("original_size") if labels.format == "labelstudio" else None
    result = {
        "id": result_id,
        "type": kind,
        "from_name": names["from_name"],
        "to_name": names["to_name"],
        "original_width": size[0] if size else width,
        "original_height": size[1] if size else height,
        "image_rotation": 0,
        "value": value,
    }
    if "score" in box:
        result["score"] = float(box["score"])
    return result


def _prediction(results: List[dict], model_version: str) -> dict:
    scores = [r["score"] for r in results if "score" in r]
    prediction = {"model_version": model_version, "result": results}
    if scores:
        prediction["score"] = sum(scores) / len(scores)
    return prediction


def _task_changed(record: dict) -> bool:
    boxes = record["annotations"]
    read_from = [b["source"]["result"] for b in boxes if "source" in b]
    return sorted(read_from) != sorted(record["source"]["results"]) or any(
        box_changed(b) or "score" in b for b in boxes
    )


def _suggestion(task: dict, record: dict, labels: LabelSet) -> dict:
    """The prediction holding ``record``'s full suggested box set (see the module doc)."""
    read = task["annotations"][record["source"]["annotation"]]["result"]
    default = labels.meta.get("names") or _DEFAULT_NAMES
    results = []
    for n, box in enumerate(record["annotations"]):
        source = box.get("source")
        if source is None:
            results.append(_result(box, labels, record, default, f"gfocal-{n}"))
        elif not box_changed(box):
            results.append(dict(read[source["result"]], **({"score": float(box["score"])} if "score" in box else {})))
        else:
            names = {k: source[k] for k in ("type", "from_name", "to_name")}
            results.append(_result(box, labels, record, names, source["result_id"] or f"gfocal-{n}"))
    return _prediction(results, labels.meta.get("model_version", "gfocal-label-check"))


def _task_spans(text: str, path: str) -> List[Tuple[int, int]]:
    """``(start, end)`` of each task's text in the top-level list."""
    decoder, spans = json.JSONDecoder(), []
    space = re.compile(r"\s*")
    i = space.match(text).end()
    if text[i : i + 1] != "[":
        raise LabelFormatError(f"{path}: expected a list of tasks")
    i = space.match(text, i + 1).end()
    while text[i : i + 1] != "]":
        _, end = decoder.raw_decode(text, i)
        spans.append((i, end))
        i = space.match(text, end).end()
        if text[i : i + 1] == ",":
            i = space.match(text, i + 1).end()
    return spans


def _dump_like(task: dict, original: str, column: int) -> str:
    """``task`` as JSON in the layout of its ``original`` text (one line, or indented from ``column``)."""
    if "\n" not in original:
        return json.dumps(task, ensure_ascii=False)
    inner = re.match(r"\{\s*?\n([ \t]*)", original)
    indent = max(len(inner.group(1)) - column, 1) if inner else 2
    return json.dumps(task, ensure_ascii=False, indent=indent).replace("\n", "\n" + " " * column)


def _write_back(labels: LabelSet, records: List[dict]) -> Optional[bytes]:
    """The export with suggestions added to the changed tasks, or None when nothing changed."""
    changed = {r["source"]["task"]: r for r in records if _task_changed(r)}
    if not changed:
        return None
    with open(labels.path, "rb") as f:
        raw = f.read()
    bom = codecs.BOM_UTF8 if raw.startswith(codecs.BOM_UTF8) else b""
    text = raw[len(bom) :].decode("utf-8")
    tasks = _load(labels.path)
    spans = _task_spans(text, labels.path)
    model_version = labels.meta.get("model_version", "gfocal-label-check")
    pieces, position = [], 0
    for i, record in sorted(changed.items()):
        task = dict(tasks[i])
        kept = [p for p in task.get("predictions") or [] if p.get("model_version") != model_version]
        task["predictions"] = kept + [_suggestion(tasks[i], record, labels)]
        start, end = spans[i]
        column = start - (text.rfind("\n", 0, start) + 1)
        pieces += [text[position:start], _dump_like(task, text[start:end], column)]
        position = end
    pieces.append(text[position:])
    return bom + "".join(pieces).encode("utf-8")


def _new_tasks(labels: LabelSet, records: List[dict], predictions: bool) -> List[dict]:
    own = labels.format == "labelstudio"
    files = [os.path.abspath(r["file_name"]) for r in records]
    root = os.path.abspath(labels.images) if labels.images else None
    if root is None or any(os.path.relpath(f, root).startswith("..") for f in files):
        root = os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""
    names = labels.meta.get("names", _DEFAULT_NAMES) if own else _DEFAULT_NAMES
    tasks = []
    for i, (record, file_name) in enumerate(zip(records, files)):
        ref = record["source"].get("image") if own and "source" in record else None
        ref = ref or "/data/local-files/?d=" + quote(os.path.relpath(file_name, root).replace(os.sep, "/"))
        results = [_result(box, labels, record, names, f"r{k + 1}") for k, box in enumerate(record["annotations"])]
        task = {"id": i + 1, "data": {"image": ref}}
        if predictions:
            for result, box in zip(results, record["annotations"]):
                result["score"] = float(box.get("score", 1.0))
            task["predictions"] = [_prediction(results, labels.meta.get("model_version", "gfocal"))]
        else:
            task["annotations"] = [{"result": results, "was_cancelled": False}]
        tasks.append(task)
    return tasks


def write(labels: LabelSet, out_dir: str, predictions: bool = False) -> List[str]:
    """Write ``labels`` as a Label Studio JSON under ``out_dir`` (see the module doc)."""
    records = labels.split(None)
    _check(labels, records)
    if labels.format == "labelstudio" and not predictions and all("source" in r for r in records):
        target = os.path.join(out_dir, os.path.basename(labels.path))
        return [write_bytes_or_copy(labels.path, target, _write_back(labels, records))]
    content = json.dumps(_new_tasks(labels, records, predictions), ensure_ascii=False, indent=2)
    target = os.path.join(out_dir, "tasks.json")
    os.makedirs(out_dir, exist_ok=True)
    with open(target, "w", encoding="utf-8") as f:
        f.write(content + "\n")
    return [target]
