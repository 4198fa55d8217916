"""COCO box evaluation at compiled speed without Detectron2's compiled ops.

Detectron2's ``COCOEvaluator(use_fast_impl=True)`` needs its C++ extension, which the pure-Python
install lacks, so it falls back to pycocotools' pure-Python ``COCOeval`` (minutes on COCO val's
5k images). :class:`FastCOCOEvaluator` is the same evaluator with the box AP computed by
faster-coco-eval (a maintained C++ implementation of the same protocol): the same 12 COCO stats
and per-category AP as pycocotools (tested to 1e-6 on the built-in val split).

:class:`VOCEvaluator` computes Pascal VOC's AP50 (VOC2007's 11-point or VOC2010-2012's all-point
AP) in memory from any registered dataset's records, for ``train_net.py --metric voc07|voc12``.
"""

import itertools
import json
import logging
import os
import tempfile
from typing import Optional

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

__all__ = ["FastCOCOEvaluator", "VOCEvaluator", "faster_cocoeval", "voc_average_precision"]

logger = logging.getLogger(__name__)


def faster_cocoeval(coco_gt_dataset: dict, coco_results, img_ids=None, max_dets=(1, 10, 100)):
    """Run faster-coco-eval's box evaluation.

    Args:
        coco_gt_dataset: the ground truth, a COCO json dict (``COCO.dataset``).
        coco_results: detections in COCO results format (``bbox`` XYWH, ``score``, dataset
            ``category_id``, ``image_id``).
        img_ids: evaluate these images only (None: all).
        max_dets: COCO's maxDets.

    Returns:
        the evaluated ``COCOeval_faster``: ``stats`` (12,) and ``eval["precision"]``
        (iou, recall, class, area, max dets) as pycocotools' COCOeval has them.
    """
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(coco_gt_dataset)
    evaluation = COCOeval_faster(gt, gt.loadRes(list(coco_results)), "bbox", print_function=logger.info)
    evaluation.params.maxDets = list(max_dets)
    if img_ids is not None:
        evaluation.params.imgIds = list(img_ids)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return evaluation


class FastCOCOEvaluator(COCOEvaluator):
    """``COCOEvaluator`` for box detection whose AP comes from faster-coco-eval; everything else
    (arguments, outputs, saved ``coco_instances_results.json``, logs) is Detectron2's. Other
    tasks (masks, keypoints) and custom ``max_dets_per_image`` fall back to pycocotools."""

    def __init__(
        self, dataset_name: str, tasks=None, distributed: bool = True, output_dir: Optional[str] = None, **kwargs
    ):
        kwargs["use_fast_impl"] = False  # Detectron2's C++ evaluator is not available here
        metadata = MetadataCatalog.get(dataset_name)
        if output_dir is None and not hasattr(metadata, "json_file") and hasattr(metadata, "label_spec"):
            # A dataset registered from a spec: its COCO form is cached by name, and the name
            # changes with the labels (gfocal.data.register_dataset), so the cache is never stale.
            cache = os.path.join(tempfile.gettempdir(), "gfocal_coco_cache", f"{dataset_name}_coco_format.json")
            convert_to_coco_json(dataset_name, cache)
            metadata.json_file = cache
        super().__init__(dataset_name, tasks, distributed, output_dir, **kwargs)

    def _eval_predictions(self, predictions, img_ids=None):
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        if set(tasks) != {"bbox"} or list(self._max_dets_per_image) != [1, 10, 100] or not self._do_evaluation:
            return super()._eval_predictions(predictions, img_ids)
        mapping = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        if mapping:
            reverse = {v: k for k, v in mapping.items()}
            for result in coco_results:
                if result["category_id"] not in reverse:
                    raise ValueError(
                        f"a prediction has class {result['category_id']}, but the dataset has "
                        f"{len(reverse)} classes (0..{len(reverse) - 1})"
                    )
                result["category_id"] = reverse[result["category_id"]]
        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            self._logger.info(f"Saving results to {path}")
            with PathManager.open(path, "w") as f:
                f.write(json.dumps(coco_results))
        logger.info("Evaluating predictions with faster-coco-eval ...")
        evaluation = faster_cocoeval(self._coco_api.dataset, coco_results, img_ids) if coco_results else None
        classes = self._metadata.get("thing_classes")
        self._results["bbox"] = self._derive_coco_results(evaluation, "bbox", class_names=classes)


