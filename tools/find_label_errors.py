#!/usr/bin/env python
"""Find annotation errors in a COCO detection dataset with GFL's side distributions: boxes never
drawn, wrong classes, boxes with a loose or shifted side, boxes on nothing, the same object twice;
for each, a score, what to change, and a review page.

    python tools/find_label_errors.py --config-file configs/Quickstart/gfl_shapes.py \\
        --json my/annotations.json --image-root my/images --output output/label_check
    python tools/find_label_errors.py --config-file ... --dataset gfocal_shapes_train --output DIR
    python tools/find_label_errors.py --config-file ... --json ... --image-root ... --output DIR \\
        --weights model_final.pth                   # the quick look: one given model scores all
    python tools/find_label_errors.py --apply DIR/decisions.json --output DIR

By default it trains ``--folds`` models with the config's recipe, each on the other folds, and
each scores the images it never saw (out-of-fold: a model judges the images it learned from too
kindly). The config's ``model.num_classes`` and class names follow the json's categories.
Fold trainings are ``train_net.py --resume`` runs in DIR/folds/foldK/ (a killed run continues;
``--num-gpus`` / ``--num-machines`` / ``--machine-rank`` / ``--dist-url`` go to each of them, as
with train_net.py). Overrides (``key=value``) go last and apply to the trainings and the scoring.

Writes into DIR (each file atomically; the input json is never touched): label_issues.json (every
scored issue, highest score first, ``flagged`` at ``--threshold``), predictions.json (the
detections in COCO results format), corrected.json (the input with every flagged issue applied),
index.html + images/ (the review page), run.json (settings, digests, times). ``--apply`` reads
the decisions saved from the page and writes DIR/corrected_reviewed.json with the accepted ones.
"""

import argparse
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import sys
import time

import gfocal  # noqa: F401  (first: registers GFL and the datasets, imports Detectron2 quietly)

# isort: split
import cv2
import numpy as np
import torch

from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog, MetadataCatalog

from gfocal.analysis.evidence import collect_evidence
from gfocal.analysis.label_errors import ISSUE_TYPES, apply_issues, find_label_issues
from gfocal.analysis.review import write_review_page
from gfocal.cli import checked_parser, run
from gfocal.config import load_config
from gfocal.data import train_on_coco_json
from gfocal.engine import LazyPredictor, cpu_has_bf16, run_trainings
from gfocal.errors import ConfigError, DatasetError, InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DECISIONS_FORMAT = "gfocal-label-decisions"


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help="the training recipe (a lazy config)")
    parser.add_argument("--json", help="COCO detection json to check")
    parser.add_argument("--image-root", help="folder the json's file_name entries are relative to")
    parser.add_argument("--dataset", help="a registered Detectron2 dataset with json_file metadata, instead of --json")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--folds", type=int, default=2, help="out-of-fold models to train (default 2)")
    parser.add_argument("--weights", help="score with this one model instead of training folds (fast, less fair)")
    parser.add_argument("--threshold", type=float, default=0.5, help="score that counts as flagged (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="fold split and simulation seed")
    parser.add_argument("--jobs", type=int, default=None, help="fold trainings at a time (CPU default: 2)")
    parser.add_argument("--max-cards", type=int, default=500, help="cards on the review page (highest scores)")
    parser.add_argument("--no-flip", action="store_true", help="score from the image alone, not also its mirror")
    parser.add_argument(
        "--scales",
        default=None,
        help="sizes the model sees each image at, as factors of the config's test input "
        "(default: 1,1.333 for the out-of-fold check, 1 with --weights, the quick look)",
    )
    parser.add_argument("--apply", metavar="DECISIONS", help="write DIR/corrected_reviewed.json from page decisions")
    parser.add_argument("--num-gpus", type=int, default=1, help="per fold training, as train_net.py")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default=None)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides, key=value")
    return checked_parser(parser)


