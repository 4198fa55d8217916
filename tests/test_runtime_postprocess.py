"""gfocal_runtime (the torch-free runtime) against Detectron2 / torchvision / PyTorch GFL.

Each piece of the runtime's pipeline is compared, exactly, with the library code the PyTorch model
runs: ResizeShortestEdge + ResizeTransform + ImageList padding, DenseDetector's per-level top-k,
torchvision's batched_nms, detector_postprocess. A small ONNX detector built here (with onnx.helper,
no exporter needed) checks the whole Detector on both backends, and a subprocess checks that the
package runs with torch and detectron2 blocked.
"""

import functools
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision

from detectron2.data import transforms as T
from detectron2.layers import batched_nms as d2_batched_nms
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances

import gfocal_runtime.postprocess as P
from gfocal_runtime import Detector, ExportSpec
from gfocal_runtime.postprocess import (
    batched_nms,
    level_sizes,
    num_locations,
    postprocess_outputs,
    rescale_boxes,
    select_candidates,
)
from gfocal_runtime.preprocess import preprocess_image, resize_image, resize_output_shape

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]


# --------------------------------------------------------------------------- helpers


def tv_nms(boxes, scores, classes, thresh):
    return torchvision.ops.batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), thresh
    ).numpy()


def random_boxes(rng, n, num_classes, size=800.0):
    """Boxes with many overlaps and tie-free scores."""
    # Jittered copies of a few base boxes, as a detector's candidates are.
    base_xy = rng.uniform(0, size, (max(1, n // 10), 2))
    base_wh = rng.uniform(10, size / 4, (max(1, n // 10), 2))
    pick = rng.integers(0, len(base_xy), n)
    wh = base_wh[pick] * rng.uniform(0.7, 1.3, (n, 2))
    xy = base_xy[pick] + rng.normal(0, 0.15, (n, 2)) * wh
    boxes = np.concatenate([xy, xy + wh], axis=1).clip(0, None).astype(np.float32)
    scores = ((rng.permutation(n) + 1) / (n + 1)).astype(np.float32)
    assert len(np.unique(scores)) == n
    return boxes, scores, rng.integers(0, num_classes, n).astype(np.int64)


def valid_spec_dict(**overrides):
    data = {
        "format": "gfocal-export",
        "format_version": 2,
        "artifact": "onnx",
        "model_file": "model.onnx",
        "precision": "fp32",
        "gfl_version": 1,
        "input_format": "RGB",
        "size_divisibility": 32,
        "pad_value": PIXEL_MEAN,
        "resize": {"short_edge_length": 800, "max_size": 1333, "interpolation": "bilinear"},
        "classes": ["a", "b", "c"],
        "strides": [8, 16, 32, 64, 128],
        "reg_max": 4,
        "with_distributions": True,
        "score_thresh": 0.05,
        "topk_per_level": 1000,
        "nms_thresh": 0.6,
        "max_detections": 100,
        "parity": {},
        "source": {},
    }
    data.update(overrides)
    return data


def postprocess_settings(spec):
    return {k: getattr(spec, k) for k in ("score_thresh", "topk_per_level", "nms_thresh", "max_detections")}


# --------------------------------------------------------------------------- NMS


@pytest.mark.parametrize(
    "n,num_classes,thresh",
    [(60, 3, 0.5), (600, 5, 0.6), (999, 80, 0.3), (1500, 4, 0.6), (2500, 80, 0.5), (400, 1, 0.6), (1300, 1, 0.5)],
)
def test_nms_equals_torchvision(n, num_classes, thresh):
    # 600/999 boxes: torchvision's coordinate-trick path; 1500/2500/1300: its per-class path.
    # Ours visits 128 boxes at a time, all classes in one score order: 60 boxes one block, 2500 many.
    rng = np.random.default_rng(n + num_classes)
    boxes, scores, classes = random_boxes(rng, n, num_classes)
    # Zero-area boxes in pairs on one point: their IoU is 0/0 (NaN), which suppresses nothing.
    pairs = rng.choice(n, 2 * (n // 20), replace=False).reshape(-1, 2)
    points = rng.uniform(0, 700, (len(pairs), 2)).astype(np.float32)
    boxes[pairs[:, 0]] = boxes[pairs[:, 1]] = np.concatenate([points, points], axis=1)
    classes[pairs[:, 0]] = classes[pairs[:, 1]]
    ref = tv_nms(boxes, scores, classes, thresh)
    assert 0 < len(ref) < n  # overlaps suppress some, not all
    mine = batched_nms(boxes, scores, classes, thresh)
    assert mine.dtype == np.int64
    np.testing.assert_array_equal(mine, ref)
    # max_keep (per-class early stop) gives the first max_keep of the full result.
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, thresh, max_keep=7), ref[:7])


def test_nms_empty_and_one_box():
    empty = batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64
    one = batched_nms(np.array([[1, 2, 3, 4]], np.float32), np.array([0.3], np.float32), np.array([2]), 0.5)
    np.testing.assert_array_equal(one, [0])


def test_nms_threshold_is_strict_and_compared_in_double():
    # IoU exactly 0.5 at threshold 0.5: kept (suppression needs IoU > threshold).
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1], [10, 10, 11, 11]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.zeros(3, np.int64)
    np.testing.assert_array_equal(tv_nms(boxes, scores, classes, 0.5), [0, 1, 2])
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), [0, 1, 2])
    # IoU float32(6/10) = 0.6000000238 > 0.6 (double): torchvision suppresses; a float32
    # comparison with float32(0.6) would not.
    boxes = np.array([[0, 0, 10, 1], [0, 0, 6, 1]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    np.testing.assert_array_equal(tv_nms(boxes, scores, np.zeros(2, np.int64), 0.6), [0])
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.zeros(2, np.int64), 0.6), [0])
    # Float32 rounding of the union, (area_i + area_j) - inter, decides these pairs (IoU within an
    # ulp of 0.6); area_i + (area_j - inter) would decide them the other way.
    kept = [
        (
            [[0.0, 0.0, 6611.99072265625, 4120.87158203125], [1652.998046875, 0.0, 8264.98828125, 4120.87158203125]],
            [0, 1],
        ),
        (
            [
                [0.0, 0.0, 6539.80712890625, 3918.694091796875],
                [1634.951416015625, 0.0, 8174.7587890625, 3918.694091796875],
            ],
            [0],
        ),
    ]
    for pair, expected in kept:
        pair = np.array(pair, np.float32)
        np.testing.assert_array_equal(tv_nms(pair, scores, np.zeros(2, np.int64), 0.6), expected)
        np.testing.assert_array_equal(batched_nms(pair, scores, np.zeros(2, np.int64), 0.6), expected)
    # Other classes are never suppressed, whatever the overlap.
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.array([0, 1]), 0.6), [0, 1])


def test_nms_reproduces_torchvision_coordinate_trick_rounding(monkeypatch):
    """Up to 1000 boxes torchvision shifts each class by class * (max + 1) in float32; the
    rounding of the shifted coordinates decides pairs near the threshold. One pair per class,
    IoU within 1e-4 of 0.5."""
    n = 300
    xs = (np.float32(10 / 3) + (np.arange(n, dtype=np.float32) - n / 2) * np.float32(1e-4)).astype(np.float32)
    first = np.tile(np.array([[0, 0, 10, 1]], np.float32), (n, 1))
    second = np.stack([xs, np.zeros(n), xs + 10, np.ones(n)], axis=1).astype(np.float32)
    boxes = np.concatenate([first, second, [[1300, 1300, 1333, 1333]]]).astype(np.float32)
    classes = np.concatenate([np.arange(n), np.arange(n), [0]]).astype(np.int64)
    scores = (np.concatenate([np.full(n, 0.9), np.full(n, 0.8), [0.1]]) - np.arange(2 * n + 1) * 1e-5).astype(
        np.float32
    )
    ref = tv_nms(boxes, scores, classes, 0.5)
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), ref)
    # Without the shift the decisions differ: the case above does test the emulation.
    monkeypatch.setattr(P, "TORCHVISION_CPU_TRICK_MAX_NUMEL", 0)
    assert not np.array_equal(batched_nms(boxes, scores, classes, 0.5), ref)


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("hw", [(200, 249), (481, 319), (300, 1000), (800, 1001), (57, 33)])
def test_resize_equals_detectron2(hw):
    h, w = hw
    rng = np.random.default_rng(h * w)
    # Noise plus a gradient: PIL's (antialiased) bilinear and cv2's differ on it.
    img = (rng.integers(0, 120, (h, w, 3)) + np.linspace(0, 135, w)[None, :, None]).astype(np.uint8)
    aug = T.ResizeShortestEdge(short_edge_length=800, max_size=1333, sample_style="choice")
    new_h, new_w = resize_output_shape(h, w, 800, 1333)
    assert (new_h, new_w) == T.ResizeShortestEdge.get_output_shape(h, w, 800, 1333)
    if hw == (300, 1000):
        assert (new_h, new_w) == (400, 1333)  # limited by max_size
    if hw == (800, 1001):
        assert (new_h, new_w) == (800, 1001)  # unchanged
    ref = aug.get_transform(img).apply_image(img)
    mine = resize_image(img, new_h, new_w, "bilinear")
    assert mine.shape == ref.shape and mine.dtype == np.uint8
    np.testing.assert_array_equal(mine, ref)


