"""Export a trained GFL (v1 or v2) for deployment: ONNX (fp32 or int8) or torch.export.

The exported graph ends before anything data-dependent. Input ``images``: (B, 3, H, W) float32
pixels 0-255 in the config's input format (channel order), H and W multiples of the size
divisibility (dynamic batch, height and width). It normalises the pixels itself and returns,
for every image and location (R of them, levels finest first, row-major inside a level):

- ``scores`` (B, R, K) float32 in [0, 1]: sigmoid of the class logits (times the DGQP quality
  for GFL v2), the score GFL ranks and thresholds;
- ``boxes`` (B, R, 4) float32 XYXY in input pixels: each location's centre minus/plus the
  expectation of its left/top/right/bottom distributions times the level's stride, not clipped;
- ``dists`` (B, R, 4, n+1) float32, with ``with_distributions`` only: the four side
  distributions (left, top, right, bottom) over the bins 0..n.

A level of stride s has ceil(H / s) x ceil(W / s) locations. Thresholding, top-k per level,
class-aware NMS and rescaling to the original image belong to the runtime
(:mod:`gfocal_runtime`), which reads everything it needs from ``model.json`` written beside the
model (:func:`export_spec`).
"""
import copy
import json
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from .modeling import GFL
from .optimize import fold_batch_norms

__all__ = [
    "FORMAT_VERSION",
    "GFLExportModule",
    "export_onnx",
    "export_spec",
    "export_torch_program",
    "export_model",
    "instances_from_runtime",
    "quantize_int8",
    "evaluation_resize",
]

logger = logging.getLogger(__name__)

FORMAT = "gfocal-export"
FORMAT_VERSION = 1
OUTPUT_DOCS = {
    "scores": "(B, R, K) float32 in [0, 1]: joint class scores (sigmoid(cls), times the DGQP "
    "quality for GFL v2) of every location and class",
    "boxes": "(B, R, 4) float32 XYXY in network-input pixels (padded input), not clipped",
    "dists": "(B, R, 4, n+1) float32: probabilities of the bins 0..n of the left, top, right and "
    "bottom distances; bin i = i * stride pixels from the location",
    "locations": "R = sum over levels of ceil(H / stride) * ceil(W / stride); levels in `strides` "
    "order, row-major (y, then x) inside a level; location (y, x) of a level is centred at "
    "(x * stride, y * stride) in input pixels",
}


class GFLExportModule(nn.Module):
    """The data-independent part of a GFL: pixels in, dense scores, boxes (and distributions)
    out. Wraps the model's own backbone, head and :meth:`GFL.decode_dense`."""

    def __init__(self, model: GFL, with_distributions: bool = False):
        super().__init__()
        if not isinstance(model, GFL):
            raise ValueError(f"can only export a GFL model, got {type(model).__name__}")
        self.model = model
        self.with_distributions = with_distributions

    @property
    def output_names(self) -> List[str]:
        return ["scores", "boxes"] + (["dists"] if self.with_distributions else [])

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        """images: (B, 3, H, W) float32 pixels 0-255 -> scores (B, R, K), boxes (B, R, 4)
        [, dists (B, R, 4, n+1)]."""
        m = self.model
        features = m.backbone((images - m.pixel_mean) / m.pixel_std)
        features = [features[f] for f in m.head_in_features]
        scores, boxes, probs = m.decode_dense(features, m.head(features))
        return (scores, boxes, probs) if self.with_distributions else (scores, boxes)

    @classmethod
    def from_model(cls, model: GFL, with_distributions: bool = False) -> "GFLExportModule":
        """An eval-mode copy of ``model`` with its batch norms folded into the convolutions
        (fewer ops for every runtime, and plain convolutions for int8)."""
        model = copy.deepcopy(model).eval().float().cpu()
        for p in model.parameters():
            p.requires_grad_(False)
        fold_batch_norms(model)
        return cls(model, with_distributions).eval()


