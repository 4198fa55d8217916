"""What a GFL model says about every location of an image: the evidence that
:mod:`gfocal.label_check.scoring` weighs against the annotations.

For each image, in the original image's pixels:

- ``dense``: every location whose best class score reaches ``min_quality`` (the rest say
  "background" and weigh nothing), from the image as given, at other sizes (``scales``) and
  from their horizontal mirrors (mapped back; left and right sides swapped): its decoded box,
  its joint scores per class (an IoU estimate at the right class, ~0 elsewhere) and the
  standard deviation of each side's distribution. Several locations, views and levels see
  each object: each one an independent estimate of where its four edges are.
- ``detections``: the model's ordinary output for the image as given (threshold, top-k, NMS),
  with each box's side distributions, as evaluation and the demo see it.

Example::

    predictor = LazyPredictor(cfg, weights="model_final.pth")
    evidence = collect_evidence(predictor, [cv2.imread(p) for p in paths])
"""

import itertools
import math
from typing import Dict, Iterable, Iterator, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from detectron2.modeling.postprocessing import detector_postprocess

from ..modeling import distribution_std

__all__ = ["collect_evidence", "dense_evidence", "mirror_evidence"]


@torch.inference_mode()
def dense_evidence(
    model, batched_inputs: List[Dict], min_quality: float = 0.02, detections: bool = True, amp: bool = False
) -> List[Dict[str, Dict]]:
    """Run a GFL ``model`` once on a batch and keep both its dense outputs and its detections.

    Args:
        model: a :class:`gfocal.modeling.GFL` (or its inference-optimised copy) in eval mode.
        batched_inputs: model inputs ({"image": (3, h, w), "height": H, "width": W}) as
            :meth:`gfocal.engine.predictor.LazyPredictor.preprocess` gives.
        min_quality: locations whose best class score is below this are dropped.
        detections: also run the model's selection and NMS (False: the dense outputs only).
        amp: run the backbone and head under autocast (bfloat16 on the CPU, float16 on CUDA);
            the distributions, boxes and scores are decoded from their logits in float32.

    Returns:
        per image {"dense": {"boxes" (R', 4) XYXY, "scores" (R', K), "sigmas" (R', 4) side std
        in px}, "detections": {"boxes" (M, 4), "scores" (M,), "classes" (M,), "dists"
        (M, 4, n+1), "strides" (M,)}} (no "detections" without ``detections``), numpy, in
        (H, W) pixels.
    """
    images = model.preprocess_image(batched_inputs)
    device = images.tensor.device.type
    with torch.autocast(device, dtype=torch.bfloat16 if device == "cpu" else torch.float16, enabled=amp):
        features, predictions = model.dense_outputs(images.tensor)
    scores, boxes, probs = model.decode_dense(features, predictions)  # (N, R, K), (N, R, 4), (N, R, 4, n+1)
    valid = model.valid_anchor_mask(images, features)
    if valid is not None:
        scores = scores * valid[..., None]
    _, strides = model.location_centers(features)  # (R,)
    sigmas = distribution_std(probs) * strides[None, :, None]  # (N, R, 4) in input pixels
    results = model.forward_inference(images, features, predictions) if detections else None
    out = []
    for i, (inp, image_size) in enumerate(zip(batched_inputs, images.image_sizes)):
        height, width = inp["height"], inp["width"]
        sx, sy = width / image_size[1], height / image_size[0]
        keep = scores[i].max(dim=1).values >= min_quality
        scale = torch.tensor([sx, sy, sx, sy])
        dense = {
            "boxes": (boxes[i][keep].float().cpu() * scale).numpy(),
            "scores": scores[i][keep].float().cpu().numpy(),
            "sigmas": (sigmas[i][keep].float().cpu() * scale).numpy(),
        }
        if results is None:
            out.append({"dense": dense})
            continue
        det = detector_postprocess(results[i], height, width).to("cpu")
        found = {
            "boxes": det.pred_boxes.tensor.float().numpy(),
            "scores": det.scores.float().numpy(),
            "classes": det.pred_classes.numpy().astype(np.int64),
            "dists": det.pred_dists.float().numpy().astype(np.float16),
            "strides": (det.pred_strides.float() * math.sqrt(sx * sy)).numpy(),
        }
        out.append({"dense": dense, "detections": found})
    return out


def mirror_evidence(dense: Dict[str, np.ndarray], width: int) -> Dict[str, np.ndarray]:
    """Dense evidence of a horizontally mirrored image mapped back to the original: x -> W - x,
    and the left and right sides trade places."""
    boxes = dense["boxes"]
    mirrored = np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)
    return {**dense, "boxes": mirrored, "sigmas": dense["sigmas"][:, [2, 1, 0, 3]]}


def collect_evidence(
    predictor,
    images_bgr: Iterable[np.ndarray],
    flip: bool = True,
    scales: Sequence[float] = (1.0,),
    batch_size: int = 16,
    min_quality: float = 0.02,
    amp: bool = False,
) -> Iterator[Dict[str, Dict]]:
    """:func:`dense_evidence` for each image of ``images_bgr``, yielded in order: detections
    from the config's test-time input, dense evidence from it resized by each of ``scales``
    (1.0: as the config feeds it) and, with ``flip``, from each one's mirror too.

    Args:
        predictor: a :class:`gfocal.engine.predictor.LazyPredictor` (the config's test-time input).
        images_bgr: (H, W, 3) uint8 BGR images.
        scales: sizes of the views as factors of the test-time input's (must hold 1.0).
    """
    if not scales or 1.0 not in [float(x) for x in scales] or min(scales) <= 0:
        raise ValueError(f"scales must be positive factors that include 1.0, got {list(scales)}")
    images = iter(images_bgr)
    while batch := list(itertools.islice(images, batch_size)):
        inputs = [predictor.preprocess(image) for image in batch]
        found = dense_evidence(predictor.model, inputs, min_quality, amp=amp)
        views = [(scale, False) for scale in scales if float(scale) != 1.0]
        views += [(scale, True) for scale in scales] if flip else []
        # The other views add dense evidence only: their detections (selection, NMS) are not needed.
        for scale, mirrored in views:
            view = [_view(x, float(scale), mirrored) for x in inputs]
            for item, other, image in zip(found, dense_evidence(predictor.model, view, min_quality, False, amp), batch):
                extra = mirror_evidence(other["dense"], image.shape[1]) if mirrored else other["dense"]
                item["dense"] = {k: np.concatenate([item["dense"][k], extra[k]]) for k in item["dense"]}
        yield from found


def _view(inputs: Dict, scale: float, mirrored: bool) -> Dict:
    """The model input ``inputs`` resized by ``scale`` (bilinear) and mirrored; "height" and
    "width" (the original image's) stay, so its outputs map back to the original pixels."""
    image = inputs["image"]
    if scale != 1.0:
        size = [max(1, round(image.shape[-2] * scale)), max(1, round(image.shape[-1] * scale))]
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        image = image.round().clamp(0, 255) if inputs["image"].dtype == torch.uint8 else image
        image = image.to(inputs["image"].dtype)
    return {**inputs, "image": image.flip(-1) if mirrored else image}
