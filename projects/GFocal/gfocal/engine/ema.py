"""An exponential moving average (EMA) of the weights during training, as NanoDet-Plus and YOLO
keep one.

After every optimizer step, each floating-point parameter and buffer (batch-norm statistics too)
of the average moves towards the model's::

    decay_t = decay * (1 - exp(-t / warmup))      # t: updates so far, 1, 2, ...
    ema     = decay_t * ema + (1 - decay_t) * weights

The ramp lets the average follow the fast early changes; later it averages over about
``1 / (1 - decay)`` steps. Integer buffers (``num_batches_tracked``) are copied.

Config (``train.ema``): ``enabled``, ``decay``, ``warmup`` and ``for_inference``. With EMA on,
evaluation during training uses the average; checkpoints store it under ``"ema"`` beside the raw
``"model"`` weights and ``--resume`` restores it. Whatever loads a checkpoint to predict
(``--eval-only``, the demo, the predictor, the exporter, a distillation teacher) takes the average
when the file has one, unless ``train.ema.for_inference=False``.
"""

import copy
import logging
import math

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detectron2.engine import HookBase

__all__ = ["EMAHook", "ModelEMA", "ema_settings"]

logger = logging.getLogger(__name__)

DEFAULTS = dict(enabled=False, decay=0.9998, warmup=2000, for_inference=True)


def ema_settings(cfg) -> dict:
    """``cfg.train.ema`` with the defaults for keys (or a whole ``ema``) the config lacks."""
    return {**DEFAULTS, **dict(cfg.train.get("ema", None) or {})}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class ModelEMA:
    """The moving average of ``model``'s weights, kept in a frozen eval-mode copy (``.module``,
    which predicts and evaluates like the model).

    Args:
        model: the trained model (a DDP wrapper is looked through).
        decay: the final decay (0 <= decay < 1).
        warmup: the ramp's time constant in updates (> 0).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup: float = 2000):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"train.ema.decay must be in [0, 1), got {decay}")
        if warmup <= 0:
            raise ValueError(f"train.ema.warmup must be > 0 (updates), got {warmup}")
        self.decay, self.warmup, self.updates = float(decay), float(warmup), 0
        model = _unwrap(model)
        # A distillation teacher (a plain attribute of the student) is not copied: the average
        # only predicts.
        teacher = getattr(model, "distiller", None)
        memo = {id(teacher): None} if teacher is not None else {}
        self.module = copy.deepcopy(model, memo).eval().requires_grad_(False)
        self.restored = False  # set when a checkpoint's average is loaded
        self._pairs = None  # (average, model) tensor lists, found at the first update

    def decay_at(self, updates: int) -> float:
        return self.decay * (1.0 - math.exp(-updates / self.warmup))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s current weights: the same model every
        time, its tensors changed in place (as optimizers and ``load_state_dict`` do)."""
        self.updates += 1
        d = self.decay_at(self.updates)
        if self._pairs is None:  # the tensors are updated in place, so the lists stay valid
            ema, current = self.module.state_dict(), _unwrap(model).state_dict()
            self._pairs = {
                is_float: (
                    [ema[k] for k in ema if ema[k].dtype.is_floating_point == is_float],
                    [current[k] for k in ema if ema[k].dtype.is_floating_point == is_float],
                )
                for is_float in (True, False)
            }
        averaged, weights = self._pairs[True]
        torch._foreach_lerp_(averaged, weights, 1.0 - d)
        for counter, value in zip(*self._pairs[False]):
            counter.copy_(value)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Start the average over from ``model``'s weights (fine-tuning, or a checkpoint without one)."""
        self.module.load_state_dict(_unwrap(model).state_dict())
        self.updates = 0

    def state_dict(self) -> dict:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
        self.restored = True


class EMAHook(HookBase):
    """Updates a :class:`ModelEMA` after every training step. Register it before the hooks that
    checkpoint or evaluate, so that they see the average of the step that just finished."""

    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def after_step(self):
        self.ema.update(self.trainer.model)