def test_resize_output_shape_rounding_and_no_limit():
    # 800 / 320 * 401 = 1002.5 exactly: int(x + 0.5) gives 1003 (round() would give 1002).
    assert resize_output_shape(320, 401, 800, 1333) == (800, 1003)
    for h, w in [(480, 640), (333, 501), (1, 7), (999, 1000), (1333, 2), (320, 401), (401, 320)]:
        for short, max_size in [(800, 1333), (640, 1000), (123, 124)]:
            assert resize_output_shape(h, w, short, max_size) == T.ResizeShortestEdge.get_output_shape(
                h, w, short, max_size
            )
        assert resize_output_shape(h, w, 800, None) == T.ResizeShortestEdge.get_output_shape(h, w, 800, sys.maxsize)


def test_preprocess_equals_detectron2_input():
    """Channel flip, resize and padding: the graph's normalisation of our padded input equals
    Detectron2's ImageList of the normalised image (padded with 0)."""
    spec = ExportSpec.from_dict(valid_spec_dict(), "model.json")
    rng = np.random.default_rng(3)
    image_bgr = rng.integers(0, 256, (181, 243, 3), dtype=np.uint8)
    batch, (h, w) = preprocess_image(image_bgr, spec)

    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    resized = T.ResizeShortestEdge(800, 1333).get_transform(rgb).apply_image(rgb)
    assert (h, w) == resized.shape[:2] == (800, 1074)
    assert batch.shape == (1, 3, 800, 1088) and batch.dtype == np.float32
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    ref = ImageList.from_tensors(
        [(torch.as_tensor(resized.astype("float32").transpose(2, 0, 1)) - mean) / std], 32
    ).tensor
    torch.testing.assert_close((torch.from_numpy(batch) - mean) / std, ref, rtol=0, atol=0)

    # A BGR model gets the channels unflipped (its pad_value is in BGR order too).
    bgr_spec = ExportSpec.from_dict(valid_spec_dict(input_format="BGR", pad_value=PIXEL_MEAN[::-1]), "m.json")
    bgr_batch, _ = preprocess_image(image_bgr, bgr_spec)
    np.testing.assert_array_equal(bgr_batch[:, ::-1], batch)


