"""Test-time augmentation for GFL, in the spirit of Detectron2's ``GeneralizedRCNNWithTTA`` (which
accepts only R-CNNs): several test scales and horizontal flip; each view's candidates are mapped
back to the original image and merged before one class-aware NMS (as mmdetection merges a dense
detector's views)."""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances

from ..errors import ConfigError
from .gfl import GFL

__all__ = ["GFLWithTTA", "check_tta_settings"]


def check_tta_settings(min_sizes: Sequence[int], max_size: int) -> None:
    """``dataloader.tta`` of a config: at least one short side, every size a positive integer."""
    sizes = list(min_sizes)
    if not sizes or not all(isinstance(v, int) and v >= 1 for v in [*sizes, max_size]):
        raise ConfigError(
            f"dataloader.tta needs min_sizes (a non-empty list) and max_size of positive integers, "
            f"got min_sizes={sizes} and max_size={max_size!r}"
        )


# Under a horizontal flip the left and right distances swap; top and bottom stay.
_FLIP_SIDES = [2, 1, 0, 3]


class GFLWithTTA(nn.Module):
    """A GFL (v1 or v2) evaluated on several views of each image.

    For every ``(short side, flipped)`` view in :attr:`views` (``min_sizes`` x {no flip, flip}),
    the image is resized as Detectron2's ``ResizeShortestEdge(short side, max_size)`` and maybe
    mirrored; the model's candidates of that view (top-k per level above the score threshold,
    clipped) are mapped back to the original image — boxes through the inverse transform, the
    left/right distributions swapped for a mirrored view, the bin spacing rescaled — and all
    views' candidates go through one class-aware NMS (the model's ``test_nms_thresh`` and
    ``max_detections_per_image``). Outputs are the model's: Instances in the original image's
    pixels with ``pred_dists`` and ``pred_strides``.

    Args:
        model: a GFL, in eval mode (an inference-optimised copy works too).
        min_sizes: test short sides (Detectron2's ``TEST.AUG.MIN_SIZES``).
        max_size: longest side limit (``TEST.AUG.MAX_SIZE``).
        flip: add the mirrored view of every size (``TEST.AUG.FLIP``).
    """

    def __init__(self, model: GFL, min_sizes: Sequence[int] = (800,), max_size: int = 1333, flip: bool = True):
        super().__init__()
        if not isinstance(model, GFL):
            raise ConfigError(f"GFLWithTTA wraps a GFL model, got {type(model).__name__}")
        check_tta_settings(min_sizes, max_size)
        self.model = model
        self.max_size = int(max_size)
        self.views: List[Tuple[int, bool]] = [
            (int(s), f) for s in min_sizes for f in ((False, True) if flip else (False,))
        ]

    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, Instances]]:
        """Detectron2's inference inputs (``image`` (C, H, W) as the test mapper made it, and the
        original ``height`` and ``width``) -> ``[{"instances": Instances}]``."""
        return [{"instances": self._inference_one(x)} for x in batched_inputs]

    @torch.no_grad()
    def _inference_one(self, inputs: Dict) -> Instances:
        image = inputs["image"]
        out_hw = (int(inputs.get("height", image.shape[-2])), int(inputs.get("width", image.shape[-1])))
        hwc = image.permute(1, 2, 0).cpu().numpy()
        # Back to the original size first (the test mapper may have resized), as Detectron2's TTA does.
        original = T.ResizeTransform(*hwc.shape[:2], *out_hw).apply_image(hwc) if hwc.shape[:2] != out_hw else hwc
        candidates = []
        for size, flipped in self.views:
            tfm = T.ResizeShortestEdge(size, self.max_size).get_transform(original)
            tfms = T.TransformList([tfm] + ([T.HFlipTransform(tfm.new_w)] if flipped else []))
            view = torch.as_tensor(np.ascontiguousarray(tfms.apply_image(original).transpose(2, 0, 1)))
            candidates.append(self._mapped_back(self._candidates(view.to(image.device)), tfms, flipped, out_hw))
        return self.model.nms(Instances.cat(candidates))

    def _candidates(self, image: torch.Tensor) -> Instances:
        """The model's candidates of one view, before NMS, in the view's pixels."""
        m = self.model
        images = m.preprocess_image([{"image": image}])
        features, outputs = m.dense_outputs(images.tensor)
        scores, boxes, probs = m.decode_dense(features, outputs)
        sizes = [f.shape[-2] * f.shape[-1] for f in features]
        return m.candidates_single_image(
            scores[0].split(sizes), boxes[0].split(sizes), probs[0].split(sizes), images.image_sizes[0]
        )

    @staticmethod
    def _mapped_back(inst: Instances, tfms: T.TransformList, flipped: bool, out_hw: Tuple[int, int]) -> Instances:
        """A view's candidates in the original image's pixels (clipped, empty boxes dropped)."""
        view_h, view_w = inst.image_size
        boxes = tfms.inverse().apply_box(inst.pred_boxes.tensor.cpu().numpy())
        boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32, device=inst.scores.device))
        boxes.clip(out_hw)
        out = Instances(out_hw, pred_boxes=boxes, scores=inst.scores, pred_classes=inst.pred_classes)
        out.pred_dists = inst.pred_dists[:, _FLIP_SIDES] if flipped else inst.pred_dists
        out.pred_strides = inst.pred_strides * float(np.sqrt((out_hw[0] / view_h) * (out_hw[1] / view_w)))
        return out[boxes.nonempty()]
