"""Load the GFL weights users already have: official checkpoints in mmdetection's layout
(mmdetection 1.x/2.x/3.x GFL, implus/GFocal v1, implus/GFocalV2) and torchvision ImageNet
ResNets, converted to this project's Detectron2 module names.

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

import logging
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..errors import CheckpointError

__all__ = [
    "require_weights",
    "save_checkpoint",
    "CheckpointInfo",
    "ConversionError",
    "GFLCheckpointer",
    "load_for_inference",
    "convert_state_dict",
    "detect_format",
    "load_checkpoint_file",
]

logger = logging.getLogger(__name__)


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


def require_weights(weights: str) -> str:
    """``weights`` (``train.init_checkpoint``) for predicting or evaluating: it must be given,
    and a local path must exist (URLs are fetched by the checkpointer)."""
    if not weights:
        raise CheckpointError("no weights: set train.init_checkpoint=PATH (a trained model)")
    if "://" not in weights and not os.path.isfile(weights):
        raise CheckpointError(f"train.init_checkpoint: no such file {weights!r}")
    return weights


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles containers, numbers, strings and numpy arrays only; any other global (a
    function or class that could run code) is refused."""

    _ALLOWED = {
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("_codecs", "encode"),  # how Python 2 pickles (Detectron1/Caffe2 .pkl) store bytes
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED or (
            module.startswith("numpy") and name.endswith("Dtype") and module.endswith("dtypes")
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it would load {module}.{name}")


def _not_a_checkpoint(path: str, what: str, error: Exception) -> CheckpointError:
    detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return CheckpointError(f"{path}: {what} ({detail})")


def load_checkpoint_file(path: str):
    """Load a checkpoint as data, never as code: the one loader every GFocal entry point uses.

    ``.pkl`` files (Detectron2 / Caffe2 model zoo) go through :class:`_PlainUnpickler`, everything
    else through ``torch.load(weights_only=True)``, passed explicitly so that
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off.

    Raises:
        CheckpointError: the file is missing, not a checkpoint (text, random bytes, truncated),
            or not a plain one (it would import or call something).
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: no such file {path!r}")
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            try:
                return _PlainUnpickler(f, encoding="latin1").load()
            except Exception as e:  # a refused global, truncated or random bytes
                refused = isinstance(e, pickle.UnpicklingError) and str(e).startswith("it would load")
                what = "not a plain checkpoint: refused to unpickle it" if refused else "not a pickled checkpoint"
                raise _not_a_checkpoint(path, what, e) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's weights-only unpickler names the global it refused; random bytes also end
        # in "Weights only load failed", but with no global to name.
        refused = re.search(r"GLOBAL (\S+) ", str(e))
        if refused:
            raise CheckpointError(
                f"{path}: not a plain checkpoint: refused to load it (it would load {refused.group(1)}); "
                "only tensors, numbers, strings and containers are accepted"
            ) from None
        raise _not_a_checkpoint(path, "not a PyTorch checkpoint", e) from None
    except Exception as e:  # text, random bytes, a truncated zip
        raise _not_a_checkpoint(path, "not a PyTorch checkpoint", e) from None


def _state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
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
    state = _state_dict(checkpoint)
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


class GFLCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that loads every file as data (:func:`load_checkpoint_file`), reads
    official GFL checkpoints (mmdetection layout) and torchvision ImageNet ResNets, converting
    them on the fly, and checks that the weights fit the model.

    Args:
        model, save_dir, save_to_disk, checkpointables: as DetectionCheckpointer.
        for_inference: the model will predict or evaluate with these weights, so a tensor whose
            shape does not fit (e.g. 7 classes in the file, 4 in the model) or a model tensor the
            file lacks is an error. Otherwise (training, fine-tuning) such tensors keep their
            fresh initialisation, said in one warning line.
        use_ema: with ``for_inference``, a checkpoint's moving average of the weights (its
            ``"ema"`` entry, :mod:`gfocal.engine.ema`) is loaded instead of its raw ``"model"`` weights
            when it has one.
    """

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        save_to_disk=None,
        for_inference: bool = False,
        use_ema: bool = True,
        **checkpointables,
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.for_inference = for_inference
        self.use_ema = use_ema
        self._loading = None  # the file being loaded, for messages

    def save(self, name: str, **kwargs) -> None:
        """As fvcore's ``Checkpointer.save``, but a local file is written to a temporary file and
        renamed, so that a kill at any moment leaves either the previous file or the complete new
        one; remote folders go through ``self.path_manager`` as in fvcore."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        self.logger.info(f"Saving checkpoint to {os.path.join(self.save_dir, basename)}")
        _atomic_write(os.path.join(self.save_dir, basename), lambda f: torch.save(data, f), "wb", self.path_manager)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(path, lambda f: f.write(last_filename_basename), "w", self.path_manager)

    def get_checkpoint_file(self) -> str:
        """The checkpoint ``last_checkpoint`` names; if that file is empty, names a missing or
        damaged checkpoint, the newest intact ``.pth`` in the folder (with a warning)."""
        return self._resume_file(warn=True)

    def has_checkpoint(self) -> bool:
        return super().has_checkpoint() and bool(self._resume_file(warn=False))

    def _resume_file(self, warn: bool) -> str:
        named = super().get_checkpoint_file()
        if os.path.basename(named) and _is_intact(named):
            return named
        intact = [f for f in self.get_all_checkpoint_files() if _is_intact(f)]
        fallback = max(intact, key=os.path.getmtime) if intact else ""
        if warn:
            state = "missing" if os.path.basename(named) and not os.path.exists(named) else "empty or damaged"
            logger.warning(
                f"{os.path.join(self.save_dir, 'last_checkpoint')} names {os.path.basename(named) or 'nothing'} "
                f"({state}); "
                + (
                    f"resuming from the newest intact checkpoint, {os.path.basename(fallback)}"
                    if fallback
                    else "no intact checkpoint, starting over"
                )
            )
        return fallback

    def _torch_load(self, f):  # Detectron2's path for every extension but .pkl and .pyth
        return load_checkpoint_file(f)

    def _load_file(self, filename: str):
        self._loading = filename
        if filename.endswith(".pkl"):
            return _detectron2_pkl_layout(load_checkpoint_file(filename), filename)
        if filename.endswith(".pyth"):  # pycls
            data = load_checkpoint_file(filename)
            if not isinstance(data, dict) or "model_state" not in data:
                raise CheckpointError(f"{filename}: a .pyth checkpoint (pycls) must hold 'model_state'")
            state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        loaded = super()._load_file(filename)
        if self.for_inference and isinstance(loaded.get("ema"), dict):
            if self.use_ema:
                loaded["model"] = loaded["ema"]["weights"]
            what = "its moving average (EMA)" if self.use_ema else "its raw weights (train.ema.for_inference=False)"
            updates = loaded["ema"]["updates"]
            logger.info(f"{os.path.basename(filename)}: predicting with {what}; EMA of {updates} steps")
        try:
            if detect_format(_state_dict(loaded["model"])) == "gfocal":
                return loaded
        except ConversionError:
            return loaded  # not ours to convert: the shape checks below report what does not fit
        num_classes = getattr(getattr(self.model, "head", None), "num_classes", None)
        converted, info = convert_state_dict(loaded["model"], num_classes=num_classes)
        logger.info(f"Converted {os.path.basename(filename)}: {info.summary()}")
        return {"model": converted, "__author__": "gfocal-converter"}

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        if not self.for_inference:
            return incompatible
        shapes = incompatible.incorrect_shapes
        missing = [k for k in incompatible.missing_keys if k not in {s[0] for s in shapes}]
        lines = [f"{k} {tuple(ckpt)} in the file, {tuple(model)} in the model" for k, ckpt, model in shapes[:4]]
        if missing:
            lines.append(f"{len(missing)} model tensors missing from the file, e.g. {', '.join(missing[:3])}")
        if lines:
            hint = _class_hint(shapes)
            raise CheckpointError(f"{self._loading}: the weights do not fit the model ({'; '.join(lines)}){hint}")
        return incompatible

    def _log_incompatible_keys(self, incompatible) -> None:
        if incompatible.incorrect_shapes:
            names = ", ".join(f"{k} {tuple(c)}->{tuple(m)}" for k, c, m in incompatible.incorrect_shapes)
            logger.warning(
                f"Fine-tuning from {self._loading}: {len(incompatible.incorrect_shapes)} tensors whose shapes "
                f"differ keep their fresh initialisation: {names}{_class_hint(incompatible.incorrect_shapes)}"
            )
            reshaped = {k for k, _, _ in incompatible.incorrect_shapes}
            incompatible = incompatible._replace(
                incorrect_shapes=[], missing_keys=[k for k in incompatible.missing_keys if k not in reshaped]
            )
        super()._log_incompatible_keys(incompatible)


def load_for_inference(model, weights: str, cfg=None):
    """Load ``weights`` (a path or URL) into ``model`` to predict with them: every model tensor
    must fit, and a checkpoint's moving average (EMA) is taken when it has one, unless
    ``cfg.train.ema.for_inference`` is False. Returns ``model``."""
    from ..engine.ema import ema_settings

    use_ema = ema_settings(cfg)["for_inference"] if cfg is not None else True
    GFLCheckpointer(model, for_inference=True, use_ema=use_ema).load(weights)
    return model


def save_checkpoint(checkpoint: dict, path: str) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    _atomic_write(path, lambda f: torch.save(checkpoint, f), "wb")


def _atomic_write(path: str, write, mode: str, path_manager=None) -> None:
    if "://" in path and path_manager is not None:  # a remote store: its objects appear whole on close
        with path_manager.open(path, mode) as f:
            write(f)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, mode) as f:
        write(f)
    os.replace(tmp, path)


def _is_intact(path: str) -> bool:
    """A checkpoint file that is complete: torch's zip archive has its central directory
    (written last) in place. Cheap: nothing is loaded."""
    if not os.path.isfile(path):
        return False
    return zipfile.is_zipfile(path) or (path.endswith(".pkl") and os.path.getsize(path) > 0)


def _class_hint(incorrect_shapes) -> str:
    for key, ckpt, model in incorrect_shapes:
        if key == "head.gfl_cls.weight" and ckpt[0] != model[0]:
            return f"; the file predicts {ckpt[0]} classes, the model {model[0]} (set model.num_classes={ckpt[0]})"
    return ""


def _detectron2_pkl_layout(data, filename: str) -> dict:
    """What Detectron2 does with a plain .pkl: its own model zoo format as is, a Caffe2 /
    Detectron1 file under ``model`` with name-matching heuristics."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{filename}: a .pkl checkpoint must hold a dict, not {type(data).__name__}")
    if "model" in data and "__author__" in data:
        return data
    if "blobs" in data:
        data = data["blobs"]
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
