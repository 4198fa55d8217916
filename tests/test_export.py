"""Export (ONNX, torch.export, int8), the torch-free runtime, the optimised eager copy and FLOP
counting, end to end on a small GFL v1 / v2 (CPU, seconds per case)."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from gfl_testing import REPO
from omegaconf import OmegaConf

from detectron2.config import instantiate
from detectron2.structures import Boxes, pairwise_iou
from detectron2.utils.analysis import FlopCountAnalysis

from gfocal.config import load_config
from gfocal.data import ShapesSpec, register_shapes
from gfocal.engine import LazyPredictor
from gfocal.errors import ConfigError
from gfocal.export import GFLExportModule, export_model
from gfocal_runtime import Detector, ExportSpec
from gfocal_runtime.spec import ResizeSpec

CONFIGS = {1: "configs/Quickstart/gfl_shapes.py", 2: "configs/Quickstart/gflv2_shapes.py"}
SMALL = [
    "model.backbone.out_channels=64",
    "model.head.conv_dims=[64]",
    "model.head.input_shape=[{channels:64},{channels:64},{channels:64},{channels:64},{channels:64}]",
    "dataloader.train.dataset.names=export_shapes_train",
    "dataloader.test.dataset.names=export_shapes_val",
]
# The runtime and the model must agree to float rounding on every output. Boxes: 1e-3 px, plus
# float32's own spacing for the large P6/P7 boxes (2.4e-4 px beyond 2,048 px).
BOX_ATOL, BOX_RTOL, SCORE_ATOL = 1e-3, 1e-6, 1e-5


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_data")
    register_shapes("export_shapes", ShapesSpec(num_train=8, num_val=4, seed=3), str(root))
    return root


def small_model(version, overrides=()):
    """A small random GFL whose outputs are far from the prior (scores spread over (0, 1),
    distributions uneven), so that there are many detections to compare."""
    cfg = load_config(os.path.join(REPO, CONFIGS[version]), [*SMALL, *overrides])
    torch.manual_seed(version)
    model = instantiate(cfg.model).eval()
    with torch.no_grad():
        model.head.gfl_cls.bias.zero_()
        model.head.gfl_cls.weight.normal_(0, 0.05)
        model.head.gfl_reg.weight.normal_(0, 0.05)
        for scale in model.head.scales:
            scale.scale.fill_(2.0)
    model.test_score_thresh = 0.3
    return cfg, model


def odd_images():
    """BGR uint8 images of odd sizes with some shapes drawn."""
    gen = np.random.default_rng(0)
    images = []
    for h, w in [(128, 128), (200, 249), (97, 161)]:
        image = gen.integers(0, 90, (h, w, 3), dtype=np.uint8)
        for _ in range(3):
            x0, y0 = int(gen.integers(0, w // 2)), int(gen.integers(0, h // 2))
            cv2.rectangle(image, (x0, y0), (x0 + w // 3, y0 + h // 3), gen.integers(100, 255, 3).tolist(), -1)
        images.append(image)
    return images


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
    """ONNX exports (with distributions) of a small v1 and v2, and their models."""
    out = {}
    for version in (1, 2):
        cfg, model = small_model(version)
        folder = str(tmp_path_factory.mktemp(f"onnx_v{version}"))
        spec = export_model(cfg, model, folder, "onnx", with_distributions=True)
        out[version] = (cfg, model, folder, spec)
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_onnx_matches_pytorch_at_several_sizes(exported, version):
    """Raw outputs of the ONNX graph equal the PyTorch model's at 128x128, 224x256 (200x249
    padded) and sizes other than the traced one, batch 1 and 3."""
    import onnxruntime as ort

    cfg, model, folder, spec = exported[version]
    session = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"])
    reference = GFLExportModule(model, with_distributions=True)
    gen = torch.Generator().manual_seed(5)
    for shape in [(1, 3, 128, 128), (1, 3, 224, 256), (3, 3, 96, 320)]:
        images = torch.rand(*shape, generator=gen) * 255
        with torch.no_grad():
            scores, boxes, dists = reference(images)
        got = session.run(None, {"images": images.numpy()})
        R = sum(-(-shape[2] // s) * -(-shape[3] // s) for s in model.strides)
        assert got[0].shape == (shape[0], R, model.num_classes)
        np.testing.assert_allclose(got[0], scores.numpy(), atol=SCORE_ATOL, rtol=0)
        np.testing.assert_allclose(got[1], boxes.numpy(), atol=BOX_ATOL, rtol=BOX_RTOL)
        np.testing.assert_allclose(got[2], dists.numpy(), atol=1e-5, rtol=0)
    assert spec.gfl_version == version and spec.with_distributions
    assert spec.parity["max_abs_diff"]["scores"] < SCORE_ATOL
    # The recorded parity includes the tracing size, whose P7 boxes reach ~2,500 px.
    assert spec.parity["max_abs_diff"]["boxes"] < BOX_ATOL + 2500 * BOX_RTOL


def assert_same_detections(ours, theirs, dist_atol=1e-5):
    """Runtime dict vs Instances: the same detections (count, classes, boxes, scores, dists).

    Detections are paired one to one by class and box, since two scores equal to float
    rounding (1e-7) may come out in either order."""
    assert len(theirs) > 5
    assert len(ours["boxes"]) == len(theirs)
    boxes = theirs.pred_boxes.tensor.numpy()
    gap = np.abs(ours["boxes"][:, None, :] - boxes[None, :, :]).max(axis=2)  # (M, M)
    gap[ours["classes"][:, None] != theirs.pred_classes.numpy()[None, :]] = np.inf
    pair = gap.argmin(axis=1)
    assert len(set(pair.tolist())) == len(pair), "detections do not pair one to one"
    np.testing.assert_allclose(ours["boxes"], boxes[pair], atol=BOX_ATOL, rtol=BOX_RTOL)
    np.testing.assert_allclose(ours["scores"], theirs.scores.numpy()[pair], atol=SCORE_ATOL, rtol=0)
    assert (pair == np.arange(len(pair))).mean() > 0.9  # and mostly in the same order
    if "dists" in ours:
        np.testing.assert_allclose(ours["dists"], theirs.pred_dists.numpy()[pair], atol=dist_atol, rtol=0)
        np.testing.assert_allclose(ours["strides"], theirs.pred_strides.numpy()[pair], rtol=1e-6)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("version", [1, 2])
def test_runtime_gives_the_predictor_detections(exported, version, backend):
    """gfocal_runtime (no torch in its code path) returns LazyPredictor's detections in the
    original image's pixels, on odd-sized images."""
    cfg, model, folder, _ = exported[version]
    predictor = LazyPredictor(cfg, model=model, optimize=False)
    detector = Detector(folder, backend=backend)
    assert detector.backend == backend
    for image in odd_images():
        assert_same_detections(detector(image), predictor(image)["instances"])


