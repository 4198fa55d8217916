"""GFocal: Generalized Focal Loss detectors (GFL v1 and v2) for Detectron2.

Importing the package registers the ``GFL`` meta-architecture in Detectron2's
``META_ARCH_REGISTRY`` and the built-in ``gfocal_shapes_{train,val}`` datasets.
"""
from .cli import quiet_third_party_warnings

# Before Detectron2 is imported: its import triggers torch.jit deprecation notices that a user
# cannot act on (filtered by exact message; see gfocal.cli).
quiet_third_party_warnings()

from . import data  # noqa: E402,F401  (registers the built-in datasets)
from . import modeling  # noqa: E402,F401  (registers GFL)
from .modeling import GFL, GFLHead, ATSSMatcher  # noqa: E402,F401

__version__ = "0.2.0"
