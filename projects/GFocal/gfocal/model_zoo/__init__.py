"""GFocal's model zoo, in the spirit of ``detectron2.model_zoo``: every published GFL model as a
config shipped with the package, and its official weights (see :mod:`.model_zoo`)."""

from .model_zoo import (
    DISTILLED,
    MODELS,
    DistilledEntry,
    ZooEntry,
    get,
    get_checkpoint,
    get_config,
    get_config_file,
    load_trained,
)

__all__ = [
    "DISTILLED",
    "MODELS",
    "DistilledEntry",
    "ZooEntry",
    "get",
    "get_checkpoint",
    "get_config",
    "get_config_file",
    "load_trained",
]
