"""The label check end to end, as ``tools/find_label_errors.py`` runs it: read and check a COCO
json, train out-of-fold models (or take one model), score every image with the evidence cached
per model, rank the issues, write the outputs (each file atomically), and apply the decisions
saved from the review page.

Bad input raises a :class:`~gfocal.errors.GFocalError` with one line before anything is written;
progress goes to stdout (``[folds] ...``, ``[score] ...``).
"""

import hashlib
import json
import math
import os
import pickle
import re
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog

from gfocal_runtime.boxes import coco_detections

from ..checkpoint.safe_io import atomic_write
from ..config import load_config
from ..data import train_on_coco_json
from ..data.checks import BoxCheck, classify_boxes
from ..engine import LazyPredictor, TrainingRun, cpu_has_bf16, train_unless_finished
from ..errors import ConfigError, DatasetError, InputError
from .evidence import collect_evidence
from .review import write_review_page
from .scoring import ISSUE_TYPES, apply_issues, find_label_issues

__all__ = [
    "apply_decisions",
    "check_labels",
    "dataset_files",
    "evidence_key",
    "image_records",
    "read_coco",
    "score_images",
    "scoring_amp",
    "train_folds",
]

DECISIONS_FORMAT = "gfocal-label-decisions"

# ------------------------------------------------------------------ input


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_json(path: str, error, flag: str):
    """The json in ``path``; ``error`` (one line, naming the flag) when it is missing or unreadable."""
    if not os.path.isfile(path):
        raise error(f"{flag}: no such file {path!r}")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{flag}: cannot read {path} as JSON: {e}") from None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_coco(json_file: str) -> dict:
    """The json as a dict, checked: a COCO detection file with unique ids, known images and
    categories, and boxes that training keeps (:func:`gfocal.data.checks.classify_boxes`: finite,
    of positive size, not entirely outside their image; one partly outside is clipped when a
    fold trains on it, and scored as drawn). Raises DatasetError (one line)."""
    coco = _read_json(json_file, DatasetError, "--json")
    missing = [
        k
        for k in ("images", "annotations", "categories")
        if not isinstance(coco, dict) or not isinstance(coco.get(k), list)
    ]
    if missing:
        raise DatasetError(
            f"{json_file} is not a COCO detection json: expected an object with the lists 'images', "
            f"'annotations' and 'categories' (missing or not a list: {', '.join(missing)})"
        )
    if not coco["images"]:
        raise DatasetError(f"{json_file} has no images: nothing to check")
    if not coco["categories"]:
        raise DatasetError(f"{json_file} has no categories")
    cats = {}
    for c in coco["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or c["id"] in cats:
            raise DatasetError(f"{json_file}: category {c!r} needs a unique integer 'id'")
        cats[c["id"]] = c
    images = {}
    for i, im in enumerate(coco["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{json_file}: image #{i} needs an 'id' and a 'file_name', got {im!r}")
        if im["id"] in images:
            raise DatasetError(f"{json_file}: duplicate image id {im['id']!r}")
        images[im["id"]] = im
    seen = {}
    for i, a in enumerate(coco["annotations"]):
        aid = a.get("id") if isinstance(a, dict) else None
        if aid is None:
            raise DatasetError(f"{json_file}: annotation #{i} has no 'id'")
        if aid in seen:
            raise DatasetError(f"{json_file}: duplicate annotation id {aid!r} (annotations #{seen[aid]} and #{i})")
        seen[aid] = i
        if a.get("image_id") not in images:
            raise DatasetError(f"{json_file}: annotation {aid}: image_id {a.get('image_id')!r} is not among the images")
        if a.get("category_id") not in cats:
            raise DatasetError(
                f"{json_file}: annotation {aid}: category_id {a.get('category_id')!r} is not among the "
                f"categories {sorted(cats)}"
            )
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box) and box[2] > 0 and box[3] > 0):
            raise DatasetError(f"{json_file}: annotation {aid}: bbox must be [x, y, w, h] with w, h > 0, got {box!r}")
    if not coco["annotations"]:
        raise DatasetError(f"{json_file} has no annotations: nothing to train on or check")
    # Against their images, as training checks them (gfocal.data.checks), all boxes at once.
    anns = coco["annotations"]
    size = [images[a["image_id"]].get(k) for a in anns for k in ("height", "width")]
    size = np.array([v if _number(v) else np.nan for v in size], np.float64).reshape(-1, 2)
    codes, _ = classify_boxes(np.array([a["bbox"] for a in anns], np.float64), np.ones(len(anns), bool), size)
    bad = np.flatnonzero((codes != BoxCheck.OK) & (codes != BoxCheck.CLIPPED))  # outside (or x + w overflows)
    if len(bad):
        a = anns[bad[0]]
        im = images[a["image_id"]]
        raise DatasetError(
            f"{json_file}: annotation {a['id']}: bbox {a['bbox']} lies outside its image {im['file_name']!r} "
            f"({im.get('width')}x{im.get('height')}); fix or remove it"
        )
    return coco