def voc_average_precision(recall: np.ndarray, precision: np.ndarray, metric: str) -> float:
    """Pascal VOC's AP of one class from its precision-recall points in score order.

    Args:
        recall, precision: (D,) after each of the D ranked detections; recall non-decreasing.
        metric: ``"voc07"``: the mean over recall thresholds t = 0, 0.1, ..., 1 of the highest
            precision at a recall >= t (0 when none reaches t); ``"voc12"``: the area under the
            precision envelope (at each recall, the highest precision at that recall or beyond),
            the devkit's measure since VOC2010.
    """
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # (D,)
    if metric == "voc07":
        thresholds = np.arange(11) / 10  # exact tenths (0.1 * 3 would be 0.30000000000000004)
        first = np.searchsorted(recall, thresholds, side="left")  # first point with recall >= t
        reached = first < len(recall)
        return float(np.sum(envelope[first[reached]]) / 11)
    steps = np.diff(np.concatenate(([0.0], recall)))  # recall gained at each point (0 for a FP)
    return float(np.sum(steps * envelope))


def _pairwise_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of continuous XYXY boxes (no +1 on sides), (N, 4) x (M, 4) -> (N, M); 0 for empty boxes."""
    low = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    high = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)  # (N, M)
    area1 = np.prod(np.clip(boxes1[:, 2:] - boxes1[:, :2], 0, None), axis=1)
    area2 = np.prod(np.clip(boxes2[:, 2:] - boxes2[:, :2], 0, None), axis=1)
    union = area1[:, None] + area2[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class VOCEvaluator(DatasetEvaluator):
    """Pascal VOC box AP50 computed in memory from the dataset's records, for any registered
    dataset (no VOCdevkit folder needed), as the devkit's ``VOCevaldet`` computes it:

    - ground truth from ``DatasetCatalog.get(dataset_name)``: every record's ``image_id``, its
      boxes (any ``BoxMode``, converted to XYXY absolute) and ``category_id`` (an index into the
      metadata's ``thing_classes``); ``iscrowd=1`` boxes are VOC's *difficult* objects: a detection
      matched to one is neither a true nor a false positive, and they do not count in the recall;
    - per class, detections in descending score order (ties in input order) each take the gt box
      of their image and class with the highest IoU; at IoU >= 0.5 (the devkit's ``>=``;
      Detectron2's ``voc_eval`` uses ``>``) the first detection to take a non-difficult box is a
      true positive and later ones false positives (duplicates); below 0.5, a false positive.
      A taken box is never passed on to a detection's second-best box, so the matching needs no
      loop: each detection's best box comes from one IoU matrix per image, and a box's first
      taker is found with ``np.unique``;
    - IoU of continuous pixel coordinates (Detectron2's records: a box over pixels 0..9 is
      [0, 10]), without the devkit's +1 on widths and heights, which is for the integer corners of
      VOC's XML (our VOC reader already turned them into continuous coordinates);
    - AP per class by :func:`voc_average_precision` (``metric``: ``"voc07"`` 11-point,
      ``"voc12"`` all-point); classes with no non-difficult gt box have no AP (NaN) and are left
      out of the mean, as COCO's evaluation does.

    Results: ``{"bbox": {"AP50": mean over classes, "AP50-<class>": ...}}`` in percent. Like
    Detectron2's evaluators, ``evaluate`` gathers the predictions of every process (call it on all
    of them) and returns the results on the main process only.
    """

    IOU_THRESHOLD = 0.5

    def __init__(self, dataset_name: str, metric: str = "voc12", distributed: bool = True):
        """
        Args:
            dataset_name: a registered dataset (its records are the ground truth).
            metric: ``"voc07"`` (11-point AP, VOC2007) or ``"voc12"`` (all-point AP, VOC2010-2012).
            distributed: gather the predictions of all processes before evaluating.
        """
        if metric not in ("voc07", "voc12"):
            raise ValueError(f"VOCEvaluator metric must be 'voc07' or 'voc12', got {metric!r}")
        self._dataset_name = dataset_name
        self._metric = metric
        self._distributed = distributed
        self._class_names = list(MetadataCatalog.get(dataset_name).thing_classes)
        self.reset()

    def reset(self):
        self._predictions = []  # per image: (image_id, boxes (R, 4) XYXY, scores (R,), classes (R,))

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            self._predictions.append(
                (
                    inp["image_id"],
                    instances.pred_boxes.tensor.numpy().astype(np.float64),
                    instances.scores.numpy().astype(np.float64),
                    instances.pred_classes.numpy().astype(np.int64),
                )
            )

    def evaluate(self):
        predictions = self._predictions
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        logger.info(f"Evaluating {len(predictions)} images of {self._dataset_name} with the {self._metric} AP50 ...")
        aps = self._class_aps(predictions)  # (K,), NaN for classes without gt
        results = {"AP50": float(np.nanmean(aps) * 100) if np.isfinite(aps).any() else float("nan")}
        results.update({f"AP50-{name}": float(ap * 100) for name, ap in zip(self._class_names, aps)})
        return {"bbox": results}

    def _ground_truth(self):
        """The records as arrays over all G gt boxes: boxes (G, 4) XYXY_ABS, classes (G,),
        difficult (G,), and each image's gt indices by image_id."""
        boxes, classes, difficult, by_image = [], [], [], {}
        for record in DatasetCatalog.get(self._dataset_name):
            start = len(boxes)
            for ann in record.get("annotations", []):
                boxes.append(BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS))
                classes.append(ann["category_id"])
                difficult.append(bool(ann.get("iscrowd", 0)))
            by_image[record["image_id"]] = np.arange(start, len(boxes))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return boxes, np.asarray(classes, dtype=np.int64), np.asarray(difficult, dtype=bool), by_image

    def _class_aps(self, predictions) -> np.ndarray:
        """AP of each of the K classes, (K,); D = detections, G = gt boxes."""
        gt_boxes, gt_classes, gt_difficult, by_image = self._ground_truth()
        scores, classes, best_iou, best_gt = [], [], [], []
        for image_id, boxes, image_scores, image_classes in predictions:
            if image_id not in by_image:
                raise ValueError(f"a prediction is for image_id {image_id!r}, which {self._dataset_name} does not have")
            gts = by_image[image_id]
            iou = _pairwise_iou(boxes, gt_boxes[gts])  # (Di, Gi)
            iou[image_classes[:, None] != gt_classes[gts][None, :]] = -1.0  # only boxes of the same class
            if len(gts):
                best_iou.append(iou.max(axis=1))
                best_gt.append(gts[iou.argmax(axis=1)])  # first of equal IoUs, as the devkit
            else:
                best_iou.append(np.full(len(boxes), -1.0))
                best_gt.append(np.zeros(len(boxes), dtype=np.int64))
            scores.append(image_scores)
            classes.append(image_classes)
        scores, best_iou = np.concatenate([np.zeros(0)] + scores), np.concatenate([np.zeros(0)] + best_iou)  # (D,)
        classes = np.concatenate([np.zeros(0, np.int64)] + classes)  # (D,)
        best_gt = np.concatenate([np.zeros(0, np.int64)] + best_gt)  # (D,)
        if len(classes) and not 0 <= classes.min() <= classes.max() < len(self._class_names):
            raise ValueError(
                f"a prediction has class {classes.min() if classes.min() < 0 else classes.max()}, but "
                f"{self._dataset_name} has {len(self._class_names)} classes (0..{len(self._class_names) - 1})"
            )

        aps = np.full(len(self._class_names), np.nan)
        for k in range(len(self._class_names)):
            num_gt = int(np.sum((gt_classes == k) & ~gt_difficult))
            if num_gt == 0:
                continue
            order = np.flatnonzero(classes == k)
            order = order[np.argsort(-scores[order], kind="stable")]
            hit = best_iou[order] >= self.IOU_THRESHOLD
            gt = best_gt[order]
            keep = ~(hit & gt_difficult[gt])  # a detection of a difficult box counts neither way
            hit, gt = hit[keep], gt[keep]
            tp = np.zeros(len(gt), dtype=bool)
            matched = np.flatnonzero(hit)
            tp[matched[np.unique(gt[matched], return_index=True)[1]]] = True  # each box's first taker
            true_positives = np.cumsum(tp)
            recall = true_positives / num_gt
            precision = true_positives / np.arange(1, len(tp) + 1)
            aps[k] = voc_average_precision(recall, precision, self._metric)
        return aps
