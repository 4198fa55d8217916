"""Checkpoint files: read as data, never as code, and written atomically."""

import os
import pickle
import re
import zipfile

import torch

from ..errors import CheckpointError

__all__ = ["atomic_write", "is_intact", "load_checkpoint_file", "require_weights", "save_checkpoint"]


def require_weights(weights: str) -> str:
    """``weights`` (``train.init_checkpoint``) for predicting or evaluating: it must be given,
    and a local path must exist (URLs are fetched by the checkpointer)."""
    if not weights:
        raise CheckpointError("no weights: set train.init_checkpoint=PATH (a trained model)")
    if "://" not in weights and not os.path.isfile(weights):
        raise CheckpointError(f"train.init_checkpoint: no such file {weights!r}")
    return weights


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles containers, numbers, strings and numpy arrays only; any other global (a
    function or class that could run code) is refused."""

    _ALLOWED = {
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("_codecs", "encode"),  # how Python 2 pickles (Detectron1/Caffe2 .pkl) store bytes
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED or (
            module.startswith("numpy") and name.endswith("Dtype") and module.endswith("dtypes")
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it would load {module}.{name}")


def _not_a_checkpoint(path: str, what: str, error: Exception) -> CheckpointError:
    detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
    return CheckpointError(f"{path}: {what} ({detail})")


def load_checkpoint_file(path: str):
    """Load a checkpoint as data, never as code: the one loader every GFocal entry point uses.

    ``.pkl`` files (Detectron2 / Caffe2 model zoo) go through :class:`_PlainUnpickler`, everything
    else through ``torch.load(weights_only=True)``, passed explicitly so that
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off.

    Raises:
        CheckpointError: the file is missing, not a checkpoint (text, random bytes, truncated),
            or not a plain one (it would import or call something).
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: no such file {path!r}")
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            try:
                return _PlainUnpickler(f, encoding="latin1").load()
            except Exception as e:  # a refused global, truncated or random bytes
                refused = isinstance(e, pickle.UnpicklingError) and str(e).startswith("it would load")
                what = "not a plain checkpoint: refused to unpickle it" if refused else "not a pickled checkpoint"
                raise _not_a_checkpoint(path, what, e) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's weights-only unpickler names the global it refused; random bytes also end
        # in "Weights only load failed", but with no global to name.
        refused = re.search(r"GLOBAL (\S+) ", str(e))
        if refused:
            raise CheckpointError(
                f"{path}: not a plain checkpoint: refused to load it (it would load {refused.group(1)}); "
                "only tensors, numbers, strings and containers are accepted"
            ) from None
        raise _not_a_checkpoint(path, "not a PyTorch checkpoint", e) from None
    except Exception as e:  # text, random bytes, a truncated zip
        raise _not_a_checkpoint(path, "not a PyTorch checkpoint", e) from None


def save_checkpoint(checkpoint: dict, path: str) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    atomic_write(path, lambda f: torch.save(checkpoint, f), "wb")


def atomic_write(path: str, write, mode: str, path_manager=None) -> None:
    """Call ``write(f)`` on a temporary file opened with ``mode``, then rename it to ``path``; a
    remote ``path`` (``scheme://``) is written through ``path_manager`` instead."""
    if "://" in path and path_manager is not None:  # a remote store: its objects appear whole on close
        with path_manager.open(path, mode) as f:
            write(f)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, mode) as f:
        write(f)
    os.replace(tmp, path)


def is_intact(path: str) -> bool:
    """A checkpoint file that is complete: torch's zip archive has its central directory
    (written last) in place. Cheap: nothing is loaded."""
    if not os.path.isfile(path):
        return False
    return zipfile.is_zipfile(path) or (path.endswith(".pkl") and os.path.getsize(path) > 0)
