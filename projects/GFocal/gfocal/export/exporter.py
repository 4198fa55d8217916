"""Export a trained GFL (v1 or v2) for deployment: ONNX (fp32 or int8) or torch.export.

The exported graph (:class:`GFLExportModule`) ends before anything data-dependent: pixels in,
every location's joint scores, decoded boxes and, optionally, side distributions out (shapes in
its ``forward``; the contract in projects/GFocal/README.md, "Deployment"). Thresholding, top-k per
level, class-aware NMS and rescaling belong to the runtime (:mod:`gfocal_runtime`), which reads
everything else from ``model.json`` (:class:`gfocal_runtime.ExportSpec`) written beside the model.
"""

import copy
import logging
import os
import shutil
import tempfile
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from detectron2.config import instantiate
from detectron2.data import transforms as T

from gfocal_runtime.spec import INTERPOLATIONS, ExportSpec, ResizeSpec

from ..checkpoint import load_for_inference, require_weights
from ..engine.predictor import evaluation_input, evaluation_metadata
from ..errors import ConfigError
from ..modeling import GFL
from ..modeling.optimize import fold_batch_norms

__all__ = [
    "GFLExportModule",
    "check_export",
    "export_model",
    "export_onnx",
    "export_spec",
    "export_torch_program",
    "export_unless_exported",
    "load_model",
]

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torch-export")


class GFLExportModule(nn.Module):
    """The data-independent part of a GFL: pixels in, dense scores, boxes (and distributions)
    out. Wraps the model's own backbone, head and :meth:`GFL.decode_dense`."""

    def __init__(self, model: GFL, with_distributions: bool = False):
        super().__init__()
        if not isinstance(model, GFL):
            raise ConfigError(f"can only export a GFL model, got {type(model).__name__}")
        self.model = model
        self.with_distributions = with_distributions

    @property
    def output_names(self) -> List[str]:
        return ["scores", "boxes"] + (["dists"] if self.with_distributions else [])

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        """
        Args:
            images: (B, 3, H, W) float32 pixels 0-255 in the test-time channel order, H and W
                multiples of the size divisibility (dynamic B, H, W); normalised here.

        Returns:
            scores (B, R, K) float32 joint scores in [0, 1] (sigmoid(cls), times the DGQP quality
            for v2); boxes (B, R, 4) float32 XYXY in input pixels, not clipped; with
            distributions, dists (B, R, 4, n+1) (left, top, right, bottom over bins 0..n).
            R = sum over levels of ceil(H / s) * ceil(W / s), finest level first, row-major.
        """
        m = self.model
        scores, boxes, probs = m.decode_dense(*m.dense_outputs((images - m.pixel_mean) / m.pixel_std))
        return (scores, boxes, probs) if self.with_distributions else (scores, boxes)

    @classmethod
    def from_model(cls, model: GFL, with_distributions: bool = False, fold: bool = True) -> "GFLExportModule":
        """An eval-mode float32 CPU copy of ``model``, by default with its batch norms folded into
        the convolutions (fewer ops for every runtime, and plain convolutions for int8)."""
        model = copy.deepcopy(model).eval().float().cpu()
        model.requires_grad_(False)
        if fold:
            fold_batch_norms(model)
        return cls(model, with_distributions).eval()

    @property
    def min_size(self) -> int:
        """The smallest height/width the torch.export program accepts: every FPN level must have
        at least 2 locations per side (torch.export's shape guards exclude size-1 feature maps);
        the ONNX graph has no such limit."""
        return _round_up(max(self.model.strides) + 1, self.divisibility)

    @property
    def divisibility(self) -> int:
        return max(int(self.model.backbone.size_divisibility), 1)


