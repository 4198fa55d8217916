"""Official-checkpoint conversion: exact outputs against a reference with mmdetection names."""

import os

import pytest
import torch
from gfl_testing import REPO
from mmdet_reference import MMGFL

from detectron2.config import LazyConfig, instantiate

from gfocal.checkpoint import ConversionError, GFLCheckpointer, convert_state_dict, load_checkpoint_file
from gfocal.errors import CheckpointError

PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def our_model(config, **stage_overrides):
    cfg = LazyConfig.load(os.path.join(REPO, "configs/COCO-Detection", config))
    for k, v in stage_overrides.items():
        setattr(cfg.model.backbone.bottom_up.stages, k, v)
    return instantiate(cfg.model).eval()


def raw_outputs(model, image):
    """Our head outputs in the reference's form: (cls logits or v2 joint scores, dist logits)."""
    x = ((image - model.pixel_mean) / model.pixel_std)[None]
    outs = model.dense_outputs(x)[1]
    if model.use_dgqp:
        return [c.sigmoid() * q for c, q in zip(outs.cls_logits, outs.quality)], outs.dist_logits
    return outs.cls_logits, outs.dist_logits


CASES = [
    ("gfl_R_50_FPN_1x.py", dict(), {}),
    ("gflv2_R_50_FPN_1x.py", dict(dgqp=True), {}),
    ("gfl_R_101_DCN_FPN_ms2x.py", dict(depth=101, dcn_stages=("res3", "res4", "res5")), {}),
    (
        "gflv2_X_101_32x4d_DCN_FPN_ms2x.py",
        dict(depth=101, groups=32, width_per_group=4, dcn_stages=("res4", "res5"), modulated=True, dgqp=True),
        dict(deform_modulated=True),
    ),
]


@pytest.mark.parametrize("config,ref_kwargs,overrides", CASES, ids=[c[0][:-3] for c in CASES])
def test_converted_checkpoint_reproduces_the_reference_exactly(tmp_path, config, ref_kwargs, overrides):
    torch.manual_seed(0)
    ref = MMGFL(**ref_kwargs).eval()
    path = tmp_path / "official.pth"
    torch.save(ref.mmdet_state_dict(), path)

    model = our_model(config, **overrides)
    converted, _ = convert_state_dict(load_checkpoint_file(str(path)), num_classes=80)
    model.load_state_dict(converted, strict=True)  # no missing or unexpected key
    fresh = our_model(config, **overrides)
    GFLCheckpointer(fresh).load(str(path))  # the path users take (train.init_checkpoint)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k

    # In float64: the reference computes deformable convolutions by explicit sampling, whose
    # float32 rounding differs from torchvision's kernel by more than the tolerance after 23
    # R-101 blocks; in float64 both must agree to ~1e-9.
    image = torch.rand(3, 96, 128, dtype=torch.float64) * 255
    model, ref = model.double(), ref.double()
    with torch.no_grad():
        ref_cls, ref_dist = ref(((image - PIXEL_MEAN.double()) / PIXEL_STD.double())[None])
        cls, dist = raw_outputs(model, image)
    for a, b in zip(cls + dist, ref_cls + ref_dist):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7)


def test_detections_match_a_reference_decode(tmp_path):
    """Same input, same weights: our detections equal an independent decode of the reference's
    raw outputs (sigmoid, score > 0.05, top 1000 (location, class) pairs per level, expected
    distances x stride from the location, clip, class-wise NMS 0.6, top 100)."""
    from torchvision.ops import batched_nms

    torch.manual_seed(0)
    ref = MMGFL().eval()
    with torch.no_grad():
        ref.bbox_head.gfl_cls.bias.fill_(-1.0)  # some confident scores to decode
    torch.save(ref.mmdet_state_dict(), tmp_path / "official.pth")
    model = our_model("gfl_R_50_FPN_1x.py")
    GFLCheckpointer(model).load(str(tmp_path / "official.pth"))

    image = torch.rand(3, 96, 128) * 255
    with torch.no_grad():
        ours = model([{"image": image}])[0]["instances"]
        cls, dists = ref(((image - PIXEL_MEAN) / PIXEL_STD)[None])
    boxes, scores, labels = [], [], []
    for level, (c, d) in enumerate(zip(cls, dists)):
        stride = 8 * 2**level
        H, W = c.shape[-2:]
        s = c[0].permute(1, 2, 0).reshape(-1, 80).sigmoid()
        prob = d[0].permute(1, 2, 0).reshape(-1, 4, 17).softmax(-1)
        dist = (prob * torch.arange(17.0)).sum(-1) * stride
        ys, xs = torch.meshgrid(torch.arange(H) * stride, torch.arange(W) * stride, indexing="ij")
        centers = torch.stack([xs.flatten(), ys.flatten()], 1).float()
        flat = s.flatten()
        keep = (flat > 0.05).nonzero()[:, 0]
        top = flat[keep].topk(min(1000, len(keep))).indices
        idx = keep[top]
        loc, cl = idx // 80, idx % 80
        b = torch.cat([centers[loc] - dist[loc, :2], centers[loc] + dist[loc, 2:]], 1)
        b[:, 0::2] = b[:, 0::2].clamp(0, 128)
        b[:, 1::2] = b[:, 1::2].clamp(0, 96)
        boxes.append(b), scores.append(flat[idx]), labels.append(cl)
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = batched_nms(boxes, scores, labels, 0.6)[:100]
    assert len(ours) == len(keep) > 10
    torch.testing.assert_close(ours.scores, scores[keep])
    torch.testing.assert_close(ours.pred_boxes.tensor, boxes[keep], rtol=1e-4, atol=1e-3)
    assert torch.equal(ours.pred_classes, labels[keep])