def test_deployment_paths_agree_and_export_once(exported, tmp_path, monkeypatch):
    """deployment_paths runs one model each way by name, to the same detections; the exported
    paths share one export, made once (a folder with model.json is not exported again)."""
    from gfocal.export import deployment_paths, exporter

    cfg, model, _, _ = exported[1]
    names = ["gfl-eager", "gfl-optimized", "onnxruntime-fp32", "openvino-fp32"]
    runs = deployment_paths(cfg, model, str(tmp_path), "64", names)
    assert list(runs) == names and os.listdir(tmp_path) == ["fp32"]
    image = odd_images()[1]
    want = runs["gfl-eager"](image)
    for name in names[1:]:
        got = runs[name](image)
        fields = {"boxes": got.pred_boxes.tensor.numpy(), "scores": got.scores.numpy()}
        assert_same_detections(dict(fields, classes=got.pred_classes.numpy()), want)
    monkeypatch.setattr(exporter, "export_model", lambda *args, **kwargs: pytest.fail("exported again"))
    deployment_paths(cfg, model, str(tmp_path), "64", ["onnxruntime-fp32"])


@pytest.mark.parametrize("merge", ["nms", "greedy", "distribution"])
def test_sliced_runtime_gives_the_sliced_predictor_detections(exported, merge):
    """Detector(path, slicing=...) slices and merges as the PyTorch model does, its tiles run
    as batches of ``batch_size``."""
    cfg, model, folder, _ = exported[1]
    slicing = dict(size=100, overlap=0.25, merge=merge, batch_size=3)
    predictor = LazyPredictor(cfg, model=model, optimize=False, slicing=slicing)
    detector = Detector(folder, slicing=slicing)
    runner, batches = detector._runner, []
    detector._runner = lambda images: batches.append(len(images)) or runner(images)
    image = odd_images()[1]  # 200 x 249: tiles at x 0, 75, 149 and y 0, 75, 100, then the whole image
    assert_same_detections(detector(image), predictor(image)["instances"])
    assert batches == [3, 3, 3, 1]
    with pytest.raises(ValueError, match="slicing merge must be one of"):
        Detector(folder, slicing=dict(size=100, merge="soft"))


