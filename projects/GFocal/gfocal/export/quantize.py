"""Static int8 quantisation of an exported GFL (ONNX, QDQ) and its calibration images."""

import contextlib
import logging
import os
from typing import Dict, Iterable, Iterator, List, Sequence

import cv2
import numpy as np

from detectron2.data import DatasetCatalog

from gfocal_runtime.preprocess import preprocess_image
from gfocal_runtime.spec import ExportSpec

from ..data import first_dataset_name
from ..errors import ConfigError

__all__ = ["calibration_files", "calibration_inputs", "quantize_int8"]

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


def quantize_int8(
    fp32_path: str,
    int8_path: str,
    calibration: Iterable[np.ndarray],
    keep_float: Sequence[str] = ("reg_conf",),
) -> Dict[str, object]:
    """Static int8 quantisation of an exported ONNX model as QDQ (runs on ONNX Runtime and
    OpenVINO), calibrated on ``calibration`` inputs ((1, 3, H, W) float32 as the runtime
    prepares them).

    Only convolutions are quantised (weights per channel, int8; activations uint8, min-max
    calibrated). Everything after the last convolutions (sigmoid, the DFL softmax and integral,
    box decoding) stays float32, as do the convolutions whose weight names contain one of
    ``keep_float`` (GFL v2's DGQP by default).

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

    graph = onnx.load(fp32_path, load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    excluded = [n.name for n in convs if any(k in name for name in n.input for k in keep_float)]
    with _quiet_root_logger("Please consider"):
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
            calibrate_method=CalibrationMethod.MinMax,
        )
    return {
        "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, min-max",
        "quantized_convs": len(convs) - len(excluded),
        "float_convs": len(excluded),
    }
