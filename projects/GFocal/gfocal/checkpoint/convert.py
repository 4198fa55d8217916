"""Conversion of the GFL weights users already have to this project's Detectron2 module names:
official checkpoints in mmdetection's layout (mmdetection 1.x/2.x/3.x GFL, implus/GFocal v1,
implus/GFocalV2) and torchvision ImageNet ResNets.

Name map (mmdetection -> GFocal):

    backbone.conv1 / bn1                    backbone.bottom_up.stem.conv1 / .norm
    backbone.layer{L}.{i}.conv{k} / bn{k}   backbone.bottom_up.res{L+1}.{i}.conv{k} / .norm
    backbone.layer{L}.{i}.downsample.0 / 1  backbone.bottom_up.res{L+1}.{i}.shortcut / .norm
    ...conv2.conv_offset (2.x/3.x DCN)      ...conv2_offset      (18 ch: DCN v1, 27: modulated)
    ...conv2_offset      (1.x DCN)          ...conv2_offset
    neck.lateral_convs.{j}.conv             backbone.fpn_lateral{j+3}
    neck.fpn_convs.{j}.conv (j < 3)         backbone.fpn_output{j+3}
    neck.fpn_convs.3 / 4 .conv              backbone.top_block.p6 / p7
    bbox_head.{cls,reg}_convs.{i}.conv / gn head.{cls,reg}_convs.{i} / .norm
    bbox_head.gfl_cls / gfl_reg / scales / reg_conf   head.gfl_cls / gfl_reg / scales / reg_conf
"""

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from ..errors import CheckpointError

__all__ = ["CheckpointInfo", "ConversionError", "convert_state_dict", "detect_format", "state_dict_of"]


class ConversionError(CheckpointError):
    """The checkpoint is not one this converter understands."""


