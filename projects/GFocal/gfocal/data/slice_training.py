"""Training on slices of large images: a ``DatasetMapper`` that crops first.

Use it as ``dataloader.train.mapper`` of any lazy config (the other arguments are
``DatasetMapper``'s)::

    dataloader.train.mapper = L(SliceTrainingMapper)(
        is_train=True, size=256, augmentations=[...], image_format="RGB")

Each time an image is loaded, one square crop of ``size`` pixels (clipped to the image) is
taken: with probability ``object_prob`` placed at random so that it contains a randomly chosen
annotated object (the whole object, where it fits), else anywhere. The config's augmentations
then run on the crop. Boxes cut by the crop's border are handled as SAHI's ``slice_coco`` does:
clipped to the crop, and dropped when less than ``min_visible`` of the box's area lies inside
(SAHI's ``min_area_ratio``, default 0.1) or when a clipped side is shorter than ``min_side``
pixels; mmdetection's ``RandomCrop`` clips the same way and keeps every box of positive size.
"""

import copy
from typing import Dict, List, Tuple

import numpy as np
import torch

from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

__all__ = ["SliceTrainingMapper", "choose_crop", "visible_annotations"]


def choose_crop(
    image_hw: Tuple[int, int], boxes: np.ndarray, size: int, object_prob: float, rng=np.random
) -> Tuple[int, int, int, int]:
    """A crop ``(x0, y0, w, h)`` of at most ``size`` x ``size`` inside an image of ``image_hw``.

    Args:
        boxes: (N, 4) XYXY boxes of the image's objects.
        object_prob: the chance that the crop is placed around one of ``boxes`` (at random among
            the positions that contain it whole, or that lie within it when it is larger).
        rng: ``np.random`` or a ``np.random.Generator``-like object with ``uniform``.
    """
    height, width = image_hw
    w, h = min(size, width), min(size, height)
    if len(boxes) and rng.uniform() < object_prob:
        pick = int(rng.uniform() * len(boxes)) % len(boxes)
        x0, y0, x1, y1 = boxes[pick]
        # Whole-pixel starts that hold [x0, x1] (or lie inside it when the box is the larger).
        x = _start_between(*sorted((x1 - w, x0)), width - w, rng)
        y = _start_between(*sorted((y1 - h, y0)), height - h, rng)
    else:
        x, y = _start_between(0, width - w, width - w, rng), _start_between(0, height - h, height - h, rng)
    return x, y, w, h


def _start_between(lo: float, hi: float, last: int, rng) -> int:
    """A uniformly random integer start in [ceil(lo), floor(hi)], within [0, last] (the nearest
    one when that range is empty)."""
    lo_i, hi_i = int(np.ceil(max(lo, 0))), int(np.floor(min(hi, last)))
    if lo_i > hi_i:
        return int(np.clip(round((lo + hi) / 2), 0, last))
    return int(min(lo_i + int(rng.uniform() * (hi_i - lo_i + 1)), hi_i))


def visible_annotations(annotations: List[Dict], crop, min_visible: float, min_side: float) -> List[Dict]:
    """The annotations kept for a crop ``(x0, y0, w, h)``: at least ``min_visible`` of the box's
    area inside it and both clipped sides at least ``min_side`` pixels."""
    x, y, w, h = crop
    kept = []
    for anno in annotations:
        x0, y0, x1, y1 = BoxMode.convert(list(anno["bbox"]), anno["bbox_mode"], BoxMode.XYXY_ABS)
        iw = min(x1, x + w) - max(x0, x)
        ih = min(y1, y + h) - max(y0, y)
        area = max(x1 - x0, 0) * max(y1 - y0, 0)
        if iw >= min_side and ih >= min_side and iw * ih >= min_visible * area:
            kept.append(anno)
    return kept


class SliceTrainingMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` for training on square crops of large images (see the
    module docstring).

    Args:
        size: the crop's side in the original image's pixels (as ``dataloader.test.slicing.size``).
        object_prob: chance that a crop is placed around an annotated object.
        min_visible: a cut box is kept when at least this share of its area is inside the crop.
        min_side: ... and both of its clipped sides are at least this many pixels.
        **kwargs: ``DatasetMapper``'s (``is_train``, ``augmentations``, ``image_format``, ...).
    """

    def __init__(
        self,
        *,
        size: int = 256,
        object_prob: float = 0.5,
        min_visible: float = 0.1,
        min_side: float = 2.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"SliceTrainingMapper: size must be a positive integer (pixels), got {size!r}")
        if not 0 <= object_prob <= 1 or not 0 <= min_visible <= 1:
            raise ValueError(
                f"SliceTrainingMapper: object_prob and min_visible must be in [0, 1], got {object_prob}, {min_visible}"
            )
        self.size, self.object_prob = size, float(object_prob)
        self.min_visible, self.min_side = float(min_visible), float(min_side)

    def __call__(self, dataset_dict: Dict) -> Dict:
        """A dataset dict -> the model's training input for one crop of its image."""
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        annotations = [a for a in dataset_dict.get("annotations", []) if a.get("iscrowd", 0) == 0]
        boxes = np.array(
            [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations], np.float64
        ).reshape(-1, 4)
        crop = choose_crop(image.shape[:2], boxes, self.size, self.object_prob)
        crop_tfm = T.CropTransform(*crop, orig_w=image.shape[1], orig_h=image.shape[0])
        aug_input = T.AugInput(crop_tfm.apply_image(image))
        transforms = T.TransformList([crop_tfm]) + self.augmentations(aug_input)
        image = aug_input.image
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        dataset_dict["height"], dataset_dict["width"] = image.shape[:2]
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            dataset_dict["annotations"] = visible_annotations(annotations, crop, self.min_visible, self.min_side)
            self._transform_annotations(dataset_dict, transforms, image.shape[:2])
        return dataset_dict
