"""GFLWithTTA: a flipped view is the mirrored image's detections mirrored back (distributions with
left and right swapped), a scaled view lands in the original frame, views merge before one NMS,
and train_net.py --eval-only runs it from the config (CPU, seconds)."""

import os

import numpy as np
import pytest
import torch
from gfl_testing import REPO, small_gfl

from detectron2.data import transforms as T
from detectron2.layers import batched_nms

from gfocal.errors import ConfigError
from gfocal.modeling import GFLWithTTA

H, W = 128, 176


@pytest.fixture(scope="module")
def model():
    """A small random GFL with scores spread over (0, 1), so that there are many detections."""
    m = small_gfl(seed=3).eval()
    with torch.no_grad():
        m.head.gfl_cls.bias.zero_()
        m.head.gfl_cls.weight.normal_(0, 0.05)
        m.head.gfl_reg.weight.normal_(0, 0.05)
    m.test_score_thresh = 0.3
    return m


def image(seed=0):
    gen = np.random.default_rng(seed)
    img = gen.integers(0, 90, (H, W, 3), dtype=np.uint8)
    img[20:70, 30:100] = (200, 60, 90)
    img[60:120, 110:170] = (40, 180, 220)
    return img


def plain(model, img, size=None):
    """The model's detections of ``img`` (H, W, 3) through Detectron2's resize, in img's pixels."""
    tensor = img if size is None else T.ResizeShortestEdge(size, 4000).get_transform(img).apply_image(img)
    inputs = {"image": torch.as_tensor(np.ascontiguousarray(tensor.transpose(2, 0, 1))), "height": H, "width": W}
    with torch.no_grad():
        return model([inputs])[0]["instances"]


def tta(model, img, views):
    wrapper = GFLWithTTA(model, min_sizes=[H], max_size=4000)
    wrapper.views = views
    inputs = {"image": torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1))), "height": H, "width": W}
    return wrapper([inputs])[0]["instances"]


def test_a_flipped_view_is_the_mirrored_image_mirrored_back(model):
    img = image()
    ours = tta(model, img, [(H, True)])
    theirs = plain(model, np.ascontiguousarray(img[:, ::-1]))
    assert len(ours) == len(theirs) > 5
    mirrored = theirs.pred_boxes.tensor.clone()
    mirrored[:, [0, 2]] = W - theirs.pred_boxes.tensor[:, [2, 0]]
    torch.testing.assert_close(ours.pred_boxes.tensor, mirrored, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.scores, theirs.scores)
    assert torch.equal(ours.pred_classes, theirs.pred_classes)
    # Left and right distributions swap, top and bottom stay.
    torch.testing.assert_close(ours.pred_dists, theirs.pred_dists[:, [2, 1, 0, 3]])
    torch.testing.assert_close(ours.pred_strides, theirs.pred_strides)


def test_a_scaled_view_lands_in_the_original_frame(model):
    img = image(1)
    ours = tta(model, img, [(192, False)])
    theirs = plain(model, img, size=192)  # Detectron2: resized input, detector_postprocess back
    assert len(ours) == len(theirs) > 5
    torch.testing.assert_close(ours.pred_boxes.tensor, theirs.pred_boxes.tensor, atol=1e-3, rtol=0)
    torch.testing.assert_close(ours.scores, theirs.scores)
    torch.testing.assert_close(ours.pred_strides, theirs.pred_strides)
    assert ours.image_size == (H, W)


def test_views_merge_before_one_nms(model, monkeypatch):
    """Two views: one class-aware NMS over both views' candidates (each view's, mapped back:
    a single view without NMS and its limit), not the union of two NMS results."""
    img = image(2)
    wrapper = GFLWithTTA(model, min_sizes=[H, 192], max_size=4000, flip=True)
    assert wrapper.views == [(H, False), (H, True), (192, False), (192, True)]
    views = [(H, False), (192, True)]
    ours = tta(model, img, views)
    with monkeypatch.context() as m:  # each view's candidates: NMS that suppresses nothing, no limit
        m.setattr(model, "test_nms_thresh", 1.0)
        m.setattr(model, "max_detections_per_image", 100000)
        parts = [tta(model, img, [view]) for view in views]
    boxes = torch.cat([p.pred_boxes.tensor for p in parts])
    scores, classes = torch.cat([p.scores for p in parts]), torch.cat([p.pred_classes for p in parts])
    keep = batched_nms(boxes, scores, classes, model.test_nms_thresh)[: model.max_detections_per_image]
    assert len(ours) == len(keep) > 5 and all(len(p) > len(ours) for p in parts)
    torch.testing.assert_close(ours.scores, scores[keep])
    torch.testing.assert_close(ours.pred_boxes.tensor, boxes[keep])
    separate = [plain(model, img), tta(model, img, [(192, True)])]  # NMS per view, then merged: differs
    assert sum(len(p) for p in separate) != len(ours) or not torch.equal(
        torch.cat([p.scores for p in separate]).sort(descending=True).values[: len(ours)], ours.scores
    )


def test_bad_settings_are_one_clear_error(model):
    with pytest.raises(ConfigError, match="min_sizes"):
        GFLWithTTA(model, min_sizes=[])
    with pytest.raises(ConfigError, match="GFL"):
        GFLWithTTA(torch.nn.Linear(2, 2))


def test_eval_only_with_tta_from_the_config(tmp_path, capsys):
    import importlib.util

    from gfocal.data import ShapesSpec, register_shapes

    register_shapes("tta_shapes", ShapesSpec(num_train=4, num_val=3, seed=6), str(tmp_path / "data"))
    config = os.path.join(REPO, "configs/Quickstart/gfl_shapes.py")
    from gfocal.config import load_config

    cfg = load_config(config)
    from detectron2.config import instantiate

    torch.save({"model": instantiate(cfg.model).state_dict()}, tmp_path / "w.pth")
    spec = importlib.util.spec_from_file_location("train_net_tta", os.path.join(REPO, "train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    argv = [
        "--config-file",
        config,
        "--eval-only",
        "dataloader.test.dataset.names=tta_shapes_val",
        "dataloader.test.num_workers=0",
        f"train.output_dir={tmp_path / 'out'}",
        f"train.init_checkpoint={tmp_path / 'w.pth'}",
        "dataloader.tta.enabled=True",
    ]
    assert train_net.invoke_main(argv) == 0
    printed = capsys.readouterr()
    assert "Test-time augmentation: [(192, False), (192, True), (256, False), (256, True)]" in printed.out + printed.err
    assert train_net.invoke_main([*argv, "dataloader.tta.min_sizes=[]"]) == 2
    assert "min_sizes" in capsys.readouterr().err
