"""Reading and checking ``model.json``, the description of an exported GFL detector.

Every key of the export contract is required (``resize`` may be ``null``); a missing or bad key
raises :class:`ValueError` naming the key and the file.
"""
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

__all__ = ["ExportSpec", "ResizeSpec", "load_spec", "parse_spec", "FORMAT", "FORMAT_VERSION"]

FORMAT = "gfocal-export"
FORMAT_VERSION = 1
# The artefacts this runtime can execute (both backends read ONNX).
RUNNABLE_ARTIFACTS = ("onnx",)
INTERPOLATIONS = ("bilinear", "nearest", "bicubic")

_REQUIRED_KEYS = (
    "format", "format_version", "artifact", "model_file", "precision", "gfl_version", "input",
    "resize", "classes", "num_classes", "strides", "reg_max", "with_distributions", "outputs",
    "postprocess", "parity", "source",
)


@dataclass(frozen=True)
class ResizeSpec:
    """Test-time ``ResizeShortestEdge``: ``max_size`` None means unbounded."""

    short_edge_length: int
    max_size: Optional[int]
    interpolation: str


@dataclass(frozen=True)
class ExportSpec:
    """The parsed, checked ``model.json``.

    Attributes are typed views of the keys the runtime uses; ``spec["key"]`` (and ``spec.get``)
    give the raw JSON value of any key, so the object also reads like the parsed dict.
    """

    path: str  # the model.json file
    artifact: str
    model_file: str  # as written in model.json (relative to the model directory)
    precision: str
    gfl_version: int
    input_name: str
    input_format: str  # "RGB" or "BGR"
    size_divisibility: int
    pad_value: Tuple[float, float, float]
    resize: Optional[ResizeSpec]
    classes: Tuple[str, ...]
    num_classes: int
    strides: Tuple[int, ...]
    reg_max: int
    with_distributions: bool
    score_thresh: float
    topk_per_level: int
    nms_thresh: float
    max_detections: int
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def model_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    @property
    def model_path(self) -> str:
        """Absolute path of the model file."""
        return os.path.join(self.model_dir, self.model_file)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


