import logging
import os

import pytest
import torch

from detectron2.utils.logger import setup_logger

# Keep CPU tests light and deterministic on the 2-core CI machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_handlers_on_closed_streams():
    """Commands run in-process call Detectron2's ``setup_logger``, which binds console handlers
    to the ``sys.stdout`` of the moment (a test's capture stream, closed when the test ends) and
    caches them. Afterwards, drop such handlers and the cache, so that no later test, in any
    order, logs into a closed stream ("--- Logging error ---")."""
    yield
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    dead = [
        (lg, h)
        for lg in loggers
        for h in lg.handlers
        if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False)
    ]
    for lg, h in dead:
        lg.removeHandler(h)
    if dead:
        setup_logger.cache_clear()
