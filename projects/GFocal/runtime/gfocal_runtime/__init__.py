"""gfocal_runtime: run an exported GFL (v1/v2) detector without torch or Detectron2.

Its own distribution (``pip install "./projects/GFocal/runtime[onnxruntime]"`` or ``[openvino]``):
numpy, opencv-python, Pillow and one back-end; it never imports torch or detectron2.

    from gfocal_runtime import Detector
    det = Detector("export_dir")                 # backend=None | "onnxruntime" | "openvino"
    out = det(cv2.imread("image.jpg"))           # (H, W, 3) uint8 BGR
    out["boxes"], out["scores"], out["classes"]  # (M, 4) XYXY, (M,), (M,) in the original pixels

``Detector(model_dir, backend=None, *, precision=None, num_threads=None)``: ``backend=None`` takes
the first importable of :data:`DEFAULT_BACKENDS`; ``precision`` is "f32" (default) or, for
OpenVINO only, "bf16". With a distribution export the output also has ``"dists"`` (M, 4, n+1),
the probabilities of each side (left, top, right, bottom) over bins 0..n, and ``"strides"`` (M,),
the bin spacing in original-image pixels.

The pipeline reproduces Detectron2 + PyTorch GFL on the CPU exactly: BGR -> the model's channel
order, Detectron2's ``ResizeShortestEdge`` (:mod:`.preprocess`), padding, the graph, then per
level the (location, class) pairs above the threshold and their top-k, clipping, class-aware NMS
as torchvision's, and rescaling as ``detector_postprocess`` (:mod:`.postprocess`). ``model.json``
is :class:`ExportSpec` (:mod:`.spec`).
"""

from .backends import DEFAULT_BACKENDS
from .detector import Detector
from .spec import ExportSpec

__all__ = ["Detector", "DEFAULT_BACKENDS", "ExportSpec"]