# --------------------------------------------------------------------------- candidate selection


def torch_select(scores, sizes, thresh, topk):
    """DenseDetector._decode_per_level_predictions / GFL._decode_level, per level."""
    locs, classes, kept = [], [], []
    start = 0
    for size in sizes:
        level = torch.from_numpy(scores[start : start + size])
        keep = level > thresh
        level_scores = level[keep]
        idxs = torch.nonzero(keep)
        level_scores, order = level_scores.topk(min(idxs.shape[0], topk))
        loc, cls = idxs[order].unbind(dim=1)
        locs.append(loc + start)
        classes.append(cls)
        kept.append(level_scores)
        start += size
    return torch.cat(locs).numpy(), torch.cat(classes).numpy(), torch.cat(kept).numpy()


def test_select_candidates_equals_dense_detector_rule():
    rng = np.random.default_rng(0)
    sizes = [400, 100, 25, 9, 4]
    k = 7
    total = sum(sizes) * k
    scores = ((rng.permutation(total) + 1) / (total + 1)).astype(np.float32).reshape(-1, k)
    thresh, topk = 0.05, 120
    scores[500:525] *= 0.06  # level 2: about 30 of 175 pass (fewer than topk)
    scores[525:534] *= 0.01  # level 3: none pass
    # A score equal to float32(0.05) is not > 0.05 in float32 (torch), though it is in float64;
    # in level 2 it would be kept (fewer than topk pass there).
    scores[500, 0] = np.float32(thresh)
    locs, classes, kept, levels = select_candidates(scores, sizes, thresh, topk)
    ref_locs, ref_classes, ref_kept = torch_select(scores, sizes, thresh, topk)
    np.testing.assert_array_equal(locs, ref_locs)
    np.testing.assert_array_equal(classes, ref_classes)
    np.testing.assert_array_equal(kept, ref_kept)
    per_level = np.bincount(levels, minlength=len(sizes))
    assert per_level[0] == topk and per_level[3] == 0 and 0 < per_level[2] < topk
    assert per_level[1] == min(topk, int((scores[400:500] > np.float32(thresh)).sum()))
    assert not ((locs == 500) & (classes == 0)).any()
    assert locs.dtype == classes.dtype == np.int64 and kept.dtype == np.float32