def _dynamic_shapes(size_divisibility: int, min_size: int = 1) -> Dict[str, Dict[int, object]]:
    """Dynamic batch, and height/width in multiples of the size divisibility, at least
    ``min_size`` pixels."""
    Dim = torch.export.Dim
    div = max(int(size_divisibility), 1)
    min_blocks = max(1, -(-int(min_size) // div))
    return {
        "images": {
            0: Dim("batch", min=1, max=256),
            2: div * Dim("height_blocks", min=min_blocks, max=8192 // div),
            3: div * Dim("width_blocks", min=min_blocks, max=8192 // div),
        }
    }


def torch_export_min_size(module: "GFLExportModule") -> int:
    """The smallest height/width the torch.export program accepts: every FPN level must have at
    least 2 locations per side (torch.export's shape guards exclude size-1 feature maps); the
    ONNX graph has no such limit."""
    div = max(int(module.model.backbone.size_divisibility), 1)
    biggest = max(module.model.strides)
    return -(-(biggest + 1) // div) * div


def example_input(size_divisibility: int, batch: int = 2) -> Tensor:
    """A (batch, 3, H, W) tracing input. Batch 2 and P7 at least 2x3 locations, so that no
    dynamic dimension is specialised to 1."""
    div = max(int(size_divisibility), 1)
    h = max(div * ((256 + div - 1) // div), 2 * div)
    w = max(div * ((384 + div - 1) // div), 3 * div)
    gen = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, h, w, generator=gen) * 255


def export_onnx(module: GFLExportModule, path: str, opset: int = 18) -> None:
    """Write ``module`` as ONNX with dynamic batch, height and width (torch.onnx's
    torch.export-based exporter)."""
    div = module.model.backbone.size_divisibility
    program = torch.onnx.export(
        module,
        (example_input(div),),
        dynamic_shapes=_dynamic_shapes(div),
        input_names=["images"],
        output_names=module.output_names,
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    program.save(path)


def export_torch_program(module: GFLExportModule, path: str) -> torch.export.ExportedProgram:
    """Write ``module`` as a ``torch.export`` ExportedProgram (``.pt2``) with dynamic batch,
    height and width (at least :func:`torch_export_min_size`, 160 for GFL's P3-P7); load it with
    ``torch.export.load(path).module()``."""
    div = module.model.backbone.size_divisibility
    program = torch.export.export(
        module, (example_input(div),), dynamic_shapes=_dynamic_shapes(div, torch_export_min_size(module))
    )
    torch.export.save(program, path)
    return program


# ------------------------------------------------------------------------ model.json


def evaluation_resize(cfg) -> Optional[Dict[str, object]]:
    """The config's test-time resize as model.json states it, or None without one.

    Only a deterministic ``ResizeShortestEdge`` is supported (as in every GFocal and Detectron2
    detection config); anything else in the test mapper is an error naming it.
    """
    resize = None
    for aug in cfg.dataloader.test.mapper.get("augmentations", []):
        aug = instantiate(aug)
        if not isinstance(aug, T.ResizeShortestEdge):
            raise ValueError(
                f"cannot export the test-time augmentation {type(aug).__name__}: the runtime "
                "reproduces only ResizeShortestEdge"
            )
        sizes = sorted(set(int(s) for s in aug.short_edge_length))
        if len(sizes) != 1:
            raise ValueError(
                f"the test-time ResizeShortestEdge samples its short side from {aug.short_edge_length}: "
                "an exported model needs one fixed size"
            )
        if aug.interp not in _PIL_INTERPOLATIONS:
            raise ValueError(f"unsupported resize interpolation {aug.interp!r}")
        if resize is not None:
            raise ValueError("the test mapper resizes twice; the runtime reproduces one resize")
        resize = {
            "type": "ResizeShortestEdge",
            "short_edge_length": sizes[0],
            "max_size": int(aug.max_size),
            "interpolation": _PIL_INTERPOLATIONS[aug.interp],
        }
    return resize


def _pil_interpolations() -> Dict[int, str]:
    from PIL import Image

    return {Image.BILINEAR: "bilinear", Image.NEAREST: "nearest", Image.BICUBIC: "bicubic"}


_PIL_INTERPOLATIONS = _pil_interpolations()


def class_names(cfg, num_classes: int) -> List[str]:
    """The test dataset's ``thing_classes``, or ``class_<i>`` when its metadata has none."""
    from .data import first_dataset_name

    names = MetadataCatalog.get(first_dataset_name(cfg.dataloader.test.dataset.names)).get("thing_classes")
    if names is None or len(names) != num_classes:
        logger.warning(
            f"the test dataset's metadata has {'no' if names is None else len(names)} class names for "
            f"{num_classes} classes; model.json gets class_0 .. class_{num_classes - 1}"
        )
        return [f"class_{i}" for i in range(num_classes)]
    return list(names)


def export_spec(
    cfg,
    model: GFL,
    *,
    artifact: str,
    model_file: str,
    precision: str,
    with_distributions: bool,
    parity: Dict[str, object],
    source: Dict[str, object],
) -> Dict[str, object]:
    """Everything a runtime needs to run the exported ``model`` as the config would, and
    nothing it has to guess (the format is versioned; see ``gfocal_runtime.spec``)."""
    input_format = cfg.dataloader.test.mapper.get("image_format", model.input_format)
    pixel_mean = [float(v) for v in model.pixel_mean.flatten()]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "artifact": artifact,
        "model_file": model_file,
        "precision": precision,
        "gfl_version": 2 if model.use_dgqp else 1,
        "input": {
            "name": "images",
            "layout": "NCHW",
            "dtype": "float32",
            "range": [0, 255],
            "format": input_format,
            "size_divisibility": int(model.backbone.size_divisibility),
            # The model pads its *normalised* input with 0, i.e. with the pixel mean.
            "pad_value": pixel_mean,
            "pixel_mean": pixel_mean,
            "pixel_std": [float(v) for v in model.pixel_std.flatten()],
        },
        "resize": evaluation_resize(cfg),
        "classes": class_names(cfg, model.num_classes),
        "num_classes": int(model.num_classes),
        "strides": [int(s) for s in model.strides],
        "reg_max": int(model.reg_max),
        "with_distributions": bool(with_distributions),
        "outputs": {k: v for k, v in OUTPUT_DOCS.items() if with_distributions or k != "dists"},
        "postprocess": {
            "score_thresh": float(model.test_score_thresh),
            "topk_per_level": int(model.test_topk_candidates),
            "nms_thresh": float(model.test_nms_thresh),
            "max_detections": int(model.max_detections_per_image),
            "class_aware_nms": True,
            "clip_boxes_before_nms": True,
        },
        "parity": parity,
        "source": source,
    }


def write_spec(spec: Dict[str, object], output_dir: str) -> str:
    path = os.path.join(output_dir, "model.json")
    with open(path + ".tmp", "w") as f:
        json.dump(spec, f, indent=2)
    os.replace(path + ".tmp", path)
    return path


# ------------------------------------------------------------------------ int8


def quantize_int8(
    fp32_path: str,
    int8_path: str,
    calibration: Iterable[np.ndarray],
    keep_float: Sequence[str] = ("reg_conf",),
) -> Dict[str, object]:
    """Static int8 quantisation of an exported ONNX model as QDQ (runs on ONNX Runtime and
    OpenVINO), calibrated on ``calibration`` inputs ((1, 3, H, W) float32 as the runtime
    prepares them).

    Only convolutions are quantised (weights per channel, int8; activations uint8, min-max
    calibrated). Everything after the last convolutions (sigmoid, the DFL softmax and
    integral, box decoding) stays float32, as do the convolutions whose weight names contain
    one of ``keep_float`` (GFLv2's DGQP by default).

    Returns:
        a summary for model.json: method, counts of quantised and float convolutions.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, batches):
            self._batches = iter(batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {"images": batch}

    graph = onnx.load(fp32_path, load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    excluded = [n.name for n in convs if any(k in name for name in n.input for k in keep_float)]
    quantize_static(
        fp32_path,
        int8_path,
        Reader(calibration),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=excluded,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return {
        "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, min-max",
        "quantized_convs": len(convs) - len(excluded),
        "float_convs": len(excluded),
    }


# ------------------------------------------------------------------------ the whole export


def parity_inputs(size_divisibility: int, min_size: int = 1) -> List[Tensor]:
    """Random-pixel inputs the export is checked on: the smallest quick-start size (128x128,
    or ``min_size``), a padded odd size (200x249 padded to the divisibility) and the tracing
    size (batch 2)."""
    div = max(int(size_divisibility), 1)

    def up(v):
        return div * ((max(v, min_size) + div - 1) // div)

    gen = torch.Generator().manual_seed(1)
    shapes = [(1, 3, up(128), up(128)), (1, 3, up(200), up(249))]
    inputs = [torch.rand(*s, generator=gen) * 255 for s in shapes]
    return inputs + [example_input(div)]


def max_differences(reference: Sequence[Tensor], outputs: Sequence[np.ndarray], names: Sequence[str]) -> Dict[str, float]:
    return {
        name: float(np.abs(ref.numpy() - np.asarray(out)).max()) if ref.numel() else 0.0
        for name, ref, out in zip(names, reference, outputs)
    }


def measure_parity(reference: GFLExportModule, run, inputs: Sequence[Tensor]) -> Dict[str, object]:
    """Max absolute differences of ``run(images) -> outputs`` from the plain PyTorch model,
    per output, over ``inputs`` (their shapes are recorded too)."""
    worst: Dict[str, float] = {}
    for images in inputs:
        with torch.no_grad():
            expected = reference(images)
        diffs = max_differences(expected, run(images), reference.output_names)
        worst = {k: max(v, worst.get(k, 0.0)) for k, v in diffs.items()}
    return {
        "reference": "the PyTorch model (eval, float32, CPU)",
        "input_shapes": [list(x.shape) for x in inputs],
        "max_abs_diff": worst,
    }


def calibration_images(cfg, source, spec: Dict[str, object]) -> List[np.ndarray]:
    """Network inputs for int8 calibration, prepared exactly as the runtime prepares images.

    Args:
        source: an int N (the first N images of the config's training set) or a folder.
    """
    import cv2

    from gfocal_runtime.preprocess import preprocess_image
    from gfocal_runtime.spec import parse_spec

    from .data import first_dataset_name

    if isinstance(source, str) and not source.isdigit():
        if not os.path.isdir(source):
            raise ValueError(f"--calib-images: {source!r} is neither a number nor a folder")
        files = sorted(os.path.join(source, f) for f in os.listdir(source))
    else:
        from detectron2.data import DatasetCatalog

        count = int(source)
        if count < 1:
            raise ValueError(f"--calib-images must be at least 1, got {count}")
        names = cfg.dataloader.train.dataset.names
        records = DatasetCatalog.get(first_dataset_name(names))
        step = max(len(records) // count, 1)  # spread over the set, not its first images
        files = [r["file_name"] for r in records[::step][:count]]
    runtime_spec = parse_spec(spec, path="model.json (being written)")
    batches = []
    for path in files:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            logger.warning(f"calibration: skipped {path} (not a readable image)")
            continue
        batches.append(preprocess_image(image, runtime_spec)[0])
    if not batches:
        raise ValueError(f"no readable calibration image in {source!r}")
    return batches


def export_model(
    cfg,
    model: GFL,
    output_dir: str,
    fmt: str = "onnx",
    *,
    int8: bool = False,
    calib_images="64",
    with_distributions: bool = False,
    source: Optional[Dict[str, object]] = None,
) -> Dict[str, object]:
    """Export ``model`` (built from ``cfg``, weights loaded) into ``output_dir``:
    ``model.onnx`` or ``model.pt2`` plus ``model.json``. Returns the model.json contents."""
    if fmt not in ("onnx", "torch-export"):
        raise ValueError(f"--format must be 'onnx' or 'torch-export', got {fmt!r}")
    if int8 and fmt != "onnx":
        raise ValueError("--int8 needs --format onnx (a QDQ ONNX model)")
    os.makedirs(output_dir, exist_ok=True)
    reference = GFLExportModule(copy.deepcopy(model).eval().float().cpu(), with_distributions)
    module = GFLExportModule.from_model(model, with_distributions)
    inputs = parity_inputs(model.backbone.size_divisibility)
    model_file = "model.onnx" if fmt == "onnx" else "model.pt2"
    path = os.path.join(output_dir, model_file)
    extra: Dict[str, object] = {}

    def spec_with(parity, precision):
        return export_spec(
            cfg, model, artifact="onnx" if fmt == "onnx" else "torch-export", model_file=model_file,
            precision=precision, with_distributions=with_distributions, parity=parity,
            source=dict(source or {}, **extra),
        )

    if fmt == "torch-export":
        program = export_torch_program(module, path)
        runner = program.module()
        min_size = torch_export_min_size(module)
        inputs = parity_inputs(model.backbone.size_divisibility, min_size)
        parity = measure_parity(reference, lambda x: [t.numpy() for t in runner(x)], inputs)
        extra["min_input_size"] = min_size
        spec = spec_with(parity, "fp32")
    else:
        import onnxruntime as ort

        fp32_path = path if not int8 else os.path.join(output_dir, "model_fp32.onnx.tmp")
        export_onnx(module, fp32_path)
        if int8:
            calibration = calibration_images(cfg, calib_images, spec_with({}, "fp32"))
            logger.info(f"int8: calibrating on {len(calibration)} images ...")
            extra["int8"] = dict(quantize_int8(fp32_path, path, calibration), calibration_images=len(calibration))
            os.remove(fp32_path)
            # int8 is calibrated for real images: compare on some (random pixels saturate it).
            inputs = [torch.as_tensor(x) for x in calibration[:4]]
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        parity = measure_parity(reference, lambda x: session.run(None, {"images": x.numpy()}), inputs)
        parity["runtime"] = f"onnxruntime {ort.__version__} CPUExecutionProvider"
        spec = spec_with(parity, "int8" if int8 else "fp32")
    write_spec(spec, output_dir)
    return spec


def instances_from_runtime(detections: Dict[str, np.ndarray], image_size: Tuple[int, int]):
    """``gfocal_runtime.Detector`` output (numpy, original image pixels) as Detectron2
    ``Instances``, the fields the PyTorch model returns (for drawing and evaluation)."""
    from detectron2.structures import Boxes, Instances

    inst = Instances(tuple(image_size))
    inst.pred_boxes = Boxes(torch.as_tensor(detections["boxes"]).reshape(-1, 4))
    inst.scores = torch.as_tensor(detections["scores"])
    inst.pred_classes = torch.as_tensor(detections["classes"])
    if "dists" in detections:
        inst.pred_dists = torch.as_tensor(detections["dists"])
        inst.pred_strides = torch.as_tensor(detections["strides"])
    return inst
