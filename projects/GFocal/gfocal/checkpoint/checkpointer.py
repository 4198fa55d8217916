"""GFLCheckpointer: Detectron2's checkpointer loading every file as data, converting official GFL
weights on the fly, checking that they fit the model, resuming training (with its moving average of
the weights) and saving atomically; and :func:`load_for_inference`."""

import logging
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..errors import CheckpointError
from .convert import ConversionError, convert_state_dict, detect_format, state_dict_of
from .safe_io import atomic_write, is_intact, load_checkpoint_file

__all__ = ["GFLCheckpointer", "load_for_inference"]

logger = logging.getLogger(__name__)


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
            ``"ema"`` entry, kept by training's EMA hook) is loaded instead of its raw ``"model"`` weights
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
        atomic_write(os.path.join(self.save_dir, basename), lambda f: torch.save(data, f), "wb", self.path_manager)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(path, lambda f: f.write(last_filename_basename), "w", self.path_manager)

    def get_checkpoint_file(self) -> str:
        """The checkpoint ``last_checkpoint`` names; if that file is empty, names a missing or
        damaged checkpoint, the newest intact ``.pth`` in the folder (with a warning)."""
        return self._resume_file(warn=True)

    def has_checkpoint(self) -> bool:
        return super().has_checkpoint() and bool(self._resume_file(warn=False))

    def _resume_file(self, warn: bool) -> str:
        named = super().get_checkpoint_file()
        if os.path.basename(named) and is_intact(named):
            return named
        intact = [f for f in self.get_all_checkpoint_files() if is_intact(f)]
        fallback = max(intact, key=os.path.getmtime) if intact else ""
        if warn:
            state = "missing" if os.path.basename(named) and not os.path.exists(named) else "empty or damaged"
            then = f"resuming from the newest intact checkpoint, {os.path.basename(fallback)}"
            logger.warning(
                f"{os.path.join(self.save_dir, 'last_checkpoint')} names {os.path.basename(named) or 'nothing'} "
                f"({state}); {then if fallback else 'no intact checkpoint, starting over'}"
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
            if detect_format(state_dict_of(loaded["model"])) == "gfocal":
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
    ema = (cfg.train.get("ema", None) or {}) if cfg is not None else {}
    GFLCheckpointer(model, for_inference=True, use_ema=ema.get("for_inference", True)).load(weights)
    return model


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
