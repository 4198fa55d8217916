"""Milder augmentations for the last part of training (YOLOX's and Ultralytics' "close mosaic"):
strong augmentation helps while a model is far from converged and hurts its last epochs, which
should see images as they are tested.

A config opts in with ``dataloader.train_last = dict(fraction=f, augmentations=[...])``: for the
last ``round(f * train.max_iter)`` iterations the training loader is rebuilt from
``dataloader.train`` with its mapper's augmentations replaced by ``augmentations``. The switch
follows ``train.max_iter`` alone, and a run resumed past it starts with the last stage's loader.
"""

import copy
import logging
from typing import Callable, Optional

from detectron2.config import instantiate
from detectron2.engine import HookBase

from ..errors import ConfigError

__all__ = ["LastStageAugmentations", "last_stage_hook"]

logger = logging.getLogger("detectron2")


class LastStageAugmentations(HookBase):
    """From iteration ``start_iter`` on, train on the loader ``build_loader()`` returns
    (:meth:`SimpleTrainer.reset_data_loader`), once: before step ``start_iter``, or before the
    first step of a run resumed past it."""

    def __init__(self, start_iter: int, build_loader: Callable, description: str = ""):
        self.start_iter = start_iter
        self._build = build_loader
        self._description = description
        self.switched = False

    def _switch(self) -> None:
        logger.info(f"Iteration {self.trainer.iter}: the last stage's augmentations from now on {self._description}")
        self.trainer.reset_data_loader(self._build)
        self.switched = True

    def before_step(self):
        if not self.switched and self.trainer.iter >= self.start_iter:
            self._switch()


def _name(node) -> str:
    target = node.get("_target_", node) if hasattr(node, "get") else node
    return getattr(target, "__name__", None) or str(target).rsplit(".", 1)[-1]


def last_stage_hook(cfg) -> Optional[LastStageAugmentations]:
    """The :class:`LastStageAugmentations` of ``cfg.dataloader.train_last``, or None when the
    config has none or its fraction leaves no iteration. Raises ConfigError for a fraction outside
    [0, 1), augmentations that do not build, or a training mapper without augmentations."""
    last = cfg.dataloader.get("train_last")
    if last is None or not last.get("fraction"):
        return None
    fraction = last.fraction
    if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1 or "augmentations" not in last:
        raise ConfigError(
            f"dataloader.train_last: expected fraction in [0, 1) and a list of augmentations, got fraction={fraction}"
            f"{'' if 'augmentations' in last else ' and no augmentations'}"
        )
    if "augmentations" not in cfg.dataloader.train.get("mapper", {}):
        raise ConfigError("dataloader.train_last: dataloader.train.mapper takes no augmentations to replace")
    try:  # a wrong augmentation fails now, not at the switch hours later
        instantiate(last.augmentations)
    except Exception as e:
        raise ConfigError(f"dataloader.train_last.augmentations: {type(e).__name__}: {e}") from None
    length = round(fraction * cfg.train.max_iter)
    if length == 0:
        logger.warning(f"dataloader.train_last.fraction={fraction} of {cfg.train.max_iter} iterations: no last stage")
        return None
    start = cfg.train.max_iter - length
    loader_cfg = copy.deepcopy(cfg.dataloader.train)
    loader_cfg.mapper.augmentations = last.augmentations
    names = ", ".join(_name(a) for a in last.augmentations)
    return LastStageAugmentations(start, lambda: instantiate(loader_cfg), f"({names}; {fraction:g} of training)")