# ------------------------------------------------------------------ input


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_coco(json_file: str) -> dict:
    """The json as a dict, checked: a COCO detection file with unique ids, known images and
    categories, boxes of positive size inside their images. Raises DatasetError (one line)."""
    if not os.path.isfile(json_file):
        raise DatasetError(f"--json: no such file {json_file!r}")
    try:
        with open(json_file) as f:
            coco = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"cannot read {json_file} as JSON: {e}") from None
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
        im = images[a["image_id"]]
        w, h = im.get("width"), im.get("height")
        if _number(w) and _number(h):
            tol_x, tol_y = 1 + 0.01 * w, 1 + 0.01 * h
            if box[0] < -tol_x or box[1] < -tol_y or box[0] + box[2] > w + tol_x or box[1] + box[3] > h + tol_y:
                raise DatasetError(
                    f"{json_file}: annotation {aid}: bbox {box} lies outside its image {im['file_name']!r} "
                    f"({w}x{h}); fix or remove it"
                )
    if not coco["annotations"]:
        raise DatasetError(f"{json_file} has no annotations: nothing to train on or check")
    return coco


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


def fold_config(cfg, train_json: str, image_root: str, name: str, output_dir: str):
    """The config's recipe trained on one fold's training json, without evaluation."""
    cfg = train_on_coco_json(cfg, train_json, image_root, name)
    if "evaluator" in cfg.dataloader:
        cfg.dataloader.pop("evaluator")
    cfg.train.eval_period = 0
    cfg.train.output_dir = output_dir
    return cfg


