"""Checks of training data done once, when the dataset is loaded: bad boxes, missing image
files, the number of classes. :func:`checked_dataset_dicts` replaces Detectron2's
``get_detection_dataset_dicts`` for the TRAIN set and runs them all, e.g. in a lazy config::

    dataloader.train.dataset = L(checked_dataset_dicts)(names="coco_2017_train")

Why: Detectron2's mapper clips every box to the image, so a ``[10, 10, inf, 20]`` (XYWH) box
becomes a valid box reaching the image border and is trained on; a missing image crashes a
loader worker at some iteration; an empty training set ends with AP ``nan``.
"""

import contextlib
import enum
import functools
import gc
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tabulate import tabulate

from detectron2.structures import BoxMode

from ..errors import DatasetError

logger = logging.getLogger(__name__)

__all__ = [
    "BoxCheck",
    "AnnotationReport",
    "classify_boxes",
    "validate_annotations",
    "check_image_files",
    "check_num_classes",
    "checked_dataset_dicts",
]


class BoxCheck(enum.IntEnum):
    """The outcome of checking one box. A box gets exactly one; the checks run in the order of
    the values (a nan box with zero width is NON_FINITE, not NON_POSITIVE_SIZE)."""

    OK = 0  #: valid, kept unchanged
    CLIPPED = 1  #: partly outside the image: clipped to it and kept
    MALFORMED = 2  #: bbox missing / not 4 numbers, or bbox_mode / category_id missing: dropped
    NON_FINITE = 3  #: a coordinate is nan or +-inf: dropped
    NON_POSITIVE_SIZE = 4  #: zero or negative width or height: dropped
    OUTSIDE_IMAGE = 5  #: nothing left after clipping to the image: dropped

    @property
    def key(self) -> str:
        """The name used in :class:`AnnotationReport` (``"non_finite"``, ...)."""
        return self.name.lower()

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    BoxCheck.OK: "valid",
    BoxCheck.CLIPPED: "partly outside the image",
    BoxCheck.MALFORMED: "malformed (bbox not 4 numbers, no bbox_mode or category_id)",
    BoxCheck.NON_FINITE: "non-finite coordinates (nan/inf)",
    BoxCheck.NON_POSITIVE_SIZE: "zero or negative width/height",
    BoxCheck.OUTSIDE_IMAGE: "entirely outside the image",
}
_DROPPED = (BoxCheck.MALFORMED, BoxCheck.NON_FINITE, BoxCheck.NON_POSITIVE_SIZE, BoxCheck.OUTSIDE_IMAGE)
_REPORTED = [(code, "dropped") for code in _DROPPED] + [(BoxCheck.CLIPPED, "clipped, kept")]  # in the summary's order
_NUM_EXAMPLES = 3
_MODES = {int(BoxMode.XYXY_ABS): "XYXY_ABS", int(BoxMode.XYWH_ABS): "XYWH_ABS"}


def _names_str(names: Union[str, Sequence[str], None]) -> str:
    if names is None or names == "" or names == []:
        return "<unnamed>"
    if isinstance(names, str):
        return f"'{names}'"
    return ", ".join(f"'{n}'" for n in names)


def _as_list(names: Union[str, Sequence[str]]) -> List[str]:
    return [names] if isinstance(names, str) else list(names)


