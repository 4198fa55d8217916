"""Mixed-precision training on the GPU and on the CPU.

``train.amp.enabled=True`` picks, by ``train.device``:

- CUDA: float16 autocast with a gradient scaler (Detectron2's ``AMPTrainer``);
- CPU: bfloat16 autocast (:class:`CPUAutocastTrainer`), where the CPU computes bfloat16 natively
  (AVX512-BF16, or AMX on Intel Sapphire Rapids and later). bfloat16 keeps float32's exponent
  range, so gradients need no scaler. Elsewhere it is refused with one line: oneDNN would emulate
  bfloat16, slower than float32.

Scores, losses and their normalisers are computed in float32 under either (``.float()`` islands
in :mod:`gfocal.modeling`); weights, gradients and optimizer state stay float32.

The benchmarks' side of it: the CPU's name and units (:func:`cpu_name`) and round-robin timing
(:func:`interleaved_medians`).
"""

import platform
import statistics
import time
from typing import Callable, Dict, Hashable

import torch

from detectron2.engine import AMPTrainer, SimpleTrainer

__all__ = [
    "CPUAutocastTrainer",
    "build_trainer",
    "cpu_has_bf16",
    "cpu_name",
    "describe_precision",
    "interleaved_medians",
    "uses_channels_last",
]


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic units (AVX512-BF16 or AMX)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_name() -> str:
    """The CPU model and its vector units that matter here (AVX-512, VNNI, BF16, AMX)."""
    model, flags = platform.processor() or "cpu", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    units = [u for u in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if u in flags]
    return f"{model} ({', '.join(units) or 'no AVX-512'})"


def interleaved_medians(
    fns: Dict[Hashable, Callable[[], object]], rounds: int, warmup: int = 0, device: str = "cpu"
) -> Dict[Hashable, float]:
    """Key -> median seconds of one ``fn()``, measured round-robin over the keys (``warmup`` untimed
    rounds first) so that a slow spell of the machine falls on all of them alike. On a CUDA
    ``device`` the GPU is synchronised before and after each call."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    times = {key: [] for key in fns}
    for i in range(warmup + rounds):
        for key, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times[key].append(elapsed)
    return {key: statistics.median(t) for key, t in times.items()}


def uses_channels_last(device: str) -> bool:
    """Whether training on ``device`` keeps 4-D weights (hence activations) in channels_last:
    on the CPU, where oneDNN's convolutions prefer it (``tools/benchmark.py --mode train``)."""
    return str(device).startswith("cpu")


def describe_precision(device: str, amp: bool) -> str:
    """How a run on ``device`` trains, in words (for logs and the quick start's summary)."""
    device = str(device)
    words = "float32"
    if amp:
        words = "float16 autocast + gradient scaler" if device.startswith("cuda") else "bfloat16 autocast"
    if uses_channels_last(device):
        words += ", channels_last"
    if device.startswith("cpu"):
        words += f" (this CPU {'has' if cpu_has_bf16() else 'has no'} bfloat16 units)"
    return words


class CPUAutocastTrainer(SimpleTrainer):
    """:class:`SimpleTrainer` whose forward pass (model and losses) runs under
    ``torch.autocast("cpu", dtype)``; backward and the optimizer step run outside it, as
    PyTorch recommends. No gradient scaler: bfloat16 does not underflow where float32 does not.
    """

    def __init__(self, model, data_loader, optimizer, dtype: torch.dtype = torch.bfloat16, **kwargs):
        super().__init__(model, data_loader, optimizer, **kwargs)
        self.dtype = dtype

    def run_step(self):
        assert self.model.training, "[CPUAutocastTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with torch.autocast("cpu", dtype=self.dtype):
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        losses = sum(v.float() for v in loss_dict.values())
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        losses.backward()
        self.after_backward()
        if self.async_write_metrics:
            self.concurrent_executor.submit(self._write_metrics, loss_dict, data_time, iter=self.iter)
        else:
            self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


def build_trainer(model, data_loader, optimizer, device: str, amp: bool) -> SimpleTrainer:
    """The trainer for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``) with or without mixed
    precision; :func:`gfocal.engine.check_device` has refused the combinations this machine lacks."""
    if not amp:
        return SimpleTrainer(model, data_loader, optimizer)
    if str(device).startswith("cuda"):
        return AMPTrainer(model, data_loader, optimizer, grad_scaler=torch.amp.GradScaler("cuda"))
    return CPUAutocastTrainer(model, data_loader, optimizer)
