"""GFocal: Generalized Focal Loss detectors (GFL v1 and v2) for Detectron2.

The package reads as Detectron2's does, a folder per role: ``modeling/`` (the detector, its
light parts, and what wraps it: TTA, slicing, the inference-optimised copy), ``data/`` (built-in
datasets, checks, mappers), ``engine/`` (training, evaluation, the predictor), ``checkpoint/``
and ``model_zoo/`` (weights), ``export/`` (deployment), ``analysis/`` (what looks inside a
trained detector: pictures, uncertainty, plots), ``label_check/`` (annotation errors found with
the side distributions); ``config``, ``cli`` and ``errors`` serve them all. Below them all is
the torch-free runtime ``gfocal_runtime``, which imports nothing of this package.

Importing the package registers the ``GFL`` meta-architecture in Detectron2's
``META_ARCH_REGISTRY`` and the built-in ``gfocal_shapes`` datasets. It changes no warning
filter: the known third-party notices that importing Detectron2 prints are silenced only for
that import (entry points silence them for good with
:func:`gfocal.cli.quiet_third_party_warnings`).
"""

import warnings

from .cli import quiet_third_party_warnings

with warnings.catch_warnings():
    quiet_third_party_warnings()
    from gfocal_runtime import __version__  # noqa: F401  (one version for both packages)

    from . import data, modeling  # noqa: F401  (register the built-in datasets and GFL)
    from .modeling import GFL, ATSSMatcher, GFLHead  # noqa: F401