# --------------------------------------------------------------------------- rescale


@pytest.mark.parametrize(
    "image_hw,out_hw", [((800, 1067), (427, 569)), ((640, 853), (1201, 1599)), ((320, 320), (320, 320))]
)
def test_rescale_equals_detector_postprocess(image_hw, out_hw):
    rng = np.random.default_rng(sum(image_hw))
    h, w = image_hw
    n = 300
    xy = rng.uniform(-50, max(h, w) + 50, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(-5, 200, (n, 2))], axis=1).astype(np.float32)
    boxes[:20, 2] = boxes[:20, 0]  # zero width
    boxes[20:40] = np.clip(boxes[20:40], 0, [w, h, w, h])  # some already inside
    boxes[40:50, 0::2] = w + 10  # right of the image: empty after clipping
    inst = Instances(image_hw)
    inst.pred_boxes = Boxes(torch.from_numpy(boxes.copy()))
    inst.scores = torch.arange(n, dtype=torch.float32)
    ref = detector_postprocess(inst, *out_hw)
    mine, keep, stride_scale = rescale_boxes(boxes, image_hw, out_hw)
    assert 0 < keep.sum() < n - 40
    np.testing.assert_array_equal(mine, ref.pred_boxes.tensor.numpy())
    np.testing.assert_array_equal(np.flatnonzero(keep), ref.scores.numpy().astype(np.int64))
    # GFL.forward's pred_strides factor.
    assert stride_scale == math.sqrt((out_hw[0] / h) * (out_hw[1] / w))


# --------------------------------------------------------------------------- level sizes


def test_level_sizes_match_fpn_p6p7():
    strides = [8, 16, 32, 64, 128]
    assert level_sizes((224, 320), strides) == [(28, 40), (14, 20), (7, 10), (4, 5), (2, 3)]
    assert num_locations((224, 320), strides) == 1120 + 280 + 70 + 20 + 6
    # The real backbone of the configs (GFL's ResNet-FPN with the P6P7 top block).
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(os.path.join(REPO, "configs/common/models/gfl_quickstart.py"))
    backbone = instantiate(cfg.model.backbone).eval()
    for hw in [(224, 320), (96, 416)]:
        with torch.no_grad():
            feats = backbone(torch.zeros(1, 3, *hw))
        got = [tuple(feats[f"p{i}"].shape[-2:]) for i in range(3, 8)]
        assert got == level_sizes(hw, strides)


# --------------------------------------------------------------------------- model.json


def write_spec(tmp_path, data):
    (tmp_path / "model.json").write_text(json.dumps(data))
    return str(tmp_path)


def test_spec_loads_and_writes_itself(tmp_path):
    spec = ExportSpec.load(write_spec(tmp_path, valid_spec_dict()))
    assert spec.strides == (8, 16, 32, 64, 128) and spec.reg_max == 4 and spec.num_classes == 3
    assert spec.classes == ("a", "b", "c") and spec.resize.max_size == 1333
    assert spec.model_path == os.path.join(str(tmp_path), "model.onnx")
    assert ExportSpec.from_dict(valid_spec_dict(resize=None)).resize is None
    # It writes what it reads: the same dict, key for key, and the same spec back.
    assert spec.to_dict() == valid_spec_dict()
    out = tmp_path / "again"
    out.mkdir()
    saved = spec.save(str(out))
    assert saved == spec and json.loads((out / "model.json").read_text()) == valid_spec_dict()


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda d: d.pop("strides"), ["'strides'", "missing"]),
        (lambda d: d.pop("parity"), ["'parity'", "missing"]),
        (lambda d: d.pop("nms_thresh"), ["'nms_thresh'", "missing"]),
        (lambda d: d["resize"].pop("max_size"), ["'resize.max_size'", "missing"]),
        (lambda d: d.update(input_format="YUV"), ["'input_format'", "YUV", "'RGB' or 'BGR'"]),
        (
            lambda d: d.update(format_version=1),
            ["format_version", "1", "only format_version 2", "export the model again"],
        ),
        (lambda d: d.update(artifact="tflite"), ["'artifact'", "tflite"]),
        (lambda d: d.update(classes=[]), ["'classes'", "non-empty"]),
        (lambda d: d.update(pad_value=[1, 2]), ["'pad_value'", "3 finite numbers"]),
        (lambda d: d["resize"].update(interpolation="lanczos"), ["'resize.interpolation'", "lanczos", "bilinear"]),
        (lambda d: d.update(topk_per_level=True), ["'topk_per_level'", "positive integer"]),
        (lambda d: d.update(format="something-else"), ["'format'", "gfocal-export"]),
    ],
)
def test_spec_errors_name_the_key_and_file(tmp_path, change, words):
    data = valid_spec_dict()
    data["resize"] = dict(data["resize"])
    change(data)
    path = write_spec(tmp_path, data)
    with pytest.raises(ValueError) as e:
        ExportSpec.load(path)
    message = str(e.value)
    assert os.path.join(path, "model.json") in message
    for word in words:
        assert word in message, message


