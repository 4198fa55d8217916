"""Deployment: the exportable graph of a GFL and its export to ONNX (fp32, int8) or
torch.export, read by the torch-free runtime ``gfocal_runtime``.

- :mod:`.exporter`: :class:`GFLExportModule` (pixels in, dense scores, boxes and distributions
  out), ``export_model`` and the ``model.json`` it writes;
- :mod:`.quantize`: static int8 quantisation (ONNX QDQ) and its calibration images (imported on
  use: it needs onnxruntime).
"""

from .exporter import (
    FORMATS,
    GFLExportModule,
    check_export,
    export_model,
    export_onnx,
    export_spec,
    export_torch_program,
)

__all__ = [
    "FORMATS",
    "GFLExportModule",
    "check_export",
    "export_model",
    "export_onnx",
    "export_spec",
    "export_torch_program",
]
