"""Deployment: the exportable graph of a GFL and its export to ONNX (fp32, int8) or
torch.export, read by the torch-free runtime ``gfocal_runtime``.

- :mod:`.exporter`: :class:`GFLExportModule` (pixels in, dense scores, boxes and distributions
  out), ``export_model`` (and ``export_unless_exported``) and the ``model.json`` it writes;
- :mod:`.deployment`: the deployment paths of a trained model by name (eager, optimised eager,
  the export on ONNX Runtime and OpenVINO), for the tools that compare them;
- :mod:`.quantize`: static int8 quantisation (ONNX QDQ) and its calibration images (imported on
  use: it needs onnxruntime).
"""

from .deployment import DEPLOYMENT_PATHS, deployment_paths
from .exporter import (
    FORMATS,
    GFLExportModule,
    check_export,
    export_model,
    export_onnx,
    export_spec,
    export_torch_program,
    export_unless_exported,
    load_model,
)

__all__ = [
    "DEPLOYMENT_PATHS",
    "FORMATS",
    "GFLExportModule",
    "check_export",
    "deployment_paths",
    "export_model",
    "export_onnx",
    "export_spec",
    "export_torch_program",
    "export_unless_exported",
    "load_model",
]
