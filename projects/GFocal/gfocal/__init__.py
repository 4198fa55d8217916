"""GFocal: Generalized Focal Loss detectors (GFL v1 and v2) for Detectron2.

Importing the package registers the ``GFL`` meta-architecture in Detectron2's
``META_ARCH_REGISTRY`` and the built-in ``gfocal_shapes_{train,val}`` datasets.
"""
from . import data  # noqa: F401  (registers the built-in datasets)
from . import modeling  # noqa: F401  (registers GFL)
from .modeling import GFL, GFLHead, ATSSMatcher  # noqa: F401

__version__ = "0.1.0"
