"""gfocal_runtime: run an exported GFL (v1/v2) detector without torch or Detectron2.

A distribution of its own (``pip install "./projects/GFocal/runtime[onnxruntime]"`` or
``[openvino]``): numpy, opencv-python, Pillow and one back-end; it never imports torch.

    from gfocal_runtime import Detector
    det = Detector("export_dir")                 # backend=None | "onnxruntime" | "openvino"
    out = det(cv2.imread("image.jpg"))           # (H, W, 3) uint8 BGR
    out["boxes"], out["scores"], out["classes"]  # (M, 4) XYXY, (M,), (M,) in the original pixels

It reproduces Detectron2 + PyTorch GFL on the CPU exactly: :mod:`.preprocess` (Detectron2's
resize and padding), the graph, :mod:`.postprocess` (selection, NMS and rescaling as the model);
``model.json`` is :class:`ExportSpec` (:mod:`.spec`).
"""

from .backends import DEFAULT_BACKENDS
from .detector import Detector
from .spec import ExportSpec

__all__ = ["Detector", "DEFAULT_BACKENDS", "ExportSpec"]

# The one version number of GFocal: gfocal, gfocal_runtime and both distributions.
__version__ = "0.4.0"