def _round_up(value: int, div: int) -> int:
    return -(-int(value) // div) * div


def _dynamic_shapes(div: int, min_size: int = 1) -> Dict[str, Dict[int, object]]:
    """Dynamic batch, and height/width in multiples of ``div``, at least ``min_size`` pixels."""
    Dim = torch.export.Dim
    blocks = dict(min=_round_up(min_size, div) // div, max=8192 // div)
    return {
        "images": {
            0: Dim("batch", min=1, max=256),
            2: div * Dim("height_blocks", **blocks),
            3: div * Dim("width_blocks", **blocks),
        }
    }


def parity_inputs(div: int, min_size: int = 1) -> List[Tensor]:
    """Random-pixel inputs: the tracing input (batch 2, P7 at least 2x3 locations, so that no
    dynamic dimension is specialised to 1) first, then the smallest quick-start size (128x128,
    or ``min_size``) and a padded odd size (200x249). The export is checked on all of them."""
    gen = torch.Generator().manual_seed(1)
    shapes = [(2, 256, 384), (1, 128, 128), (1, 200, 249)]
    return [
        torch.rand(b, 3, _round_up(max(h, min_size), div), _round_up(max(w, min_size), div), generator=gen) * 255
        for b, h, w in shapes
    ]


def export_onnx(module: GFLExportModule, path: str, opset: int = 18) -> None:
    """Write ``module`` as ONNX with dynamic batch, height and width (torch.onnx's
    torch.export-based exporter)."""
    program = torch.onnx.export(
        module,
        (parity_inputs(module.divisibility)[0],),
        dynamic_shapes=_dynamic_shapes(module.divisibility),
        input_names=["images"],
        output_names=module.output_names,
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    program.save(path)


def export_torch_program(module: GFLExportModule, path: str) -> torch.export.ExportedProgram:
    """Write ``module`` as a ``torch.export`` ExportedProgram (``.pt2``) with dynamic batch,
    height and width (at least :attr:`GFLExportModule.min_size`, 160 for GFL's P3-P7); load it
    with ``torch.export.load(path).module()``."""
    example = parity_inputs(module.divisibility, module.min_size)[0]
    program = torch.export.export(
        module, (example,), dynamic_shapes=_dynamic_shapes(module.divisibility, module.min_size)
    )
    torch.export.save(program, path)
    return program


def _resize_spec(augmentations: Sequence[T.Augmentation]) -> Optional[ResizeSpec]:
    """The test-time resize as model.json states it: only one deterministic
    ``ResizeShortestEdge`` (as in every GFocal and Detectron2 detection config) can be exported."""
    names = {v: k for k, v in INTERPOLATIONS.items()}
    if len(augmentations) > 1:
        raise ConfigError(f"the test mapper has {len(augmentations)} augmentations; an export reproduces one resize")
    for aug in augmentations:
        if not isinstance(aug, T.ResizeShortestEdge):
            raise ConfigError(
                f"cannot export the test-time augmentation {type(aug).__name__}: the runtime reproduces only "
                "ResizeShortestEdge"
            )
        sizes = sorted(set(int(s) for s in aug.short_edge_length))
        if len(sizes) != 1:
            raise ConfigError(
                f"the test-time ResizeShortestEdge samples its short side from {aug.short_edge_length}: an "
                "exported model needs one fixed size"
            )
        if aug.interp not in names:
            raise ConfigError(
                f"cannot export the resize interpolation {aug.interp!r}; expected one of {list(INTERPOLATIONS)}"
            )
        return ResizeSpec(sizes[0], int(aug.max_size), names[aug.interp])
    return None


def _class_names(cfg, num_classes: int) -> List[str]:
    """The test dataset's ``thing_classes``, or ``class_<i>`` when its metadata has none."""
    names = evaluation_metadata(cfg).get("thing_classes")
    if names is None or len(names) != num_classes:
        logger.warning(
            f"the test dataset's metadata has {'no' if names is None else len(names)} class names for "
            f"{num_classes} classes; model.json gets class_0 .. class_{num_classes - 1}"
        )
        return [f"class_{i}" for i in range(num_classes)]
    return list(names)


def export_spec(cfg, model: GFL, fmt: str = "onnx", with_distributions: bool = False, **values) -> ExportSpec:
    """The model.json of ``model`` exported from ``cfg``: everything a runtime needs to run it as
    the config evaluates it (``values``: precision, parity, source, ... override the defaults)."""
    image_format, augmentations = evaluation_input(cfg)
    spec = dict(
        artifact=fmt,
        model_file="model.onnx" if fmt == "onnx" else "model.pt2",
        precision="fp32",
        gfl_version=2 if model.use_dgqp else 1,
        input_format=image_format,
        size_divisibility=int(model.backbone.size_divisibility),
        # The model pads its *normalised* input with 0, i.e. the pixels with the pixel mean.
        pad_value=tuple(float(v) for v in model.pixel_mean.flatten()),
        resize=_resize_spec(augmentations),
        classes=tuple(_class_names(cfg, model.num_classes)),
        strides=tuple(int(s) for s in model.strides),
        reg_max=int(model.reg_max),
        with_distributions=bool(with_distributions),
        score_thresh=float(model.test_score_thresh),
        topk_per_level=int(model.test_topk_candidates),
        nms_thresh=float(model.test_nms_thresh),
        max_detections=int(model.max_detections_per_image),
    )
    spec.update(values)
    return ExportSpec(**spec)


def measure_parity(reference: GFLExportModule, run, inputs: Sequence[Tensor]) -> Dict[str, object]:
    """Max absolute differences of ``run(images) -> outputs`` from the plain PyTorch model (eval,
    float32, CPU, batch norms not folded), per output, over ``inputs``."""
    worst: Dict[str, float] = {}
    for images in inputs:
        with torch.no_grad():
            expected = reference(images)
        for name, ref, out in zip(reference.output_names, expected, run(images)):
            diff = float(np.abs(ref.numpy() - np.asarray(out)).max()) if ref.numel() else 0.0
            worst[name] = max(diff, worst.get(name, 0.0))
    return {"input_shapes": [list(x.shape) for x in inputs], "max_abs_diff": worst}


def check_export(cfg, fmt: str, output_dir: str, int8: bool = False, calib_images="64") -> Optional[List[str]]:
    """The export's arguments, checked before anything is built or written.

    Returns:
        the int8 calibration image files (:func:`gfocal.export.quantize.calibration_files`), or None
        without ``int8``. ``calib_images``: N, a folder, or a list of files already checked.
    """
    from .quantize import calibration_files, int8_settings

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    if int8 and fmt != "onnx":
        raise ConfigError("--int8 needs --format onnx (int8 is a QDQ ONNX model)")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f"--output {output_dir} is a file; give a folder")
    if not int8:
        return None
    int8_settings(cfg)  # export.int8, checked before the calibration images are read
    return list(calib_images) if isinstance(calib_images, (list, tuple)) else calibration_files(cfg, calib_images)


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
) -> ExportSpec:
    """Export ``model`` (built from ``cfg``, weights loaded) into ``output_dir``: ``model.onnx``
    or ``model.pt2`` plus ``model.json``.

    Every argument (and, for int8, the calibration images) is checked before the export starts,
    and the files appear in ``output_dir`` only once all of them are written and checked: a
    failed export leaves nothing behind.

    Args:
        calib_images: int8 calibration: N (images of the config's training set), a folder, or a
            list of image files.
        source: where the model came from (config, weights, overrides), recorded in model.json.

    Returns:
        the :class:`~gfocal_runtime.ExportSpec` written as ``model.json``.
    """
    from . import quantize

    calibration = check_export(cfg, fmt, output_dir, int8, calib_images)
    spec = export_spec(cfg, model, fmt, with_distributions, source=dict(source or {}))

    reference = GFLExportModule.from_model(model, with_distributions, fold=False)
    module = GFLExportModule.from_model(model, with_distributions)
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".gfocal-export-", dir=parent)
    try:
        path = os.path.join(work, spec.model_file)
        if fmt == "torch-export":
            runner = export_torch_program(module, path).module()
            inputs = parity_inputs(module.divisibility, module.min_size)
            parity = measure_parity(reference, lambda x: [t.numpy() for t in runner(x)], inputs)
            spec = replace(spec, parity=parity, source=dict(spec.source, min_input_size=module.min_size))
        else:
            import onnxruntime as ort

            export_onnx(module, path)
            inputs = parity_inputs(module.divisibility)
            if int8:
                fp32_path = os.path.join(work, "model_fp32.onnx")
                os.replace(path, fp32_path)
                summary = quantize.quantize_int8(
                    fp32_path, path, quantize.calibration_inputs(calibration, spec), quantize.int8_settings(cfg)
                )
                os.remove(fp32_path)
                # int8 is calibrated for real images: compare on some (random pixels saturate it).
                inputs = [torch.as_tensor(x) for x in quantize.calibration_inputs(calibration[:4], spec)]
                int8_source = dict(summary, calibration_images=len(calibration))
                spec = replace(spec, precision="int8", source=dict(spec.source, int8=int8_source))
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            parity = measure_parity(reference, lambda x: session.run(None, {"images": x.numpy()}), inputs)
            spec = replace(spec, parity=dict(parity, runtime=f"onnxruntime {ort.__version__} CPUExecutionProvider"))
        spec.save(work)
        os.makedirs(output_dir, exist_ok=True)
        for name in (spec.model_file, "model.json"):
            os.replace(os.path.join(work, name), os.path.join(output_dir, name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportSpec.load(output_dir)


def load_model(cfg) -> GFL:
    """``cfg.model`` in eval mode with ``train.init_checkpoint`` loaded; an empty one leaves the
    model as initialised, with a warning (for benchmarks)."""
    weights = cfg.train.init_checkpoint
    if weights:
        require_weights(weights)
    model = instantiate(cfg.model).eval()
    if weights:
        load_for_inference(model, weights, cfg)
    else:
        logger.warning("train.init_checkpoint is empty: exporting the model as initialised (random weights)")
    return model


def export_unless_exported(cfg, output_dir: str, model: Optional[GFL] = None, fmt: str = "onnx", **kwargs) -> str:
    """:func:`export_model` into ``output_dir`` unless it holds a ``model.json`` (a finished export;
    delete the folder to export again). ``model`` defaults to :func:`load_model` of ``cfg``; ``kwargs``
    go to :func:`export_model`. Returns ``output_dir``."""
    if not os.path.isfile(os.path.join(output_dir, "model.json")):
        kind = "ONNX" if fmt == "onnx" else fmt
        print(f"exporting {os.path.basename(output_dir)} {kind} to {output_dir} ...", flush=True)
        export_model(cfg, model if model is not None else load_model(cfg), output_dir, fmt, **kwargs)
    return output_dir