def dataset_files(name: str) -> Tuple[str, str]:
    """(json file, image root) of a registered dataset (a generated one is written first)."""
    if name not in DatasetCatalog.list():
        raise DatasetError(f"--dataset {name!r} is not registered (or give --json FILE --image-root DIR)")
    meta = MetadataCatalog.get(name)
    if not meta.get("json_file", None) or not meta.get("image_root", None):
        raise DatasetError(f"--dataset {name!r} has no json_file / image_root metadata: give --json and --image-root")
    DatasetCatalog.get(name)  # a generated dataset is written on first use
    return meta.json_file, meta.image_root


def image_records(coco: dict, image_root: str):
    """Per image a record {id, file_name (full path), height, width, annotations}; images that
    cannot be read are left out and returned by name."""
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    records, unreadable = [], []
    for im in coco["images"]:
        path = os.path.join(image_root, im["file_name"])
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            unreadable.append(im["file_name"])
            continue
        h, w = image.shape[:2]
        if im.get("height", h) != h or im.get("width", w) != w:
            print(f"warning: {im['file_name']} is {w}x{h}, the json says {im.get('width')}x{im.get('height')}")
        records.append(
            {"id": im["id"], "file_name": path, "height": h, "width": w, "annotations": by_image.get(im["id"], [])}
        )
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        print(f"warning: {len(unreadable)} of {len(coco['images'])} images could not be read and are skipped: {shown}")
    if not records:
        raise DatasetError(f"none of the {len(coco['images'])} images under {image_root!r} could be read")
    return records, unreadable


# ------------------------------------------------------------------ folds


def fold_split(image_ids, folds: int, seed: int):
    """Image id -> fold index (0..folds-1), a seeded permutation dealt round-robin."""
    order = np.random.default_rng(seed).permutation(len(image_ids))
    return {image_ids[i]: n % folds for n, i in enumerate(order.tolist())}