def test_mmdet1_background_output_is_dropped():
    """An mmdetection 1.x-style class branch with K+1 outputs (background first): class c of
    the converted model is output c+1 of the source."""
    ref = MMGFL(cls_out=81)
    converted, info = convert_state_dict(ref.mmdet_state_dict(version="1.0rc1"), num_classes=80)
    assert info.class_offset == 1 and info.num_classes == 80
    torch.testing.assert_close(converted["head.gfl_cls.weight"], ref.bbox_head.gfl_cls.weight[1:])
    torch.testing.assert_close(converted["head.gfl_cls.bias"], ref.bbox_head.gfl_cls.bias[1:])
    # Without the model's class count, mmdet 1.x metadata with 81 outputs means the same.
    _, info = convert_state_dict(ref.mmdet_state_dict(version="1.0rc1"))
    assert info.class_offset == 1
    with pytest.raises(ConversionError, match="predicts 81 classes, the model 20"):
        convert_state_dict(ref.mmdet_state_dict(), num_classes=20)


def test_mmdet1_dcn_names_convert_like_2x():
    """mmdetection 1.x stores a DCN block's offset conv as conv2_offset, 2.x/3.x as conv2.conv_offset."""
    ref = MMGFL(dcn_stages=("res5",)).mmdet_state_dict()
    old = {
        "state_dict": {k.replace("conv2.conv_offset", "conv2_offset"): v for k, v in ref["state_dict"].items()},
        "meta": {"mmdet_version": "1.1.0"},
    }
    assert any("conv2_offset" in k for k in old["state_dict"])
    new_2x, _ = convert_state_dict(ref)
    new_1x, info = convert_state_dict(old)
    assert new_1x.keys() == new_2x.keys() and info.deform_stages == ["res5"]
    mmdet3 = {"state_dict": ref["state_dict"], "meta": {"mmdet_version": "3.3.0"}}
    assert convert_state_dict(mmdet3)[0].keys() == new_2x.keys()


def test_detects_what_it_converted():
    _, info = convert_state_dict(
        MMGFL(depth=101, groups=32, width_per_group=4, dcn_stages=("res4", "res5"), dgqp=True).mmdet_state_dict()
    )
    assert (info.depth, info.groups, info.deform_stages, info.deform_modulated, info.dgqp, info.reg_max) == (
        101,
        32,
        ["res4", "res5"],
        False,
        True,
        16,
    )
    assert "integral.project" in " ".join(info.dropped)


def test_refuses_other_architectures_clearly(tmp_path):
    retina = {
        "state_dict": {
            "backbone.conv1.weight": torch.zeros(64, 3, 7, 7),
            "bbox_head.retina_cls.weight": torch.zeros(720, 256, 3, 3),
        }
    }
    with pytest.raises(ConversionError, match="not a GFL checkpoint.*RetinaNet"):
        convert_state_dict(retina)

    # A pickle that would run code is refused by the safe loader.
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": {"x": torch.zeros(1)}, "evil": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="not a plain checkpoint.*posix.system"):
        load_checkpoint_file(str(tmp_path / "evil.pth"))


def test_torchvision_imagenet_resnet_loads_into_the_backbone(tmp_path):
    import torchvision

    tv = torchvision.models.resnet50()
    torch.save(tv.state_dict(), tmp_path / "resnet50.pth")
    model = our_model("gfl_R_50_FPN_1x.py")
    GFLCheckpointer(model).load(str(tmp_path / "resnet50.pth"))
    torch.testing.assert_close(model.backbone.bottom_up.res4[5].conv2.weight, tv.layer3[5].conv2.weight)
    torch.testing.assert_close(model.backbone.bottom_up.stem.conv1.norm.running_var, tv.bn1.running_var)
