"""Localization Distillation (Zheng et al., CVPR 2022 / TPAMI 2023): a frozen GFL teacher teaches
a GFL student through its four side distributions.

Per side, ``LD = T^2 * mean over the n+1 bins of KL(softmax(t / T) || softmax(s / T))`` with t the
teacher's and s the student's distribution logits (:func:`localization_distillation_loss`,
mmdetection's ``KnowledgeDistillationKLDivLoss`` per row). On each worker, with P the student's
ATSS positives, w_p their detached quality weights (the weights of their GIoU and DFL terms), V
the valuable localization region (:meth:`ATSSMatcher.vlr_region`) and v_a its IoU weights::

    loss_ld     = ld_weight  * sum_p w_p * mean_sides LD_p(T)          (mmdetection's LDHead: / 4 sides,
                                                                       not / sum w: grows with images per worker)
    loss_ld_vlr = vlr_weight * sum_a v_a * mean_sides LD_a(T_vlr) / 4  (HikariTJU/LD: avg_factor 16 over sides)
    loss_kd     = kd_weight  * sum_p KL_p(T_kd) / max(|P|, 1)          (class logits, softmax over K)

The teacher may be a larger GFL with more levels and a longer distribution than the student (the
quick-start model, strides 8-128 and reg_max 16, over GFocal-Nano, strides 8-64 and reg_max 7):
its levels at the student's strides are read, and each side's mass beyond the student's last bin
is put on that bin (:func:`fold_distribution`). The teacher runs in eval mode under ``no_grad``
on the student's batch. It is held by a :class:`LocalizationDistiller` that training gives the
student (:meth:`GFL.set_distiller`), never a submodule: not trained, not in the optimizer, not in
DDP's parameters, not in checkpoints; a student evaluated or exported from its config has no trace of it.
"""

import logging
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from detectron2.structures import Boxes, ImageList, Instances

from ..errors import ConfigError
from .gfl import GFL

__all__ = ["localization_distillation_loss", "fold_distribution", "LocalizationDistiller"]

logger = logging.getLogger(__name__)