def test_sahi_runs_exported_and_checkpoint_models(exported, tmp_path):
    """GFocalDetectionModel from an exported folder (gfocal_runtime) and from a checkpoint with
    its config (PyTorch): sahi's whole-image prediction is the model's own."""
    import sahi.predict

    from detectron2.config import LazyConfig

    from gfocal.engine.sahi_model import GFocalDetectionModel
    from gfocal_runtime.sahi_model import GFocalDetectionModel as ExportedDetectionModel

    cfg, model, folder, _ = exported[1]
    image = odd_images()[1]
    expected = Detector(folder)(image)
    weights, config = str(tmp_path / "model.pth"), str(tmp_path / "config.yaml")
    torch.save({"model": model.state_dict()}, weights)
    LazyConfig.save(cfg, config)
    for sahi_model in (
        ExportedDetectionModel(model_path=folder, confidence_threshold=0.0),
        GFocalDetectionModel(model_path=folder, confidence_threshold=0.0),
        GFocalDetectionModel(model_path=weights, config_path=config, confidence_threshold=0.0),
    ):
        result = sahi.predict.get_prediction(image[:, :, ::-1].copy(), sahi_model)  # sahi gives RGB
        preds = result.object_prediction_list
        assert len(preds) == len(expected["boxes"]) > 5
        boxes = np.array([p.bbox.to_xyxy() for p in preds], np.float32)
        order = np.lexsort(boxes.T[::-1])
        want = expected["boxes"][np.lexsort(expected["boxes"].T[::-1])]
        np.testing.assert_allclose(boxes[order], want, atol=BOX_ATOL)
    with pytest.raises(ValueError, match="runs on the CPU"):
        GFocalDetectionModel(model_path=folder, device="cuda")
    with pytest.raises(ValueError, match="not an exported model folder.*gfocal.engine.sahi_model"):
        ExportedDetectionModel(model_path=weights, config_path=config)


def test_runtime_resizes_and_rescales_as_the_config(data_dir, tmp_path):
    """A config whose test mapper resizes (ResizeShortestEdge 160, max 200): the runtime
    resizes as Detectron2 does and returns boxes in the original image's pixels."""
    import detectron2.data.transforms as T
    from detectron2.config import LazyCall as L

    cfg, model = small_model(1)
    cfg.dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=160, max_size=200)]
    spec = export_model(cfg, model, str(tmp_path), "onnx")
    assert spec.resize == ResizeSpec(short_edge_length=160, max_size=200, interpolation="bilinear")
    predictor = LazyPredictor(cfg, model=model, optimize=False)
    detector = Detector(str(tmp_path), backend="onnxruntime")
    for image in odd_images():
        theirs = predictor(image)["instances"]
        assert theirs.image_size == image.shape[:2]
        assert_same_detections(detector(image), theirs)


