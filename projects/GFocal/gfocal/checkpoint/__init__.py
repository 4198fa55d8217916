"""Weights: safe checkpoint loading and saving, the conversion of official GFL checkpoints
(mmdetection, implus/GFocal, implus/GFocalV2) and torchvision ResNets, and
:class:`GFLCheckpointer` (Detectron2's checkpointer with both)."""

from .gfl_checkpoint import (
    CheckpointInfo,
    ConversionError,
    GFLCheckpointer,
    convert_state_dict,
    detect_format,
    load_checkpoint_file,
    load_for_inference,
    require_weights,
    save_checkpoint,
)

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
