"""``model.json``, the description of an exported GFL detector: defined here, once.

The exporter (``gfocal.export``) fills an :class:`ExportSpec` and saves it next to the model;
the runtime loads it back, checked. Every key is required (``resize`` may be null); a missing or
bad key raises :class:`ValueError` naming the file, the key and what was expected.

Layout (``format_version`` 2)::

    format, format_version            "gfocal-export", 2
    artifact, model_file, precision   "onnx" | "torch-export", the file beside model.json, "fp32" | "int8"
    gfl_version                       1 or 2
    input_format                      channel order of the graph's input: "RGB" | "BGR"
    size_divisibility, pad_value      bottom/right padding of the input (pad_value: 3 numbers)
    resize                            test-time ResizeShortestEdge {short_edge_length, max_size,
                                      interpolation} or null
    classes, strides, reg_max         class names, level strides, n of the n+1 distribution bins
    with_distributions                whether the graph also returns "dists"
    score_thresh, topk_per_level,     post-processing as the PyTorch model does it
    nms_thresh, max_detections
    parity, source                    the export's measured differences from PyTorch, and where
                                      it came from (config, weights, overrides, calibration)
"""

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from PIL import Image

__all__ = ["ExportSpec", "ResizeSpec", "FORMAT", "FORMAT_VERSION", "INTERPOLATIONS"]

FORMAT = "gfocal-export"
FORMAT_VERSION = 2
ARTIFACTS = ("onnx", "torch-export")
PRECISIONS = ("fp32", "int8")
#: Test-time resize interpolations: name in model.json -> the PIL filter Detectron2 resizes with.
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}


def _is_int(v: Any, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_list(v: Any, item: Callable[[Any], bool], length: Optional[int] = None) -> bool:
    return isinstance(v, list) and len(v) > 0 and (length is None or len(v) == length) and all(map(item, v))


# key -> (check, what is expected): the whole contract's value rules, in one table.
_RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "artifact": (lambda v: v in ARTIFACTS, f"one of {list(ARTIFACTS)}"),
    "model_file": (lambda v: isinstance(v, str) and bool(v) and os.path.basename(v) == v, "a file name"),
    "precision": (lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)}"),
    "gfl_version": (lambda v: v in (1, 2) and not isinstance(v, bool), "1 or 2"),
    "input_format": (lambda v: v in ("RGB", "BGR"), "'RGB' or 'BGR'"),
    "size_divisibility": (lambda v: _is_int(v, 0), "an integer >= 0"),
    "pad_value": (lambda v: _is_list(v, _is_number, 3), "a list of 3 finite numbers"),
    "resize": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "classes": (lambda v: _is_list(v, lambda c: isinstance(c, str)), "a non-empty list of class names"),
    "strides": (lambda v: _is_list(v, lambda s: _is_int(s, 1)), "a non-empty list of positive integers"),
    "reg_max": (lambda v: _is_int(v, 1), "a positive integer"),
    "with_distributions": (lambda v: isinstance(v, bool), "true or false"),
    "score_thresh": (_is_number, "a finite number"),
    "topk_per_level": (lambda v: _is_int(v, 1), "a positive integer"),
    "nms_thresh": (_is_number, "a finite number"),
    "max_detections": (lambda v: _is_int(v, 1), "a positive integer"),
    "parity": (lambda v: isinstance(v, dict), "an object"),
    "source": (lambda v: isinstance(v, dict), "an object"),
}
_RESIZE_RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "short_edge_length": (lambda v: _is_int(v, 0), "an integer >= 0"),
    "max_size": (lambda v: v is None or _is_int(v, 1), "a positive integer or null"),
    "interpolation": (lambda v: v in INTERPOLATIONS, f"one of {list(INTERPOLATIONS)}"),
}


@dataclass(frozen=True)
class ResizeSpec:
    """Test-time ``ResizeShortestEdge``: ``max_size`` None means unbounded."""

    short_edge_length: int
    max_size: Optional[int]
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class ExportSpec:
    """The contents of ``model.json`` (see the module docstring for each key).

    ``path`` is where it was loaded from or saved to (not part of the file).
    """

    artifact: str
    model_file: str
    precision: str
    gfl_version: int
    input_format: str
    size_divisibility: int
    pad_value: Tuple[float, float, float]
    resize: Optional[ResizeSpec]
    classes: Tuple[str, ...]
    strides: Tuple[int, ...]
    reg_max: int
    with_distributions: bool
    score_thresh: float
    topk_per_level: int
    nms_thresh: float
    max_detections: int
    parity: Dict[str, Any] = field(default_factory=dict, compare=False)
    source: Dict[str, Any] = field(default_factory=dict, compare=False)
    path: Optional[str] = field(default=None, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def model_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path or "model.json"))

    @property
    def model_path(self) -> str:
        """Absolute path of the model file."""
        return os.path.join(self.model_dir, self.model_file)

    def to_dict(self) -> Dict[str, Any]:
        data = {"format": FORMAT, "format_version": FORMAT_VERSION}
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"})
        data["resize"] = None if self.resize is None else dataclasses.asdict(self.resize)
        for key in ("pad_value", "classes", "strides"):
            data[key] = list(data[key])
        return data

    def save(self, model_dir: str) -> "ExportSpec":
        """Write ``model_dir/model.json`` (to a temporary file, then renamed); returns the spec
        with its ``path`` set. It is checked as the runtime will read it."""
        path = os.path.join(model_dir, "model.json")
        spec = ExportSpec.from_dict(self.to_dict(), path)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(spec.to_dict(), f, indent=2)
        os.replace(path + ".tmp", path)
        return spec

    @classmethod
    def load(cls, path: str) -> "ExportSpec":
        """Read and check ``model.json`` from a model directory or the file itself."""
        json_path = os.path.join(path, "model.json") if os.path.isdir(path) else path
        if not os.path.isfile(json_path):
            raise FileNotFoundError(f"no model.json at {json_path!r}: expected a folder written by the GFocal exporter")
        with open(json_path, "r", encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{json_path}: not valid JSON ({e})") from None
        return cls.from_dict(data, json_path)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], path: str = "model.json") -> "ExportSpec":
        """Check a parsed ``model.json`` against the contract and build the spec."""
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
        # Identify the file before anything else, so that a foreign or newer file gets the clearest message.
        if data.get("format") != FORMAT:
            raise ValueError(
                f"{path}: 'format' must be {FORMAT!r}, got {data.get('format')!r}; is this a GFocal export?"
            )
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: 'format_version' is {data.get('format_version')!r}, but this gfocal_runtime reads only "
                f"format_version {FORMAT_VERSION}; export the model again with a matching GFocal version"
            )
        _check(data, _RULES, path, "")
        resize = data["resize"]
        if resize is not None:
            _check(resize, _RESIZE_RULES, path, "resize.")
            resize = ResizeSpec(**{k: resize[k] for k in _RESIZE_RULES})
        values = {k: data[k] for k in _RULES}
        values.update(
            resize=resize,
            pad_value=tuple(float(v) for v in data["pad_value"]),
            classes=tuple(data["classes"]),
            strides=tuple(data["strides"]),
            score_thresh=float(data["score_thresh"]),
            nms_thresh=float(data["nms_thresh"]),
        )
        return cls(path=path, **values)


def _check(data: Dict[str, Any], rules, path: str, prefix: str) -> None:
    for key, (ok, expected) in rules.items():
        if key not in data:
            raise ValueError(f"{path}: '{prefix}{key}' is missing (required key)")
        if not ok(data[key]):
            raise ValueError(f"{path}: '{prefix}{key}' must be {expected}, got {data[key]!r}")
