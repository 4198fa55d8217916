"""Sliced inference of a GFL on large images (``dataloader.test.slicing``, beside ``dataloader.tta``).

The image is cut into overlapping square tiles (:mod:`gfocal_runtime.slicing`: grid, merges); each
tile, and optionally the whole image, goes through the config's test-time input (its
``ResizeShortestEdge``, as SAHI feeds each slice to a model's own preprocessing) and the model, a
batch of tiles at a time; the detections, with their side distributions, are mapped back to the
original image and merged by ``nms``, ``greedy`` (SAHI's) or ``distribution`` (the
distribution-aware merge, the default). Evaluation, :class:`gfocal.engine.predictor.LazyPredictor`,
``demo/demo.py --slice`` and ``gfocal_runtime.Detector(path, slicing=...)`` all use the same
grid and merges.
"""

import logging
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances

from gfocal_runtime.slicing import MERGES, OnceWarning, SlicingSettings, sliced_detect

from ..errors import ConfigError
from .gfl import GFL

__all__ = ["GFLWithSlicing", "slicing_settings", "numpy_detections", "MERGES"]

logger = logging.getLogger(__name__)


def slicing_settings(settings: Optional[Mapping], where: str = "dataloader.test.slicing") -> Optional[SlicingSettings]:
    """The checked :class:`SlicingSettings` of a config's (or a caller's) slicing dict, or None
    when it is missing or not ``enabled``."""
    try:
        return SlicingSettings.parse(None if settings is None else dict(settings))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def numpy_detections(instances: Instances) -> Dict[str, np.ndarray]:
    """``Instances`` in the runtime's form (as ``gfocal_runtime.Detector`` returns them): numpy
    "boxes" (M, 4) float32, "scores" (M,) float32, "classes" (M,), and "dists" (M, 4, n+1) and
    "strides" (M,) float32 when it has them."""
    dets = {"boxes": instances.pred_boxes.tensor.float(), "scores": instances.scores.float()}
    dets["classes"] = instances.pred_classes
    if instances.has("pred_dists"):
        dets.update(dists=instances.pred_dists.float(), strides=instances.pred_strides.float())
    return {k: v.cpu().numpy() for k, v in dets.items()}


class GFLWithSlicing(nn.Module):
    """A GFL (v1 or v2) run on overlapping tiles of each image (and the whole image), merged.

    Inputs are Detectron2's inference inputs at the **original** resolution (a test mapper
    without resizing: ``image`` (C, H, W) in the model's channel order); ``augmentations`` are
    the config's test-time ones, applied to each tile and to the whole-image view. Outputs are
    the model's: Instances in the original image's pixels with ``pred_dists`` and
    ``pred_strides`` (for a merged group, its best-scored member's).

    Args:
        model: a GFL in eval mode (an inference-optimised copy works too).
        augmentations: the test-time augmentations (e.g. ``[ResizeShortestEdge(256, 1333)]``).
        settings: tile size, overlap, merge, whole image, batch size.
    """

    def __init__(self, model: GFL, augmentations: Sequence[T.Augmentation], settings: SlicingSettings):
        super().__init__()
        if not isinstance(model, GFL):
            raise ConfigError(f"GFLWithSlicing wraps a GFL model, got {type(model).__name__}")
        self.model = model
        self.augmentations = T.AugmentationList(list(augmentations))
        self.settings = settings
        self._whole_only = OnceWarning(logger)

    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, Instances]]:
        return [{"instances": self.predict(x["image"])} for x in batched_inputs]

    def _view_input(self, image: np.ndarray) -> Dict:
        aug_input = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        device = next(self.model.parameters()).device
        return {"image": tensor.to(device), "height": image.shape[0], "width": image.shape[1]}

    @torch.no_grad()
    def _detect_batch(self, views: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        """The model on a batch of (h, w, C) views -> numpy detections in each view's pixels."""
        return [numpy_detections(out["instances"]) for out in self.model([self._view_input(v) for v in views])]

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> Instances:
        """(C, H, W) image at the original resolution -> merged Instances of size (H, W)."""
        hwc = image.permute(1, 2, 0).cpu().numpy()
        merged = sliced_detect(
            hwc,
            self.settings,
            self._detect_batch,
            self.model.test_nms_thresh,
            self.model.max_detections_per_image,
            self._whole_only,
        )
        device = image.device
        return Instances(
            tuple(hwc.shape[:2]),
            pred_boxes=Boxes(torch.as_tensor(merged["boxes"], device=device)),
            scores=torch.as_tensor(merged["scores"], device=device),
            pred_classes=torch.as_tensor(merged["classes"], device=device),
            pred_dists=torch.as_tensor(merged["dists"], device=device),
            pred_strides=torch.as_tensor(merged["strides"], device=device),
        )
