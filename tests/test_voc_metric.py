"""Pascal VOC AP50 (VOCEvaluator, train_net.py --metric voc07|voc12) against hand-computed values."""

import importlib.util
import os
import uuid

import numpy as np
import pytest
import torch
from gfl_testing import REPO

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from gfocal.engine import VOCEvaluator, voc_average_precision


def register(classes, records):
    """A dataset of ``records`` (image_id, height, width, annotations) under a fresh name."""
    name = f"voc_metric_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=list(classes))
    return name


def gt(box, cls, difficult=0, mode=BoxMode.XYXY_ABS):
    return {"bbox": box, "bbox_mode": mode, "category_id": cls, "iscrowd": difficult}


def record(image_id, *annotations):
    return {"image_id": image_id, "height": 100, "width": 100, "annotations": list(annotations)}


def output(*detections):
    """Model output for one image from (box, score, class) triples."""
    instances = Instances((100, 100))
    instances.pred_boxes = Boxes(torch.tensor([d[0] for d in detections], dtype=torch.float32).reshape(-1, 4))
    instances.scores = torch.tensor([d[1] for d in detections], dtype=torch.float32)
    instances.pred_classes = torch.tensor([d[2] for d in detections], dtype=torch.int64)
    return {"instances": instances}


def evaluate(name, metric, image_ids, outputs):
    evaluator = VOCEvaluator(name, metric=metric)
    evaluator.reset()
    evaluator.process([{"image_id": i} for i in image_ids], outputs)
    return evaluator.evaluate()["bbox"]


# One class, 3 gt boxes (A, B in image 0; C in image 1) and 4 detections, given out of score order:
#   d1 0.9 on A (IoU 1)                  TP   recall 1/3  precision 1/1
#   d2 0.8 on A again (IoU 0.9)          FP (A taken)  1/3  1/2
#   d3 0.7 half of B (IoU exactly 0.5)   TP (>= 0.5)   2/3  2/3
#   d4 0.6 on C (IoU 0.49)               FP            2/3  2/4
# voc12: the precision envelope is 1 up to recall 1/3 and 2/3 up to 2/3 (nothing beyond):
#        AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
# voc07: highest precision at recall >= t: t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t >= .7 -> 0:
#        AP = (4 * 1 + 3 * 2/3) / 11 = 6/11.
HAND_RECORDS = [record(0, gt([0, 0, 10, 10], 0), gt([20, 0, 30, 10], 0)), record(1, gt([0, 0, 10, 10], 0))]
HAND_OUTPUTS = [
    output(([0, 0, 10, 4.9], 0.6, 0)),
    output(([0, 0, 10, 9], 0.8, 0), ([20, 0, 30, 5], 0.7, 0), ([0, 0, 10, 10], 0.9, 0)),
]


@pytest.mark.parametrize("metric, expected", [("voc12", 5 / 9), ("voc07", 6 / 11)])
def test_hand_computed_precision_recall_curve(metric, expected):
    name = register(["cat"], HAND_RECORDS)
    result = evaluate(name, metric, [1, 0], HAND_OUTPUTS)
    assert result["AP50"] == pytest.approx(100 * expected, abs=1e-9)
    assert result["AP50-cat"] == pytest.approx(100 * expected, abs=1e-9)


def test_average_precision_of_points():
    # The same curve as above, as points; then a curve whose first detection is a false positive:
    # (recall 0, precision 0), (1, 1/2): both metrics give 1/2.
    recall, precision = np.array([1, 1, 2, 2]) / 3, np.array([1, 1 / 2, 2 / 3, 1 / 2])
    assert voc_average_precision(recall, precision, "voc12") == pytest.approx(5 / 9)
    assert voc_average_precision(recall, precision, "voc07") == pytest.approx(6 / 11)
    for metric in ("voc07", "voc12"):
        assert voc_average_precision(np.array([0.0, 1.0]), np.array([0.0, 0.5]), metric) == pytest.approx(0.5)
        assert voc_average_precision(np.zeros(0), np.zeros(0), metric) == 0.0
    # Recall exactly 0.3 reaches the threshold t = 0.3 (0.1 * 3 would be 0.30000000000000004).
    assert voc_average_precision(np.array([0.3]), np.array([1.0]), "voc07") == pytest.approx(4 / 11)


def test_detections_of_a_difficult_box_count_neither_way():
    # Gt A and a difficult box D; d1 (0.95) and d2 (0.9) on D are ignored, d3 (0.8) on A is a true
    # positive: one point (recall 1, precision 1), AP 1. Counted as false positives, the precision
    # at recall 1 would be 1/3; counted as gt, recall would stop at 1/2.
    name = register(["dog"], [record(7, gt([0, 0, 10, 10], 0), gt([50, 50, 60, 60], 0, difficult=1))])
    outputs = [output(([50, 50, 60, 60], 0.95, 0), ([51, 50, 60, 60], 0.9, 0), ([0, 0, 10, 10], 0.8, 0))]
    for metric in ("voc07", "voc12"):
        assert evaluate(name, metric, [7], outputs)["AP50"] == pytest.approx(100)


def test_classes_without_gt_are_left_out_and_classes_averaged():
    # a: one gt, found -> AP 1. b: no gt (a detection anyway) -> NaN, not in the mean. c: one gt
    # (given as XYWH), a false positive (0.9) then a hit (0.8): points (0, 0), (1, 1/2) -> AP 1/2
    # in both metrics. Mean over a and c: 75.
    records = [
        record(0, gt([0, 0, 10, 10], 0)),
        record(1, gt([40, 40, 20, 10], 2, mode=BoxMode.XYWH_ABS)),
    ]
    outputs = [
        output(([0, 0, 10, 10], 0.7, 0), ([0, 0, 10, 10], 0.99, 1)),
        output(([0, 0, 10, 10], 0.9, 2), ([40, 40, 60, 50], 0.8, 2)),
    ]
    name = register(["a", "b", "c"], records)
    for metric in ("voc07", "voc12"):
        result = evaluate(name, metric, [0, 1], outputs)
        assert result["AP50"] == pytest.approx(75)
        assert (result["AP50-a"], result["AP50-c"]) == pytest.approx((100, 50))
        assert np.isnan(result["AP50-b"])


