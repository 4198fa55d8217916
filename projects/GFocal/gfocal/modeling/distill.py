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

The teacher runs in eval mode under ``no_grad`` on the student's batch. It is held by a
:class:`LocalizationDistiller` that training gives the student (:meth:`GFL.set_distiller`), never
a submodule: not trained, not in the optimizer, not in DDP's parameters, not in checkpoints; a
student evaluated or exported from its config has no trace of it.
"""

import logging
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from detectron2.structures import Boxes, ImageList, Instances

from ..errors import ConfigError
from .gfl import GFL

__all__ = ["localization_distillation_loss", "LocalizationDistiller"]

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


class LocalizationDistiller:
    """The distillation losses of a GFL student under a frozen GFL teacher (see the module
    docstring), for :meth:`GFL.set_distiller`. Not an ``nn.Module``.

    Args:
        teacher: a trained GFL (v1 or v2, any backbone) with the student's strides and reg_max,
            e.g. ``L(gfocal.model_zoo.load_trained)(config_file=..., weights=...)`` in a config.
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
        """Raise ConfigError unless ``student`` can learn from the teacher (same strides and
        reg_max; with class KD, same classes)."""
        t = self.teacher
        if list(t.strides) != list(student.strides) or t.reg_max != student.reg_max:
            raise ConfigError(
                f"teacher and student must share strides and reg_max: the teacher has strides {list(t.strides)} "
                f"and reg_max {t.reg_max}, the student {list(student.strides)} and {student.reg_max}"
            )
        if self.kd_weight and t.num_classes != student.num_classes:
            raise ConfigError(
                f"class KD (kd_weight={self.kd_weight}) needs the same classes: the teacher has "
                f"{t.num_classes}, the student {student.num_classes}"
            )

    @torch.no_grad()
    def teacher_outputs(self, student: GFL, images: ImageList):
        """The teacher's (N, R, K) class logits and (N, R, 4*(n+1)) distribution logits on the
        student's batch (re-normalised when the two models normalise their input differently)."""
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
        return t.transposed_outputs(t.dense_outputs(x)[1])[:2]

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