def localization_distillation_loss(pred: Tensor, target: Tensor, temperature: float = 10.0) -> Tensor:
    """LD of discrete distributions given by logits (paper eq. 7; also the class KD).

    Args:
        pred: (..., n+1) student logits of one side (or of the K classes).
        target: (..., n+1) teacher logits; no gradient reaches it.
        temperature: T >= 1 softens both distributions.

    Returns:
        (...) ``T^2 * mean over the last axis of p_t * (log p_t - log p_s)``, p = softmax(x / T).
    """
    if temperature < 1:
        raise ConfigError(f"the distillation temperature must be >= 1, got {temperature}")
    log_p_s = F.log_softmax(pred.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(target.detach().float() / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).mean(dim=-1) * temperature**2


def fold_distribution(dist_logits: Tensor, reg_max_from: int, reg_max_to: int) -> Tensor:
    """A teacher's side distributions over the bins 0..n_from as distributions over 0..n_to
    (n_to <= n_from), the student's: the bins below n_to keep their logits and the mass of
    n_to..n_from lands on n_to (a logsumexp), so the softmax of the result is the teacher's
    distribution with every distance beyond the student's reach clamped to it, as the student's
    own DFL targets are.

    Args:
        dist_logits: (..., 4*(n_from+1)) side-major distribution logits.

    Returns:
        (..., 4*(n_to+1)) side-major logits; ``dist_logits`` itself when n_to == n_from.
    """
    if reg_max_to == reg_max_from:
        return dist_logits
    if not 0 < reg_max_to < reg_max_from:
        raise ConfigError(f"can only fold a distribution over 0..{reg_max_from} onto one shorter, not 0..{reg_max_to}")
    x = dist_logits.unflatten(-1, (4, reg_max_from + 1))
    return torch.cat([x[..., :reg_max_to], x[..., reg_max_to:].logsumexp(dim=-1, keepdim=True)], dim=-1).flatten(-2)


class LocalizationDistiller:
    """The distillation losses of a GFL student under a frozen GFL teacher (see the module
    docstring), for :meth:`GFL.set_distiller`. Not an ``nn.Module``.

    Args:
        teacher: a trained GFL (v1 or v2, any backbone) with every stride of the student (more
            are ignored), its anchor offset and a reg_max at least the student's, e.g.
            ``L(gfocal.model_zoo.load_trained)(config_file=..., weights=...)`` in a config.
        ld_weight, ld_temperature: main-region LD (mmdetection's LDHead defaults 0.25, 10).
        vlr_weight, vlr_temperature, vlr_alpha: LD on the valuable localization region
            (HikariTJU/LD: 0.25, 10, alpha 0.25); 0 turns it off (the default).
        kd_weight, kd_temperature: class-logit KD at the positives (HikariTJU/LD: 10, T 2); 0 off.
    """

    def __init__(
        self,
        teacher: GFL,
        *,
        ld_weight: float = 0.25,
        ld_temperature: float = 10.0,
        vlr_weight: float = 0.0,
        vlr_temperature: float = 10.0,
        vlr_alpha: float = 0.25,
        kd_weight: float = 0.0,
        kd_temperature: float = 2.0,
    ):
        if not isinstance(teacher, GFL):
            raise ConfigError(f"the LD teacher must be a GFL model, got {type(teacher).__name__}")
        for name, t in (("ld", ld_temperature), ("vlr", vlr_temperature), ("kd", kd_temperature)):
            if t < 1:
                raise ConfigError(f"{name}_temperature must be >= 1, got {t}")
        self.teacher = teacher.eval().requires_grad_(False)
        self.ld_weight, self.ld_temperature = ld_weight, ld_temperature
        self.vlr_weight, self.vlr_temperature, self.vlr_alpha = vlr_weight, vlr_temperature, vlr_alpha
        self.kd_weight, self.kd_temperature = kd_weight, kd_temperature

    def check_student(self, student: GFL) -> None:
        """Raise ConfigError unless ``student`` can learn from the teacher (the teacher has every
        stride of the student, its anchor offset and a reg_max at least its; with class KD, the
        same classes)."""
        t = self.teacher
        if any(s not in t.strides for s in student.strides) or t.reg_max < student.reg_max:
            raise ConfigError(
                "the teacher must have every stride of the student and a reg_max at least the student's: the "
                f"teacher has strides {list(t.strides)} and reg_max {t.reg_max}, the student {list(student.strides)} "
                f"and {student.reg_max}"
            )
        offsets = [getattr(m.anchor_generator, "offset", 0.0) for m in (t, student)]
        if offsets[0] != offsets[1]:
            raise ConfigError(
                f"teacher and student place their locations differently: anchor offsets {offsets[0]} and {offsets[1]}"
            )
        if self.kd_weight and t.num_classes != student.num_classes:
            raise ConfigError(
                f"class KD (kd_weight={self.kd_weight}) needs the same classes: the teacher has "
                f"{t.num_classes}, the student {student.num_classes}"
            )

    @torch.no_grad()
    def teacher_outputs(self, student: GFL, images: ImageList):
        """The teacher's (N, R, K) class logits and (N, R, 4*(n+1)) distribution logits on the
        student's batch (re-normalised when the two models normalise their input differently), R
        the locations of its levels at the student's strides and n the student's reg_max."""
        t = self.teacher
        device = images.tensor.device
        if t.pixel_mean.device != device:
            t.to(device)
        t.eval()
        x = images.tensor
        if t.input_format != student.input_format:
            raise ConfigError(f"teacher and student read {t.input_format} and {student.input_format} images")
        if not (torch.equal(t.pixel_mean, student.pixel_mean) and torch.equal(t.pixel_std, student.pixel_std)):
            x = (x * student.pixel_std + student.pixel_mean - t.pixel_mean) / t.pixel_std
        outputs = t.dense_outputs(x)[1]
        if list(t.strides) != list(student.strides):
            levels = [list(t.strides).index(s) for s in student.strides]
            outputs = type(outputs)(*(None if v is None else [v[i] for i in levels] for v in outputs))
        logits, dists = t.transposed_outputs(outputs)[:2]
        return logits, fold_distribution(dists, t.reg_max, student.reg_max)

    def losses(
        self,
        student: GFL,
        images: ImageList,
        anchors: List[Boxes],
        gt_instances: List[Instances],
        valid: Optional[Tensor],
        gt_labels: List[Tensor],
        logits: Tensor,
        dists: Tensor,
        weights: Tensor,
    ) -> Dict[str, Tensor]:
        """
        Args:
            student: the GFL being trained; ``images``, ``anchors``, ``gt_instances``, ``valid``
                and per image (R,) ``gt_labels`` as its ``forward_training`` has them.
            logits: (N, R, K) student class logits. dists: (N, R, 4*(n+1)) distribution logits.
            weights: (N, R) detached quality weights (:meth:`GFL.quality_weights`).

        Returns:
            ``loss_ld``, and ``loss_ld_vlr`` / ``loss_kd`` when their weights are not 0.
        """
        n1 = student.reg_max + 1
        t_logits, t_dists = self.teacher_outputs(student, images)
        if t_dists.shape[1] != dists.shape[1]:
            raise ConfigError(
                f"the teacher has {t_dists.shape[1]} locations at the student's strides {list(student.strides)} on "
                f"this batch, the student {dists.shape[1]}: their feature maps differ in size (pad the input to a "
                "multiple of the largest stride of both)"
            )
        pos = (torch.stack(gt_labels) != student.num_classes).nonzero(as_tuple=True)  # (P,) image, location

        def side_ld(where, temperature):  # (A,) mean over the 4 sides of each location's LD
            s, t = dists[where].reshape(-1, 4, n1), t_dists[where].reshape(-1, 4, n1)
            return localization_distillation_loss(s, t, temperature).mean(dim=1)

        losses = {"loss_ld": self.ld_weight * (side_ld(pos, self.ld_temperature) * weights[pos]).sum()}
        if self.vlr_weight:
            masks = [None] * len(gt_instances) if valid is None else valid
            matcher = student.anchor_matcher
            regions = [
                matcher.vlr_region(anchors, inst.gt_boxes, m, self.vlr_alpha) for inst, m in zip(gt_instances, masks)
            ]
            region = torch.stack(regions)  # (N, R)
            where = (region > 0).nonzero(as_tuple=True)
            vlr = side_ld(where, self.vlr_temperature) * region[where]
            losses["loss_ld_vlr"] = self.vlr_weight * vlr.sum() / 4
        if self.kd_weight:
            kd = localization_distillation_loss(logits[pos], t_logits[pos], self.kd_temperature)
            losses["loss_kd"] = self.kd_weight * kd.sum() / max(len(pos[0]), 1)
        return losses
