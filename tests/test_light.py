"""GFocal-Nano's parts: the timm backbone, the light PAN and the light head, and the nano model
end to end (it overfits one image)."""

import os

import pytest
import torch
from gfl_testing import REPO, make_input

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.structures import pairwise_iou
from detectron2.utils.events import EventStorage

from gfocal.errors import ConfigError
from gfocal.modeling import LightGFLHead, LightPAN, TimmBackbone


@pytest.mark.parametrize(
    "name,out_indices,names,strides",
    [
        ("lcnet_050", (2, 3, 4), ["res3", "res4", "res5"], [8, 16, 32]),
        ("mobilenetv4_conv_small", (1, 2, 3, 4), ["res2", "res3", "res4", "res5"], [4, 8, 16, 32]),
        ("resnet18", (3, 4), ["res4", "res5"], [16, 32]),
    ],
)
def test_timm_backbone_names_strides_and_channels(name, out_indices, names, strides):
    import timm

    backbone = TimmBackbone(model_name=name, out_indices=out_indices)
    shapes = backbone.output_shape()
    assert list(shapes) == names and [s.stride for s in shapes.values()] == strides
    reference = timm.create_model(name, features_only=True).feature_info
    assert [s.channels for s in shapes.values()] == [reference.channels()[i] for i in out_indices]
    features = backbone(torch.rand(2, 3, 96, 128))
    assert list(features) == names
    for key, spec in shapes.items():
        assert features[key].shape == (2, spec.channels, 96 // spec.stride, 128 // spec.stride)


def test_timm_backbone_bad_input_says_what_is_expected(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown timm model 'lcnet_75'.*closest: .*lcnet_075"):
        TimmBackbone(model_name="lcnet_75")
    with pytest.raises(ConfigError, match=r"lcnet_050, which has 5 feature levels \(strides \[2, 4, 8, 16, 32\]\)"):
        TimmBackbone(model_name="lcnet_050", out_indices=(3, 5))
    with pytest.raises(ConfigError, match="read only with pretrained=True"):
        TimmBackbone(model_name="lcnet_050", checkpoint_path=str(tmp_path / "w.pth"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as without network, at once
    with pytest.raises(ConfigError, match="cannot load pretrained weights of lcnet_050 from timm's hub"):
        TimmBackbone(model_name="lcnet_050", pretrained=True)
    with pytest.raises(ConfigError, match="checkpoint_path=.*missing.pth' is not a file"):
        TimmBackbone(model_name="lcnet_050", pretrained=True, checkpoint_path=str(tmp_path / "missing.pth"))


def test_timm_backbone_reads_weights_from_a_local_file(tmp_path):
    import timm

    torch.manual_seed(3)
    source = timm.create_model("lcnet_050")
    path = str(tmp_path / "lcnet_050.pth")
    torch.save(source.state_dict(), path)
    backbone = TimmBackbone(model_name="lcnet_050", pretrained=True, checkpoint_path=path)
    torch.testing.assert_close(backbone.body.conv_stem.weight, source.conv_stem.weight)
    fresh = TimmBackbone(model_name="lcnet_050")
    assert not torch.equal(fresh.body.conv_stem.weight, source.conv_stem.weight)


def test_light_pan_levels_on_odd_sizes():
    pan = LightPAN(
        bottom_up=TimmBackbone(model_name="lcnet_050", out_indices=(2, 3, 4)),
        in_features=["res3", "res4", "res5"],
        out_channels=32,
        num_extra_levels=1,
    )
    shapes = pan.output_shape()
    assert list(shapes) == ["p3", "p4", "p5", "p6"] and [s.stride for s in shapes.values()] == [8, 16, 32, 64]
    assert pan.size_divisibility == 64
    out = pan(torch.rand(1, 3, 200, 249))
    assert [tuple(v.shape[1:]) for v in out.values()] == [(32, 25, 32), (32, 13, 16), (32, 7, 8), (32, 4, 4)]
    with pytest.raises(ConfigError, match="strides x2 apart"):
        LightPAN(bottom_up=TimmBackbone(model_name="lcnet_050", out_indices=(2, 4)), in_features=["res3", "res5"])


@pytest.mark.parametrize("use_dgqp", [False, True])
def test_light_head_class_and_box_read_one_tower(use_dgqp):
    """Per level, the class logits and the distribution logits are two slices of one 1x1 conv
    over one tower's output: recomputed from the tower's output alone, both match."""
    torch.manual_seed(0)
    head = LightGFLHead(
        input_shape=[ShapeSpec(channels=16)] * 3, num_classes=3, conv_dims=[16, 16], reg_max=7, use_dgqp=use_dgqp
    ).eval()
    for p in head.predictors.parameters():
        torch.nn.init.normal_(p)  # not the init: every output channel depends on the input
    seen = []
    for tower in head.towers:
        tower.register_forward_hook(lambda m, i, o: seen.append(o))
    features = [torch.randn(2, 16, s, s + 1) for s in (12, 6, 3)]
    out = head(features)
    for level, (feat, predictor) in enumerate(zip(seen, head.predictors)):
        assert out.cls_logits[level].shape == (2, 3) + features[level].shape[-2:]
        assert out.dist_logits[level].shape == (2, 4 * 8) + features[level].shape[-2:]
        w, b = predictor.weight[:, :, 0, 0], predictor.bias
        full = torch.einsum("oc,nchw->nohw", w, feat) + b[None, :, None, None]
        torch.testing.assert_close(out.cls_logits[level], full[:, :3])
        torch.testing.assert_close(out.dist_logits[level], full[:, 3:])
        if use_dgqp:
            assert out.quality[level].shape == (2, 1) + features[level].shape[-2:]
    assert (out.quality is None) != use_dgqp


def nano(num_classes=4, **head):
    cfg = LazyConfig.load(os.path.join(REPO, "configs/common/models/gfl_nano.py"))
    cfg.model.num_classes = num_classes
    cfg.model.backbone.bottom_up.model_name = "lcnet_050"  # the smallest: fast tests
    for key, value in head.items():
        cfg.model.head[key] = value
    return instantiate(cfg.model)


@pytest.mark.parametrize("use_dgqp", [False, True])
def test_nano_overfits_one_image(use_dgqp):
    torch.manual_seed(0)
    model = nano(use_dgqp=use_dgqp)
    boxes, classes = [(16, 24, 80, 100), (88, 40, 150, 90)], [1, 3]
    inp = make_input(128, 160, boxes, classes, seed=5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    history = []
    model.train()
    with EventStorage(0):
        for _ in range(150):
            loss = sum(model([inp]).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(loss.item())
    assert sum(history[-10:]) < 0.2 * sum(history[:10])
    model.eval()
    with torch.no_grad():
        inst = model([{"image": inp["image"], "height": 128, "width": 160}])[0]["instances"]
    top = inst[inst.scores > 0.3]
    iou = pairwise_iou(top.pred_boxes, type(top.pred_boxes)(torch.tensor(boxes, dtype=torch.float32)))
    assert (iou.max(dim=0).values > 0.7).all(), iou
    for g, c in enumerate(classes):
        assert top.pred_classes[iou[:, g].argmax()].item() == c


def test_reg_max_too_small_for_the_input_is_one_clear_error():
    """reg_max 7 over strides 8-64 reaches 448 px: a 896 px input trains, a 897 px one is refused
    with the rule (the coarsest level could not reach the edges of an image-sized object)."""
    model = nano().train()
    with EventStorage(0):
        model([make_input(64, 896, [(10, 10, 800, 60)], [1])])
        with pytest.raises(ConfigError, match=r"reg_max=7 is too small for a 64x960 input.*7 x 64 = 448 < 480"):
            model([make_input(64, 897, [(10, 10, 800, 60)], [1])])


def test_nano_exported_to_onnx_gives_the_pytorch_detections(tmp_path):
    """The nano model through ONNX and gfocal_runtime gives LazyPredictor's detections (boxes,
    scores, classes, distributions) on odd-sized images; the per-stage profile runs the same
    post-processing."""
    from test_export import SMALL, assert_same_detections, odd_images

    from gfocal.config import load_config
    from gfocal.data import ShapesSpec, register_shapes
    from gfocal.engine import LazyPredictor
    from gfocal.export import export_model
    from gfocal_runtime import Detector

    register_shapes("export_shapes", ShapesSpec(num_train=8, num_val=4, seed=3), str(tmp_path / "data"))
    overrides = [o for o in SMALL if o.startswith("dataloader")] + ["model.backbone.bottom_up.model_name=lcnet_050"]
    cfg = load_config(os.path.join(REPO, "configs/Quickstart/gfl_nano_shapes.py"), overrides)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    with torch.no_grad():  # batch statistics of random inputs, and outputs far from the prior: many detections
        for norm in model.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.reset_running_stats()
                norm.momentum = None
        features = model.backbone(torch.rand(4, 3, 128, 128) * 4 - 2)
        model.head([features[k] for k in model.head_in_features])
        for predictor in model.head.predictors:
            predictor.weight.normal_(0, 0.02)
            predictor.bias.zero_()
    model.eval()
    model.test_score_thresh = 0.5
    model.max_detections_per_image = 1000  # all of them: no tie at a cut
    export_model(cfg, model, str(tmp_path / "onnx"), "onnx", with_distributions=True)
    predictor = LazyPredictor(cfg, model=model, optimize=False)
    detector = Detector(str(tmp_path / "onnx"), backend="onnxruntime")
    for image in odd_images():
        ours = detector(image)
        assert_same_detections(ours, predictor(image)["instances"], dist_atol=5e-5)
    timings = detector.profile(image, repeats=2)
    assert set(timings) == {"preprocess", "model", "select", "nms", "total"} and min(timings.values()) > 0


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.backbone.bottom_up.model_name=lcnet_75", "unknown timm model 'lcnet_75'; closest: lcnet_075"),
        ("model.backbone.bottom_up.out_indices=[2,3,9]", r"out_indices=\[2, 3, 9\] for lcnet_075"),
    ],
)
def test_a_wrong_timm_backbone_fails_before_a_run_writes_anything(override, message, tmp_path):
    """check_inputs (train_net.py and the quick start, before their output folder exists) reads
    every TimmBackbone of the config: the mistake is one ConfigError, and no folder is made."""
    from gfocal.config import load_config
    from gfocal.engine import check_inputs

    out, config = tmp_path / "run", os.path.join(REPO, "configs/Quickstart/gfl_nano_shapes.py")
    cfg = load_config(config, [override, f"train.output_dir={out}"])
    with pytest.raises(ConfigError, match=message):
        check_inputs(cfg)
    assert not out.exists()
    check_inputs(load_config(config))  # the config as shipped
