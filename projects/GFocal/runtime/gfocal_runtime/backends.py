"""Inference back-ends: OpenVINO and ONNX Runtime on the CPU, float32 unless told otherwise.

A back-end is called with the (1, 3, Hp, Wp) float32 input and returns a dict of numpy arrays
keyed by output name ("scores", "boxes" and possibly "dists").
"""

import contextlib
import importlib
from typing import Dict, Optional

import numpy as np

__all__ = ["DEFAULT_BACKENDS", "BACKENDS", "load_backend"]

# Tried in this order when Detector(backend=None): the first importable one is used.
DEFAULT_BACKENDS = ("openvino", "onnxruntime")
INSTALL_HINTS = {"onnxruntime": "pip install onnxruntime==1.32.0", "openvino": "pip install openvino==2026.4.1"}
OUTPUT_NAMES = ("scores", "boxes", "dists")


def _import(name: str):
    """The back-end's package, or ImportError saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"gfocal_runtime backend {name!r} needs the {name!r} package, which cannot be imported ({e}); "
            f"install it with: {INSTALL_HINTS[name]}"
        ) from e


def _check_input(model_path: str, inputs) -> None:
    if inputs != [["images"]]:
        raise ValueError(f"{model_path}: expected one input named 'images', the graph has {inputs}")


class OnnxRuntimeBackend:
    """onnxruntime ``InferenceSession`` on the CPUExecutionProvider with ORT_ENABLE_ALL."""

    name = "onnxruntime"

    def __init__(self, model_path: str, precision: Optional[str] = None, num_threads: Optional[int] = None):
        if precision not in (None, "f32"):
            raise ValueError(
                f"backend 'onnxruntime' runs only precision 'f32', got {precision!r} "
                "(use backend='openvino' for 'bf16')"
            )
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
        self.precision = "f32"
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        _check_input(model_path, [[i.name] for i in self.session.get_inputs()])
        names = [o.name for o in self.session.get_outputs()]
        self.output_names = [n for n in OUTPUT_NAMES if n in names]

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, {"images": images})))


class OpenVINOBackend:
    """OpenVINO on the CPU, compiled once with dynamic input shapes, with an explicit
    ``INFERENCE_PRECISION_HINT`` (f32 unless bf16 is asked for: on CPUs with bf16 units OpenVINO
    would otherwise silently run bf16) and the LATENCY hint."""

    name = "openvino"

    def __init__(self, model_path: str, precision: Optional[str] = None, num_threads: Optional[int] = None):
        self.precision = "f32" if precision is None else precision
        if self.precision not in ("f32", "bf16"):
            raise ValueError(f"backend 'openvino' runs precision 'f32' or 'bf16', got {precision!r}")
        ov = _import("openvino")
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(model_path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        _check_input(model_path, [sorted(port.get_names()) for port in self.compiled.inputs])
        self.outputs = {n: port for port in self.compiled.outputs for n in port.get_names() if n in OUTPUT_NAMES}

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        # share_inputs: no copy of the (freshly made) input; outputs are copied (the default),
        # since the request's buffers are reused by the next call.
        results = self.request.infer({"images": images}, share_inputs=True)
        return {name: results[port] for name, port in self.outputs.items()}


BACKENDS = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVINOBackend}


def load_backend(name: Optional[str], model_path: str, precision: Optional[str] = None, num_threads=None):
    """Back-end ``name`` ("onnxruntime", "openvino", or None: the first importable of
    :data:`DEFAULT_BACKENDS`) for the model file.

    Raises:
        ValueError: an unknown name or precision. ImportError: its package (for None: every
            default's) is missing, with the line that installs it.
    """
    if name is None:
        for name in DEFAULT_BACKENDS:
            with contextlib.suppress(ImportError):
                _import(name)
                break
        else:
            hints = "; ".join(INSTALL_HINTS[n] for n in DEFAULT_BACKENDS)
            tried = list(DEFAULT_BACKENDS)
            raise ImportError(f"no gfocal_runtime backend is installed (tried {tried}); install one: {hints}")
    if name not in BACKENDS:
        raise ValueError(
            f"unknown gfocal_runtime backend {name!r}; expected one of {sorted(BACKENDS)} "
            f"(or None for the first installed of {list(DEFAULT_BACKENDS)})"
        )
    return BACKENDS[name](model_path, precision=precision, num_threads=num_threads)