def test_detector_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="model.json"):
        Detector(str(tmp_path))
    path = write_spec(tmp_path, valid_spec_dict(artifact="torch-export", model_file="model.pt2"))
    with pytest.raises(ValueError, match="--format onnx"):
        Detector(path)
    path = write_spec(tmp_path, valid_spec_dict())
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        Detector(path)
    make_toy_onnx(tmp_path / "model.onnx", num_classes=3, reg_max=4)
    with pytest.raises(ValueError, match="'tensorrt'"):
        Detector(path, backend="tensorrt")
    with pytest.raises(ValueError, match="f32"):
        Detector(path, backend="onnxruntime", precision="bf16")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install onnxruntime==1\.32\.0"):
        Detector(path, backend="onnxruntime")
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match=r"openvino==2026\.4\.1"):
        Detector(path)


# --------------------------------------------------------------------------- whole pipeline


def make_toy_onnx(path, num_classes=3, strides=(8, 16, 32, 64, 128), reg_max=4, with_dists=True, seed=0):
    """A small fully-convolutional "GFL" honouring the export contract: normalises its RGB
    0-255 input, max-pools it to each stride (ceil mode, so level l is ceil(H/s) x ceil(W/s)),
    and 1x1 convs give sigmoid scores, distances around the location (x*s, y*s) and side
    distributions. Built with onnx.helper, so no exporter or torch is involved."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    counter = [0]

    def const(arr, dtype=np.float32):
        counter[0] += 1
        name = f"c{counter[0]}"
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def node(op, inputs, **attrs):
        counter[0] += 1
        out = f"t{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    x = node(
        "Div",
        [
            node("Sub", ["images", const(np.reshape(PIXEL_MEAN, (1, 3, 1, 1)))]),
            const(np.reshape(PIXEL_STD, (1, 3, 1, 1))),
        ],
    )
    n1 = reg_max + 1
    scores, boxes, dists = [], [], []
    for s in strides:
        p = node("MaxPool", [x], kernel_shape=[s, s], strides=[s, s], ceil_mode=1)
        cls_w = rng.normal(0, 1.0, (num_classes, 3, 1, 1))
        logits = node("Conv", [p, const(cls_w), const(np.full(num_classes, -3.5))])
        sc = node(
            "Transpose",
            [node("Reshape", [node("Sigmoid", [logits]), const([0, num_classes, -1], np.int64)])],
            perm=[0, 2, 1],
        )
        scores.append(sc)
        d = node("Conv", [p, const(rng.normal(0, 1.0, (4, 3, 1, 1))), const(rng.normal(1.0, 0.3, 4))])
        d = node("Mul", [node("Add", [node("Relu", [d]), const(0.5)]), const(2.0 * s)])
        d = node("Reshape", [d, const([0, 4, -1], np.int64)])  # (B, 4, hw)
        shape = node("Shape", [p])
        h = node("Gather", [shape, const(2, np.int64)], axis=0)
        w = node("Gather", [shape, const(3, np.int64)], axis=0)
        ys = node(
            "Mul",
            [
                node("Cast", [node("Range", [const(0, np.int64), h, const(1, np.int64)])], to=TensorProto.FLOAT),
                const(float(s)),
            ],
        )
        xs = node(
            "Mul",
            [
                node("Cast", [node("Range", [const(0, np.int64), w, const(1, np.int64)])], to=TensorProto.FLOAT),
                const(float(s)),
            ],
        )
        ys = node("Unsqueeze", [ys, const([1], np.int64)])  # (h, 1)
        xs = node("Unsqueeze", [xs, const([0], np.int64)])  # (1, w)
        cy = node("Reshape", [node("Add", [ys, node("Mul", [xs, const(0.0)])]), const([1, 1, -1], np.int64)])
        cx = node("Reshape", [node("Add", [xs, node("Mul", [ys, const(0.0)])]), const([1, 1, -1], np.int64)])
        sides = [f"t_side{s}_{i}" for i in range(4)]
        nodes.append(helper.make_node("Split", [d], sides, axis=1))
        x1, y1 = node("Sub", [cx, sides[0]]), node("Sub", [cy, sides[1]])
        x2, y2 = node("Add", [cx, sides[2]]), node("Add", [cy, sides[3]])
        boxes.append(node("Transpose", [node("Concat", [x1, y1, x2, y2], axis=1)], perm=[0, 2, 1]))
        if with_dists:
            dl = node("Conv", [p, const(rng.normal(0, 1.0, (4 * n1, 3, 1, 1))), const(np.zeros(4 * n1))])
            dl = node("Transpose", [node("Reshape", [dl, const([0, 4, n1, -1], np.int64)])], perm=[0, 3, 1, 2])
            dists.append(node("Softmax", [dl], axis=-1))
    outs = [("scores", scores, ["batch", "R", num_classes]), ("boxes", boxes, ["batch", "R", 4])]
    if with_dists:
        outs.append(("dists", dists, ["batch", "R", 4, n1]))
    outputs = []
    for name, parts, shape in outs:
        nodes.append(helper.make_node("Concat", parts, [name], axis=1))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    graph = helper.make_graph(
        nodes,
        "toy_gfl",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))


def toy_model_dir(tmp_path, with_dists=True, **post):
    spec = valid_spec_dict(
        resize={"short_edge_length": 160, "max_size": 256, "interpolation": "bilinear"},
        with_distributions=with_dists,
        **{"topk_per_level": 100, "max_detections": 40, **post},
    )
    make_toy_onnx(tmp_path / "model.onnx", num_classes=3, reg_max=4, with_dists=with_dists)
    return write_spec(tmp_path, spec)


def toy_image(h=97, w=131):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 120 * np.sin(xx / 9 + yy / 13 + c) * np.cos(yy / (7 + c)) for c in range(3)], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def torch_reference(outputs, strides, image_hw, out_hw, post):
    """GFL.inference_single_image (after decoding) + DenseDetector's detector_postprocess +
    GFL.forward's pred_strides scaling, in torch/Detectron2."""
    scores = torch.from_numpy(outputs["scores"][0])
    boxes = torch.from_numpy(outputs["boxes"][0])
    dists = torch.from_numpy(outputs["dists"][0]) if "dists" in outputs else None
    hp, wp = outputs["input_hw"]
    parts = []
    start = 0
    for s in strides:
        size = math.ceil(hp / s) * math.ceil(wp / s)
        level = scores[start : start + size]
        keep = level > post["score_thresh"]
        kept_scores = level[keep]
        idxs = torch.nonzero(keep)
        kept_scores, order = kept_scores.topk(min(idxs.shape[0], post["topk_per_level"]))
        loc, cls = idxs[order].unbind(dim=1)
        loc = loc + start
        fields = dict(
            pred_boxes=Boxes(boxes[loc]),
            scores=kept_scores,
            pred_classes=cls,
            pred_strides=torch.full_like(kept_scores, float(s)),
        )
        if dists is not None:
            fields["pred_dists"] = dists[loc]
        parts.append(Instances(image_hw, **fields))
        start += size
    pred = Instances.cat(parts)
    pred = pred[torch.isfinite(pred.pred_boxes.tensor).all(dim=1)]
    pred.pred_boxes.clip(image_hw)
    keep = d2_batched_nms(pred.pred_boxes.tensor, pred.scores, pred.pred_classes, post["nms_thresh"])
    pred = pred[keep[: post["max_detections"]]]
    out = detector_postprocess(pred, *out_hw)
    out.pred_strides = out.pred_strides * math.sqrt((out_hw[0] / image_hw[0]) * (out_hw[1] / image_hw[1]))
    return out