def classify_boxes(boxes: np.ndarray, is_xywh: np.ndarray, image_hw: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Classify and clip N boxes at once, in the order of :class:`BoxCheck` (non-finite
    includes overflow of ``x + w``; the image checks run only where the image size is known).

    Args:
        boxes: float array of shape (N, 4), each row in its own mode: ``(x0, y0, w, h)`` where
            ``is_xywh`` is true, else ``(x0, y0, x1, y1)``, absolute pixels.
        is_xywh: bool array of shape (N,).
        image_hw: float array of shape (N, 2), the ``(height, width)`` of each box's image;
            a non-finite or non-positive entry means "unknown" and skips the image checks.

    Returns:
        ``(codes, clipped)``: ``codes`` int8 of shape (N,), each a :class:`BoxCheck` (all but
        MALFORMED); ``clipped`` float64 of shape (N, 4), the boxes clipped to their image in
        their own mode (equal to ``boxes`` for rows that are not :data:`BoxCheck.CLIPPED`).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xywh = np.asarray(is_xywh, dtype=bool).reshape(-1)
    hw = np.asarray(image_hw, dtype=np.float64).reshape(-1, 2)
    if not (len(b) == len(xywh) == len(hw)):
        raise ValueError(f"boxes {b.shape}, is_xywh {xywh.shape}, image_hw {hw.shape} differ")
    with np.errstate(over="ignore", invalid="ignore"):
        x0, y0 = b[:, 0], b[:, 1]
        x1 = np.where(xywh, x0 + b[:, 2], b[:, 2])
        y1 = np.where(xywh, y0 + b[:, 3], b[:, 3])
        # Sizes as given (XYWH) or as differences (XYXY): checked before any clipping, so an
        # infinite or empty box can never turn into a valid one.
        w = np.where(xywh, b[:, 2], x1 - x0)
        h = np.where(xywh, b[:, 3], y1 - y0)
        finite = np.isfinite(b).all(axis=1) & np.isfinite(x1) & np.isfinite(y1)
        finite &= np.isfinite(w) & np.isfinite(h)
        positive = finite & (w > 0) & (h > 0)

        known = np.isfinite(hw).all(axis=1) & (hw > 0).all(axis=1)
        limit = np.where(known[:, None], hw[:, [1, 0, 1, 0]], np.inf)  # (W, H, W, H) or no limit
        corners = np.stack([x0, y0, x1, y1], axis=1)
        clipped_xyxy = np.clip(corners, 0.0, limit)
        cx0, cy0, cx1, cy1 = clipped_xyxy.T
        outside = positive & known & ((cx1 <= cx0) | (cy1 <= cy0))
        partly = positive & known & ~outside & (clipped_xyxy != corners).any(axis=1)
        own_mode = clipped_xyxy.copy()  # the clipped boxes in their own mode: XYWH sizes from the corners
        own_mode[:, 2:] -= np.where(xywh[:, None], clipped_xyxy[:, :2], 0.0)

    codes = np.full(len(b), BoxCheck.OK, dtype=np.int8)
    codes[partly] = BoxCheck.CLIPPED
    codes[outside] = BoxCheck.OUTSIDE_IMAGE
    codes[finite & ~positive] = BoxCheck.NON_POSITIVE_SIZE
    codes[~finite] = BoxCheck.NON_FINITE
    return codes, np.where(partly[:, None], own_mode, b)


@dataclass
class AnnotationReport:
    """Outcome of :func:`validate_annotations`.

    Attributes:
        dataset: the dataset name(s) as shown in messages.
        num_images, num_boxes: number of records and annotations checked.
        counts: per :attr:`BoxCheck.key` but "ok", the number of boxes.
        examples: per reason key, up to 3 distinct images as ``"image_id=<id> (<basename>)"``.
        num_unsized_images: records with annotations but no usable height/width: their boxes
            were not checked against the image.
        num_valid_boxes: boxes kept (including clipped ones).
        num_valid_noncrowd_boxes: kept boxes with ``iscrowd == 0`` (the ones trained on).
        summary: the logged text (table included).
    """

    dataset: str
    num_images: int = 0
    num_boxes: int = 0
    counts: Dict[str, int] = field(default_factory=dict)
    examples: Dict[str, List[str]] = field(default_factory=dict)
    num_unsized_images: int = 0
    num_valid_boxes: int = 0
    num_valid_noncrowd_boxes: int = 0
    summary: str = ""

    @property
    def num_dropped(self) -> int:
        """Number of boxes dropped (all reasons but ``"clipped"``)."""
        return sum(self.counts.get(c.key, 0) for c in _DROPPED)

    @property
    def num_clipped(self) -> int:
        """Number of boxes clipped to their image and kept."""
        return self.counts.get("clipped", 0)


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _box_array(bboxes: List[Any]) -> Tuple[np.ndarray, np.ndarray]:
    """``(boxes (N, 4) float64, malformed (N,) bool)``: a fast path for well-formed lists and a
    per-item fallback only when the list cannot be converted as a whole."""
    n = len(bboxes)
    try:
        arr = np.asarray(bboxes, dtype=np.float64)
        if arr.shape == (n, 4):
            return arr, np.zeros(n, dtype=bool)
    except (TypeError, ValueError):
        pass
    arr = np.full((n, 4), np.nan)
    bad = np.ones(n, dtype=bool)
    for i, box in enumerate(bboxes):
        try:
            row = np.asarray(box, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            continue
        if row.shape == (4,):
            arr[i] = row
            bad[i] = False
    return arr, bad


def _mode_array(modes: List[Any]) -> Tuple[np.ndarray, np.ndarray]:
    """``(modes (N,) int64 with -1 where missing, missing (N,) bool)``."""
    try:
        arr = np.asarray(modes, dtype=np.int64).reshape(-1)
        if arr.shape == (len(modes),):
            return arr, np.zeros(len(modes), dtype=bool)
    except (TypeError, ValueError):
        pass
    arr = np.full(len(modes), -1, dtype=np.int64)
    for i, m in enumerate(modes):
        try:
            arr[i] = int(m)
        except (TypeError, ValueError):
            pass
    return arr, arr < 0


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while building many small containers (it would
    otherwise run again and again over the whole, growing heap). Also a decorator."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _example(record: Dict[str, Any], index: int) -> str:
    file_name = record.get("file_name")
    base = os.path.basename(str(file_name)) if file_name is not None else "<no file_name>"
    return f"image_id={record.get('image_id', f'#{index}')} ({base})"


@_gc_paused()
def validate_annotations(
    dataset_dicts: Sequence[Dict[str, Any]],
    *,
    dataset_name: Union[str, Sequence[str], None] = None,
    strict: bool = False,
    log: bool = True,
) -> Tuple[List[Dict[str, Any]], AnnotationReport]:
    """Validate every box of a dataset at once; drop invalid ones, clip partly-outside ones.

    Each annotation, crowd ones included, gets one :class:`BoxCheck` outcome. Records without a
    usable ``height``/``width`` are checked for everything but the image bounds. The input is
    not modified: new record and annotation dicts are returned with every other key kept;
    clipped boxes are written back as lists of floats in the annotation's own ``bbox_mode``.

    Args:
        dataset_dicts: Detectron2 dataset dicts.
        dataset_name: name(s) shown in messages.
        strict: raise instead of dropping when any annotation is invalid (clipping is a fix,
            also under ``strict``).
        log: log the summary: a warning when anything was dropped, clipped or left unchecked,
            otherwise one info line.

    Returns:
        ``(new_dicts, report)``: the records (same number and order as the input) and an
        :class:`AnnotationReport`.

    Raises:
        ValueError: with ``strict=True`` when any annotation is invalid; always for a
            ``bbox_mode`` other than XYXY_ABS / XYWH_ABS.
    """
    records, name = list(dataset_dicts), _names_str(dataset_name)
    per_record = [r.get("annotations") or () for r in records]
    counts = np.fromiter((len(a) for a in per_record), dtype=np.int64, count=len(records))
    anns = [a for rec_anns in per_record for a in rec_anns]
    n = len(anns)

    boxes, malformed = _box_array([a.get("bbox") for a in anns])
    modes, no_mode = _mode_array([a.get("bbox_mode") for a in anns])
    malformed |= no_mode
    malformed |= np.fromiter(("category_id" not in a for a in anns), dtype=bool, count=n)
    crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), dtype=bool, count=n)
    unsupported = sorted(set(np.unique(modes[~no_mode]).tolist()) - set(_MODES))
    if unsupported:
        known_names = {int(m): m.name for m in BoxMode}
        shown = [known_names.get(m, str(m)) for m in unsupported]
        raise DatasetError(
            f"Dataset {name}: bbox_mode {', '.join(shown)} is not supported; "
            "boxes must be BoxMode.XYXY_ABS or BoxMode.XYWH_ABS."
        )

    image_hw = np.array(
        [(_to_float(r.get("height")), _to_float(r.get("width"))) for r in records],
        dtype=np.float64,
    ).reshape(-1, 2)
    with np.errstate(invalid="ignore"):
        sized = np.isfinite(image_hw).all(axis=1) & (image_hw > 0).all(axis=1)
    record_of = np.repeat(np.arange(len(records)), counts)

    codes, clipped = classify_boxes(boxes, modes == int(BoxMode.XYWH_ABS), image_hw[record_of])
    codes[malformed] = BoxCheck.MALFORMED

    report = AnnotationReport(dataset=name, num_images=len(records), num_boxes=n)
    for code, _ in _REPORTED:
        key = code.key
        recs = record_of[codes == code]
        report.counts[key] = int(len(recs))
        _, first = np.unique(recs, return_index=True)  # distinct images, in dataset order
        report.examples[key] = [_example(records[r], r) for r in recs[np.sort(first)[:_NUM_EXAMPLES]].tolist()]
    keep = (codes == BoxCheck.OK) | (codes == BoxCheck.CLIPPED)
    report.num_valid_boxes = int(keep.sum())
    report.num_valid_noncrowd_boxes = int((keep & ~crowd).sum())
    report.num_unsized_images = int(((~sized) & (counts > 0)).sum())
    report.summary = _summary(report)

    if strict and report.num_dropped:
        raise DatasetError(report.summary + "\n(strict=True: fix or remove these annotations.)")
    if log:
        if report.num_dropped or report.num_clipped or report.num_unsized_images:
            logger.warning(report.summary)
        else:
            logger.info(report.summary)

    # Rebuild: new dicts everywhere, with the few clipped boxes replaced and dropped ones left
    # out (only records that lose a box are filtered element by element).
    new_anns = [dict(a) for a in anns]
    for i in np.flatnonzero(codes == BoxCheck.CLIPPED).tolist():
        new_anns[i]["bbox"] = [float(v) for v in clipped[i]]
    dropped_per_record = np.bincount(record_of[~keep], minlength=len(records))
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for r, rec in enumerate(records):
        new = dict(rec)
        if "annotations" in rec and rec["annotations"] is not None:
            s, e = int(starts[r]), int(starts[r + 1])
            if dropped_per_record[r]:
                new["annotations"] = [new_anns[i] for i in range(s, e) if keep[i]]
            else:
                new["annotations"] = new_anns[s:e]
        out.append(new)
    return out, report


