"""SAHI compatibility: ``GFocalDetectionModel``, a ``sahi`` DetectionModel for exported GFocal models.

    from gfocal_runtime.sahi_model import GFocalDetectionModel
    from sahi.predict import get_sliced_prediction

    # an exported model folder (tools/export_model.py; ONNX, run by gfocal_runtime, no torch)
    model = GFocalDetectionModel(model_path="output/export/gfl_onnx", confidence_threshold=0.3)
    result = get_sliced_prediction("image.jpg", model, slice_height=256, slice_width=256)

A PyTorch checkpoint with its lazy config goes through the subclass in the ``gfocal`` package,
:class:`gfocal.engine.sahi_model.GFocalDetectionModel` (same arguments plus ``config_path``).

sahi (0.12.8, an optional extra: ``pip install --no-deps sahi==0.12.8 shapely==2.2.0``, since its
metadata asks for numpy 2, which Detectron2 does not run on) slices and merges; this class runs the
model on the slices, a batch at a time (``batch_size`` of ``get_sliced_prediction``). Images come
from sahi in RGB (as it reads files); the model's own test-time resize applies to every slice, so
sahi's ``image_size`` is refused, as are masks. GFocal's own slicing (``Detector(path,
slicing=...)``, ``dataloader.test.slicing``) adds the distribution-aware merge, which sahi's merges
cannot do without the side distributions.
"""

import os
from typing import Any, Dict, List, Optional

import numpy as np
from sahi.models.base import DetectionModel
from sahi.prediction import ObjectPrediction
from sahi.utils.compatibility import fix_full_shape_list, fix_shift_amount_list

from .detector import Detector

__all__ = ["GFocalDetectionModel"]


class GFocalDetectionModel(DetectionModel):
    """A GFocal detector for sahi's ``get_prediction`` / ``get_sliced_prediction``.

    Args:
        model_path: an exported model folder (with ``model.json``).
        model: instead of a path, a ready ``gfocal_runtime.Detector`` (without slicing).
        config_path: unused here (sahi's argument; the ``gfocal`` subclass reads it).
        device: None or "cpu" (exported models run on the CPU).
        confidence_threshold: detections below this score are dropped (sahi's default 0.3).
        category_mapping, category_remapping, load_at_init: as sahi's DetectionModel.
    """

    def __init__(
        self,
        model_path: Optional[str] = None,
        model: Any = None,
        config_path: Optional[str] = None,
        device: Optional[str] = None,
        mask_threshold: float = 0.5,
        confidence_threshold: float = 0.3,
        category_mapping: Optional[Dict] = None,
        category_remapping: Optional[Dict] = None,
        load_at_init: bool = True,
        image_size: Optional[int] = None,
    ):
        if image_size is not None:
            raise ValueError(
                f"GFocalDetectionModel: image_size={image_size} is not supported: every slice is resized by the "
                "model's own test input (the config's dataloader.test.mapper, or the export's model.json)"
            )
        self._requested_device = None if device is None else str(device)
        super().__init__(
            model_path=model_path,
            model=model,
            config_path=config_path,
            device=device,
            mask_threshold=mask_threshold,
            confidence_threshold=confidence_threshold,
            category_mapping=category_mapping,
            category_remapping=category_remapping,
            load_at_init=load_at_init,
        )

    def load_model(self) -> None:
        path = self.model_path
        if path is None:
            raise ValueError("GFocalDetectionModel: give model_path (an exported model folder) or model=")
        if not os.path.isdir(path):
            raise ValueError(
                f"GFocalDetectionModel: model_path={path!r} is not an exported model folder (tools/export_model.py); "
                "for a PyTorch checkpoint and its config use gfocal.engine.sahi_model.GFocalDetectionModel"
            )
        if self._requested_device not in (None, "cpu"):
            raise ValueError(
                f"GFocalDetectionModel: an exported model runs on the CPU (gfocal_runtime), got device="
                f"{self._requested_device!r}; for a GPU use gfocal.engine.sahi_model.GFocalDetectionModel"
            )
        self.set_model(Detector(path))

    def _class_names(self, model: Any) -> List[str]:
        """The class names of a model this adapter runs (raises ValueError for any other)."""
        if not isinstance(model, Detector):
            raise ValueError(
                f"GFocalDetectionModel: model must be a gfocal_runtime.Detector, got {type(model).__name__}"
            )
        if model.slicing is not None:
            raise ValueError("GFocalDetectionModel: give a Detector without slicing (sahi slices)")
        return list(model.class_names)

    def set_model(self, model: Any, **kwargs: Any) -> None:
        names = self._class_names(model)
        self.model = model
        if not self.category_mapping:
            self.category_mapping = {str(i): name for i, name in enumerate(names)}

    @property
    def num_categories(self) -> int:
        return len(self.category_mapping)

    @property
    def has_mask(self) -> bool:
        return False

    @property
    def category_names(self) -> List[str]:
        return list(self.category_mapping.values())

    def _detect(self, images_rgb: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        """The model on RGB images (one batch), -> numpy detections in each image's pixels."""
        for image in images_rgb:
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"GFocalDetectionModel: expected (H, W, 3) images, got {getattr(image, 'shape', None)}"
                )
        return self._detect_bgr([np.ascontiguousarray(image[:, :, ::-1]) for image in images_rgb])

    def _detect_bgr(self, images_bgr: List[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        return self.model.detect_batch(images_bgr)

    def perform_inference(self, image: np.ndarray) -> None:
        """One image (H, W, 3), RGB as sahi reads files."""
        self._original_predictions = self._detect([image])

    def perform_batch_inference(self, images: List[np.ndarray]) -> None:
        """Several slices in one run of the model."""
        self._original_predictions = self._detect(list(images))

    def _create_object_prediction_list_from_original_predictions(
        self, shift_amount_list: Optional[List] = [[0, 0]], full_shape_list: Optional[List] = None
    ) -> None:
        shifts = fix_shift_amount_list(shift_amount_list)
        shapes = fix_full_shape_list(full_shape_list)
        per_image = []
        for i, dets in enumerate(self._original_predictions):
            shift = shifts[i] if i < len(shifts) else [0, 0]
            shape = shapes[i] if shapes is not None and i < len(shapes) else None
            keep = dets["scores"] >= self.confidence_threshold
            per_image.append(
                [
                    ObjectPrediction(
                        bbox=[float(v) for v in box],
                        category_id=int(cls),
                        category_name=self.category_mapping.get(str(int(cls)), str(int(cls))),
                        score=float(score),
                        shift_amount=list(shift),
                        full_shape=None if shape is None else list(shape),
                    )
                    for box, cls, score in zip(dets["boxes"][keep], dets["classes"][keep], dets["scores"][keep])
                ]
            )
        self._object_prediction_list_per_image = per_image
