"""GFL (v1 and v2) as a Detectron2 dense detector."""

import logging
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.layers import batched_nms
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..errors import ConfigError
from .atss import ATSSMatcher
from .head import GFLHeadOutputs
from .losses import distribution_focal_loss, giou_loss, quality_focal_loss, quality_focal_loss_with_prob

__all__ = ["GFL", "distance2bbox", "bbox2distance", "aligned_iou"]

logger = logging.getLogger(__name__)


def distance2bbox(centers: Tensor, distances: Tensor) -> Tensor:
    """(..., 2) centres and (..., 4) left/top/right/bottom distances -> (..., 4) XYXY boxes
    (leading dimensions broadcast)."""
    return torch.cat([centers - distances[..., :2], centers + distances[..., 2:]], dim=-1)


def bbox2distance(centers: Tensor, boxes: Tensor) -> Tensor:
    """(..., 2) centres and (..., 4) XYXY boxes -> (..., 4) left/top/right/bottom distances."""
    return torch.cat([centers - boxes[..., :2], boxes[..., 2:] - centers], dim=-1)


def aligned_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of matching rows of two (P, 4) XYXY box tensors -> (P,)."""
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).clamp(min=0).prod(dim=1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area1 + area2 - inter).clamp(min=1e-6)


@META_ARCH_REGISTRY.register()
class GFL(DenseDetector):
    """Generalized Focal Loss detector: :paper:`GFL` (v1) and, with a DGQP head, GFLv2.

    Training loss (paper eq. 8), with P the positives of the batch, w_p the detached predicted
    quality of positive p (max over classes of its score) and both normalisers averaged over
    all workers with an all-reduce every step::

        loss_qfl = sum_{all locations, classes} QFL / max(mean_workers(sum_images max(P_i, 1)), 1)
        loss_box = 2.0  * sum_p w_p GIoU_p            / max(mean_workers(sum_p w_p), 1)
        loss_dfl = 0.25 * sum_p w_p mean_sides DFL_p   / max(mean_workers(sum_p w_p), 1)
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        head_in_features: Optional[List[str]] = None,
        anchor_generator: DefaultAnchorGenerator,
        anchor_matcher: ATSSMatcher,
        num_classes: int,
        qfl_beta: float = 2.0,
        loss_qfl_weight: float = 1.0,
        loss_box_weight: float = 2.0,
        loss_dfl_weight: float = 0.25,
        ignore_padding_anchors: bool = True,
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        input_format: str = "RGB",
    ):
        """
        Args:
            backbone: a Backbone whose outputs include ``head_in_features``.
            head: a :class:`GFLHead` (its ``reg_max`` and ``use_dgqp`` decide the rest).
            head_in_features: backbone outputs fed to the head, finest first.
            anchor_generator: one square anchor per location (side 8 x stride, offset 0); the
                anchors are used for ATSS only, regression is in stride units from their centres.
            anchor_matcher: an :class:`ATSSMatcher`.
            num_classes: K.

            # Loss parameters:
            qfl_beta: QFL modulating exponent.
            loss_qfl_weight, loss_box_weight, loss_dfl_weight: weights of QFL, GIoU and DFL.
            ignore_padding_anchors: give no loss to anchors outside an image's own padded extent
                in a batch of differently sized images (mmdetection's behaviour); False trains
                them as negatives, as Detectron2's dense detectors do.

            # Inference parameters:
            test_score_thresh: minimum score of a candidate.
            test_topk_candidates: candidates kept per level (over (anchor, class) pairs).
            test_nms_thresh: class-wise NMS IoU.
            max_detections_per_image: detections kept per image.

            # Input parameters:
            pixel_mean, pixel_std: per-channel normalisation, in ``input_format`` order.
            input_format: channel order of the input images ("RGB" for torchvision backbones).
        """
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        if not hasattr(head, "reg_max") or not hasattr(head, "use_dgqp"):
            raise ValueError(f"GFL needs a head with `reg_max` and `use_dgqp`, got {type(head)}")
        if head.num_classes != num_classes:
            raise ValueError(f"num_classes={num_classes} but the head predicts {head.num_classes} classes")
        self.num_classes = num_classes
        self.reg_max = head.reg_max
        self.use_dgqp = head.use_dgqp
        self.anchor_generator = anchor_generator
        self.anchor_matcher = anchor_matcher
        sizes = [cell_anchors.shape[0] for cell_anchors in anchor_generator.cell_anchors]
        if any(n != 1 for n in sizes):
            raise ValueError(f"GFL needs one anchor per location, the generator has {sizes}")
        self.strides = list(anchor_generator.strides)
        # (n+1,) the values 0..n of the general distribution.
        self.register_buffer("project", torch.arange(self.reg_max + 1, dtype=torch.float32), persistent=False)

        # Loss parameters:
        self.qfl_beta = qfl_beta
        self.loss_qfl_weight = loss_qfl_weight
        self.loss_box_weight = loss_box_weight
        self.loss_dfl_weight = loss_dfl_weight
        self.ignore_padding_anchors = ignore_padding_anchors

        # Inference parameters:
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image

        self.input_format = input_format
        self.distiller = None  # see set_distiller

    def set_distiller(self, distiller) -> "GFL":
        """Train under a frozen teacher from now on (None: alone again). Every training step adds
        ``distiller.losses(self, ...)`` to the losses (:class:`~gfocal.modeling.distill.LocalizationDistiller`),
        after ``distiller.check_student(self)`` accepted this model. The distiller is a plain
        attribute, never a submodule: its teacher is not trained, not in the optimizer, not in
        DDP's parameters and not in checkpoints. Returns ``self``."""
        if distiller is not None:
            distiller.check_student(self)
        self.distiller = distiller
        return self

    # ---------------------------------------------------------------- shared helpers

    def dense_outputs(self, x: Tensor) -> Tuple[List[Tensor], GFLHeadOutputs]:
        """The per-level (N, C, Hi, Wi) features the head reads and its outputs on them, for a
        normalised (N, 3, H, W) batch."""
        features = self.backbone(x)
        features = [features[f] for f in self.head_in_features]
        return features, self.head(features)

    def transposed_outputs(self, predictions: GFLHeadOutputs) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """The head's outputs one row per location: (N, R, K) class logits, (N, R, 4*(n+1))
        side-major distribution logits and, for GFLv2, (N, R, 1) DGQP quality (else None). R
        counts the locations of every level, finest first, each level row-major."""
        dims = (self.num_classes, 4 * (self.reg_max + 1), 1)
        return tuple(
            None if per_level is None else torch.cat([permute_to_N_HWA_K(x, k) for x in per_level], dim=1)
            for per_level, k in zip(predictions, dims)
        )

    @staticmethod
    def _joint_scores(logits: Tensor, quality: Optional[Tensor]) -> Tensor:
        """(..., K) logits and (..., 1) DGQP quality (or None) -> (..., K) float32 scores in
        [0, 1]: sigmoid(cls) for GFL v1, sigmoid(cls) * quality for GFLv2. Float32: under AMP a
        half-precision product of two sigmoids underflows."""
        scores = logits.float().sigmoid()
        return scores if quality is None else scores * quality.float()

    def _integral(self, dist_logits: Tensor) -> Tuple[Tensor, Tensor]:
        """The general distribution and its expectation (paper eq. 5).

        Args:
            dist_logits: (..., 4*(n+1)) side-major distribution logits.

        Returns:
            probs: (..., 4, n+1) float32 probabilities of the bins 0..n of each side.
            distances: (..., 4) expected left/top/right/bottom distances in bins (stride units).
        """
        probs = dist_logits.float().unflatten(-1, (4, self.reg_max + 1)).softmax(dim=-1)
        # A linear layer against the bin values (not a matmul with a vector) so that
        # Detectron2's FlopCountAnalysis and exporters see an ordinary op.
        return probs, F.linear(probs, self.project[None, :])[..., 0]

    def location_centers(self, features: List[Tensor]) -> Tuple[Tensor, Tensor]:
        """Centres of the locations of every level, as the anchor generator places them.

        Args:
            features: per-level features (N, C, Hi, Wi) the head read (only their sizes count).

        Returns:
            centers: (R, 2) x, y in input pixels, levels concatenated (finest first), row-major.
            strides: (R,) the stride of each location's level.
        """
        offset = self.anchor_generator.offset
        centers, strides = [], []
        for feature, stride in zip(features, self.strides):
            h, w = feature.shape[-2:]
            ys = (torch.arange(h, device=feature.device, dtype=torch.float32) + offset) * stride
            xs = (torch.arange(w, device=feature.device, dtype=torch.float32) + offset) * stride
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            centers.append(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1))
            strides.append(torch.full_like(grid_x.flatten(), float(stride)))
        return torch.cat(centers), torch.cat(strides)

    def decode_dense(self, features: List[Tensor], predictions: GFLHeadOutputs) -> Tuple[Tensor, Tensor, Tensor]:
        """Scores, boxes and side distributions at every location, before any selection.

        This is the whole data-independent part of inference: the exported graph
        (:mod:`gfocal.export`) ends here, and :meth:`forward_inference` selects from it.

        Args:
            features: per-level features (N, C, Hi, Wi) the head read.
            predictions: the head's outputs for them.

        Returns:
            scores: (N, R, K) float32 joint scores in [0, 1].
            boxes: (N, R, 4) float32 XYXY boxes in input pixels (not clipped).
            probs: (N, R, 4, n+1) float32 side distributions (left, top, right, bottom).
        """
        logits, dists, quality = self.transposed_outputs(predictions)
        scores = self._joint_scores(logits, quality)
        probs, distances = self._integral(dists)  # (N, R, 4, n+1), (N, R, 4)
        centers, strides = self.location_centers(features)  # (R, 2), (R,)
        boxes = distance2bbox(centers, distances * strides[:, None])
        return scores, boxes, probs

    def valid_anchor_mask(self, images: ImageList, features: List[Tensor]) -> Optional[Tensor]:
        """(N, R) bool: locations inside each image's own padded extent; None when all are
        (``images`` the batch, ``features`` the per-level (N, C, Hi, Wi) features the head read).

        Each image is padded to the backbone's size divisibility; locations in the batch padding
        beyond that extent get no loss in training (as in mmdetection's ``valid_flags``) and no
        candidates at inference.
        """
        div = max(self.backbone.size_divisibility, 1)
        padded = [(math.ceil(h / div) * div, math.ceil(w / div) * div) for h, w in images.image_sizes]
        batch_h, batch_w = images.tensor.shape[-2:]
        if all(h >= batch_h and w >= batch_w for h, w in padded):
            return None
        device = images.tensor.device
        masks = []
        for h, w in padded:
            per_level = []
            for feature, stride in zip(features, self.strides):
                fh, fw = feature.shape[-2:]
                rows = torch.arange(fh, device=device) < min(math.ceil(h / stride), fh)
                cols = torch.arange(fw, device=device) < min(math.ceil(w / stride), fw)
                per_level.append((rows[:, None] & cols[None, :]).flatten())
            masks.append(torch.cat(per_level))
        return torch.stack(masks)

    # ---------------------------------------------------------------- training

    def forward_training(self, images, features, predictions, gt_instances):
        self.check_reach(images.tensor.shape[-2:])
        logits, dists, quality = self.transposed_outputs(predictions)
        anchors = self.anchor_generator(features)
        valid = self.valid_anchor_mask(images, features) if self.ignore_padding_anchors else None
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances, valid)
        losses = self.losses(anchors, logits, dists, quality, gt_labels, gt_boxes, valid)
        if self.distiller is not None:
            weights = self.quality_weights(logits, quality)
            losses.update(
                self.distiller.losses(self, images, anchors, gt_instances, valid, gt_labels, logits, dists, weights)
            )
        return losses

    def check_reach(self, input_hw) -> None:
        """Raise ConfigError when the side distributions cannot reach the edges of an object as
        large as a (Hp, Wp) input: a side reaches ``reg_max`` strides of its level, so the rule
        is reg_max x the largest stride >= half the input's longest side."""
        reach = self.reg_max * max(self.strides)
        if 2 * reach < max(input_hw):
            raise ConfigError(
                f"reg_max={self.reg_max} is too small for a {input_hw[0]}x{input_hw[1]} input: the rule is "
                f"reg_max x largest stride >= half the longest input side, and {self.reg_max} x {max(self.strides)} "
                f"= {reach} < {max(input_hw) / 2:g}; raise model.head.reg_max or add a coarser level"
            )

    def quality_weights(self, logits: Tensor, quality: Optional[Tensor]) -> Tensor:
        """(..., K) class logits and (..., 1) DGQP quality (or None) -> (...) detached weights:
        the predicted quality, max over classes of the joint score (eq. 8's weight of a
        positive's GIoU and DFL terms)."""
        return self._joint_scores(logits.detach(), None if quality is None else quality.detach()).amax(dim=-1)

    @torch.no_grad()
    def label_anchors(
        self,
        anchors: List[Boxes],
        gt_instances: List[Instances],
        valid: Optional[Tensor] = None,
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Args:
            anchors: per-level anchors, level l with R_l boxes (R in total).
            gt_instances: per image, with ``gt_boxes`` and ``gt_classes``.
            valid: (N, R) bool or None, see :meth:`valid_anchor_mask`.

        Returns:
            gt_labels: per image (R,) int64 in [0, K], K = background.
            matched_gt_boxes: per image (R, 4) XYXY box of the matched gt (0 for background).
        """
        num_anchors = sum(len(a) for a in anchors)
        gt_labels, matched_gt_boxes = [], []
        for i, inst in enumerate(gt_instances):
            if len(inst) == 0:
                device = anchors[0].device
                gt_labels.append(torch.full((num_anchors,), self.num_classes, device=device))
                matched_gt_boxes.append(torch.zeros(num_anchors, 4, device=device))
                continue
            matched_idxs, _ = self.anchor_matcher(anchors, inst.gt_boxes, None if valid is None else valid[i])
            labels = inst.gt_classes[matched_idxs.clamp(min=0)]
            labels[matched_idxs < 0] = self.num_classes
            gt_labels.append(labels)
            matched_gt_boxes.append(inst.gt_boxes.tensor[matched_idxs.clamp(min=0)])
        return gt_labels, matched_gt_boxes

    def losses(
        self,
        anchors: List[Boxes],
        logits: Tensor,
        dists: Tensor,
        quality: Optional[Tensor],
        gt_labels: List[Tensor],
        gt_boxes: List[Tensor],
        valid: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """Paper eq. 8: QFL over every location, GIoU and DFL over the positives weighted by
        their predicted quality; see the class docstring for the normalisers.

        Args:
            anchors: per-level anchors (R in total).
            logits, dists, quality: as :meth:`transposed_outputs` gives them.
            gt_labels: per image (R,) labels, K = background.
            gt_boxes: per image (R, 4) matched gt boxes in input pixels.
            valid: (N, R) anchors that get a loss, or None for all.

        Returns:
            dict with ``loss_qfl``, ``loss_box``, ``loss_dfl``.
        """
        n = self.reg_max
        gt_labels = torch.stack(gt_labels)  # (N, R)
        pos_mask = gt_labels != self.num_classes  # (N, R)
        pos = pos_mask.nonzero(as_tuple=True)  # (P,) image and anchor indices

        # 1. Targets of the positives, in stride units: the matched gt box and its distances.
        strides = torch.cat(
            [torch.full((len(a),), float(s), device=logits.device) for a, s in zip(anchors, self.strides)]
        )[pos[1], None]  # (P, 1)
        centers = Boxes.cat(anchors).get_centers()[pos[1]] / strides  # (P, 2)
        target_boxes = torch.stack(gt_boxes)[pos] / strides  # (P, 4)
        dfl_targets = bbox2distance(centers, target_boxes)  # (P, 4)
        pos_dist_logits = dists[pos]  # (P, 4*(n+1))
        _, distances = self._integral(pos_dist_logits)  # (P, 4)
        pred_boxes = distance2bbox(centers, distances)  # (P, 4)
        # The class target is the IoU of the detached decoded box, at the gt class only.
        cls_targets = torch.zeros_like(logits, dtype=torch.float32)  # (N, R, K)
        cls_targets[pos + (gt_labels[pos],)] = aligned_iou(pred_boxes.detach(), target_boxes)
        # Each positive's box terms are weighted by its detached predicted quality.
        weights = self.quality_weights(logits[pos], None if quality is None else quality[pos])  # (P,)

        # 2. The three terms, summed.
        if quality is None:
            loss_qfl = quality_focal_loss(logits, cls_targets, beta=self.qfl_beta)
        else:
            scores = self._joint_scores(logits, quality)  # (N, R, K)
            loss_qfl = quality_focal_loss_with_prob(scores, cls_targets, beta=self.qfl_beta)
        if valid is not None:
            loss_qfl = loss_qfl * valid[..., None]
        loss_box = giou_loss(pred_boxes, target_boxes, reduction="none")  # (P,)
        loss_dfl = (
            distribution_focal_loss(pos_dist_logits.reshape(-1, n + 1), dfl_targets.clamp(0, n - 0.1).flatten())
            .reshape(-1, 4)
            .mean(dim=1)
        )  # (P,)

        # 3. Normalisers, averaged over workers.
        num_pos_per_image = pos_mask.sum(dim=1)  # (N,)
        norm_pos, norm_quality = self._normalisers(num_pos_per_image.clamp(min=1).sum(), weights.sum())
        self._log_training_stats(num_pos_per_image, norm_pos, norm_quality, dfl_targets > n - 0.1)
        return {
            "loss_qfl": self.loss_qfl_weight * loss_qfl.sum() / norm_pos,
            "loss_box": self.loss_box_weight * (loss_box * weights).sum() / norm_quality,
            "loss_dfl": self.loss_dfl_weight * (loss_dfl * weights).sum() / norm_quality,
        }

    @staticmethod
    def _normalisers(num_pos: Tensor, quality_sum: Tensor) -> Tuple[Tensor, Tensor]:
        """Mean over workers of this worker's positives (each image counting at least 1) and of
        its summed quality weights, each at least 1. Every rank joins the all-reduce at every
        step, with or without positives."""
        norms = torch.stack([num_pos.float(), quality_sum.float()])
        if comm.get_world_size() > 1:
            dist.all_reduce(norms)
            norms = norms / comm.get_world_size()
        norm_pos, norm_quality = norms.clamp(min=1.0).unbind()
        return norm_pos, norm_quality

    @staticmethod
    def _log_training_stats(num_pos_per_image: Tensor, norm_pos: Tensor, norm_quality: Tensor, clamped: Tensor) -> None:
        """Counters to EventStorage (one host sync for all of them)."""
        clamped_frac = clamped.float().mean() if clamped.numel() else norm_pos.new_zeros(())
        values = torch.stack([num_pos_per_image.float().mean(), norm_pos, norm_quality, clamped_frac]).tolist()
        names = ["num_pos_per_image", "norm_pos", "norm_quality", "dfl_clamped_frac"]
        get_event_storage().put_scalars(**{f"gfl/{name}": value for name, value in zip(names, values)})

    # ---------------------------------------------------------------- inference

    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """See :meth:`DenseDetector.forward`. In inference each Instances also carries
        ``pred_dists`` (M, 4, n+1) side distributions (left, top, right, bottom) and
        ``pred_strides`` (M,), the spacing of their bins in output-image pixels."""
        outputs = super().forward(batched_inputs)
        if self.training:
            return outputs
        for out, inp in zip(outputs, batched_inputs):
            inst = out["instances"]
            in_h, in_w = inp["image"].shape[-2:]
            out_h, out_w = inst.image_size
            inst.pred_strides = inst.pred_strides * math.sqrt((out_h / in_h) * (out_w / in_w))
        return outputs

    def forward_inference(
        self, images: ImageList, features: List[Tensor], predictions: GFLHeadOutputs
    ) -> List[Instances]:
        scores, boxes, probs = self.decode_dense(features, predictions)
        valid = self.valid_anchor_mask(images, features)  # (N, R): no candidates in padding
        if valid is not None:
            scores = scores * valid[..., None]
        level_sizes = [f.shape[-2] * f.shape[-1] for f in features]
        return [
            self.inference_single_image(s.split(level_sizes), b.split(level_sizes), p.split(level_sizes), image_size)
            for s, b, p, image_size in zip(scores, boxes, probs, images.image_sizes)
        ]

    def inference_single_image(
        self,
        scores: List[Tensor],
        boxes: List[Tensor],
        probs: List[Tensor],
        image_size: Tuple[int, int],
    ) -> Instances:
        """
        Args:
            scores: per level (Ri, K) joint scores in [0, 1].
            boxes: per level (Ri, 4) decoded boxes in input pixels.
            probs: per level (Ri, 4, n+1) side distributions.
            image_size: (h, w) of the network input.

        Returns:
            Instances with pred_boxes, scores, pred_classes, pred_dists, pred_strides.
        """
        return self.nms(self.candidates_single_image(scores, boxes, probs, image_size))

    def candidates_single_image(
        self, scores: List[Tensor], boxes: List[Tensor], probs: List[Tensor], image_size: Tuple[int, int]
    ) -> Instances:
        """The candidates of one image before NMS (arguments as :meth:`inference_single_image`):
        per level the top-k (location, class) pairs above the threshold; finite boxes only,
        clipped to the image as the reference does.

        When no level has more than ``test_topk_candidates`` pairs above the threshold (the usual
        case: the top-k then keeps them all) every level is selected in one pass; the candidates
        are the same, in another order, which NMS does not see (it orders by score)."""
        pred = None if torch.jit.is_tracing() else self._select_all_levels(scores, boxes, probs, image_size)
        if pred is None:
            pred = Instances.cat(
                [
                    self._select_level(scores_i, boxes_i, probs_i, stride, image_size)
                    for scores_i, boxes_i, probs_i, stride in zip(scores, boxes, probs, self.strides)
                ]
            )
        # Non-finite boxes (a diverged model) are dropped rather than crash the clip below.
        pred = pred[torch.isfinite(pred.pred_boxes.tensor).all(dim=1)]
        pred.pred_boxes.clip(image_size)  # as the reference, before NMS
        return pred

    def nms(self, candidates: Instances) -> Instances:
        """Class-aware NMS at ``test_nms_thresh``, then the ``max_detections_per_image`` best."""
        boxes, scores, classes = candidates.pred_boxes.tensor, candidates.scores, candidates.pred_classes
        keep = batched_nms(boxes, scores, classes, self.test_nms_thresh)
        return candidates[keep[: self.max_detections_per_image]]

    def _select_all_levels(
        self, scores: List[Tensor], boxes: List[Tensor], probs: List[Tensor], image_size: Tuple[int, int]
    ) -> Optional[Instances]:
        """Every (location, class) pair above the score threshold, all levels at once (arguments
        as :meth:`inference_single_image`); None when a level has more than
        ``test_topk_candidates`` of them (then its top-k must choose: :meth:`_select_level`)."""
        scores_all = torch.cat(scores)  # (R, K)
        keep = scores_all > self.test_score_thresh
        kept_scores = scores_all[keep]  # row-major, as nonzero
        location_idxs, class_idxs = torch.nonzero(keep).unbind(dim=1)
        # Level of each pair and its stride, from the level starts (Python ints: no host copy).
        levels = torch.zeros_like(location_idxs)
        pred_strides = torch.full_like(kept_scores, float(self.strides[0]))
        start = 0
        for scores_i, stride in zip(scores[:-1], self.strides[1:]):
            start += scores_i.shape[0]
            later = location_idxs >= start
            levels += later
            pred_strides = torch.where(later, float(stride), pred_strides)
        if bool((torch.bincount(levels, minlength=len(scores)) > self.test_topk_candidates).any()):
            return None
        return Instances(
            image_size,
            pred_boxes=Boxes(torch.cat(boxes)[location_idxs]),
            scores=kept_scores,
            pred_classes=class_idxs,
            pred_dists=torch.cat(probs)[location_idxs],
            pred_strides=pred_strides,
        )

    def _select_level(
        self, scores: Tensor, boxes: Tensor, probs: Tensor, stride: int, image_size: Tuple[int, int]
    ) -> Instances:
        """Keep the top-k (location, class) pairs of one level above the score threshold, as
        DenseDetector does.

        Args:
            scores: (Ri, K) joint scores.
            boxes: (Ri, 4) boxes.
            probs: (Ri, 4, n+1) side distributions.
            stride: the level's stride in input pixels.
        """
        keep = scores > self.test_score_thresh  # (Ri, K)
        kept_scores = scores[keep]
        kept_idxs = torch.nonzero(keep)  # (k, 2)
        num_kept = kept_idxs.shape[0]
        if isinstance(num_kept, Tensor):  # tracing: keep the clamp in the graph
            num_topk = torch.clamp(num_kept, max=self.test_topk_candidates)
        else:
            num_topk = min(num_kept, self.test_topk_candidates)
        kept_scores, order = kept_scores.topk(num_topk)
        location_idxs, class_idxs = kept_idxs[order].unbind(dim=1)
        return Instances(
            image_size,
            pred_boxes=Boxes(boxes[location_idxs]),
            scores=kept_scores,
            pred_classes=class_idxs,
            pred_dists=probs[location_idxs],
            pred_strides=torch.full_like(kept_scores, float(stride)),
        )