def _summary(report: AnnotationReport) -> str:
    head = (
        f"Annotation check of dataset {report.dataset}: {report.num_boxes} boxes in "
        f"{report.num_images} images; {report.num_dropped} dropped, {report.num_clipped} "
        f"clipped to the image, {report.num_valid_boxes} kept."
    )
    rows = [
        [code.description, report.counts[code.key], action, ", ".join(report.examples[code.key])]
        for code, action in _REPORTED
        if report.counts.get(code.key)
    ]
    headers = ["problem", "boxes", "action", "examples"]
    lines = [head, tabulate(rows, headers=headers, tablefmt="pipe") if rows else "All boxes are valid."]
    if report.num_unsized_images:
        lines.append(
            f"{report.num_unsized_images} images with annotations have no usable height/width: "
            "their boxes were not checked against the image bounds."
        )
    return "\n".join(lines)


def _list_files(directory: str) -> frozenset:
    try:
        with os.scandir(directory or ".") as it:
            return frozenset(e.name for e in it if e.is_file())
    except OSError:  # missing directory, not a directory, no permission
        return frozenset()


def check_image_files(
    dataset_dicts: Sequence[Dict[str, Any]],
    *,
    dataset_name: Union[str, Sequence[str], None] = None,
    missing: str = "error",
) -> List[Dict[str, Any]]:
    """Find the records whose ``file_name`` is not a file on disk, in one pass.

    Each distinct directory is listed once with ``os.scandir`` (instead of one ``stat`` per
    file); ``scheme://...`` paths are tested with ``PathManager.exists``.

    Args:
        missing: ``"error"`` raises FileNotFoundError when any file is missing; ``"drop"`` logs
            a warning and leaves those records out.

    Returns:
        The records whose image exists (the input list's elements, not copies).
    """
    if missing not in ("error", "drop"):
        raise DatasetError(f"missing must be 'error' or 'drop', got {missing!r}")
    records = list(dataset_dicts)
    listing = functools.lru_cache(maxsize=None)(_list_files)  # one scandir per directory
    present = np.ones(len(records), dtype=bool)
    for i, rec in enumerate(records):
        path = rec.get("file_name")
        if not path:
            present[i] = False
            continue
        path = os.fspath(path)
        if "://" in path:
            from detectron2.utils.file_io import PathManager

            present[i] = PathManager.exists(path)
            continue
        directory, base = os.path.split(path)
        present[i] = base in listing(directory)
    num_missing = int((~present).sum())
    if not num_missing:
        return records
    shown = [str(records[i].get("file_name")) for i in np.flatnonzero(~present)[:_NUM_EXAMPLES]]
    message = (
        f"Dataset {_names_str(dataset_name)}: {num_missing} of {len(records)} image files are "
        f"missing on disk, e.g. {', '.join(shown)}"
    )
    if missing == "error":
        raise FileNotFoundError(
            message + ". Fix the image root or the dataset registration, or pass "
            "missing_images='drop' to train without these images."
        )
    logger.warning(message + f". Dropping these {num_missing} images (missing_images='drop').")
    return [rec for rec, ok in zip(records, present.tolist()) if ok]


