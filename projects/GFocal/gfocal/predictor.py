"""A single-image predictor for lazy configs, in the spirit of Detectron2's DefaultPredictor."""
import logging
import os
from typing import Dict, Optional

import numpy as np
import torch

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from .checkpoint import GFLCheckpointer

__all__ = ["LazyPredictor", "test_metadata"]

logger = logging.getLogger(__name__)


def test_metadata(cfg):
    """Metadata of the config's first test dataset (class names for drawing)."""
    names = cfg.dataloader.test.dataset.names
    name = names if isinstance(names, str) else names[0]
    return MetadataCatalog.get(name)


class LazyPredictor:
    """Build the config's model, load ``train.init_checkpoint`` (or ``weights``) and run it on
    one image at a time with the config's *test* preprocessing (augmentations and input format),
    so it sees what evaluation sees.

    Example::

        predictor = LazyPredictor(LazyConfig.load("configs/Quickstart/gfl_shapes.py"), weights=...)
        instances = predictor(cv2.imread("image.jpg"))["instances"]
    """

    def __init__(self, cfg, weights: Optional[str] = None, device: Optional[str] = None):
        weights = weights if weights is not None else cfg.train.init_checkpoint
        if not weights:
            raise ValueError("no weights: set train.init_checkpoint=PATH (a trained model)")
        if "://" not in weights and not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file not found: {weights!r}")
        self.device = device or cfg.train.get("device", "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            logger.warning("CUDA is not available; running on the CPU")
            self.device = "cpu"
        self.model = instantiate(cfg.model).to(self.device).eval()
        GFLCheckpointer(self.model).load(weights)
        mapper = cfg.dataloader.test.mapper
        self.augmentations = T.AugmentationList([instantiate(a) for a in mapper.get("augmentations", [])])
        self.input_format = mapper.get("image_format", "BGR")
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR, got {self.input_format!r}")
        self.metadata = test_metadata(cfg)

    @torch.no_grad()
    def __call__(self, image_bgr: np.ndarray) -> Dict:
        """
        Args:
            image_bgr: (H, W, 3) uint8 image in BGR order (as cv2.imread gives).

        Returns:
            the model's output for the image: {"instances": Instances in (H, W) coordinates}.
        """
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {image_bgr.shape}")
        image = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        height, width = image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(aug_input)
        tensor = torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1))
        inputs = {"image": tensor.to(self.device), "height": height, "width": width}
        return self.model([inputs])[0]
