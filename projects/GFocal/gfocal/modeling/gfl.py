"""GFL (v1 and v2) as a Detectron2 dense detector."""
import logging
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from fvcore.nn import giou_loss
from torch import Tensor, nn

from detectron2.layers import batched_nms
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from .atss import ATSSMatcher
from .losses import distribution_focal_loss, quality_focal_loss, quality_focal_loss_with_prob

__all__ = ["GFL", "distance2bbox", "bbox2distance", "aligned_iou"]

logger = logging.getLogger(__name__)


def distance2bbox(centers: Tensor, distances: Tensor) -> Tensor:
    """(P, 2) centres and (P, 4) left/top/right/bottom distances -> (P, 4) XYXY boxes."""
    return torch.cat([centers - distances[:, :2], centers + distances[:, 2:]], dim=1)


def bbox2distance(centers: Tensor, boxes: Tensor) -> Tensor:
    """(P, 2) centres and (P, 4) XYXY boxes -> (P, 4) left/top/right/bottom distances."""
    return torch.cat([centers - boxes[:, :2], boxes[:, 2:] - centers], dim=1)


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
        super().__init__(
            backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        if not hasattr(head, "reg_max") or not hasattr(head, "use_dgqp"):
            raise ValueError(f"GFL needs a head with `reg_max` and `use_dgqp`, got {type(head)}")
        if head.num_classes != num_classes:
            raise ValueError(
                f"num_classes={num_classes} but the head predicts {head.num_classes} classes"
            )
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
        self.register_buffer(
            "project", torch.arange(self.reg_max + 1, dtype=torch.float32), persistent=False
        )

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

    # ---------------------------------------------------------------- shared helpers

    def _transpose(self, predictions: Tuple[List[Tensor], ...]) -> List[List[Tensor]]:
        """Head outputs -> per level (N, Hi*Wi, K), (N, Hi*Wi, 4*(n+1)) [, (N, Hi*Wi, 1)]."""
        dims = [self.num_classes, 4 * (self.reg_max + 1), 1][: len(predictions)]
        return self._transpose_dense_predictions(predictions, dims)

    def _expected_distances(self, dist_logits: Tensor) -> Tuple[Tensor, Tensor]:
        """(P, 4*(n+1)) logits -> ((P, 4, n+1) probabilities, (P, 4) expected distances)."""
        probs = dist_logits.float().reshape(-1, 4, self.reg_max + 1).softmax(dim=2)
        return probs, probs @ self.project

    # ---------------------------------------------------------------- training

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_dists, *pred_quality = self._transpose(predictions)
        anchors = self.anchor_generator(features)
        valid = self._valid_anchor_mask(images, features) if self.ignore_padding_anchors else None
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances, valid)
        return self.losses(
            anchors,
            pred_logits,
            pred_dists,
            pred_quality[0] if pred_quality else None,
            gt_labels,
            gt_boxes,
            valid,
        )

    def _valid_anchor_mask(self, images: ImageList, features: List[Tensor]) -> Optional[Tensor]:
        """(N, R) bool: anchors inside each image's own padded extent; None when all are.

        Each image is padded to the backbone's size divisibility; anchors of the batch padding
        beyond that extent get no loss (as in mmdetection's ``valid_flags``).
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
            valid: (N, R) bool or None, see :meth:`_valid_anchor_mask`.

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
            matched_idxs, _ = self.anchor_matcher(
                anchors, inst.gt_boxes, None if valid is None else valid[i]
            )
            labels = inst.gt_classes[matched_idxs.clamp(min=0)]
            labels[matched_idxs < 0] = self.num_classes
            gt_labels.append(labels)
            matched_gt_boxes.append(inst.gt_boxes.tensor[matched_idxs.clamp(min=0)])
        return gt_labels, matched_gt_boxes

    def losses(
        self,
        anchors: List[Boxes],
        pred_logits: List[Tensor],
        pred_dists: List[Tensor],
        pred_quality: Optional[List[Tensor]],
        gt_labels: List[Tensor],
        gt_boxes: List[Tensor],
        valid: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """
        Args:
            anchors: per-level anchors (R in total).
            pred_logits: per level (N, Ri, K) class logits.
            pred_dists: per level (N, Ri, 4*(n+1)) distribution logits.
            pred_quality: GFLv2 only, per level (N, Ri, 1) DGQP quality; else None.
            gt_labels: per image (R,) labels, K = background.
            gt_boxes: per image (R, 4) matched gt boxes.
            valid: (N, R) anchors that get a loss, or None for all.

        Returns:
            dict with ``loss_qfl``, ``loss_box``, ``loss_dfl``.
        """
        K, n = self.num_classes, self.reg_max
        gt_labels = torch.stack(gt_labels)  # (N, R)
        gt_boxes = torch.stack(gt_boxes)  # (N, R, 4)
        logits = torch.cat(pred_logits, dim=1)  # (N, R, K)
        dists = torch.cat(pred_dists, dim=1)  # (N, R, 4*(n+1))
        if self.use_dgqp:
            # float32: under AMP a half-precision product of two sigmoids underflows.
            scores = logits.float().sigmoid() * torch.cat(pred_quality, dim=1).float()  # (N, R, K)
        else:
            scores = logits

        anchor_boxes = Boxes.cat(anchors)
        strides = torch.cat(
            [torch.full((len(a),), float(s), device=logits.device) for a, s in zip(anchors, self.strides)]
        )  # (R,)
        centers = anchor_boxes.get_centers() / strides[:, None]  # (R, 2), stride units

        pos_mask = gt_labels != K  # (N, R)
        pos_image, pos_anchor = pos_mask.nonzero(as_tuple=True)  # (P,), (P,)
        pos_labels = gt_labels[pos_image, pos_anchor]  # (P,)
        pos_centers = centers[pos_anchor]  # (P, 2)
        pos_targets = gt_boxes[pos_image, pos_anchor] / strides[pos_anchor, None]  # (P, 4)
        pos_dists = dists[pos_image, pos_anchor]  # (P, 4*(n+1))
        _, pos_distances = self._expected_distances(pos_dists)  # (P, 4)
        pos_pred_boxes = distance2bbox(pos_centers, pos_distances)  # (P, 4)

        # Joint class-IoU targets: IoU of the detached decoded box at the gt class, 0 elsewhere.
        ious = aligned_iou(pos_pred_boxes.detach(), pos_targets)  # (P,)
        cls_targets = torch.zeros_like(logits, dtype=torch.float32)  # (N, R, K)
        cls_targets[pos_image, pos_anchor, pos_labels] = ious
        if self.use_dgqp:
            loss_qfl = quality_focal_loss_with_prob(scores, cls_targets, beta=self.qfl_beta)
        else:
            loss_qfl = quality_focal_loss(scores, cls_targets, beta=self.qfl_beta)
        if valid is not None:
            loss_qfl = loss_qfl * valid[..., None]
        loss_qfl = loss_qfl.sum()

        # Positives are weighted by their detached predicted quality.
        pos_scores = scores.detach()[pos_image, pos_anchor].float()  # (P, K)
        weights = (pos_scores if self.use_dgqp else pos_scores.sigmoid()).amax(dim=1)  # (P,)
        loss_box = (giou_loss(pos_pred_boxes, pos_targets, reduction="none") * weights).sum()
        dfl_targets = bbox2distance(pos_centers, pos_targets)  # (P, 4)
        loss_dfl = distribution_focal_loss(
            pos_dists.reshape(-1, n + 1), dfl_targets.clamp(0, n - 0.1).flatten()
        ).reshape(-1, 4).mean(dim=1)
        loss_dfl = (loss_dfl * weights).sum()

        # Normalisers, averaged over workers (every rank joins the all-reduce every step).
        num_pos_per_image = pos_mask.sum(dim=1)  # (N,)
        local = torch.stack([num_pos_per_image.clamp(min=1).sum().float(), weights.sum()])
        norms = local.clone()
        if comm.get_world_size() > 1:
            dist.all_reduce(norms)
            norms = norms / comm.get_world_size()
        norm_pos, norm_quality = norms.clamp(min=1.0).unbind()

        clamped = (dfl_targets > n - 0.1).float().mean() if len(dfl_targets) else local.new_zeros(())
        stats = torch.stack([num_pos_per_image.float().mean(), norms[0], norms[1], clamped]).tolist()
        storage = get_event_storage()
        for name, value in zip(["num_pos_per_image", "norm_pos", "norm_quality", "dfl_clamped_frac"], stats):
            storage.put_scalar(f"gfl/{name}", value)

        return {
            "loss_qfl": loss_qfl * self.loss_qfl_weight / norm_pos,
            "loss_box": loss_box * self.loss_box_weight / norm_quality,
            "loss_dfl": loss_dfl * self.loss_dfl_weight / norm_quality,
        }

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
        self, images: ImageList, features: List[Tensor], predictions: Tuple[List[Tensor], ...]
    ) -> List[Instances]:
        pred_logits, pred_dists, *pred_quality = self._transpose(predictions)
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores = [x[img_idx].float().sigmoid() for x in pred_logits]  # per level (Ri, K)
            if pred_quality:
                scores = [s * q[img_idx].float() for s, q in zip(scores, pred_quality[0])]
            dists = [x[img_idx] for x in pred_dists]
            results.append(self.inference_single_image(anchors, scores, dists, image_size))
        return results

    def inference_single_image(
        self,
        anchors: List[Boxes],
        scores: List[Tensor],
        dist_logits: List[Tensor],
        image_size: Tuple[int, int],
    ) -> Instances:
        """
        Args:
            anchors: per-level anchors.
            scores: per level (Ri, K) joint scores in [0, 1].
            dist_logits: per level (Ri, 4*(n+1)) distribution logits.
            image_size: (h, w) of the network input.

        Returns:
            Instances with pred_boxes, scores, pred_classes, pred_dists, pred_strides.
        """
        pred = Instances.cat(
            [
                self._decode_level(anchors_i, scores_i, dists_i, stride, image_size)
                for anchors_i, scores_i, dists_i, stride in zip(
                    anchors, scores, dist_logits, self.strides
                )
            ]
        )
        # Non-finite boxes (a diverged model) are dropped rather than crash the clip below.
        pred = pred[torch.isfinite(pred.pred_boxes.tensor).all(dim=1)]
        pred.pred_boxes.clip(image_size)  # as the reference, before NMS
        keep = batched_nms(pred.pred_boxes.tensor, pred.scores, pred.pred_classes, self.test_nms_thresh)
        return pred[keep[: self.max_detections_per_image]]

    def _decode_level(
        self,
        anchors: Boxes,
        scores: Tensor,
        dist_logits: Tensor,
        stride: int,
        image_size: Tuple[int, int],
    ) -> Instances:
        """Keep the top-k (anchor, class) pairs of one level above the score threshold, as
        DenseDetector does, and decode only those.

        Args:
            anchors: Ri anchors of the level.
            scores: (Ri, K) joint scores.
            dist_logits: (Ri, 4*(n+1)) distribution logits.
            stride: the level's stride in input pixels.
        """
        keep = scores > self.test_score_thresh  # (Ri, K)
        kept_scores = scores[keep]
        kept_idxs = torch.nonzero(keep)  # (k, 2)
        num_topk = min(kept_idxs.shape[0], self.test_topk_candidates)
        kept_scores, order = kept_scores.topk(num_topk)
        anchor_idxs, class_idxs = kept_idxs[order].unbind(dim=1)

        probs, distances = self._expected_distances(dist_logits[anchor_idxs])  # (M, 4, n+1), (M, 4)
        centers = anchors.get_centers()[anchor_idxs]  # (M, 2)
        boxes = distance2bbox(centers, distances * stride)
        return Instances(
            image_size,
            pred_boxes=Boxes(boxes),
            scores=kept_scores,
            pred_classes=class_idxs,
            pred_dists=probs,
            pred_strides=torch.full_like(kept_scores, float(stride)),
        )
