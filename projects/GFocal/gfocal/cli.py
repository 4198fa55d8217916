"""What every GFocal command line shares: quiet start-up, one-line errors for user mistakes.

- :func:`quiet_third_party_warnings` filters, by their exact messages, the warnings that
  third-party packages print and that a user cannot act on (torch.jit's deprecation notices
  triggered by Detectron2's ``@torch.jit.script`` functions, setuptools' pkg_resources notice
  triggered by ``detectron2.model_zoo``, Detectron2's ``torch.meshgrid`` call and its
  ``AMPTrainer``'s ``torch.cuda.amp.autocast``). Nothing else is
  filtered. Entry points call it; ``import gfocal`` itself only silences the import-time ones
  while it imports Detectron2, and leaves the process's warning filters as they were.
- :func:`checked_parser` makes an ``argparse`` parser's mistakes (unknown flag, bad value) a
  :class:`~gfocal.errors.ConfigError`.
- :func:`run` calls a command's ``main`` and turns a :class:`~gfocal.errors.GFocalError` (or a
  missing file) into one line on stderr and exit status 2, and the failure of a worker process
  of a distributed run (another machine gone, a worker killed) into one line and exit status 1.
  ``--debug`` on the command line or ``GFOCAL_DEBUG=1`` shows the traceback instead.
"""

import argparse
import os
import sys
import warnings
from typing import Callable, List, Optional, Tuple

from .errors import ConfigError, GFocalError

__all__ = ["KNOWN_THIRD_PARTY_WARNINGS", "quiet_third_party_warnings", "checked_parser", "run", "worker_failure"]

# (message regex, category): matched against the start of the warning's message.
KNOWN_THIRD_PARTY_WARNINGS = [
    (r"`torch\.jit\.script` is deprecated", FutureWarning),
    (r"`torch\.jit\.trace` is deprecated", FutureWarning),
    (r"`torch\.jit\.script_method` is deprecated", FutureWarning),
    (r"pkg_resources is deprecated as an API", UserWarning),
    (r"Deprecated call to `pkg_resources\.declare_namespace", DeprecationWarning),
    # Detectron2's AMPTrainer (CUDA mixed precision) enters torch.cuda.amp.autocast.
    (r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated", FutureWarning),
    # Detectron2's anchor generator calls torch.meshgrid without `indexing`.
    (r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing argument", UserWarning),
]


def quiet_third_party_warnings() -> None:
    """Ignore exactly the known third-party warnings (see the module docstring)."""
    for message, category in KNOWN_THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def checked_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` with a ``--debug`` switch (tracebacks instead of one-line errors) and its usage
    errors raised as :class:`ConfigError` (one line through :func:`run`) instead of argparse's
    usage text and exit."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors")

    def error(message: str):
        raise ConfigError(f"{message} (see {parser.prog} --help)")

    parser.error = error
    return parser


# Signs, in a worker's last traceback line, that a peer process went away (gloo, the store).
_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "timed out", "Timed out")
_DIVERGED = "(training diverged: lower optimizer.lr or check the data; --resume continues from the last checkpoint)"


def _subclass_names(cls) -> set:
    return {cls.__name__}.union(*(_subclass_names(sub) for sub in cls.__subclasses__()))


def worker_failure(error: Exception) -> Tuple[str, int]:
    """One line and an exit status for a failed worker of Detectron2's ``launch``
    (``torch.multiprocessing``), which reaches the parent only as the worker's traceback text: a
    user mistake (:class:`GFocalError`, a missing file) keeps its message and status 2; a lost
    peer says to start again with ``--resume``; anything else gives its last line, status 1."""
    from torch.multiprocessing import ProcessExitedException

    if isinstance(error, ProcessExitedException):
        how = f"was killed by {error.signal_name}" if error.signal_name else f"exited with status {error.exit_code}"
        return f"training process {error.error_index} (pid {error.error_pid}) {how}", 1
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else repr(error)
    kind, sep, message = last.partition(": ")
    kind = kind.rsplit(".", 1)[-1] if sep else ""
    if kind in _subclass_names(GFocalError) | {"FileNotFoundError"}:
        return message, 2
    if kind == "FloatingPointError":
        return f"{message}\n{_DIVERGED}", 1
    described = f"{kind}: {message}" if sep else last
    if any(sign in last for sign in _LOST_PEER):
        return (
            f"a training process lost contact with the others ({described}): another process or machine "
            "stopped or became unreachable; start every machine again with --resume to continue from the "
            "last checkpoint",
            1,
        )
    return f"training process {error.error_index} failed: {described}", 1


def run(main: Callable[[], Optional[int]], argv: Optional[List[str]] = None) -> int:
    """``main()`` with user mistakes reported on one line (exit status 2)."""
    # Here, not at module level: importing torch outside ``import gfocal``'s scoped filters would
    # leave torch's own import-time warning filters behind.
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

    quiet_third_party_warnings()
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("GFOCAL_DEBUG", "") not in ("", "0")
    try:
        code = main()
    except (GFocalError, FileNotFoundError, ProcessRaisedException, ProcessExitedException, FloatingPointError) as e:
        if debug:
            raise
        if isinstance(e, (ProcessRaisedException, ProcessExitedException)):  # a worker of a distributed run
            message, status = worker_failure(e)
        elif isinstance(e, FloatingPointError):  # Detectron2's trainer: a loss became nan or inf
            message, status = f"{e}\n{_DIVERGED}", 1
        else:
            message, status = str(e), 2
        print(f"error: {message}", file=sys.stderr)
        return status
    return int(code or 0) if isinstance(code, (int, type(None))) else 0
