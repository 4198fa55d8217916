"""``Detector``: an exported GFL model directory, run end to end on BGR images."""

import logging
import os
import time
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .backends import load_backend
from .postprocess import level_sizes, postprocess_outputs, select_candidates
from .preprocess import preprocess_image
from .slicing import OnceWarning, SlicingSettings, sliced_detect
from .spec import ExportSpec

logger = logging.getLogger("gfocal_runtime")

__all__ = ["Detector"]


class Detector:
    """Run an exported GFL detector on BGR images (see the package docstring for the pipeline).

    Args:
        model_dir: directory holding ``model.json`` and the model file it names.
        backend: None (the first importable of ``gfocal_runtime.backends.DEFAULT_BACKENDS``),
            "onnxruntime" or "openvino".
        precision: openvino: "f32" (default) or "bf16"; onnxruntime: only "f32".
        num_threads: the backend's intra-op thread count (None: its default).
        slicing: sliced inference for large images, e.g. ``dict(size=256, overlap=0.25,
            merge="distribution", whole_image=True, batch_size=8)`` (:mod:`.slicing`; the
            same grid and merges as the PyTorch model's ``dataloader.test.slicing``): each call
            runs the image's tiles ``batch_size`` at a time as one batch, plus the whole image.

    Attributes:
        spec: the parsed ``model.json`` (:class:`~gfocal_runtime.spec.ExportSpec`).
        class_names: the class names, indexed by the "classes" output.
        backend: the name of the backend in use.
        precision: the inference precision in use.
        slicing: the :class:`~gfocal_runtime.slicing.SlicingSettings` in use, or None.
    """

    def __init__(
        self,
        model_dir: str,
        backend: Optional[str] = None,
        *,
        precision: Optional[str] = None,
        num_threads: Optional[int] = None,
        slicing: Optional[Mapping] = None,
    ):
        self.slicing = SlicingSettings.parse(slicing)  # ValueError names a bad setting
        self._whole_only = OnceWarning(logger)
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
        if self.slicing is None:
            return self.detect_batch([image_bgr])[0]
        spec = self.spec
        return sliced_detect(
            image_bgr, self.slicing, self.detect_batch, spec.nms_thresh, spec.max_detections, self._whole_only
        )

    def detect_batch(self, images_bgr: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        """Detect objects in several images in one run of the model (images of one size; others
        run one by one). Returns one dict per image, as ``__call__`` without slicing."""
        inputs = [preprocess_image(image, self.spec) for image in images_bgr]
        if len({batch.shape for batch, _ in inputs}) > 1:
            return [self.detect_batch([image])[0] for image in images_bgr]
        outputs = self._runner(np.concatenate([batch for batch, _ in inputs]))
        input_hw = inputs[0][0].shape[2:4]
        return [
            postprocess_outputs(
                {k: v[i : i + 1] for k, v in outputs.items()}, self.spec, input_hw, image_hw, image.shape[:2]
            )
            for i, ((_, image_hw), image) in enumerate(zip(inputs, images_bgr))
        ]

    def profile(self, image_bgr: np.ndarray, repeats: int = 50) -> Dict[str, float]:
        """Median milliseconds of each stage of a batch-1 call on ``image_bgr``, each stage run
        ``repeats`` times on its own: "preprocess" (resize, channel order, padding), "model" (the
        back-end's graph: network and box decoding), "select" (score threshold and top-k per
        level), "nms" (clipping, class-wise NMS and rescaling to the image), and "total" (the
        whole call)."""
        spec = self.spec
        batch, image_hw = preprocess_image(image_bgr, spec)
        outputs = {k: v[:1] for k, v in self._runner(batch).items()}
        input_hw = batch.shape[2:4]
        sizes = [h * w for h, w in level_sizes(input_hw, spec.strides)]
        candidates = select_candidates(outputs["scores"][0], sizes, spec.score_thresh, spec.topk_per_level)
        stages = {
            "preprocess": lambda: preprocess_image(image_bgr, spec),
            "model": lambda: self._runner(batch),
            "select": lambda: select_candidates(outputs["scores"][0], sizes, spec.score_thresh, spec.topk_per_level),
            "nms": lambda: postprocess_outputs(outputs, spec, input_hw, image_hw, image_bgr.shape[:2], candidates),
            "total": lambda: self.detect_batch([image_bgr]),
        }
        timings = {}
        for name, stage in stages.items():
            stage()  # warm-up
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                stage()
                runs.append(time.perf_counter() - start)
            timings[name] = 1000 * float(np.median(runs))
        return timings

    def __repr__(self) -> str:
        return (
            f"Detector({self.spec.model_dir!r}, backend={self.backend!r}, "
            f"precision={self.precision!r}, classes={len(self.class_names)}"
            + (f", slicing={self.slicing}" if self.slicing else "")
            + ")"
        )
