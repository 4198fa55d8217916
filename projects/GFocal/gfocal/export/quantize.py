"""Static int8 quantisation of an exported GFL (ONNX, QDQ) and its calibration images."""

import contextlib
import io
import logging
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import cv2
import numpy as np

from detectron2.data import DatasetCatalog

from gfocal_runtime.preprocess import preprocess_image
from gfocal_runtime.spec import ExportSpec

from ..data import first_dataset_name
from ..errors import ConfigError

__all__ = [
    "INT8_DEFAULTS",
    "calibration_files",
    "calibration_inputs",
    "float_convolutions",
    "int8_settings",
    "quantize_int8",
]

logger = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def calibration_files(cfg, source) -> List[str]:
    """The calibration images, checked before any export work: every file is decoded once, an
    unreadable one is skipped with a warning.

    Args:
        source: N (a positive integer or its string: N images spread over the config's training
            set) or a folder of images.

    Raises:
        ConfigError: not a positive number nor a folder, or no readable image.
    """
    text = str(source)
    if text.isdigit():
        count = int(text)
        if count < 1:
            raise ConfigError(f"--calib-images must be at least 1, got {count}")
        records = DatasetCatalog.get(first_dataset_name(cfg.dataloader.train.dataset.names))
        step = max(len(records) // count, 1)  # spread over the set, not its first images
        files = [r["file_name"] for r in records[::step][:count]]
    elif os.path.isdir(text):
        files = sorted(os.path.join(text, f) for f in os.listdir(text) if f.lower().endswith(IMAGE_EXTS))
    else:
        raise ConfigError(f"--calib-images {text!r} is neither a positive number (of training images) nor a folder")
    readable = []
    for path in files:
        if cv2.imread(path, cv2.IMREAD_COLOR) is None:
            logger.warning(f"calibration: skipped {path} (not a readable image)")
        else:
            readable.append(path)
    if not readable:
        raise ConfigError(f"--calib-images {text}: no readable image (looked for {', '.join(IMAGE_EXTS)} files)")
    return readable


def calibration_inputs(files: Sequence[str], spec: ExportSpec) -> Iterator[np.ndarray]:
    """(1, 3, H, W) float32 network inputs of ``files``, prepared exactly as the runtime
    prepares images (one at a time: a COCO-sized set does not fit in memory at once)."""
    for path in files:
        yield preprocess_image(cv2.imread(path, cv2.IMREAD_COLOR), spec)[0]


@contextlib.contextmanager
def _quiet_root_logger(prefix: str):
    """Drop the root-logger messages starting with ``prefix`` for the duration (onnxruntime's
    quantiser logs advice through ``logging.warning``, which would also give the root logger a
    console handler for the rest of the process)."""
    root = logging.getLogger()
    guard = logging.NullHandler()

    def quiet(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(prefix)

    root.addHandler(guard)
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        root.removeHandler(guard)


# ``export.int8`` of a config (all keys optional): how :func:`quantize_int8` quantises its model.
INT8_DEFAULTS = dict(
    keep_float=["reg_conf"],  # convolutions whose weight names contain one of these stay float
    float_stem=False,  # the convolutions the input reaches through no other convolution stay float
    float_depthwise=False,  # depthwise convolutions (groups = input channels > 1) stay float
    calibration="minmax",  # or "percentile": each activation's range clipped to `percentile`
    percentile=99.999,
)


def int8_settings(cfg) -> Dict[str, object]:
    """The config's ``export.int8`` over :data:`INT8_DEFAULTS`; an unknown key or value is a ConfigError."""
    given = dict(cfg.get("export", {}).get("int8", {}) or {}) if "export" in cfg else {}
    unknown = sorted(set(given) - set(INT8_DEFAULTS))
    if unknown:
        raise ConfigError(f"export.int8: unknown {', '.join(unknown)}; expected some of {', '.join(INT8_DEFAULTS)}")
    settings = dict(INT8_DEFAULTS, **given)
    if settings["calibration"] not in ("minmax", "percentile"):
        raise ConfigError(f"export.int8.calibration must be 'minmax' or 'percentile', got {settings['calibration']!r}")
    try:
        in_range = 90.0 <= float(settings["percentile"]) <= 100.0
    except (TypeError, ValueError):
        in_range = False
    if not in_range:
        raise ConfigError(f"export.int8.percentile must be a number in [90, 100], got {settings['percentile']}")
    settings["keep_float"] = [str(k) for k in settings["keep_float"]]
    return settings


def float_convolutions(graph, settings: Dict[str, object]) -> List[str]:
    """Names of the Conv nodes of an ONNX ``graph`` that ``settings`` (:func:`int8_settings`) keep float."""
    convs = [n for n in graph.node if n.op_type == "Conv"]
    weights = {i.name: i for i in graph.initializer}
    # The stem: the convolutions the input reaches through no other convolution (normalisation,
    # padding and casts are not convolutions).
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    stem, seen, frontier = set(), set(), [i.name for i in graph.input]
    while frontier:
        for node in readers.get(frontier.pop(), []):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "Conv":
                stem.add(node.name)
            else:
                frontier.extend(node.output)

    def depthwise(node) -> bool:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = weights.get(node.input[1])
        return group > 1 and weight is not None and weight.dims[1] == 1  # one input channel per filter

    keep = []
    for node in convs:
        if (
            any(k in name for name in node.input for k in settings["keep_float"])
            or (settings["float_stem"] and node.name in stem)
            or (settings["float_depthwise"] and depthwise(node))
        ):
            keep.append(node.name)
    return keep


def quantize_int8(
    fp32_path: str,
    int8_path: str,
    calibration: Iterable[np.ndarray],
    settings: Optional[Dict[str, object]] = None,
) -> Dict[str, object]:
    """Static int8 quantisation of an exported ONNX model as QDQ (runs on ONNX Runtime and
    OpenVINO), calibrated on ``calibration`` inputs ((1, 3, H, W) float32 as the runtime
    prepares them).

    Only convolutions are quantised (weights per channel, int8; activations uint8). Everything
    after the last convolutions (sigmoid, the DFL softmax and integral, box decoding) stays
    float32, as do the convolutions ``settings`` keep float (:data:`INT8_DEFAULTS`: GFL v2's
    DGQP; a config's ``export.int8`` may add the stem, the depthwise convolutions and name
    patterns such as the head's output convolutions, and calibrate by percentile).

    Returns:
        a summary for model.json: method, counts of quantised and float convolutions.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, batches):
            self._feeds = ({"images": batch} for batch in batches)

        def get_next(self):
            return next(self._feeds, None)

    settings = dict(INT8_DEFAULTS, **(settings or {}))
    graph = onnx.load(fp32_path, load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    excluded = float_convolutions(graph, settings)
    percentile = settings["calibration"] == "percentile"
    # (the percentile calibrator prints its progress to stdout)
    with _quiet_root_logger("Please consider"), contextlib.redirect_stdout(io.StringIO()):
        quantize_static(
            fp32_path,
            int8_path,
            Reader(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile if percentile else CalibrationMethod.MinMax,
            extra_options={"CalibPercentile": float(settings["percentile"])} if percentile else {},
        )
    method = f"percentile {settings['percentile']}" if percentile else "min-max"
    return {
        "method": f"onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, {method}",
        "quantized_convs": len(convs) - len(excluded),
        "float_convs": len(excluded),
        "settings": settings,
    }
