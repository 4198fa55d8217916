"""The deployment paths of a trained GFL, by name: the ways one model runs on an image (eager,
inference-optimised eager, the export on ONNX Runtime or OpenVINO in fp32, bf16 or int8), for
the tools that compare them."""

import os
from typing import Callable, Dict, Sequence

from ..engine.predictor import LazyPredictor, instances_from_runtime
from .exporter import export_unless_exported

__all__ = ["DEPLOYMENT_PATHS", "deployment_paths"]

DEPLOYMENT_PATHS = {  # name -> label; a name is "<backend>-<precision>", "gfl" the PyTorch model
    "gfl-eager": "GFL eager",
    "gfl-optimized": "GFL optimised eager",
    "onnxruntime-fp32": "GFL ONNX Runtime fp32",
    "openvino-fp32": "GFL OpenVINO fp32",
    "openvino-bf16": "GFL OpenVINO bf16",
    "onnxruntime-int8": "GFL ONNX Runtime int8",
    "openvino-int8": "GFL OpenVINO int8",
}


def deployment_paths(cfg, model, export_root: str, calib, paths: Sequence[str]) -> Dict[str, Callable]:
    """Each of ``paths`` (:data:`DEPLOYMENT_PATHS` names) of ``model`` (built from ``cfg``, weights
    loaded) as a callable from a BGR image to its ``Instances``. The exported paths share
    ``<export_root>/fp32`` and ``<export_root>/int8`` (calibrated on ``calib``: N training images
    or a folder), each exported once."""
    from gfocal_runtime import Detector

    runs = {}
    for name in paths:
        backend, _, precision = name.partition("-")
        if backend == "gfl":
            predictor = LazyPredictor(cfg, model=model, optimize=precision == "optimized")
            runs[name] = lambda image, p=predictor: p(image)["instances"]
            continue
        folder = os.path.join(export_root, "int8" if precision == "int8" else "fp32")
        export_unless_exported(cfg, folder, model, int8=precision == "int8", calib_images=calib)
        detector = Detector(folder, backend=backend, precision="bf16" if precision == "bf16" else None)
        runs[name] = lambda image, d=detector: instances_from_runtime(d(image), image.shape[:2])
    return runs