@pytest.mark.parametrize("version", [1, 2])
def test_torch_export_program_matches_pytorch(data_dir, tmp_path, version):
    """model.pt2 (torch.export, dynamic batch and size from 160) equals the model."""
    cfg, model = small_model(version)
    spec = export_model(cfg, model, str(tmp_path), "torch-export", with_distributions=True)
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    reference = GFLExportModule(model, with_distributions=True)
    gen = torch.Generator().manual_seed(6)
    for shape in [(1, 3, 160, 160), (2, 3, 224, 256)]:
        images = torch.rand(*shape, generator=gen) * 255
        with torch.no_grad():
            expected = reference(images)
            got = program(images)
        for a, b, (atol, rtol) in zip(got, expected, ((SCORE_ATOL, 0), (BOX_ATOL, BOX_RTOL), (1e-5, 0))):
            torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
    assert spec.artifact == "torch-export" and spec.source["min_input_size"] == 160
    with pytest.raises(ValueError, match="runs ONNX models only"):
        Detector(str(tmp_path))
    res = subprocess.run(  # the demo says so in one line
        [
            sys.executable,
            os.path.join(REPO, "demo/demo.py"),
            "--exported",
            str(tmp_path),
            "--input",
            os.path.join(REPO, "README.md"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert res.returncode == 2 and "--format onnx" in res.stderr and "Traceback" not in res.stderr


def test_int8_export_runs_and_mostly_agrees(data_dir, tmp_path):
    """A coarse check (accuracy is the benchmark's job): the int8 model runs on both back-ends
    and most fp32 detections have an int8 detection of the same class at IoU > 0.7."""
    cfg, model = small_model(1)
    cfg.export = dict(int8=dict(float_stem=True, percentile=99.0))  # a config's int8 settings reach the quantiser
    with pytest.raises(ConfigError, match="export.int8: unknown stem"):  # checked before anything is written
        export_model(OmegaConf.merge(cfg, {"export": {"int8": {"stem": True}}}), model, str(tmp_path), int8=True)
    assert not os.listdir(tmp_path)
    spec = export_model(cfg, model, str(tmp_path), "onnx", int8=True, calib_images="8")
    assert spec.precision == "int8" and spec.source["int8"]["calibration_images"] == 8
    assert spec.source["int8"]["quantized_convs"] > 20 and spec.source["int8"]["float_convs"] == 1  # the stem
    assert spec.source["int8"]["settings"]["percentile"] == 99.0
    predictor = LazyPredictor(cfg, model=model, optimize=False)
    for backend in ("onnxruntime", "openvino"):
        detector = Detector(str(tmp_path), backend=backend)
        matched = total = 0
        for image in odd_images():
            fp32 = predictor(image)["instances"][:20]
            int8 = detector(image)
            iou = pairwise_iou(fp32.pred_boxes, Boxes(torch.as_tensor(int8["boxes"])))
            same_class = fp32.pred_classes[:, None] == torch.as_tensor(int8["classes"])[None, :]
            matched += int(((iou > 0.7) & same_class).any(dim=1).sum())
            total += len(fp32)
        assert total > 20 and matched >= 0.7 * total, (backend, matched, total)


def test_optimised_eager_copy_matches_the_plain_model(data_dir):
    """Folded batch norms (BN trained from scratch here) + channels_last: same detections."""
    cfg, model = small_model(2)
    with torch.no_grad():  # make the batch norms matter
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    plain = LazyPredictor(cfg, model=model, optimize=False)
    fast = LazyPredictor(cfg, model=model, optimize=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in fast.model.modules()) == 0
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 10  # untouched
    for image in odd_images():
        a, b = fast(image)["instances"], plain(image)["instances"]
        assert len(a) == len(b) > 5
        # 5e-4 px: folded batch norms sum in another order (1.6e-4 px seen with AVX2-only kernels).
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=5e-4, rtol=1e-5)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=0)
        torch.testing.assert_close(a.pred_dists, b.pred_dists, atol=1e-4, rtol=0)


@pytest.mark.parametrize("version", [1, 2])
def test_flop_count_analysis_counts_gfl(version):
    """Detectron2's FlopCountAnalysis (what tools/analyze_model.py runs) counts every GFL op,
    the distribution integral included."""
    _, model = small_model(version)
    inputs = [{"image": torch.rand(3, 128, 160) * 255}]
    flops = FlopCountAnalysis(model, inputs)
    flops.unsupported_ops_warnings(False)
    by_op = flops.by_operator()
    assert flops.total() > 1e8 and by_op["conv"] > 0.9 * flops.total()
    assert by_op.get("linear", 0) > 0  # the integral over the n+1 bins


def test_demo_draws_from_an_exported_model(exported, tmp_path):
    """demo/demo.py --exported DIR draws pictures, distributions included, without a config."""
    _, _, folder, _ = exported[2]
    image = tmp_path / "in" / "x.jpg"
    image.parent.mkdir()
    cv2.imwrite(str(image), odd_images()[1])
    res = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "demo/demo.py"),
            "--exported",
            folder,
            "--input",
            str(image),
            "--output",
            str(tmp_path / "out"),
            "--show-distributions",
            "--confidence-threshold",
            "0.3",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    picture = cv2.imread(str(tmp_path / "out" / "x.png"))
    assert picture is not None and min(picture.shape[:2]) >= 768  # upscaled small image


def test_model_json_is_complete(exported):
    """Everything the runtime needs, nothing it must guess; the runtime reads it back."""
    cfg, model, folder, spec = exported[1]
    parsed = ExportSpec.load(folder)
    assert parsed == spec and parsed.parity == spec.parity and parsed.source == spec.source
    assert parsed.classes == ("ellipse", "rectangle", "triangle", "star")
    assert parsed.strides == (8, 16, 32, 64, 128) and parsed.reg_max == 16
    assert parsed.input_format == "RGB" and parsed.size_divisibility == 32
    assert parsed.resize == ResizeSpec(
        short_edge_length=192, max_size=4000, interpolation="bilinear"
    )  # the test mapper
    assert (parsed.score_thresh, parsed.topk_per_level, parsed.nms_thresh, parsed.max_detections) == (
        0.3,
        1000,
        0.6,
        100,
    )
    np.testing.assert_allclose(parsed.pad_value, model.pixel_mean.flatten().numpy())
    assert sorted(os.listdir(folder)) == ["model.json", "model.onnx"]  # no temporary file left


def test_a_config_without_image_format_is_fed_as_the_model_expects(data_dir, tmp_path):
    """The test mapper's image_format decides the channel order for the predictor and the
    export alike; without one, both take the model's input_format (RGB), not Detectron2's BGR
    default: the runtime and the predictor still agree."""
    from gfocal.engine import evaluation_input

    cfg, model = small_model(1)
    del cfg.dataloader.test.mapper["image_format"]
    assert cfg.model.input_format == "RGB" and evaluation_input(cfg)[0] == "RGB"
    spec = export_model(cfg, model, str(tmp_path), "onnx")
    predictor = LazyPredictor(cfg, model=model, optimize=False)
    assert spec.input_format == predictor.input_format == "RGB"
    detector = Detector(str(tmp_path), backend="onnxruntime")
    for image in odd_images():
        assert_same_detections(detector(image), predictor(image)["instances"])
