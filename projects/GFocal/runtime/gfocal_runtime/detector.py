"""``Detector``: an exported GFL model directory, run end to end on BGR images."""

import os
from typing import Dict, Optional, Tuple

import numpy as np

from .backends import load_backend
from .postprocess import postprocess_outputs
from .preprocess import preprocess_image
from .spec import ExportSpec

__all__ = ["Detector"]


class Detector:
    """Run an exported GFL detector on BGR images (see the package docstring for the pipeline).

    Args:
        model_dir: directory holding ``model.json`` and the model file it names.
        backend: None (the first importable of ``gfocal_runtime.backends.DEFAULT_BACKENDS``),
            "onnxruntime" or "openvino".
        precision: openvino: "f32" (default) or "bf16"; onnxruntime: only "f32".
        num_threads: the backend's intra-op thread count (None: its default).

    Attributes:
        spec: the parsed ``model.json`` (:class:`~gfocal_runtime.spec.ExportSpec`).
        class_names: the class names, indexed by the "classes" output.
        backend: the name of the backend in use.
        precision: the inference precision in use.
    """

    def __init__(
        self,
        model_dir: str,
        backend: Optional[str] = None,
        *,
        precision: Optional[str] = None,
        num_threads: Optional[int] = None,
    ):
        self.spec = ExportSpec.load(model_dir)
        if self.spec.artifact != "onnx":
            raise ValueError(
                f"{self.spec.path}: the artifact is {self.spec.artifact!r} ({self.spec.model_file}); gfocal_runtime "
                "runs ONNX models only (a torch.export program needs torch): export again with --format onnx"
            )
        model_path = self.spec.model_path
        if not os.path.isfile(model_path):
            raise FileNotFoundError(
                f"{self.spec.path}: 'model_file' names {self.spec.model_file!r}, which is not in {self.spec.model_dir}"
            )
        self._runner = load_backend(backend, model_path, precision=precision, num_threads=num_threads)
        self.backend: str = self._runner.name
        self.precision: str = self._runner.precision
        self.class_names: Tuple[str, ...] = self.spec.classes

    def __call__(self, image_bgr: np.ndarray) -> Dict[str, np.ndarray]:
        """Detect objects in one image.

        Args:
            image_bgr: (H, W, 3) uint8 BGR image (as ``cv2.imread`` gives).

        Returns:
            "boxes" (M, 4) float32 XYXY, "scores" (M,) float32, "classes" (M,) int64 in the
            original image's pixels, by descending score; with distributions also "dists"
            (M, 4, n+1) float32 and "strides" (M,) float32 (bin spacing in original pixels).
        """
        batch, image_hw = preprocess_image(image_bgr, self.spec)
        outputs = self._runner(batch)
        return postprocess_outputs(outputs, self.spec, batch.shape[2:4], image_hw, tuple(image_bgr.shape[:2]))

    def __repr__(self) -> str:
        return (
            f"Detector({self.spec.model_dir!r}, backend={self.backend!r}, "
            f"precision={self.precision!r}, classes={len(self.class_names)})"
        )