def assert_same_as_reference(mine, ref, with_dists=True):
    np.testing.assert_array_equal(mine["boxes"], ref.pred_boxes.tensor.numpy())
    np.testing.assert_array_equal(mine["scores"], ref.scores.numpy())
    np.testing.assert_array_equal(mine["classes"], ref.pred_classes.numpy())
    assert mine["boxes"].dtype == mine["scores"].dtype == np.float32 and mine["classes"].dtype == np.int64
    if with_dists:
        np.testing.assert_array_equal(mine["dists"], ref.pred_dists.numpy())
        np.testing.assert_array_equal(mine["strides"], ref.pred_strides.numpy())
        assert mine["dists"].dtype == mine["strides"].dtype == np.float32
    else:
        assert "dists" not in mine and "strides" not in mine


def random_outputs(seed, max_detections, topk_per_level=300):
    """A spec and random graph outputs for a 224x320 input, with non-finite boxes and boxes
    outside the (213, 300) image. About 2,100 pairs of the finest level are above the threshold."""
    rng = np.random.default_rng(seed)
    spec = ExportSpec.from_dict(valid_spec_dict(topk_per_level=topk_per_level, max_detections=max_detections))
    r = num_locations((224, 320), spec.strides)
    total = r * 3
    scores = (((rng.permutation(total) + 1) / (total + 1)) ** 3).astype(np.float32).reshape(1, r, 3)
    centers = rng.uniform(-20, 340, (r, 2))
    sizes = rng.uniform(5, 120, (r, 2))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1).astype(np.float32)[None]
    boxes[0, rng.choice(r, 300, replace=False), rng.integers(0, 4, 300)] = np.nan
    boxes[0, rng.choice(r, 30, replace=False), 2] = np.inf
    logits = rng.normal(0, 2, (1, r, 4, 5))
    dists = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    return spec, {"scores": scores, "boxes": boxes, "dists": dists}