def check_num_classes(
    dataset_names: Union[str, Sequence[str]],
    num_classes: int,
    dataset_dicts: Optional[Sequence[Dict[str, Any]]] = None,
) -> Optional[int]:
    """Compare the model's number of classes with the data's: the largest of
    ``len(thing_classes)`` over the datasets' metadata and, when ``dataset_dicts`` is given,
    ``max(category_id) + 1``.

    Returns:
        The data's number of classes, or ``None`` when neither source tells (nothing checked).

    Raises:
        ValueError: the model has fewer classes than the data (a warning if it has more).
    """
    from detectron2.data import MetadataCatalog

    names = _as_list(dataset_names)
    sources = []
    for n in names:
        classes = MetadataCatalog.get(n).get("thing_classes", None)
        if classes is not None:
            sources.append((len(classes), f"{len(classes)} thing_classes in '{n}'"))
    if dataset_dicts is not None:
        ids = np.fromiter(
            (_to_float(a.get("category_id")) for r in dataset_dicts for a in (r.get("annotations") or ())),
            dtype=np.float64,
        )
        ids = ids[np.isfinite(ids)]
        if len(ids):
            top = int(ids.max())
            sources.append((top + 1, f"max category_id {top} in the annotations"))
    if not sources:
        logger.info(
            f"Cannot check model.num_classes={num_classes}: dataset(s) {_names_str(names)} have "
            "no thing_classes metadata and no annotations were given."
        )
        return None
    data_classes = max(s[0] for s in sources)
    why = "; ".join(s[1] for s in sources)
    if num_classes < data_classes:
        raise DatasetError(
            f"The model has {num_classes} classes but dataset(s) {_names_str(names)} have "
            f"{data_classes} ({why}): set model.num_classes={data_classes}."
        )
    if num_classes > data_classes:
        logger.warning(
            f"The model has {num_classes} classes but dataset(s) {_names_str(names)} have only "
            f"{data_classes} ({why}): {num_classes - data_classes} classes will never be "
            f"trained; set model.num_classes={data_classes} unless this is intended."
        )
    return data_classes


