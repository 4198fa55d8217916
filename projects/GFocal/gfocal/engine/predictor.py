"""A single-image predictor for lazy configs, in the spirit of Detectron2's DefaultPredictor, and
the test-time input that evaluation, the predictor, the demo and the exporter share."""

import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances

from ..checkpoint import load_for_inference, require_weights
from ..data import first_dataset_name
from ..errors import ConfigError, InputError
from ..modeling.optimize import optimize_for_inference
from ..modeling.slicing import GFLWithSlicing, slicing_settings

__all__ = ["LazyPredictor", "evaluation_input", "evaluation_metadata", "instances_from_runtime"]

logger = logging.getLogger(__name__)


def evaluation_input(cfg) -> Tuple[str, List[T.Augmentation]]:
    """What evaluation feeds the model: the channel order ("RGB" or "BGR") and the test-time
    augmentations of ``cfg.dataloader.test.mapper``.

    The channel order is the test mapper's ``image_format``; a config without one gets the
    model's ``input_format`` (what its pixel mean and std are in), else Detectron2's "BGR".
    """
    mapper = cfg.dataloader.test.mapper
    image_format = mapper.get("image_format", None) or cfg.model.get("input_format", None) or "BGR"
    if image_format not in ("RGB", "BGR"):
        raise ConfigError(f"dataloader.test.mapper.image_format must be 'RGB' or 'BGR', got {image_format!r}")
    return image_format, [instantiate(a) for a in mapper.get("augmentations", [])]


def evaluation_metadata(cfg):
    """Metadata of the config's (first) evaluation dataset: the class names to draw."""
    return MetadataCatalog.get(first_dataset_name(cfg.dataloader.test.dataset.names))


def instances_from_runtime(detections: Dict[str, np.ndarray], image_size: Tuple[int, int]) -> Instances:
    """``gfocal_runtime.Detector`` output (numpy, original image pixels) as the ``Instances`` the
    PyTorch model returns (for drawing and evaluation)."""
    inst = Instances(tuple(image_size))
    inst.pred_boxes = Boxes(torch.as_tensor(detections["boxes"]).reshape(-1, 4))
    inst.scores = torch.as_tensor(detections["scores"])
    inst.pred_classes = torch.as_tensor(detections["classes"])
    if "dists" in detections:
        inst.pred_dists = torch.as_tensor(detections["dists"])
        inst.pred_strides = torch.as_tensor(detections["strides"])
    return inst


class LazyPredictor:
    """Build the config's model, load ``train.init_checkpoint`` (or ``weights``) and run it on
    one image at a time with the config's test-time input (:func:`evaluation_input`), so it sees
    what evaluation sees.

    Args:
        cfg: a lazy config (model, test data, ``train.init_checkpoint``, ``train.device``).
        weights: a checkpoint to load instead of ``train.init_checkpoint``.
        device: instead of ``train.device``.
        optimize: run an inference-optimised copy of the model (batch norms folded into the
            convolutions, channels_last, ``torch.inference_mode``; see :mod:`gfocal.modeling.optimize`),
            whose outputs equal the plain model's to float rounding; False: the model as built.
        model: an already built model with its weights (then nothing is loaded).
        slicing: instead of ``dataloader.test.slicing`` (a dict, ``dict(size=..., overlap=..., merge=...,
            whole_image=...)``; ``dict(enabled=False)`` turns the config's off). With slicing on, each
            image runs on overlapping tiles plus the whole image and the views are merged
            (:class:`gfocal.modeling.slicing.GFLWithSlicing`), as sliced evaluation.

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
        slicing: Optional[Dict] = None,
    ):
        self.device = device or cfg.train.get("device", "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            logger.warning("CUDA is not available; running on the CPU")
            self.device = "cpu"
        self.input_format, augmentations = evaluation_input(cfg)
        self.augmentations = T.AugmentationList(augmentations)
        self.metadata = evaluation_metadata(cfg)
        if model is None:
            weights = require_weights(weights if weights is not None else cfg.train.init_checkpoint)
            model = instantiate(cfg.model).to(self.device).eval()
            load_for_inference(model, weights, cfg)
        model = model.to(self.device).eval()
        self.model = optimize_for_inference(model) if optimize else model
        where = "slicing" if slicing is not None else "dataloader.test.slicing"
        settings = slicing_settings(slicing if slicing is not None else cfg.dataloader.test.get("slicing"), where)
        if settings is not None:  # the wrapper resizes each tile and the whole image itself
            self.model = GFLWithSlicing(self.model, augmentations, settings)
            self.augmentations = T.AugmentationList([])

    def preprocess(self, image_bgr: np.ndarray) -> Dict:
        """The model's input for one image (several make a batch: ``predictor.model([...])``).

        Args:
            image_bgr: (H, W, 3) uint8 image in BGR order (as cv2.imread gives).

        Returns:
            {"image": (3, h, w) float32 tensor on the device, resized (sliced: uint8, not resized) and
            in the model's channel order, "height": H, "width": W}.
        """
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) BGR image array, got shape {getattr(image_bgr, 'shape', None)}")
        image = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        height, width = image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(aug_input)
        image = aug_input.image
        # Sliced, the views are resized later, from uint8 as the test loader's images (with PIL).
        image = image if isinstance(self.model, GFLWithSlicing) else image.astype("float32")
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return {"image": tensor.to(self.device), "height": height, "width": width}

    def __call__(self, image_bgr: np.ndarray) -> Dict:
        """The model's output for one (H, W, 3) uint8 BGR image (as :meth:`preprocess` takes):
        {"instances": Instances in (H, W) coordinates}."""
        inputs = self.preprocess(image_bgr)
        with torch.inference_mode():
            instances = self.model([inputs])[0]["instances"]
        # Inference-mode tensors refuse in-place changes later; hand out ordinary ones.
        fields = {k: v.clone() for k, v in instances.get_fields().items()}
        return {"instances": Instances(instances.image_size, **fields)}
