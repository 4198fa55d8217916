"""Weights, as Detectron2's ``checkpoint`` holds them:

- :mod:`.safe_io`: checkpoint files read as data (never as code) and written atomically;
- :mod:`.convert`: the conversion of official GFL checkpoints (mmdetection, implus/GFocal,
  implus/GFocalV2) and torchvision ResNets to this project's names;
- :mod:`.checkpointer`: :class:`GFLCheckpointer` (Detectron2's checkpointer with both, resuming
  training with its moving average) and :func:`load_for_inference`.
"""

from .checkpointer import GFLCheckpointer, load_for_inference
from .convert import CheckpointInfo, ConversionError, convert_state_dict, detect_format
from .safe_io import load_checkpoint_file, require_weights, save_checkpoint

__all__ = [
    "CheckpointInfo",
    "ConversionError",
    "GFLCheckpointer",
    "convert_state_dict",
    "detect_format",
    "load_checkpoint_file",
    "load_for_inference",
    "require_weights",
    "save_checkpoint",
]
