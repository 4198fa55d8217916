"""Inference backends: OpenVINO and onnxruntime, CPU only, float32 by default.

Each backend object is called with the (1, 3, Hp, Wp) float32 input and returns a dict of numpy
arrays keyed by output name ("scores", "boxes" and possibly "dists").
"""
import importlib
from typing import Dict, Optional, Sequence

import numpy as np

__all__ = [
    "DEFAULT_BACKENDS",
    "BACKENDS",
    "INSTALL_HINTS",
    "OnnxRuntimeBackend",
    "OpenVINOBackend",
    "create_backend",
    "resolve_backend",
]

# Tried in this order when Detector(backend=None): the first importable one is used.
DEFAULT_BACKENDS = ("openvino", "onnxruntime")

INSTALL_HINTS = {
    "onnxruntime": "pip install onnxruntime==1.32.0",
    "openvino": "pip install openvino==2026.4.1",
}

OUTPUT_NAMES = ("scores", "boxes", "dists")


def _import_backend_module(name: str):
    """Import the backend's package, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"gfocal_runtime backend {name!r} needs the {name!r} package, which cannot be "
            f"imported ({e}); install it with: {INSTALL_HINTS[name]}"
        ) from e


def resolve_backend(backend: Optional[str], candidates: Optional[Sequence[str]] = None) -> str:
    """The backend name to use.

    Args:
        backend: None (the first importable of ``candidates``), "onnxruntime" or "openvino".
        candidates: the order tried for None; defaults to :data:`DEFAULT_BACKENDS`.

    Raises:
        ValueError: unknown backend name. ImportError: its package (or, for None, every
        candidate's) is missing.
    """
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(
                f"unknown gfocal_runtime backend {backend!r}; expected one of {sorted(BACKENDS)} "
                f"(or None for the first installed of {list(DEFAULT_BACKENDS)})"
            )
        _import_backend_module(backend)
        return backend
    candidates = DEFAULT_BACKENDS if candidates is None else candidates
    for name in candidates:
        try:
            _import_backend_module(name)
        except ImportError:
            continue
        return name
    hints = "; ".join(f"{INSTALL_HINTS[n]}" for n in candidates if n in INSTALL_HINTS)
    raise ImportError(
        f"no gfocal_runtime backend is installed (tried {list(candidates)}); install one: {hints}"
    )


class OnnxRuntimeBackend:
    """onnxruntime ``InferenceSession`` on the CPUExecutionProvider with ORT_ENABLE_ALL."""

    name = "onnxruntime"

    def __init__(self, model_path: str, precision: Optional[str] = None, num_threads: Optional[int] = None):
        if precision not in (None, "f32"):
            raise ValueError(
                f"backend 'onnxruntime' runs only precision 'f32', got {precision!r} "
                "(use backend='openvino' for 'bf16')"
            )
        ort = _import_backend_module("onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
        self.precision = "f32"
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.input_name = "images"
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != [self.input_name]:
            raise ValueError(f"{model_path}: expected one input named 'images', the graph has {inputs}")
        names = [o.name for o in self.session.get_outputs()]
        self.output_names = [n for n in OUTPUT_NAMES if n in names]

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        values = self.session.run(self.output_names, {self.input_name: images})
        return dict(zip(self.output_names, values))


class OpenVINOBackend:
    """OpenVINO on the CPU, compiled once with dynamic input shapes, with an explicit
    ``INFERENCE_PRECISION_HINT`` (f32 unless bf16 is asked for) and the LATENCY hint."""

    name = "openvino"

    def __init__(self, model_path: str, precision: Optional[str] = None, num_threads: Optional[int] = None):
        precision = "f32" if precision is None else precision
        if precision not in ("f32", "bf16"):
            raise ValueError(
                f"backend 'openvino' runs precision 'f32' or 'bf16', got {precision!r}"
            )
        ov = _import_backend_module("openvino")
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        self.precision = precision
        model = core.read_model(model_path)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_name = "images"
        inputs = [sorted(port.get_names()) for port in self.compiled.inputs]
        if len(inputs) != 1 or self.input_name not in inputs[0]:
            raise ValueError(f"{model_path}: expected one input named 'images', the graph has {inputs}")
        self.outputs = {}
        for port in self.compiled.outputs:
            for name in port.get_names():
                if name in OUTPUT_NAMES:
                    self.outputs[name] = port

    def __call__(self, images: np.ndarray) -> Dict[str, np.ndarray]:
        # share_inputs: no copy of the (freshly made) input; outputs are copied (the default),
        # since the request's buffers are reused by the next call.
        results = self.request.infer({self.input_name: images}, share_inputs=True)
        return {name: results[port] for name, port in self.outputs.items()}


BACKENDS = {"onnxruntime": OnnxRuntimeBackend, "openvino": OpenVINOBackend}


def create_backend(name: str, model_path: str, precision: Optional[str] = None, num_threads: Optional[int] = None):
    """Build backend ``name`` ("onnxruntime" or "openvino") for the model file."""
    if name not in BACKENDS:
        raise ValueError(f"unknown gfocal_runtime backend {name!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[name](model_path, precision=precision, num_threads=num_threads)