def _require_boxes(num_valid_noncrowd: int, names: List[str], context: str) -> None:
    if num_valid_noncrowd == 0:
        raise DatasetError(
            f"Training dataset {_names_str(names)} has no annotations {context}: no image has a "
            "valid (non-crowd) box. Check the annotation file, the dataset registration and "
            "the log above."
        )


def checked_dataset_dicts(
    names: Union[str, Sequence[str]],
    filter_empty: bool = True,
    min_keypoints: int = 0,
    proposal_files: Optional[Sequence[str]] = None,
    check_images: bool = True,
    strict: bool = False,
    missing_images: str = "error",
    check_consistency: bool = True,
    num_classes: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """Load a TRAINING set like ``detectron2.data.get_detection_dataset_dicts``, then check it.

    Steps: load (without Detectron2's filters) -> :func:`validate_annotations` -> error if no
    valid box is left -> Detectron2's filters, metadata consistency and class histogram ->
    :func:`check_image_files` on the records kept -> :func:`check_num_classes` if
    ``num_classes`` is given (e.g. ``"${model.num_classes}"`` in a lazy config).

    Args:
        filter_empty, min_keypoints, proposal_files, check_consistency: as Detectron2's.
        check_images: check that every image file exists.
        strict: raise ValueError when any annotation is invalid instead of dropping it.
        missing_images: ``"error"`` (raise FileNotFoundError) or ``"drop"`` (warn, leave those
            images out).

    Returns:
        The checked dataset dicts (new dicts). A dataset that the catalog returns as a
        ``torch.utils.data.Dataset`` is returned unchecked (with a warning).
    """
    import torch.utils.data as torchdata

    from detectron2.data import MetadataCatalog, get_detection_dataset_dicts
    from detectron2.data.build import (
        filter_images_with_few_keypoints,
        filter_images_with_only_crowd_annotations,
        print_instances_class_histogram,
    )
    from detectron2.data.detection_utils import check_metadata_consistency

    if missing_images not in ("error", "drop"):
        raise DatasetError(f"missing_images must be 'error' or 'drop', got {missing_images!r}")
    names = _as_list(names)
    dicts = get_detection_dataset_dicts(
        names,
        filter_empty=False,
        min_keypoints=0,
        proposal_files=proposal_files,
        check_consistency=False,
    )
    if isinstance(dicts, torchdata.Dataset):
        logger.warning(
            f"Dataset {_names_str(names)} is a torch Dataset, not a list of dicts: "
            "its annotations and image files were not checked."
        )
        return dicts

    dicts, report = validate_annotations(dicts, dataset_name=names, strict=strict)
    _require_boxes(report.num_valid_noncrowd_boxes, names, "after validation")

    has_instances = "annotations" in dicts[0]
    if filter_empty and has_instances:
        dicts = filter_images_with_only_crowd_annotations(dicts)
    if min_keypoints > 0 and has_instances:
        dicts = filter_images_with_few_keypoints(dicts, min_keypoints)
    if check_consistency and has_instances:
        try:
            class_names = MetadataCatalog.get(names[0]).thing_classes
            check_metadata_consistency("thing_classes", names)
            print_instances_class_histogram(dicts, class_names)
        except AttributeError:  # no class names for this dataset
            pass

    if check_images:
        before = len(dicts)
        dicts = check_image_files(dicts, dataset_name=names, missing=missing_images)
        if len(dicts) != before:
            num_noncrowd = sum(1 for r in dicts for a in (r.get("annotations") or ()) if not a.get("iscrowd", 0))
            _require_boxes(num_noncrowd, names, "after dropping missing images")
    if num_classes is not None:
        check_num_classes(names, int(num_classes), dicts)
    if not dicts:
        raise DatasetError(f"Training dataset {_names_str(names)} has no images left.")
    return dicts