def load_spec(path: str) -> ExportSpec:
    """Read and check ``model.json``.

    Args:
        path: a model directory (holding ``model.json``) or the ``model.json`` file itself.
    """
    json_path = os.path.join(path, "model.json") if os.path.isdir(path) else path
    if not os.path.isfile(json_path):
        raise FileNotFoundError(
            f"no model.json at {json_path!r}: expected a directory written by the GFocal exporter"
        )
    with open(json_path, "r", encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{json_path}: not valid JSON ({e})") from None
    return parse_spec(data, json_path)


def parse_spec(data: Dict[str, Any], path: str = "model.json") -> ExportSpec:
    """Check a parsed ``model.json`` dict against the export contract (format_version 1).

    Args:
        data: the parsed JSON object.
        path: the file it came from (used in messages and to locate the model file).
    """

    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"{path}: {key!r} {why}")

    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    # Identify the file before anything else, so a foreign/newer file gets the clearest message.
    for key in ("format", "format_version"):
        if key not in data:
            raise bad(key, "is missing (required key); is this a GFocal export?")
    if data["format"] != FORMAT:
        raise bad("format", f"must be {FORMAT!r}, got {data['format']!r}")
    version = data["format_version"]
    if not _is_int(version) or version != FORMAT_VERSION:
        raise bad(
            "format_version",
            f"is {version!r}, but this gfocal_runtime reads only format_version {FORMAT_VERSION}; "
            "export the model again with a matching GFocal version or update gfocal_runtime",
        )
    for key in _REQUIRED_KEYS:
        if key not in data:
            raise bad(key, "is missing (required key)")

    artifact = data["artifact"]
    if artifact == "torch-export":
        raise bad(
            "artifact",
            "is 'torch-export' (a torch.export .pt2 program): gfocal_runtime cannot run it, since "
            "that needs torch; export again with --format onnx",
        )
    if artifact not in RUNNABLE_ARTIFACTS:
        raise bad("artifact", f"must be one of {list(RUNNABLE_ARTIFACTS)}, got {artifact!r}")
    model_file = _get_str(data, "model_file", bad)
    if not model_file:
        raise bad("model_file", "must be a non-empty file name")
    precision = _get_str(data, "precision", bad)
    gfl_version = data["gfl_version"]
    if not _is_int(gfl_version) or gfl_version not in (1, 2):
        raise bad("gfl_version", f"must be 1 or 2, got {gfl_version!r}")

    inp = _get_dict(data, "input", bad)
    for key in ("name", "format", "size_divisibility", "pad_value"):
        if key not in inp:
            raise bad(f"input.{key}", "is missing (required key)")
    if inp["name"] != "images":
        raise bad("input.name", f"must be 'images', got {inp['name']!r}")
    if inp["format"] not in ("RGB", "BGR"):
        raise bad("input.format", f"must be 'RGB' or 'BGR', got {inp['format']!r}")
    size_div = inp["size_divisibility"]
    if not _is_int(size_div) or size_div < 0:
        raise bad("input.size_divisibility", f"must be an integer >= 0, got {size_div!r}")
    pad_value = inp["pad_value"]
    if (
        not isinstance(pad_value, (list, tuple))
        or len(pad_value) != 3
        or not all(_is_number(v) for v in pad_value)
    ):
        raise bad("input.pad_value", f"must be a list of 3 finite numbers, got {pad_value!r}")

    resize = _parse_resize(data["resize"], bad)

    num_classes = data["num_classes"]
    if not _is_int(num_classes) or num_classes < 1:
        raise bad("num_classes", f"must be a positive integer, got {num_classes!r}")
    classes = data["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "must be a list of class-name strings")
    if len(classes) != num_classes:
        raise bad("classes", f"has {len(classes)} names but num_classes is {num_classes}")
    strides = data["strides"]
    if (
        not isinstance(strides, list)
        or not strides
        or not all(_is_int(s) and s > 0 for s in strides)
    ):
        raise bad("strides", f"must be a non-empty list of positive integers, got {strides!r}")
    reg_max = data["reg_max"]
    if not _is_int(reg_max) or reg_max < 1:
        raise bad("reg_max", f"must be a positive integer, got {reg_max!r}")
    with_dists = data["with_distributions"]
    if not isinstance(with_dists, bool):
        raise bad("with_distributions", f"must be true or false, got {with_dists!r}")

    outputs = _get_dict(data, "outputs", bad)
    for name in ("scores", "boxes") + (("dists",) if with_dists else ()):
        if name not in outputs:
            raise bad(f"outputs.{name}", "is missing (required output)")

    post = _get_dict(data, "postprocess", bad)
    for key in ("score_thresh", "topk_per_level", "nms_thresh", "max_detections"):
        if key not in post:
            raise bad(f"postprocess.{key}", "is missing (required key)")
    for key in ("score_thresh", "nms_thresh"):
        if not _is_number(post[key]):
            raise bad(f"postprocess.{key}", f"must be a finite number, got {post[key]!r}")
    for key in ("topk_per_level", "max_detections"):
        if not _is_int(post[key]) or post[key] < 1:
            raise bad(f"postprocess.{key}", f"must be a positive integer, got {post[key]!r}")
    _get_dict(data, "parity", bad)
    _get_dict(data, "source", bad)

    return ExportSpec(
        path=path,
        artifact=artifact,
        model_file=model_file,
        precision=precision,
        gfl_version=int(gfl_version),
        input_name=inp["name"],
        input_format=inp["format"],
        size_divisibility=int(size_div),
        pad_value=tuple(float(v) for v in pad_value),
        resize=resize,
        classes=tuple(classes),
        num_classes=int(num_classes),
        strides=tuple(int(s) for s in strides),
        reg_max=int(reg_max),
        with_distributions=with_dists,
        score_thresh=float(post["score_thresh"]),
        topk_per_level=int(post["topk_per_level"]),
        nms_thresh=float(post["nms_thresh"]),
        max_detections=int(post["max_detections"]),
        raw=data,
    )


def _parse_resize(resize: Any, bad) -> Optional[ResizeSpec]:
    if resize is None:
        return None
    if not isinstance(resize, dict):
        raise bad("resize", f"must be an object or null, got {type(resize).__name__}")
    for key in ("type", "short_edge_length", "max_size", "interpolation"):
        if key not in resize:
            raise bad(f"resize.{key}", "is missing (required key)")
    if resize["type"] != "ResizeShortestEdge":
        raise bad("resize.type", f"must be 'ResizeShortestEdge', got {resize['type']!r}")
    short = resize["short_edge_length"]
    # A one-element list is what a test-time ResizeShortestEdge holds; several lengths are a
    # training-time (random) augmentation and have no single test-time meaning.
    if isinstance(short, list):
        if len(short) != 1:
            raise bad(
                "resize.short_edge_length",
                f"must be one length at test time, got {short!r}",
            )
        short = short[0]
    if not _is_int(short) or short < 0:
        raise bad("resize.short_edge_length", f"must be an integer >= 0, got {short!r}")
    max_size = resize["max_size"]
    if max_size is not None and (not _is_int(max_size) or max_size < 1):
        raise bad("resize.max_size", f"must be a positive integer or null, got {max_size!r}")
    interp = resize["interpolation"]
    if interp not in INTERPOLATIONS:
        raise bad("resize.interpolation", f"must be one of {list(INTERPOLATIONS)}, got {interp!r}")
    return ResizeSpec(int(short), None if max_size is None else int(max_size), interp)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _get_str(data: Dict[str, Any], key: str, bad) -> str:
    if not isinstance(data[key], str):
        raise bad(key, f"must be a string, got {data[key]!r}")
    return data[key]


def _get_dict(data: Dict[str, Any], key: str, bad) -> Dict[str, Any]:
    if not isinstance(data[key], dict):
        raise bad(key, f"must be an object, got {type(data[key]).__name__}")
    return data[key]