@pytest.mark.parametrize("seed,max_detections", [(0, 100), (1, 30)])
def test_postprocess_outputs_equals_torch_gfl_inference(seed, max_detections):
    spec, outputs = random_outputs(seed, max_detections)
    input_hw, image_hw, out_hw = (224, 320), (213, 300), (427, 601)
    mine = postprocess_outputs(outputs, spec, input_hw, image_hw, out_hw)
    ref = torch_reference({**outputs, "input_hw": input_hw}, spec.strides, image_hw, out_hw, postprocess_settings(spec))
    # 30: max_detections cuts, then detector_postprocess drops boxes that are empty once clipped.
    assert 20 < len(ref) < 30 if max_detections == 30 else 30 < len(ref) < 100, len(ref)
    assert_same_as_reference(mine, ref)
    with pytest.raises(ValueError, match="scores"):
        postprocess_outputs({**outputs, "scores": outputs["scores"][:, :-1]}, spec, input_hw, image_hw, out_hw)


# Pairs above the threshold per level: 2139, 516, 131, 36, 13 (2835 in all). 300 cuts the finest
# level (selected level by level); 2500 cuts no level but would cut them counted together.
@pytest.mark.parametrize("topk_per_level", [300, 2500])
def test_postprocess_outputs_equals_gfl_model_code(topk_per_level):
    """The same against the project's own GFL.inference_single_image (the selection, clip and
    NMS the PyTorch model runs on its decoded outputs), then detector_postprocess and
    GFL.forward's stride scaling: with a top-k that cuts the finest level (selected level by
    level) and one that keeps every pair (all levels in one pass)."""
    from gfocal.modeling import GFL

    spec, outputs = random_outputs(2, 100, topk_per_level)
    input_hw, image_hw, out_hw = (224, 320), (213, 300), (640, 901)
    post = postprocess_settings(spec)
    model = SimpleNamespace(
        test_score_thresh=post["score_thresh"],
        test_topk_candidates=post["topk_per_level"],
        test_nms_thresh=post["nms_thresh"],
        max_detections_per_image=post["max_detections"],
        strides=list(spec.strides),
    )
    for name in ("_select_all_levels", "_select_level", "candidates_single_image", "nms"):
        setattr(model, name, functools.partial(getattr(GFL, name), model))
    per_level_calls = []
    model._select_level = lambda *args: per_level_calls.append(args) or GFL._select_level(model, *args)
    sizes = [h * w for h, w in level_sizes(input_hw, spec.strides)]
    per_level = [torch.from_numpy(outputs[k][0]).split(sizes) for k in ("scores", "boxes", "dists")]
    pred = GFL.inference_single_image(model, *per_level, image_hw)
    ref = detector_postprocess(pred, *out_hw)
    ref.pred_strides = ref.pred_strides * math.sqrt((out_hw[0] / image_hw[0]) * (out_hw[1] / image_hw[1]))
    assert len(ref) > 30 and len(per_level_calls) == (len(spec.strides) if topk_per_level == 300 else 0)
    assert_same_as_reference(postprocess_outputs(outputs, spec, input_hw, image_hw, out_hw), ref)