def train_folds(
    cfg, coco, records, fold_of, image_root: str, output: str, train_net: str, jobs=None, train_args=()
) -> Dict[int, str]:
    """Train the config's recipe (without evaluation) for every fold that has no model_final.pth
    yet, on the readable images of the other folds, with ``train_net --resume`` in
    ``output/folds/foldK/`` (``train_args`` go to each run; ``jobs`` at a time, CPU default 2);
    returns the weights per fold."""
    folds = max(fold_of.values()) + 1
    readable = {r["id"] for r in records}
    outs = [os.path.abspath(os.path.join(output, "folds", f"fold{k}")) for k in range(folds)]
    runs = []
    for k, out in enumerate(outs):
        if os.path.isfile(os.path.join(out, "model_final.pth")):
            continue
        os.makedirs(out, exist_ok=True)
        kept = {i for i in readable if fold_of[i] != k}
        train = {
            **{key: v for key, v in coco.items() if key not in ("images", "annotations")},
            "images": [im for im in coco["images"] if im["id"] in kept],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in kept],
        }
        train_json = os.path.join(out, "train.json")
        write_json(train_json, train)
        fold_cfg = train_on_coco_json(cfg, train_json, os.path.abspath(image_root), f"label_check_fold{k}")
        fold_cfg.dataloader.pop("evaluator", None)
        fold_cfg.train.eval_period = 0
        fold_cfg.train.output_dir = out
        label = f"fold {k + 1} of {folds} ({len(train['images'])} training images)"
        runs.append(TrainingRun(label, out, fold_cfg, args=train_args))
    total, start, last = len(runs) * int(cfg.train.max_iter), time.time(), [0.0]

    def progress(running):
        now = time.time()
        if now - last[0] < 30:
            return
        last[0] = now
        done = sum(_iterations_done(run.output_dir) for run in runs)
        rate = done / max(now - start, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("nan")
        print(f"[folds] {done}/{total} iterations, ETA {_clock(eta)}", flush=True)

    jobs = jobs or (1 if str(cfg.train.device).startswith("cuda") else min(2, os.cpu_count() or 1))
    train_unless_finished(runs, train_net, jobs, cwd=os.path.dirname(os.path.abspath(train_net)), progress=progress)
    return {k: os.path.join(out, "model_final.pth") for k, out in enumerate(outs)}


def _iterations_done(output_dir: str) -> int:
    """Iterations a run has logged to its metrics.json (a finished one: all of them)."""
    try:
        with open(os.path.join(output_dir, "metrics.json")) as f:
            lines = [line for line in f if line.strip()]
        return int(json.loads(lines[-1]).get("iteration", 0)) + 1 if lines else 0
    except (OSError, ValueError):
        return 0


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ------------------------------------------------------------------ scoring


def evidence_key(cfg, weights: str, group, flip: bool, scales, amp: bool = False) -> str:
    """What one model's evidence depends on: the model and the images (path, size, mtime), the
    test-time input, the model config, the flip, the scales and the precision; a digest of them
    names its cache file."""
    parts = {
        "model_file": (weights, _stat(weights)),
        "images": [(r["id"], r["file_name"], _stat(r["file_name"])) for r in group],
        "test_input": repr(cfg.dataloader.test),
        "model": repr(cfg.model),
        "flip": flip,
        "scales": list(scales),
        "amp": amp,
    }
    # Functions and objects in a lazy config print with their address, new in every process.
    return hashlib.sha256(re.sub(r" at 0x[0-9a-fA-F]+", "", repr(parts)).encode()).hexdigest()


def _stat(path: str):
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def _read_cache(path: str, key: str):
    """The evidence kept at ``path`` if it was made under ``key``, else None."""
    try:
        with open(path, "rb") as f:
            kept = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as e:
        print(f"[score] unreadable cache {path} ({e}): scoring again", flush=True)
        return None
    return kept["evidence"] if isinstance(kept, dict) and kept.get("key") == key else None


def scoring_amp(cfg) -> bool:
    """Whether the models score in mixed precision: as the config trains (``train.amp.enabled``:
    float16 on CUDA, bfloat16 autocast on a CPU with bfloat16 units, where the scoring runs
    when CUDA is missing)."""
    if not cfg.train.get("amp", {}).get("enabled", False):
        return False
    if str(cfg.train.get("device", "cuda")).startswith("cuda") and torch.cuda.is_available():
        return True
    return cpu_has_bf16()


def score_images(cfg, records, weights_of: Callable[[Dict], str], flip: bool, scales=(1.0,), cache_dir=None):
    """Evidence of every record, each from the model ``weights_of`` gives for it, with progress.

    With ``cache_dir`` each model's evidence is kept there (``evidence-<digest of its path>.pkl``,
    with the digest of the model file, its images and the test-time input) and read back by a
    later run with the same: a rerun with another ``--threshold`` or a new scoring skips inference,
    and a retrained fold is the only one run again."""
    amp = scoring_amp(cfg)
    groups = {}
    for r in records:
        groups.setdefault(weights_of(r), []).append(r)
    evidence, todo = {}, []
    for weights, group in groups.items():
        cache = key = None
        if cache_dir:  # one file per model, replaced when its model, images or input change
            cache = os.path.join(cache_dir, f"evidence-{hashlib.sha256(weights.encode()).hexdigest()[:16]}.pkl")
            key = evidence_key(cfg, weights, group, flip, scales, amp)
        found = _read_cache(cache, key) if cache and os.path.isfile(cache) else None
        if found is not None and set(found) == {r["id"] for r in group}:
            print(f"[score] model outputs of {len(found)} images read back from {cache}", flush=True)
            evidence.update(found)
        else:
            todo.append((weights, group, cache, key))
    total = sum(len(group) for _, group, _, _ in todo)
    done, start, last = 0, time.time(), 0.0
    for weights, group, cache, key in todo:
        predictor = LazyPredictor(cfg, weights=weights, slicing=dict(enabled=False))  # dense evidence: whole images
        images = (cv2.imread(r["file_name"], cv2.IMREAD_COLOR) for r in group)
        found = {}
        for r, ev in zip(group, collect_evidence(predictor, images, flip=flip, scales=scales, amp=amp)):
            found[r["id"]] = ev
            done += 1
            now = time.time()
            if now - last > 10 or done == total:
                last = now
                rate = done / max(now - start, 1e-9)
                eta = _clock((total - done) / rate)
                print(f"[score] {done}/{total} images, {rate:.0f} images/s, ETA {eta}", flush=True)
        if cache:
            os.makedirs(cache_dir, exist_ok=True)
            kept = {"key": key, "evidence": found}
            atomic_write(cache, lambda f: pickle.dump(kept, f, pickle.HIGHEST_PROTOCOL), "wb")
        evidence.update(found)
    return evidence


def coco_predictions(records, evidence, category_ids) -> List[Dict]:
    """Every image's detections in COCO results format (bbox XYWH, 2 decimals; score, 5)."""
    ids = np.asarray(category_ids)
    out = []
    for r in records:
        det = evidence[r["id"]]["detections"]
        cats = ids[np.asarray(det["classes"], np.int64)]
        out += coco_detections(r["id"], det["boxes"], det["scores"], cats, box_decimals=2, score_decimals=5)
    return out


# ------------------------------------------------------------------ output


def write_json(path: str, data, one_per_line: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``one_per_line``: a list with one item a line (for
    grep and diff). Through ``json.dumps``, the C encoder (``json.dump`` is the pure-Python one)."""
    text = "[\n" + ",\n".join(json.dumps(item) for item in data) + "\n]" if one_per_line else json.dumps(data)
    atomic_write(path, lambda f: f.write(text + "\n"), "w")


def publish(staging: str, output: str) -> None:
    """Move every file and folder of ``staging`` into ``output`` (files replaced atomically)."""
    for name in os.listdir(staging):
        src, dst = os.path.join(staging, name), os.path.join(output, name)
        if os.path.isdir(src):
            old = f"{dst}.old-{os.getpid()}"
            if os.path.isdir(dst):
                os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)
    shutil.rmtree(staging, ignore_errors=True)


def check_labels(
    config_file: str,
    overrides: Sequence[str],
    json_file: str,
    image_root: str,
    output: str,
    *,
    weights: Optional[str] = None,
    folds: int = 2,
    seed: int = 0,
    threshold: float = 0.5,
    flip: bool = True,
    scales: Sequence[float] = (1.0,),
    max_cards: int = 500,
    jobs: Optional[int] = None,
    train_net: Optional[str] = None,
    train_args: Sequence[str] = (),
) -> Tuple[Dict[str, Any], int, int]:
    """The label check of ``json_file`` (images under ``image_root``) into ``output``: out-of-fold
    models of the config's recipe (:func:`train_folds` with ``train_net``) or the one model
    ``weights`` score every image (:func:`score_images`, cached in ``output/cache``), then
    label_issues.json, predictions.json, corrected.json, the review page and run.json are
    published together. The config's ``model.num_classes`` follows the json's categories.

    Returns:
        (run.json's summary, the number of issues scored, the number of cards on the page).
    """
    started = time.time()
    coco = read_coco(json_file)
    category_ids = sorted(c["id"] for c in coco["categories"])
    names = {c["id"]: str(c.get("name", c["id"])) for c in coco["categories"]}
    cfg = load_config(config_file, overrides)
    cfg.model.num_classes = len(category_ids)
    cfg.train.device = cfg.train.get("device", "cuda")
    records, unreadable = image_records(coco, image_root)
    if not weights and folds > len(records):
        raise ConfigError(f"--folds {folds} is more than the {len(records)} readable images")
    os.makedirs(output, exist_ok=True)
    if weights:
        weights_of, trained = (lambda r: weights), 0.0
    else:
        fold_of = fold_split([r["id"] for r in records], folds, seed)
        fold_weights = train_folds(cfg, coco, records, fold_of, image_root, output, train_net, jobs, train_args)
        weights_of, trained = (lambda r: fold_weights[fold_of[r["id"]]]), time.time() - started
    evidence = score_images(cfg, records, weights_of, flip, scales, os.path.join(output, "cache"))
    issues = find_label_issues(records, evidence, category_ids, threshold=threshold, seed=seed)
    for issue in issues:  # names as in the json
        issue["file_name"] = os.path.relpath(issue["file_name"], image_root)
    staging = os.path.join(output, f".staging-{os.getpid()}")
    os.makedirs(staging, exist_ok=True)
    try:
        issues_path = os.path.join(staging, "label_issues.json")
        write_json(issues_path, issues, one_per_line=True)
        write_json(os.path.join(staging, "predictions.json"), coco_predictions(records, evidence, category_ids))
        flagged = [x for x in issues if x["flagged"]]
        write_json(os.path.join(staging, "corrected.json"), apply_issues(coco, flagged))
        digest = sha256_file(issues_path)
        paths = {r["id"]: r["file_name"] for r in records}

        def read_rgb(issue):
            image = cv2.imread(paths[issue["image_id"]], cv2.IMREAD_COLOR)
            return None if image is None else image[:, :, ::-1]

        detections = {r["id"]: evidence[r["id"]]["detections"] for r in records}
        cards = write_review_page(staging, issues, digest, read_rgb, detections, names, max_cards)
        summary = {
            "json": os.path.abspath(json_file),
            "json_sha256": sha256_file(json_file),
            "image_root": os.path.abspath(image_root),
            "issues_sha256": digest,
            "config_file": config_file,
            "overrides": list(overrides),
            "mode": "weights" if weights else f"{folds} folds",
            "weights": weights,
            "threshold": threshold,
            "flip": flip,
            "scales": list(scales),
            "amp": scoring_amp(cfg),
            "images": len(records),
            "unreadable_images": unreadable,
            "annotations": len(coco["annotations"]),
            "flagged": {t: sum(1 for x in flagged if x["type"] == t) for t in ISSUE_TYPES},
            "minutes": {"training": round(trained / 60, 2), "total": round((time.time() - started) / 60, 2)},
        }
        write_json(os.path.join(staging, "run.json"), summary)
        publish(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary, len(issues), cards


def apply_decisions(output: str, decisions_file: str) -> Tuple[str, int, int]:
    """Write ``output/corrected_reviewed.json``: the checked json with the issues accepted in
    ``decisions_file`` (saved from the review page of the check in ``output``) applied.

    Returns:
        (its path, the number of accepted issues, the number of rejected ones).
    """
    run_json = os.path.join(output, "run.json")
    issues_path = os.path.join(output, "label_issues.json")
    if not (os.path.isfile(run_json) and os.path.isfile(issues_path)):
        raise InputError(f"--output {output!r} holds no label check (run.json, label_issues.json): run the check first")
    decisions = _read_json(decisions_file, InputError, "--apply")
    if (
        not isinstance(decisions, dict)
        or decisions.get("format") != DECISIONS_FORMAT
        or not isinstance(decisions.get("decisions"), dict)
    ):
        raise InputError(f"--apply: {decisions_file} is not a decisions file saved from the review page")
    with open(run_json) as f:
        summary = json.load(f)
    if decisions.get("issues_sha256") != sha256_file(issues_path):
        raise InputError(
            f"--apply: {decisions_file} was saved from another label check than {issues_path} "
            "(issues_sha256 differs): review this check's page again"
        )
    with open(issues_path) as f:
        issues = {x["id"]: x for x in json.load(f)}
    unknown = [k for k in decisions["decisions"] if k not in issues]
    bad = {k: v for k, v in decisions["decisions"].items() if v not in ("accept", "reject")}
    if unknown or bad:
        raise InputError(
            f"--apply: {decisions_file} does not match {issues_path}: "
            + (f"unknown issue ids {unknown[:5]}" if unknown else f"decisions must be 'accept' or 'reject', got {bad}")
        )
    if not os.path.isfile(summary["json"]) or sha256_file(summary["json"]) != summary["json_sha256"]:
        raise InputError(f"the checked json {summary['json']} is gone or changed since the check: run it again")
    coco = read_coco(summary["json"])
    accepted = [issues[k] for k, v in decisions["decisions"].items() if v == "accept"]
    accepted.sort(key=lambda x: -x["score"])
    out = os.path.join(output, "corrected_reviewed.json")
    write_json(out, apply_issues(coco, accepted))
    return out, len(accepted), len(decisions["decisions"]) - len(accepted)