@dataclass
class CheckpointInfo:
    """What the converter found in a checkpoint."""

    source: str  # "mmdet-gfl", "torchvision-resnet" or "gfocal"
    mmdet_version: Optional[str] = None
    num_classes: Optional[int] = None
    reg_max: Optional[int] = None
    dgqp: bool = False
    depth: Optional[int] = None
    groups: int = 1
    deform_stages: List[str] = field(default_factory=list)
    deform_modulated: Optional[bool] = None
    class_offset: int = 0
    dropped: List[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [self.source]
        if self.mmdet_version:
            parts.append(f"mmdet {self.mmdet_version}")
        if self.depth:
            arch = f"ResNe{'X' if self.groups > 1 else 't'}-{self.depth}"
            parts.append(arch + (f" {self.groups} groups" if self.groups > 1 else ""))
        if self.deform_stages:
            kind = "modulated DCN v2" if self.deform_modulated else "DCN v1"
            parts.append(f"{kind} on {','.join(self.deform_stages)}")
        if self.num_classes is not None:
            parts.append(
                f"{self.num_classes} classes, reg_max {self.reg_max}, {'GFL v2 (DGQP)' if self.dgqp else 'GFL v1'}"
            )
        if self.class_offset:
            parts.append("background output dropped (mmdet 1.x layout)")
        return "; ".join(parts)


def state_dict_of(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint (under ``state_dict`` or ``model`` when it has one),
    without a DataParallel ``module.`` prefix."""
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"expected a dict checkpoint, got {type(checkpoint).__name__}")
    for key in ("state_dict", "model"):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
            break
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConversionError("no tensors found in the checkpoint")
    # DataParallel / DDP prefixes
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def detect_format(state: Dict[str, torch.Tensor]) -> str:
    """ "mmdet-gfl", "torchvision-resnet" or "gfocal"; anything else raises ConversionError."""
    if "bbox_head.gfl_cls.weight" in state and "bbox_head.gfl_reg.weight" in state:
        return "mmdet-gfl"
    if "head.gfl_cls.weight" in state and "backbone.bottom_up.stem.conv1.weight" in state:
        return "gfocal"
    if "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        return "torchvision-resnet"
    heads = sorted({k.split(".")[0] for k in state})[:8]
    hint = ""
    if "bbox_head.atss_cls.weight" in state or "bbox_head.retina_cls.weight" in state:
        hint = " (an ATSS/RetinaNet head, not GFL)"
    elif any(k.startswith("roi_head") for k in state):
        hint = " (a two-stage detector, not GFL)"
    raise ConversionError(
        f"not a GFL checkpoint{hint}: expected bbox_head.gfl_cls / bbox_head.gfl_reg (mmdetection GFL), "
        f"or conv1 / layer1.* (torchvision ResNet); top-level names found: {heads}"
    )


def _convert_backbone_key(key: str) -> Optional[str]:
    """torchvision/mmdetection ResNet key -> Detectron2 ResNet key (under bottom_up), or None
    for keys that have no counterpart (num_batches_tracked, fc)."""
    if key.endswith("num_batches_tracked") or key.startswith("fc."):
        return None
    if key == "conv1.weight":
        return "stem.conv1.weight"
    m = re.match(r"^bn1\.(weight|bias|running_mean|running_var)$", key)
    if m:
        return f"stem.conv1.norm.{m.group(1)}"
    m = re.match(r"^layer(\d)\.(\d+)\.(.+)$", key)
    if not m:
        raise ConversionError(f"unexpected backbone key {key!r}")
    stage, block, rest = int(m.group(1)) + 1, m.group(2), m.group(3)
    prefix = f"res{stage}.{block}."
    patterns = [
        (r"^conv(\d)\.weight$", r"conv\1.weight"),
        (r"^bn(\d)\.(weight|bias|running_mean|running_var)$", r"conv\1.norm.\2"),
        (r"^downsample\.0\.weight$", "shortcut.weight"),
        (r"^downsample\.1\.(weight|bias|running_mean|running_var)$", r"shortcut.norm.\1"),
        (r"^conv2(\.conv_offset|_offset)\.(weight|bias)$", r"conv2_offset.\2"),  # DCN: mmdet 2.x/3.x, 1.x
    ]
    for pattern, repl in patterns:
        if re.match(pattern, rest):
            return prefix + re.sub(pattern, repl, rest)
    raise ConversionError(f"unexpected backbone key {key!r}")


def _convert_neck_key(key: str) -> str:
    m = re.match(r"^(lateral|fpn)_convs\.(\d)\.conv\.(weight|bias)$", key)
    if not m:
        raise ConversionError(f"unexpected FPN key neck.{key!r} (expected mmdetection FPN names)")
    kind, j, param = m.group(1), int(m.group(2)), m.group(3)
    if kind == "lateral":
        if j > 2:
            raise ConversionError(f"neck.{key}: GFL's FPN has 3 lateral convs (C3-C5)")
        return f"fpn_lateral{j + 3}.{param}"
    if j < 3:
        return f"fpn_output{j + 3}.{param}"
    if j in (3, 4):
        return f"top_block.{'p6' if j == 3 else 'p7'}.{param}"
    raise ConversionError(f"neck.{key}: GFL's FPN has 5 output convs (P3-P7)")


def _convert_head_key(key: str) -> Optional[str]:
    if key.endswith(".project"):  # integral.project, distribution_project.project: fixed, not learned
        return None
    m = re.match(r"^(cls|reg)_convs\.(\d+)\.(conv|gn)\.(weight|bias)$", key)
    if m:
        branch, i, kind, param = m.groups()
        return f"{branch}_convs.{i}.{'norm.' if kind == 'gn' else ''}{param}"
    if re.match(r"^(gfl_cls|gfl_reg|reg_conf\.[02])\.(weight|bias)$|^scales\.\d+\.scale$", key):
        return key
    raise ConversionError(f"unexpected head key bbox_head.{key!r}")


def _describe_backbone(state: Dict[str, torch.Tensor], prefix: str, info: CheckpointInfo) -> None:
    blocks = {}
    for k in state:
        m = re.match(rf"^{re.escape(prefix)}layer(\d)\.(\d+)\.conv1\.weight$", k)
        if m:
            blocks[int(m.group(1))] = max(blocks.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    depth_by_blocks = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152, (2, 2, 2, 2): 18}
    layout = tuple(blocks.get(i, 0) for i in range(1, 5))
    info.depth = depth_by_blocks.get(layout)
    if layout == (3, 4, 6, 3) and f"{prefix}layer1.0.conv3.weight" not in state:
        info.depth = 34
    conv2 = state.get(f"{prefix}layer1.0.conv2.weight")
    if conv2 is not None and f"{prefix}layer1.0.conv3.weight" in state:
        info.groups = conv2.shape[0] // conv2.shape[1]
    stages, modulated = set(), set()
    for k, v in state.items():
        m = re.match(rf"^{re.escape(prefix)}layer(\d)\.\d+\.(conv2\.conv_offset|conv2_offset)\.weight$", k)
        if m:
            stages.add(f"res{int(m.group(1)) + 1}")
            modulated.add(v.shape[0] % 27 == 0 and v.shape[0] % 18 != 0)
    info.deform_stages = sorted(stages)
    if modulated:
        if len(modulated) > 1:
            raise ConversionError("the checkpoint mixes DCN v1 and modulated DCN v2 offsets")
        info.deform_modulated = modulated.pop()


# mmdetection's top-level module -> (key converter, GFocal prefix)
_PARTS = {
    "backbone": (_convert_backbone_key, "backbone.bottom_up."),
    "neck": (_convert_neck_key, "backbone."),
    "bbox_head": (_convert_head_key, "head."),
}


def convert_state_dict(
    checkpoint: dict, num_classes: Optional[int] = None
) -> Tuple["OrderedDict[str, torch.Tensor]", CheckpointInfo]:
    """Convert a loaded checkpoint (any supported source) to GFocal names.

    Args:
        checkpoint: what ``torch.load`` returned.
        num_classes: the classes the target model predicts; a class branch with one more output
            (mmdetection 1.x softmax-style layout, background first) loses that output, so that
            class c of the result is class c of the dataset. None: infer.

    Returns:
        (state dict with GFocal names, CheckpointInfo).
    """
    state = state_dict_of(checkpoint)
    source = detect_format(state)
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
    info = CheckpointInfo(source=source, mmdet_version=(meta or {}).get("mmdet_version"))
    if source == "gfocal":
        return OrderedDict(state), info

    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    mmdet = source == "mmdet-gfl"
    _describe_backbone(state, "backbone." if mmdet else "", info)
    for k, v in state.items():
        part, dot, rest = k.partition(".") if mmdet else ("backbone", ".", k)
        if not dot or part not in _PARTS:
            raise ConversionError(f"unexpected key {k!r}: expected backbone.*, neck.* or bbox_head.*")
        convert, prefix = _PARTS[part]
        new = convert(rest)
        if new is None:
            info.dropped.append(k)
        else:
            out[prefix + new] = v
    if not mmdet:
        return out, info

    reg_channels = out["head.gfl_reg.weight"].shape[0]
    if reg_channels % 4:
        raise ConversionError(f"bbox_head.gfl_reg has {reg_channels} outputs, not 4 * (reg_max + 1)")
    info.reg_max = reg_channels // 4 - 1
    info.dgqp = "head.reg_conf.0.weight" in out
    cls_channels = out["head.gfl_cls.weight"].shape[0]
    if num_classes is not None and cls_channels == num_classes + 1:
        info.class_offset = 1
    elif num_classes is not None and cls_channels != num_classes:
        raise ConversionError(
            f"the checkpoint predicts {cls_channels} classes, the model {num_classes} "
            f"(set model.num_classes={cls_channels})"
        )
    elif num_classes is None and str(info.mmdet_version or "").startswith("1.") and cls_channels == 81:
        info.class_offset = 1
    if info.class_offset:
        out["head.gfl_cls.weight"] = out["head.gfl_cls.weight"][1:]
        out["head.gfl_cls.bias"] = out["head.gfl_cls.bias"][1:]
    info.num_classes = cls_channels - info.class_offset
    return out, info
