"""A single-image predictor for lazy configs, in the spirit of Detectron2's DefaultPredictor."""
import logging
from typing import Dict, Optional

import numpy as np
import torch

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import Instances

from .checkpoint import GFLCheckpointer, require_weights
from .data import first_dataset_name
from .optimize import optimize_for_inference

__all__ = ["LazyPredictor", "evaluation_metadata"]

logger = logging.getLogger(__name__)


def evaluation_metadata(cfg):
    """Metadata of the config's (first) evaluation dataset: the class names to draw."""
    return MetadataCatalog.get(first_dataset_name(cfg.dataloader.test.dataset.names))


class LazyPredictor:
    """Build the config's model, load ``train.init_checkpoint`` (or ``weights``) and run it on
    one image at a time with the config's *test* preprocessing (augmentations and input format),
    so it sees what evaluation sees.

    By default it runs an inference-optimised copy of the model (batch norms folded into the
    convolutions, channels_last, ``torch.inference_mode``; see :mod:`gfocal.optimize`), whose
    outputs equal the plain model's to float rounding; ``optimize=False`` runs the model as built.

    Example::

        predictor = LazyPredictor(LazyConfig.load("configs/Quickstart/gfl_shapes.py"), weights=...)
        instances = predictor(cv2.imread("image.jpg"))["instances"]
    """

    def __init__(
        self,
        cfg,
        weights: Optional[str] = None,
        device: Optional[str] = None,
        optimize: bool = True,
        model: Optional[torch.nn.Module] = None,
    ):
        """
        Args:
            cfg: a lazy config (model, test data, ``train.init_checkpoint``, ``train.device``).
            weights: a checkpoint to load instead of ``train.init_checkpoint``.
            device: instead of ``train.device``.
            optimize: run the inference-optimised copy of the model.
            model: an already built model with its weights (then nothing is loaded).
        """
        self.device = device or cfg.train.get("device", "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            logger.warning("CUDA is not available; running on the CPU")
            self.device = "cpu"
        if model is None:
            weights = require_weights(weights if weights is not None else cfg.train.init_checkpoint)
            model = instantiate(cfg.model).to(self.device).eval()
            GFLCheckpointer(model, for_inference=True).load(weights)
        model = model.to(self.device).eval()
        self.model = optimize_for_inference(model) if optimize else model
        mapper = cfg.dataloader.test.mapper
        self.augmentations = T.AugmentationList([instantiate(a) for a in mapper.get("augmentations", [])])
        self.input_format = mapper.get("image_format", "BGR")
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR, got {self.input_format!r}")
        self.metadata = evaluation_metadata(cfg)

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
        with torch.inference_mode():
            instances = self.model([inputs])[0]["instances"]
        # Inference-mode tensors refuse in-place changes later; hand out ordinary ones.
        fields = {k: v.clone() for k, v in instances.get_fields().items()}
        return {"instances": Instances(instances.image_size, **fields)}
