"""GFocal: Generalized Focal Loss detectors (GFL v1 and v2) for Detectron2.

The package reads as Detectron2's does, a folder per role: ``modeling/`` (the detector and what
wraps it: TTA, slicing, the inference-optimised copy), ``data/`` (built-in datasets, checks,
mappers), ``engine/`` (training, evaluation, the predictor), ``checkpoint/`` and ``model_zoo/``
(weights), ``export/`` (deployment), ``analysis/`` (what a trained model says about data);
``config``, ``cli`` and ``errors`` serve them all.

Importing the package registers the ``GFL`` meta-architecture in Detectron2's
``META_ARCH_REGISTRY`` and the built-in ``gfocal_shapes_{train,val}`` datasets. It changes no
warning filter: the known third-party notices that importing Detectron2 prints are silenced only
for that import (entry points silence them for good with
:func:`gfocal.cli.quiet_third_party_warnings`).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from .cli import quiet_third_party_warnings

with warnings.catch_warnings():
    quiet_third_party_warnings()
    from . import data, modeling  # noqa: F401  (register the built-in datasets and GFL)
    from .modeling import GFL, ATSSMatcher, GFLHead  # noqa: F401

__version__ = "0.3.0"

# Where modules lived before the package was grouped by role: configs saved then (config.yaml
# names ``gfocal.evaluation.FastCOCOEvaluator``) and code written then still import.
MOVED_MODULES = {
    "gfocal.ema": "gfocal.engine.ema",
    "gfocal.evaluation": "gfocal.engine.evaluation",
    "gfocal.precision": "gfocal.engine.precision",
    "gfocal.predictor": "gfocal.engine.predictor",
    "gfocal.optimize": "gfocal.modeling.optimize",
    "gfocal.slicing": "gfocal.modeling.slicing",
    "gfocal.tta": "gfocal.modeling.tta",
    "gfocal.quantize": "gfocal.export.quantize",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path (:data:`MOVED_MODULES`) as the module at its new one."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED_MODULES else None

    def create_module(self, spec):
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
