"""Adaptive Training Sample Selection (Zhang et al., CVPR 2020), as GFL uses it."""

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from detectron2.structures import Boxes, pairwise_iou

__all__ = ["ATSSMatcher"]


class ATSSMatcher:
    """Assign each anchor to at most one ground-truth box with the ATSS rule.

    For every gt and every feature level, the ``topk`` anchors whose centres are closest to the
    gt centre become candidates. A candidate is positive when its IoU with the gt is at least
    mean + std (unbiased) of that gt's candidate IoUs and its centre lies inside the gt by more
    than ``center_eps``. An anchor claimed by several gts goes to the one with the highest IoU.

    This matches mmdetection's ``ATSSAssigner`` (the reference GFL implementation), including
    ``valid`` anchors: anchors outside an image's own padded extent never become candidates.
    """

    def __init__(self, topk: int = 9, center_eps: float = 0.01):
        """
        Args:
            topk: candidates per gt per level.
            center_eps: an anchor centre must be inside the gt by more than this (pixels).
        """
        if topk < 1:
            raise ValueError(f"ATSSMatcher topk must be >= 1, got {topk}")
        self.topk = int(topk)
        self.center_eps = float(center_eps)

    def __repr__(self):
        return f"ATSSMatcher(topk={self.topk}, center_eps={self.center_eps})"

    @torch.no_grad()
    def __call__(self, anchors: List[Boxes], gt_boxes: Boxes, valid: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """
        Args:
            anchors: per-level anchors of one image, level l holding R_l boxes.
            gt_boxes: the image's M gt boxes (XYXY, absolute pixels).
            valid: (R,) bool, anchors allowed to match; None means all of them.

        Returns:
            matched_idxs: (R,) int64, the matched gt index per anchor, -1 for background.
            matched_ious: (R,) float, IoU of each anchor with its matched gt (0 for background).
        """
        # Naming: M = gt boxes, R = anchors over all levels, C = candidates per gt.
        num_anchors = sum(len(a) for a in anchors)
        device = anchors[0].device
        if len(gt_boxes) == 0:
            return (
                torch.full((num_anchors,), -1, dtype=torch.int64, device=device),
                torch.zeros(num_anchors, device=device),
            )
        all_anchors, ious, candidates, cand_valid, threshold = self._candidates(anchors, gt_boxes, valid)
        cand_ious = ious.gather(0, candidates)  # (C, M)
        is_pos = cand_valid & (cand_ious >= threshold[None, :])
        gt = gt_boxes.tensor  # (M, 4)
        anchor_centers = all_anchors.get_centers()  # (R, 2)

        # Candidate centres must lie inside the gt.
        cx = anchor_centers[candidates, 0]  # (C, M)
        cy = anchor_centers[candidates, 1]
        inside = torch.stack([cx - gt[:, 0], cy - gt[:, 1], gt[:, 2] - cx, gt[:, 3] - cy], dim=-1)  # (C, M, 4)
        is_pos &= inside.amin(dim=-1) > self.center_eps

        # An anchor claimed by several gts goes to the highest IoU.
        claim = torch.full_like(ious, -1.0)  # IoUs are >= 0, so -1 marks "not claimed"
        claim.scatter_(0, candidates, torch.where(is_pos, cand_ious, torch.full_like(cand_ious, -1.0)))
        matched_ious, matched_idxs = claim.max(dim=1)  # (R,)
        matched_idxs[matched_ious < 0] = -1
        return matched_idxs, matched_ious.clamp(min=0)

    def _candidates(self, anchors: List[Boxes], gt_boxes: Boxes, valid: Optional[Tensor]):
        """The ATSS candidates of every gt and its adaptive IoU threshold.

        Returns:
            all_anchors: the R anchors, levels concatenated.
            ious: (R, M) IoU of every anchor with every gt.
            candidates: (C, M) anchor indices, the ``topk`` closest to each gt centre per level.
            cand_valid: (C, M) bool, False only when a level has fewer than ``topk`` valid anchors.
            threshold: (M,) mean + unbiased std of each gt's valid candidate IoUs.
        """
        all_anchors = Boxes.cat(anchors)
        if valid is None:
            valid = torch.ones(len(all_anchors), dtype=torch.bool, device=all_anchors.device)
        ious = pairwise_iou(all_anchors, gt_boxes)  # (R, M)
        distances = torch.cdist(all_anchors.get_centers(), gt_boxes.get_centers())  # (R, M)
        distances = distances.masked_fill(~valid[:, None], float("inf"))

        # Candidates: the topk closest anchors per gt on every level (a loop over levels only).
        candidates, start = [], 0
        for n in (len(a) for a in anchors):
            _, idx = distances[start : start + n].topk(min(self.topk, n), dim=0, largest=False)  # (k, M)
            candidates.append(idx + start)
            start += n
        candidates = torch.cat(candidates, dim=0)  # (C, M)
        cand_valid = valid[candidates]
        cand_ious = ious.gather(0, candidates)

        # Adaptive threshold: mean + unbiased std of the valid candidates' IoUs, per gt.
        count = cand_valid.sum(dim=0)  # (M,)
        mean = torch.where(cand_valid, cand_ious, torch.zeros_like(cand_ious)).sum(dim=0) / count
        var = torch.where(cand_valid, (cand_ious - mean) ** 2, torch.zeros_like(cand_ious))
        std = (var.sum(dim=0) / (count - 1)).sqrt()  # nan for a single candidate, as torch.std
        return all_anchors, ious, candidates, cand_valid, mean + std

    @torch.no_grad()
    def vlr_region(
        self, anchors: List[Boxes], gt_boxes: Boxes, valid: Optional[Tensor] = None, alpha: float = 0.25
    ) -> Tensor:
        """Localization Distillation's valuable localization region (HikariTJU/LD's assigner).

        An anchor is in the region of a gt when its DIoU with the gt lies in [alpha * t, t), t
        being the gt's ATSS threshold (:meth:`__call__`); any anchor of the image may qualify, with
        no centre-inside-gt test (as the LD repository). Positives are not excluded: their DIoU
        can fall below t while their IoU does not.

        Returns:
            (R,) float: the largest IoU with a gt whose region holds the anchor, 0 elsewhere.
        """
        num_anchors = sum(len(a) for a in anchors)
        if len(gt_boxes) == 0:
            return torch.zeros(num_anchors, device=anchors[0].device)
        all_anchors, ious, _, _, threshold = self._candidates(anchors, gt_boxes, valid)
        a, g = all_anchors.tensor[:, None, :], gt_boxes.tensor[None, :, :]  # (R, 1, 4), (1, M, 4)
        centre_dist = (((a[..., :2] + a[..., 2:]) - (g[..., :2] + g[..., 2:])) / 2).square().sum(-1)  # (R, M)
        enclosing = (torch.max(a[..., 2:], g[..., 2:]) - torch.min(a[..., :2], g[..., :2])).square().sum(-1)
        diou = ious - centre_dist / enclosing.clamp(min=1e-6)
        inside = (diou >= alpha * threshold) & (diou < threshold)  # (R, M)
        if valid is not None:
            inside &= valid[:, None]
        return torch.where(inside, ious, torch.zeros_like(ious)).amax(dim=1)
