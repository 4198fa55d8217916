"""FastCOCOEvaluator (faster-coco-eval) gives pycocotools' numbers on the built-in val split."""

import numpy as np
import pytest
import torch

from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from gfocal.data import ShapesSpec, register_shapes
from gfocal.engine import FastCOCOEvaluator


@pytest.fixture(scope="module")
def builtin_val(tmp_path_factory):
    """The built-in val split (same generator, seed and size: identical annotations), without
    generating the 3,000 training images."""
    register_shapes("evalcheck_shapes", ShapesSpec(num_train=1, num_val=300), str(tmp_path_factory.mktemp("val")))
    return "evalcheck_shapes_val"


def synthetic_detections(records, seed=0):
    """Jittered copies of the gt boxes (some with the wrong class) plus false positives, with
    random scores: about 1,500 detections over 300 images."""
    gen = np.random.default_rng(seed)
    outputs = []
    for record in records:
        h, w = record["height"], record["width"]
        boxes, classes = [], []
        for ann in record["annotations"]:
            x0, y0, x1, y1 = BoxMode.convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS)
            for _ in range(int(gen.integers(1, 3))):
                jitter = gen.normal(0, 0.08 * max(x1 - x0, y1 - y0), 4)
                boxes.append([x0, y0, x1, y1] + jitter)
                classes.append(ann["category_id"] if gen.random() > 0.15 else int(gen.integers(0, 4)))
        for _ in range(int(gen.integers(0, 3))):
            x, y = gen.uniform(0, w - 10), gen.uniform(0, h - 10)
            boxes.append([x, y, x + gen.uniform(5, 60), y + gen.uniform(5, 60)])
            classes.append(int(gen.integers(0, 4)))
        inst = Instances((h, w))
        inst.pred_boxes = Boxes(torch.tensor(np.array(boxes).reshape(-1, 4), dtype=torch.float32))
        inst.pred_boxes.clip((h, w))
        inst.scores = torch.tensor(gen.uniform(0.05, 1.0, len(boxes)), dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
        outputs.append({"instances": inst})
    return outputs


def evaluate(evaluator, records, outputs):
    evaluator.reset()
    evaluator.process(records, outputs)
    return evaluator.evaluate()["bbox"]


def test_faster_coco_eval_equals_pycocotools_on_the_builtin_val(builtin_val):
    records = DatasetCatalog.get(builtin_val)
    assert len(records) == 300
    outputs = synthetic_detections(records)
    assert sum(len(o["instances"]) for o in outputs) > 1200
    official = evaluate(COCOEvaluator(builtin_val, use_fast_impl=False, distributed=False), records, outputs)
    fast = evaluate(FastCOCOEvaluator(builtin_val, distributed=False), records, outputs)
    # The 6 box metrics and the 4 per-class APs (percent).
    assert set(fast) == set(official) and len(official) == 10
    for key, value in official.items():
        assert abs(fast[key] - value) < 1e-6, (key, fast[key], value)
    assert 20 < official["AP"] < 90  # a non-trivial case: neither empty nor perfect


def test_no_predictions_gives_nan_like_detectron2(builtin_val):
    records = DatasetCatalog.get(builtin_val)[:5]
    empty = []
    for r in records:
        inst = Instances((r["height"], r["width"]))
        inst.pred_boxes, inst.scores, inst.pred_classes = (
            Boxes(torch.zeros(0, 4)),
            torch.zeros(0),
            torch.zeros(0, dtype=torch.int64),
        )
        empty.append({"instances": inst})
    result = evaluate(FastCOCOEvaluator(builtin_val, distributed=False), records, empty)
    assert np.isnan(result["AP"])