def reference_detect(model_dir, image_bgr):
    """Detectron2 preprocessing + the graph (onnxruntime) + the torch reference post-processing."""
    import onnxruntime as ort

    spec = ExportSpec.load(model_dir)
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    resized = (
        T.ResizeShortestEdge(spec.resize.short_edge_length, spec.resize.max_size).get_transform(rgb).apply_image(rgb)
    )
    tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
    h, w = tensor.shape[-2:]
    hp, wp = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
    batch = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1).repeat(1, 1, hp, wp)
    batch[0, :, :h, :w] = tensor
    session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {"images": batch.numpy()})))
    return torch_reference(
        {**outputs, "input_hw": (hp, wp)}, spec.strides, (h, w), image_bgr.shape[:2], postprocess_settings(spec)
    )


@pytest.mark.parametrize("with_dists", [True, False])
def test_detector_onnxruntime_equals_reference(tmp_path, with_dists):
    # With distributions: max_detections (40) is reached; without: not (500).
    model_dir = toy_model_dir(tmp_path, with_dists=with_dists, max_detections=40 if with_dists else 500)
    image = toy_image()
    det = Detector(model_dir, backend="onnxruntime", num_threads=1)
    assert det.backend == "onnxruntime" and det.class_names == ("a", "b", "c")
    mine = det(image)
    ref = reference_detect(model_dir, image)
    assert len(ref) == 40 if with_dists else 40 < len(ref) < 500
    assert_same_as_reference(mine, ref, with_dists)


def test_detector_openvino_f32_matches_onnxruntime(tmp_path):
    model_dir = toy_model_dir(tmp_path)
    det = Detector(model_dir, backend="openvino")
    assert det.backend == "openvino" and det.precision == "f32"
    import openvino as ov

    assert det._runner.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    ort_det = Detector(model_dir, backend="onnxruntime")
    for hw in [(97, 131), (200, 120)]:  # two input sizes through one compiled model
        image = toy_image(*hw)
        a, b = det(image), ort_det(image)
        assert len(a["scores"]) == len(b["scores"]) > 5
        np.testing.assert_array_equal(a["classes"], b["classes"])
        np.testing.assert_allclose(a["boxes"], b["boxes"], rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a["dists"], b["dists"], rtol=1e-3, atol=1e-6)
        np.testing.assert_array_equal(a["strides"], b["strides"])
    bf16 = Detector(model_dir, backend="openvino", precision="bf16")
    from gfocal.engine.precision import cpu_has_bf16

    # OpenVINO honours a bf16 hint only on CPUs with bf16 units; on the others it keeps f32.
    expected = ov.Type.bf16 if cpu_has_bf16() else ov.Type.f32
    assert bf16._runner.compiled.get_property("INFERENCE_PRECISION_HINT") == expected


def test_default_backend_order(tmp_path, monkeypatch):
    import gfocal_runtime.backends as B

    model_dir = toy_model_dir(tmp_path)
    assert Detector(model_dir).backend == B.DEFAULT_BACKENDS[0]
    monkeypatch.setattr(B, "DEFAULT_BACKENDS", ("onnxruntime", "openvino"))
    assert Detector(model_dir).backend == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert Detector(model_dir).backend == "openvino"


def test_runs_without_torch_or_detectron2(tmp_path):
    model_dir = toy_model_dir(tmp_path)
    np.save(tmp_path / "image.npy", toy_image())
    code = f"""
import sys
for name in ("torch", "torchvision", "detectron2"):
    sys.modules[name] = None
import numpy as np
import gfocal_runtime
from gfocal_runtime import Detector
image = np.load({str(tmp_path / "image.npy")!r})
counts = []
for backend in ("onnxruntime", "openvino"):
    out = Detector({model_dir!r}, backend=backend)(image)
    counts.append(len(out["scores"]))
leaked = [m for m, mod in sys.modules.items() if m.split(".")[0] in ("torch", "detectron2", "torchvision") and mod]
assert not leaked, leaked
print("OK", counts)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK [") and "[0," not in proc.stdout
