"""sahi compatibility (GFocalDetectionModel): sahi's slicing and GREEDYNMM merge run a GFocal
model; with the oracle detector its result equals GFocal's own ``greedy`` merge on the same tile
grid, which ties the two implementations together. (Exported and checkpoint models: test_export.)"""

import numpy as np
import pytest
import sahi.predict as sahi_predict  # installed by tools/setup_env.sh (no-deps: see gfocal_runtime.sahi_model)
import torch
from gfl_testing import REPO
from slicing_testing import OracleGFL, drawn_large_image, iou

from gfocal.config import load_config
from gfocal.engine import LazyPredictor, evaluation_input
from gfocal.engine.sahi_model import GFocalDetectionModel
from gfocal.modeling import GFLWithSlicing
from gfocal_runtime.slicing import SlicingSettings

LARGE = f"{REPO}/configs/Quickstart/gfl_shapes_large.py"


def _sahi_model(channel=None, **kwargs):
    cfg = load_config(LARGE, ["train.device=cpu"])
    oracle = OracleGFL(channel=channel)
    predictor = LazyPredictor(cfg, model=oracle, optimize=False, slicing=dict(enabled=False))
    return oracle, predictor, GFocalDetectionModel(model=predictor, confidence_threshold=0.3, **kwargs)


def _boxes(result):
    return np.array([p.bbox.to_xyxy() for p in result.object_prediction_list], np.float32).reshape(-1, 4)


def test_sahi_sliced_prediction_equals_gfocals_greedy_merge():
    oracle, predictor, model = _sahi_model()
    image, gt = drawn_large_image()  # white on black: the same in RGB and BGR
    result = sahi_predict.get_sliced_prediction(
        image,
        model,
        slice_height=256,
        slice_width=256,
        overlap_height_ratio=0.25,
        overlap_width_ratio=0.25,
        batch_size=4,
        verbose=0,
    )
    # 20 slices, 4 at a time through the model, then sahi's whole-image prediction.
    assert oracle.batch_sizes == [4] * 5 + [1]
    theirs = _boxes(result)
    views = evaluation_input(load_config(LARGE))[1]
    ours = GFLWithSlicing(OracleGFL(), views, SlicingSettings(merge="greedy"))
    mine = ours([{"image": torch.as_tensor(image.transpose(2, 0, 1).copy())}])[0]["instances"]
    mine = mine.pred_boxes.tensor.numpy()
    assert len(theirs) == len(mine) == len(gt)
    pair = iou(theirs, mine).argmax(1)
    np.testing.assert_allclose(theirs, mine[pair], atol=1e-3)
    assert {(p.category.id, p.category.name) for p in result.object_prediction_list} == {(0, "ellipse")}
    # sahi's confidence threshold is applied: the oracle scores 0.3 + area / 2000.
    _, _, strict = _sahi_model()
    strict.confidence_threshold = 0.5
    kept = sahi_predict.get_sliced_prediction(image, strict, slice_height=256, slice_width=256, verbose=0)
    assert 0 < len(kept.object_prediction_list) < len(gt)
    assert min(p.score.value for p in kept.object_prediction_list) >= 0.5


def test_sahi_whole_image_prediction_is_the_models():
    _, predictor, model = _sahi_model()
    image, _ = drawn_large_image()
    result = sahi_predict.get_prediction(image, model)
    direct = predictor(image[:, :, ::-1].copy())["instances"]
    np.testing.assert_allclose(
        np.sort(_boxes(result), axis=0), np.sort(direct.pred_boxes.tensor.numpy(), axis=0), atol=1e-3
    )


def test_sahi_images_are_rgb():
    """sahi hands over RGB (as it reads files); the model's input is RGB here: a red square is
    seen in its first channel only if the adapter converts as it should."""
    _, _, model = _sahi_model(channel=0)
    image = np.zeros((256, 384, 3), np.uint8)  # the network's input size: no resizing
    image[100:140, 50:90, 0] = 255  # red, in RGB
    boxes = _boxes(sahi_predict.get_prediction(image, model))
    np.testing.assert_allclose(boxes, [[50, 100, 90, 140]], atol=1e-3)


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="image_size=640 is not supported"):
        _sahi_model(image_size=640)
    with pytest.raises(ValueError, match="must be a gfocal_runtime.Detector or a gfocal LazyPredictor"):
        GFocalDetectionModel(model=object())
    with pytest.raises(ValueError, match="needs config_path"):
        GFocalDetectionModel(model_path=__file__)
    cfg = load_config(LARGE, ["train.device=cpu"])
    sliced = LazyPredictor(cfg, model=OracleGFL(), optimize=False)  # the config slices
    with pytest.raises(ValueError, match="slicing=dict"):
        GFocalDetectionModel(model=sliced)
