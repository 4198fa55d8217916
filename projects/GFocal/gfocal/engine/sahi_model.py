"""SAHI compatibility for PyTorch models: :class:`GFocalDetectionModel` runs a checkpoint with its
lazy config (or a :class:`~gfocal.engine.predictor.LazyPredictor`) under sahi, on any device.

    from gfocal.engine.sahi_model import GFocalDetectionModel
    model = GFocalDetectionModel(model_path="model_final.pth", config_path="configs/Quickstart/gfl_shapes_large.py")
    result = sahi.predict.get_sliced_prediction("image.jpg", model, slice_height=256, slice_width=256)

It extends the runtime's adapter (:mod:`gfocal_runtime.sahi_model`: exported folders and
``gfocal_runtime.Detector``, which it still accepts); sahi is installed as that module says.
"""

import os
from typing import Any, Dict, List

import numpy as np
import torch

from gfocal_runtime import Detector
from gfocal_runtime.sahi_model import GFocalDetectionModel as ExportedDetectionModel

from ..config import load_config
from ..modeling import GFLWithSlicing
from ..modeling.slicing import numpy_detections
from .predictor import LazyPredictor

__all__ = ["GFocalDetectionModel"]


class GFocalDetectionModel(ExportedDetectionModel):
    """sahi's DetectionModel for a GFocal checkpoint (``model_path`` + ``config_path``, on
    ``device`` "cpu", "cuda", ...) or a ``LazyPredictor`` (``model=``), besides the runtime
    adapter's exported folders and ``gfocal_runtime.Detector``."""

    def load_model(self) -> None:
        path = self.model_path
        if path is None or os.path.isdir(path):
            return super().load_model()
        if self.config_path is None:
            raise ValueError(
                f"GFocalDetectionModel: model_path={path!r} is not an exported model folder; a PyTorch checkpoint "
                "needs config_path (its lazy config)"
            )
        device = self._requested_device or "cpu"
        cfg = load_config(self.config_path, [f"train.device={device.split(':')[0]}"])
        # sahi slices and merges: the model runs each slice as it comes, unsliced.
        self.set_model(LazyPredictor(cfg, weights=path, device=device, slicing=dict(enabled=False)))

    def _class_names(self, model: Any) -> List[str]:
        if isinstance(model, Detector):
            return super()._class_names(model)
        if not isinstance(model, LazyPredictor):
            raise ValueError(
                "GFocalDetectionModel: model must be a gfocal_runtime.Detector or a gfocal LazyPredictor, "
                f"got {type(model).__name__}"
            )
        if isinstance(model.model, GFLWithSlicing):
            raise ValueError("GFocalDetectionModel: give a LazyPredictor with slicing=dict(enabled=False)")
        return list(model.metadata.get("thing_classes", []))

    def _detect_bgr(self, images_bgr: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        if not isinstance(self.model, LazyPredictor):
            return super()._detect_bgr(images_bgr)
        predictor = self.model
        with torch.inference_mode():
            outputs = predictor.model([predictor.preprocess(image) for image in images_bgr])
        return [numpy_detections(out["instances"]) for out in outputs]
