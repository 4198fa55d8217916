"""gfocal_runtime: run an exported GFL (v1/v2) detector without torch or Detectron2.

Needs only numpy, Pillow, opencv-python and one backend (``openvino`` or ``onnxruntime``); it never
imports torch or detectron2.

API::

    from gfocal_runtime import Detector
    det = Detector("export_dir")                 # backend=None | "onnxruntime" | "openvino"
    out = det(cv2.imread("image.jpg"))           # (H, W, 3) uint8 BGR
    det.spec, det.class_names, det.backend       # parsed model.json, names, backend in use

``Detector(model_dir, backend=None, *, precision=None, num_threads=None)``: ``backend=None`` takes
the first importable of ``gfocal_runtime.backends.DEFAULT_BACKENDS`` (re-exported here);
``precision`` is "f32" (default) or, for openvino only, "bf16" (``det.precision`` says which runs).
OpenVINO compiles once with dynamic shapes and an explicit ``INFERENCE_PRECISION_HINT``;
onnxruntime uses the CPUExecutionProvider with ORT_ENABLE_ALL.

Output (numpy, in the ORIGINAL image's pixels, sorted by descending score):

* ``"boxes"`` (M, 4) float32 XYXY, ``"scores"`` (M,) float32, ``"classes"`` (M,) int64;
* with a distribution export (``with_distributions``): ``"dists"`` (M, 4, n+1) float32, the
  probabilities of each side (left, top, right, bottom) over bins 0..n, and ``"strides"`` (M,)
  float32, the bin spacing in original-image pixels (bin i = distance i * stride).

Pipeline (reproduces Detectron2 + PyTorch GFL on the CPU exactly):

1. BGR -> the model's channel order (``input.format``).
2. ``ResizeShortestEdge`` as Detectron2 at test time (its size rule; pixels by PIL).
3. float32 CHW, bottom/right padding to ``input.size_divisibility`` with ``input.pad_value``.
4. The graph: ``images`` (1, 3, Hp, Wp) -> ``scores`` (1, R, K), ``boxes`` (1, R, 4)
   [, ``dists`` (1, R, 4, n+1)], R = sum over strides s of ceil(Hp/s) * ceil(Wp/s).
5. Per level: (location, class) pairs with score > ``score_thresh``, the top ``topk_per_level``.
6. Drop non-finite boxes, clip to the resized image.
7. Class-aware NMS (``torchvision.ops.batched_nms``), the first ``max_detections``.
8. Rescale to the original image, clip, drop empty boxes (``detector_postprocess``).

The steps are plain functions in :mod:`gfocal_runtime.preprocess` and
:mod:`gfocal_runtime.postprocess`; ``model.json`` is read by :func:`gfocal_runtime.spec.load_spec`.
"""
from .backends import DEFAULT_BACKENDS
from .detector import Detector
from .postprocess import (
    batched_nms,
    clip_boxes,
    level_sizes,
    num_locations,
    postprocess_outputs,
    rescale_boxes,
    select_candidates,
)
from .preprocess import pad_to_divisible, preprocess_image, resize_image, resize_output_shape
from .spec import ExportSpec, load_spec, parse_spec

__all__ = [
    "Detector",
    "DEFAULT_BACKENDS",
    "ExportSpec",
    "load_spec",
    "parse_spec",
    "preprocess_image",
    "resize_output_shape",
    "resize_image",
    "pad_to_divisible",
    "postprocess_outputs",
    "level_sizes",
    "num_locations",
    "select_candidates",
    "clip_boxes",
    "batched_nms",
    "rescale_boxes",
]
