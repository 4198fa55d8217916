"""The Generalized Focal Loss family (Li et al., NeurIPS 2020) as plain functions.

Each function returns per-element losses for ``reduction="none"``; normalisation (dividing by
the number of positives or by the summed quality weights) belongs to the caller, as in
Detectron2's own losses.
"""

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "quality_focal_loss",
    "quality_focal_loss_with_prob",
    "distribution_focal_loss",
    "generalized_focal_loss",
    "giou_loss",
    "reduce_loss",
]

# F.binary_cross_entropy clamps its log terms at -100; the closed forms here do the same.
_LOG_CLAMP = -100.0


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """Apply ``reduction`` ("none" | "sum" | "mean") to an element-wise loss."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be 'none', 'sum' or 'mean'; got {reduction!r}")


def quality_focal_loss(logits: Tensor, targets: Tensor, beta: float = 2.0, reduction: str = "none") -> Tensor:
    """Quality Focal Loss (paper eq. 2) on raw logits.

    QFL(s) = -|y - s|^beta * ((1 - y) log(1 - s) + y log s), with s = sigmoid(logit).

    Args:
        logits: (N, K) raw classification logits.
        targets: (N, K) soft labels in [0, 1]: the IoU of the matched box at the gt class of a
            positive, 0 everywhere else.
        beta: modulating exponent (2 in the paper).
        reduction: "none" | "sum" | "mean".

    Returns:
        (N, K) for "none", else a scalar. Computed in float32.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must have one shape")
    logits = logits.float()
    targets = targets.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    modulator = (logits.sigmoid() - targets).abs().pow(beta)
    return reduce_loss(ce * modulator, reduction)


def quality_focal_loss_with_prob(probs: Tensor, targets: Tensor, beta: float = 2.0, reduction: str = "none") -> Tensor:
    """Quality Focal Loss on probabilities, as GFLv2 trains sigmoid(cls) * quality.

    The joint score of GFLv2 is a product of two sigmoids, so it has no single logit. The loss is
    computed in float32 with autocast switched off for the tensors' device: CUDA autocast
    refuses ``F.binary_cross_entropy`` on probabilities, and half precision would lose the small
    probabilities that dominate the negatives.

    Args:
        probs: (N, K) predicted joint scores in [0, 1].
        targets: (N, K) soft labels in [0, 1].
        beta: modulating exponent.
        reduction: "none" | "sum" | "mean".

    Returns:
        (N, K) float32 for "none", else a scalar.
    """
    if probs.shape != targets.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and targets {tuple(targets.shape)} must have one shape")
    with torch.autocast(device_type=probs.device.type, enabled=False):
        probs = probs.float()
        targets = targets.float()
        ce = F.binary_cross_entropy(probs, targets, reduction="none")
        loss = ce * (probs - targets).abs().pow(beta)
    return reduce_loss(loss, reduction)


def distribution_focal_loss(logits: Tensor, target: Tensor, reduction: str = "none") -> Tensor:
    """Distribution Focal Loss (paper eq. 6).

    For a target y between bins y_i = floor(y) and y_{i+1} = y_i + 1:
    DFL = -((y_{i+1} - y) log S_i + (y - y_i) log S_{i+1}), with S = softmax(logits).

    Args:
        logits: (N, n+1) logits over the bins 0..n of one box side.
        target: (N,) float distances in bin units, in [0, n).
        reduction: "none" | "sum" | "mean".

    Returns:
        (N,) float32 for "none", else a scalar.
    """
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(
            f"expected logits (N, n+1) and target (N,); got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    logits = logits.float()
    target = target.float()
    left = target.long()  # y_i
    right = left + 1  # y_{i+1}
    weight_left = right.float() - target
    weight_right = target - left.float()
    loss = (
        F.cross_entropy(logits, left, reduction="none") * weight_left
        + F.cross_entropy(logits, right, reduction="none") * weight_right
    )
    return reduce_loss(loss, reduction)


def generalized_focal_loss(
    p_left: Tensor,
    p_right: Tensor,
    y_left,
    y_right,
    target: Tensor,
    beta: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    """The general form of paper eq. 7, of which FL, QFL and DFL are special cases.

    GFL(p_l, p_r) = -|y - (y_l p_l + y_r p_r)|^beta * ((y_r - y) log p_l + (y - y_l) log p_r)

    QFL is y_l = 0, y_r = 1, p_r = sigmoid, p_l = 1 - sigmoid; DFL is beta = 0 with the two bins
    around y; FL (without alpha) is QFL with y in {0, 1} and beta = gamma.

    Args:
        p_left, p_right: (*) probabilities of the two values y_l < y_r.
        y_left, y_right: (*) or scalars, the two values.
        target: (*) target y with y_l <= y <= y_r.
        beta: modulating exponent.
        reduction: "none" | "sum" | "mean".

    Returns:
        (*) for "none", else a scalar.
    """
    estimate = y_left * p_left + y_right * p_right
    log_left = torch.log(p_left).clamp(min=_LOG_CLAMP)
    log_right = torch.log(p_right).clamp(min=_LOG_CLAMP)
    ce = -((y_right - target) * log_left + (target - y_left) * log_right)
    return reduce_loss((target - estimate).abs().pow(beta) * ce, reduction)


def giou_loss(boxes: Tensor, targets: Tensor, eps: float = 1e-7, reduction: str = "none") -> Tensor:
    """Generalized IoU loss (Rezatofighi et al., CVPR 2019) of matching rows: 1 - GIoU.

    The same value as ``fvcore.nn.giou_loss``, without its host-synchronising asserts: a
    non-finite prediction gives a non-finite loss (which the trainer reports with the iteration
    and the loss terms) instead of an ``AssertionError: bad box``.

    Args:
        boxes: (P, 4) predicted XYXY boxes.
        targets: (P, 4) target XYXY boxes.
        eps: added to the union and the enclosing area.
        reduction: "none" | "sum" | "mean".

    Returns:
        (P,) for "none", else a scalar.
    """
    lt = torch.max(boxes[:, :2], targets[:, :2])
    rb = torch.min(boxes[:, 2:], targets[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
    area_t = (targets[:, 2:] - targets[:, :2]).prod(dim=1)
    union = area + area_t - inter
    hull = (torch.max(boxes[:, 2:], targets[:, 2:]) - torch.min(boxes[:, :2], targets[:, :2])).prod(dim=1)
    giou = inter / (union + eps) - (hull - union) / (hull + eps)
    return reduce_loss(1 - giou, reduction)