def train_folds(cfg, coco, records, fold_of, image_root, args):
    """Train every fold that has no model_final.pth yet; returns the weights per fold."""
    weights = {}
    todo = []
    for k in range(args.folds):
        out = os.path.abspath(os.path.join(args.output, "folds", f"fold{k}"))
        weights[k] = os.path.join(out, "model_final.pth")
        if os.path.isfile(weights[k]):
            continue
        os.makedirs(out, exist_ok=True)
        held_out = {r["id"] for r in records if fold_of[r["id"]] == k}
        readable = {r["id"] for r in records}
        train = {
            **{key: v for key, v in coco.items() if key not in ("images", "annotations")},
            "images": [im for im in coco["images"] if im["id"] in readable and im["id"] not in held_out],
            "annotations": [
                a for a in coco["annotations"] if a["image_id"] in readable and a["image_id"] not in held_out
            ],
        }
        train_json = os.path.join(out, "train.json")
        _write_json(train_json, train)
        yaml = os.path.join(out, "fold_config.yaml")
        LazyConfig.save(fold_config(cfg, train_json, os.path.abspath(image_root), f"label_check_fold{k}", out), yaml)
        if os.path.isfile(yaml + ".pkl") or not os.path.isfile(yaml):
            raise ConfigError(f"{args.config_file} cannot be saved as yaml (a lambda or object in it?)")
        cmd = [sys.executable, os.path.join(REPO, "train_net.py"), "--resume", "--config-file", yaml]
        cmd += ["--num-gpus", str(args.num_gpus), "--num-machines", str(args.num_machines)]
        cmd += ["--machine-rank", str(args.machine_rank)] + (["--dist-url", args.dist_url] if args.dist_url else [])
        todo.append((f"fold {k + 1} of {args.folds} ({len(train['images'])} training images)", cmd, out))
    if todo:
        max_iter = int(cfg.train.max_iter)
        total = len(todo) * max_iter
        start, last = time.time(), [0.0]

        def progress(running):
            now = time.time()
            if now - last[0] < 30:
                return
            last[0] = now
            done = sum(_iterations_done(out) for _, _, out in todo)
            rate = done / max(now - start, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("nan")
            print(f"[folds] {done}/{total} iterations, ETA {_clock(eta)}", flush=True)

        jobs = args.jobs or (1 if str(cfg.train.device).startswith("cuda") else min(2, os.cpu_count() or 1))
        run_trainings(todo, jobs, cwd=REPO, progress=progress)
    return weights


def _iterations_done(output_dir: str) -> int:
    path = os.path.join(output_dir, "metrics.json")
    if os.path.isfile(os.path.join(output_dir, "model_final.pth")):
        return _max_iter_of(output_dir)
    try:
        with open(path) as f:
            lines = [line for line in f if line.strip()]
        return int(json.loads(lines[-1]).get("iteration", 0)) + 1 if lines else 0
    except (OSError, ValueError):
        return 0


def _max_iter_of(output_dir: str) -> int:
    try:
        return int(LazyConfig.load(os.path.join(output_dir, "fold_config.yaml")).train.max_iter)
    except Exception:  # noqa: BLE001 (only for the progress line)
        return 0


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ------------------------------------------------------------------ scoring


def _evidence_key(cfg, weights: str, group, flip: bool, scales, amp: bool = False) -> str:
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


def _write_cache(path: str, key: str, evidence) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump({"key": key, "evidence": evidence}, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def scoring_amp(cfg) -> bool:
    """Whether the models score in mixed precision: as the config trains (``train.amp.enabled``:
    float16 on CUDA, bfloat16 autocast on a CPU with bfloat16 units, where the scoring runs
    when CUDA is missing). On the built-in benchmark this scored 1.2-1.5x faster on a CPU with
    AVX512-BF16 and found the same issues (each type's AP within 0.003 of float32's)."""
    if not cfg.train.get("amp", {}).get("enabled", False):
        return False
    if str(cfg.train.get("device", "cuda")).startswith("cuda") and torch.cuda.is_available():
        return True
    return cpu_has_bf16()


def score_images(cfg, records, weights_of, flip: bool, scales=(1.0,), cache_dir=None):
    """Evidence of every record, each from the model ``weights_of`` gives for it, with progress.

    With ``cache_dir`` each model's evidence is kept there (``evidence-<digest of its path>.pkl``,
    with the digest of the model file, its images and the test-time input) and read back by a
    later run with the same: a rerun with another ``--threshold`` or a new scoring skips inference, and a
    retrained fold is the only one run again."""
    amp = scoring_amp(cfg)
    groups = {}
    for r in records:
        groups.setdefault(weights_of(r), []).append(r)
    evidence, todo = {}, []
    for weights, group in groups.items():
        cache = key = None
        if cache_dir:  # one file per model, replaced when its model, images or input change
            cache = os.path.join(cache_dir, f"evidence-{hashlib.sha256(weights.encode()).hexdigest()[:16]}.pkl")
            key = _evidence_key(cfg, weights, group, flip, scales, amp)
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
                print(
                    f"[score] {done}/{total} images, {rate:.0f} images/s, ETA {_clock((total - done) / rate)}",
                    flush=True,
                )
        if cache:
            _write_cache(cache, key, found)
        evidence.update(found)
    return evidence


def coco_predictions(records, evidence, category_ids):
    """Every image's detections in COCO results format (bbox XYWH, 2 decimals; score, 5)."""
    ids = np.asarray(category_ids)
    out = []
    for r in records:
        det = evidence[r["id"]]["detections"]
        boxes = np.asarray(det["boxes"], np.float64).reshape(-1, 4)
        xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), 2).tolist()
        scores = np.round(np.asarray(det["scores"], np.float64), 5).tolist()
        cats = ids[np.asarray(det["classes"], np.int64)].tolist()
        out.extend(
            {"image_id": r["id"], "category_id": c, "bbox": b, "score": s} for b, s, c in zip(xywh, scores, cats)
        )
    return out


# ------------------------------------------------------------------ output