def test_missed_images_and_bad_predictions():
    name = register(["a"], [record(0, gt([0, 0, 10, 10], 0)), record(1, gt([0, 0, 10, 10], 0))])
    # Image 1 has no prediction: its box is missed (recall 1/2 at precision 1).
    assert evaluate(name, "voc12", [0], [output(([0, 0, 10, 10], 0.5, 0))])["AP50"] == pytest.approx(50)
    assert evaluate(name, "voc12", [0, 1], [output(), output()])["AP50"] == 0
    with pytest.raises(ValueError, match="image_id 5"):
        evaluate(name, "voc12", [5], [output(([0, 0, 10, 10], 0.5, 0))])
    with pytest.raises(ValueError, match="class 3, but .* has 1 classes"):
        evaluate(name, "voc12", [0], [output(([0, 0, 10, 10], 0.5, 3))])
    with pytest.raises(ValueError, match="'voc13'"):
        VOCEvaluator(name, metric="voc13")


def load_train_net():
    spec = importlib.util.spec_from_file_location("train_net", os.path.join(REPO, "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_net_metric_replaces_the_evaluator(tmp_path, monkeypatch, capsys):
    train_net = load_train_net()
    name = register(["cat"], HAND_RECORDS)
    seen = []
    monkeypatch.setattr(train_net, "evaluate_checkpoint", lambda cfg, *args, **kwargs: seen.append(cfg))
    config = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")
    overrides = [f"dataloader.test.dataset.names={name}", f"train.output_dir={tmp_path}"]
    args = train_net.get_parser().parse_args(["--config-file", config, "--eval-only", "--metric", "voc07", *overrides])
    train_net.main(args)
    evaluator = instantiate(seen[0].dataloader.evaluator)
    assert isinstance(evaluator, VOCEvaluator) and evaluator._dataset_name == name
    evaluator.process([{"image_id": 1}, {"image_id": 0}], HAND_OUTPUTS)
    assert evaluator.evaluate()["bbox"]["AP50"] == pytest.approx(600 / 11)

    capsys.readouterr()
    code = train_net.invoke_main(["--config-file", config, "--metric", "voc13"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "invalid choice: 'voc13'" in err[0], err


def test_agrees_with_detectron2_voc_eval(tmp_path):
    """Random data through Detectron2's ``voc_eval`` (the devkit's +1 pixel IoU on VOC's integer
    XML corners, detections written as it writes them) and through VOCEvaluator on the records
    our VOC reader makes of that XML (xmin/ymin - 1, continuous IoU): the same AP per class."""
    from detectron2.evaluation.pascal_voc_evaluation import voc_eval

    gen = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    (tmp_path / "Annotations").mkdir()
    records, outputs, lines = [], [], {k: [] for k in range(3)}
    scores = iter(gen.permutation(1000)[:600] / 1000)  # distinct at the 3 decimals voc_eval writes
    for i in range(30):
        objects, annotations = [], []
        for _ in range(gen.integers(1, 5)):
            x0, y0 = gen.integers(1, 60, 2)
            x1, y1 = x0 + gen.integers(5, 40), y0 + gen.integers(5, 40)
            cls, difficult = int(gen.integers(3)), int(gen.random() < 0.2)
            objects.append(
                f"<object><name>{classes[cls]}</name><pose>x</pose><truncated>0</truncated>"
                f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            )
            annotations.append(gt([x0 - 1.0, y0 - 1.0, float(x1), float(y1)], cls, difficult))
        (tmp_path / "Annotations" / f"{i}.xml").write_text(f"<annotation>{''.join(objects)}</annotation>")
        records.append(record(i, *annotations))
        detections = []
        for ann in annotations + [gt([30.0, 30.0, 70.0, 60.0], int(gen.integers(3)))]:
            for _ in range(gen.integers(0, 4)):
                box = np.round(np.array(ann["bbox"]) + gen.normal(0, 3, 4), 1)
                cls = ann["category_id"] if gen.random() < 0.8 else int(gen.integers(3))
                detections.append((box.tolist(), next(scores), cls))
                xmin, ymin, xmax, ymax = box
                lines[cls].append(f"{i} {detections[-1][1]:.3f} {xmin + 1:.1f} {ymin + 1:.1f} {xmax:.1f} {ymax:.1f}")
        outputs.append(output(*detections))
    (tmp_path / "test.txt").write_text("\n".join(str(i) for i in range(30)))
    for k, name in enumerate(classes):
        (tmp_path / f"{name}.txt").write_text("\n".join(lines[k]))

    name = register(classes, records)
    for metric in ("voc07", "voc12"):
        result = evaluate(name, metric, range(30), outputs)
        expected = [
            100
            * voc_eval(
                str(tmp_path / "{}.txt"),
                str(tmp_path / "Annotations" / "{}.xml"),
                str(tmp_path / "test.txt"),
                cls,
                use_07_metric=metric == "voc07",
            )[2]
            for cls in classes
        ]
        assert [result[f"AP50-{cls}"] for cls in classes] == pytest.approx(expected, abs=1e-9)
        assert 20 < result["AP50"] < 95