def _write_json(path: str, data, one_per_line: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``one_per_line``: a list with one item a line (for
    grep and diff). ``json.dumps`` is the C encoder, ``json.dump`` the pure-Python one (2.5x
    slower on the 300k detections of predictions.json)."""
    if one_per_line:
        text = "[\n" + ",\n".join(json.dumps(item) for item in data) + "\n]"
    else:
        text = json.dumps(data)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)


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


def check(args) -> None:
    if args.apply:
        return
    if not args.config_file:
        raise ConfigError("--config-file is required (the recipe the fold models train with or --weights fits)")
    if bool(args.json) == bool(args.dataset):
        raise ConfigError("give either --json FILE --image-root DIR or --dataset NAME")
    if args.json and not args.image_root:
        raise ConfigError("--json needs --image-root (the folder its file_name entries are relative to)")
    if args.image_root and not os.path.isdir(args.image_root):
        raise InputError(f"--image-root: no such folder {args.image_root!r}")
    if not 0.0 < args.threshold < 1.0:
        raise ConfigError(f"--threshold must be in (0, 1), got {args.threshold}")
    if not args.weights and args.folds < 2:
        raise ConfigError(f"--folds must be at least 2 (or give --weights), got {args.folds}")
    if args.weights and not os.path.isfile(args.weights):
        raise InputError(f"--weights: no such file {args.weights!r}")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    args.scales = parse_scales(args.scales if args.scales is not None else ("1" if args.weights else DEFAULT_SCALES))


DEFAULT_SCALES = "1,1.333"  # a second, larger look at each object: its small objects' edges over more pixels


def parse_scales(text: str) -> tuple:
    """ "1,1.333" -> (1.0, 1.333): positive factors, 1 among them (the detections' input)."""
    try:
        scales = tuple(float(x) for x in str(text).split(","))
    except ValueError:
        scales = ()
    if not scales or any(not (math.isfinite(x) and 0.25 <= x <= 4) for x in scales) or 1.0 not in scales:
        raise ConfigError(f"--scales must be comma-separated factors in [0.25, 4] that include 1, got {text!r}")
    return tuple(sorted(set(scales)))


def resolve_dataset(args):
    if args.json:
        return args.json, args.image_root
    if args.dataset not in DatasetCatalog.list():
        raise DatasetError(f"--dataset {args.dataset!r} is not registered (or give --json FILE --image-root DIR)")
    meta = MetadataCatalog.get(args.dataset)
    if not meta.get("json_file", None) or not meta.get("image_root", None):
        raise DatasetError(
            f"--dataset {args.dataset!r} has no json_file / image_root metadata: give --json and --image-root"
        )
    DatasetCatalog.get(args.dataset)  # a generated dataset is written on first use
    return meta.json_file, meta.image_root


def find(args) -> int:
    started = time.time()
    json_file, image_root = resolve_dataset(args)
    coco = read_coco(json_file)
    category_ids = sorted(c["id"] for c in coco["categories"])
    names = {c["id"]: str(c.get("name", c["id"])) for c in coco["categories"]}
    cfg = load_config(args.config_file, args.opts)
    cfg.model.num_classes = len(category_ids)
    cfg.train.device = cfg.train.get("device", "cuda")
    records, unreadable = image_records(coco, image_root)
    if not args.weights and args.folds > len(records):
        raise ConfigError(f"--folds {args.folds} is more than the {len(records)} readable images")
    os.makedirs(args.output, exist_ok=True)
    cache_dir = os.path.join(args.output, "cache")
    if args.weights:
        LazyPredictor(
            cfg, weights=args.weights, slicing=dict(enabled=False)
        )  # a mismatched checkpoint fails here, before any work
        evidence = score_images(cfg, records, lambda r: args.weights, not args.no_flip, args.scales, cache_dir)
        trained = 0.0
    else:
        fold_of = fold_split([r["id"] for r in records], args.folds, args.seed)
        weights = train_folds(cfg, coco, records, fold_of, image_root, args)
        trained = time.time() - started
        evidence = score_images(
            cfg, records, lambda r: weights[fold_of[r["id"]]], not args.no_flip, args.scales, cache_dir
        )
    issues = find_label_issues(records, evidence, category_ids, threshold=args.threshold, seed=args.seed)
    for issue in issues:  # names as in the json
        issue["file_name"] = os.path.relpath(issue["file_name"], image_root)
    staging = os.path.join(args.output, f".staging-{os.getpid()}")
    os.makedirs(staging, exist_ok=True)
    try:
        issues_path = os.path.join(staging, "label_issues.json")
        _write_json(issues_path, issues, one_per_line=True)
        _write_json(os.path.join(staging, "predictions.json"), coco_predictions(records, evidence, category_ids))
        flagged = [x for x in issues if x["flagged"]]
        _write_json(os.path.join(staging, "corrected.json"), apply_issues(coco, flagged))
        digest = sha256_file(issues_path)
        paths = {r["id"]: r["file_name"] for r in records}

        def read_rgb(issue):
            image = cv2.imread(paths[issue["image_id"]], cv2.IMREAD_COLOR)
            return None if image is None else image[:, :, ::-1]

        detections = {r["id"]: evidence[r["id"]]["detections"] for r in records}
        cards = write_review_page(staging, issues, digest, read_rgb, detections, names, args.max_cards)
        counts = {t: sum(1 for x in flagged if x["type"] == t) for t in ISSUE_TYPES}
        summary = {
            "json": os.path.abspath(json_file),
            "json_sha256": sha256_file(json_file),
            "image_root": os.path.abspath(image_root),
            "issues_sha256": digest,
            "config_file": args.config_file,
            "overrides": list(args.opts),
            "mode": "weights" if args.weights else f"{args.folds} folds",
            "weights": args.weights,
            "threshold": args.threshold,
            "flip": not args.no_flip,
            "scales": list(args.scales),
            "amp": scoring_amp(cfg),
            "images": len(records),
            "unreadable_images": unreadable,
            "annotations": len(coco["annotations"]),
            "flagged": counts,
            "minutes": {"training": round(trained / 60, 2), "total": round((time.time() - started) / 60, 2)},
        }
        _write_json(os.path.join(staging, "run.json"), summary)
        publish(staging, args.output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(
        f"flagged at {args.threshold}: "
        + ", ".join(f"{counts[t]} {t}" for t in ISSUE_TYPES)
        + f" (of {len(issues)} scored)"
    )
    print(f"review page: {os.path.join(args.output, 'index.html')} ({cards} cards)")
    print(
        f"issues: {os.path.join(args.output, 'label_issues.json')}; "
        f"corrected: {os.path.join(args.output, 'corrected.json')}"
    )
    print(f"time: {summary['minutes']['total']:.1f} min")
    return 0


def apply_decisions(args) -> int:
    run_json = os.path.join(args.output, "run.json")
    issues_path = os.path.join(args.output, "label_issues.json")
    if not (os.path.isfile(run_json) and os.path.isfile(issues_path)):
        raise InputError(
            f"--output {args.output!r} holds no label check (run.json, label_issues.json): run the check first"
        )
    if not os.path.isfile(args.apply):
        raise InputError(f"--apply: no such file {args.apply!r}")
    try:
        with open(args.apply) as f:
            decisions = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"--apply: cannot read {args.apply} as JSON: {e}") from None
    if (
        not isinstance(decisions, dict)
        or decisions.get("format") != DECISIONS_FORMAT
        or not isinstance(decisions.get("decisions"), dict)
    ):
        raise InputError(f"--apply: {args.apply} is not a decisions file saved from the review page")
    with open(run_json) as f:
        summary = json.load(f)
    if decisions.get("issues_sha256") != sha256_file(issues_path):
        raise InputError(
            f"--apply: {args.apply} was saved from another label check than {issues_path} "
            "(issues_sha256 differs): review this check's page again"
        )
    with open(issues_path) as f:
        issues = {x["id"]: x for x in json.load(f)}
    unknown = [k for k in decisions["decisions"] if k not in issues]
    bad = {k: v for k, v in decisions["decisions"].items() if v not in ("accept", "reject")}
    if unknown or bad:
        raise InputError(
            f"--apply: {args.apply} does not match {issues_path}: "
            + (f"unknown issue ids {unknown[:5]}" if unknown else f"decisions must be 'accept' or 'reject', got {bad}")
        )
    if not os.path.isfile(summary["json"]) or sha256_file(summary["json"]) != summary["json_sha256"]:
        raise InputError(f"the checked json {summary['json']} is gone or changed since the check: run it again")
    coco = read_coco(summary["json"])
    accepted = [issues[k] for k, v in decisions["decisions"].items() if v == "accept"]
    accepted.sort(key=lambda x: -x["score"])
    out = os.path.join(args.output, "corrected_reviewed.json")
    _write_json(out, apply_issues(coco, accepted))
    rejected = sum(1 for v in decisions["decisions"].values() if v == "reject")
    print(f"{len(accepted)} accepted, {rejected} rejected issues: {out}")
    return 0


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    check(args)
    return apply_decisions(args) if args.apply else find(args)


if __name__ == "__main__":
    sys.exit(run(lambda: main(sys.argv[1:])))
