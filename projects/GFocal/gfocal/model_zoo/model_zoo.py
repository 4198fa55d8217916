"""GFocal's model zoo, in the spirit of ``detectron2.model_zoo``.

    from gfocal import model_zoo
    cfg = model_zoo.get_config("COCO-Detection/gfl_R_50_FPN_1x.py")
    model = model_zoo.get("COCO-Detection/gfl_R_50_FPN_1x.py", trained=True)  # official weights

``trained=True`` downloads the official checkpoint from its published URL (once), converts it
to GFocal names (once) and caches both under ``$GFOCAL_CACHE`` (default ``~/.cache/gfocal``).
Offline, or for checkpoints without a direct URL (GFocalV2's are on Google Drive), download the
file elsewhere and pass ``checkpoint=PATH`` or run ``tools/convert_checkpoint.py``.
"""

import hashlib
import logging
import os
import re
import urllib.error
import urllib.parse
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch

from detectron2.config import LazyConfig, instantiate

from ..checkpoint import convert_state_dict, load_checkpoint_file, load_for_inference, save_checkpoint
from ..config import load_config
from ..errors import CheckpointError, ConfigError

__all__ = [
    "ZooEntry",
    "MODELS",
    "DistilledEntry",
    "DISTILLED",
    "get_config_file",
    "get_config",
    "get_checkpoint",
    "get",
    "load_trained",
]

logger = logging.getLogger(__name__)

_MMDET = "https://download.openmmlab.com/mmdetection/v2.0/gfl"
_MMDET_PAGE = "https://github.com/open-mmlab/mmdetection/tree/main/configs/gfl"
_GFOCALV2 = "https://github.com/implus/GFocalV2#models"


@dataclass(frozen=True)
class ZooEntry:
    """A published GFL model: its reference COCO val2017 box AP and where the weights are."""

    reference_ap: float
    source: str
    checkpoint: str  # file name of the official checkpoint
    url: Optional[str]  # direct download, or None when only a web page (see `page`) has it
    page: str


def _mmdet(ap: float, folder: str, stamp: str) -> ZooEntry:
    name = f"{folder}_{stamp}.pth"
    return ZooEntry(ap, "mmdetection", name, f"{_MMDET}/{folder}/{name}", _MMDET_PAGE)


def _gfocalv2(ap: float, name: str) -> ZooEntry:
    return ZooEntry(ap, "GFocalV2 (official)", f"{name} (Google Drive)", None, _GFOCALV2)


MODELS: Dict[str, ZooEntry] = {
    "COCO-Detection/gfl_R_50_FPN_1x.py": _mmdet(40.2, "gfl_r50_fpn_1x_coco", "20200629_121244-25944287"),
    "COCO-Detection/gfl_R_50_FPN_ms2x.py": _mmdet(42.9, "gfl_r50_fpn_mstrain_2x_coco", "20200629_213802-37bb1edc"),
    "COCO-Detection/gfl_R_101_FPN_ms2x.py": _mmdet(44.7, "gfl_r101_fpn_mstrain_2x_coco", "20200629_200126-dd12f847"),
    "COCO-Detection/gfl_R_101_DCN_FPN_ms2x.py": _mmdet(
        47.1, "gfl_r101_fpn_dconv_c3-c5_mstrain_2x_coco", "20200630_102002-134b07df"
    ),
    "COCO-Detection/gfl_X_101_32x4d_FPN_ms2x.py": _mmdet(
        45.9, "gfl_x101_32x4d_fpn_mstrain_2x_coco", "20200630_102002-50c1ffdb"
    ),
    "COCO-Detection/gfl_X_101_32x4d_DCN_FPN_ms2x.py": _mmdet(
        48.1, "gfl_x101_32x4d_fpn_dconv_c4-c5_mstrain_2x_coco", "20200630_102002-14a2bf25"
    ),
    "COCO-Detection/gflv2_R_50_FPN_1x.py": _gfocalv2(41.0, "GFocal_R_50_FPN_1x"),
    "COCO-Detection/gflv2_R_50_FPN_ms2x.py": _gfocalv2(43.9, "GFocal_R_50_FPN_2x"),
    "COCO-Detection/gflv2_R_101_FPN_ms2x.py": _gfocalv2(45.8, "GFocal_R_101_FPN_2x"),
    "COCO-Detection/gflv2_R_101_DCN_FPN_ms2x.py": _gfocalv2(48.0, "GFocal_R_101_dcnv2_FPN_2x"),
    "COCO-Detection/gflv2_X_101_32x4d_DCN_FPN_ms2x.py": _gfocalv2(48.8, "GFocal_X_101_dcnv2_FPN_2x"),
}


@dataclass(frozen=True)
class DistilledEntry:
    """A published Localization Distillation student (its config names the official teacher):
    COCO val2017 box AP of the student trained alone, with main-region LD, and with the full
    recipe (None: not published). No official student checkpoint: train it with train_net.py."""

    student_ap: float
    ld_ap: float
    full_recipe_ap: Optional[float]
    source: str


_LD = "mmdetection configs/ld; full recipe: HikariTJU/LD"

DISTILLED: Dict[str, DistilledEntry] = {
    "COCO-Detection/ld_gfl_R_18_FPN_1x.py": DistilledEntry(35.8, 36.5, 37.5, _LD),
    "COCO-Detection/ld_gfl_R_34_FPN_1x.py": DistilledEntry(38.9, 39.8, 41.0, _LD),
    "COCO-Detection/ld_gfl_R_50_FPN_1x.py": DistilledEntry(40.1, 41.1, 42.1, _LD),
    "COCO-Detection/ld_gfl_R_101_FPN_ms2x.py": DistilledEntry(44.6, 45.4, None, "mmdetection configs/ld"),
}


def _configs_root() -> str:
    """The configs shipped inside the package (``gfocal/configs``, a copy or link of the
    repository's ``configs/`` made by setup.py, as Detectron2 ships its model zoo configs);
    in a checkout without a build, the repository's ``configs/`` itself."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # gfocal/
    packaged = os.path.join(package, "configs")
    if os.path.isdir(packaged):
        return packaged
    return os.path.normpath(os.path.join(package, "..", "..", "..", "configs"))


def get_config_file(name: str) -> str:
    """Path of a GFocal config (e.g. "COCO-Detection/gfl_R_50_FPN_1x.py"), from an installed
    package or a checkout alike."""
    path = os.path.join(_configs_root(), name)
    if not os.path.isfile(path):
        raise ConfigError(f"{name!r} is not a GFocal config; known models: {', '.join(MODELS)}")
    return path


# The hash prefix official file names carry, as torch.hub reads it: "...-25944287.pth".
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.\w+$")


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _download(url: str, root: str) -> str:
    """``url`` into ``root/downloads/<key of the url>/``, once, checked against the sha256
    prefix its file name carries (if any)."""
    if urllib.parse.urlparse(url).scheme not in ("https", "file"):
        raise CheckpointError(f"refusing to download {url}: only https:// (or a local file://) URLs are used")
    folder = os.path.join(root, "downloads", _key(url))
    path = os.path.join(folder, os.path.basename(urllib.parse.urlparse(url).path))
    match = _HASH_IN_NAME.search(os.path.basename(path))
    if os.path.isfile(path):
        return path
    os.makedirs(folder, exist_ok=True)
    logger.info(f"Downloading {url} ...")
    try:
        torch.hub.download_url_to_file(
            url, path + ".part", hash_prefix=match.group(1) if match else None, progress=True
        )
    except RuntimeError as e:  # torch.hub: "invalid hash value"
        raise CheckpointError(
            f"{url}: the downloaded file does not match the sha256 prefix {match.group(1)} in its name ({e}); "
            "it was deleted"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        raise CheckpointError(
            f"cannot download {url} ({e}); this machine may be offline. Download the file "
            f"elsewhere and pass checkpoint=PATH, or run tools/convert_checkpoint.py on it."
        ) from e
    os.replace(path + ".part", path)
    return path


def get_checkpoint(
    name: str, *, url: Optional[str] = None, checkpoint: Optional[str] = None, cache_dir: Optional[str] = None
) -> str:
    """A converted checkpoint for ``name``, made once and cached.

    Downloads use https only and are checked against the sha256 prefix that official file
    names carry (``-25944287.pth``, as torch.hub does). The converted file is cached under a key
    of the URL and the config name, so a cached file is never returned for another model or URL.

    Args:
        name: a key of :data:`MODELS`.
        url: download from here instead of the published URL (e.g. a mirror, or file://).
        checkpoint: convert this local official checkpoint instead of downloading.
        cache_dir: where downloads and converted files go.

    Returns:
        path of a file that ``DetectionCheckpointer`` loads into ``get_config(name).model``.
    """
    if name not in MODELS:
        raise ConfigError(f"{name!r} has no published checkpoint; known models: {', '.join(MODELS)}")
    entry = MODELS[name]
    root = cache_dir or os.getenv("GFOCAL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "gfocal"))
    os.makedirs(root, exist_ok=True)
    stem = os.path.splitext(os.path.basename(name))[0]
    if checkpoint is None:
        url = url or entry.url
        if url is None:
            raise CheckpointError(
                f"{name}: the official checkpoint ({entry.checkpoint}) has no direct URL; download it "
                f"from {entry.page} and pass checkpoint=PATH (or use tools/convert_checkpoint.py)"
            )
        converted = os.path.join(root, "converted", f"{stem}-{_key(url, name)}.gfocal.pth")
        if os.path.isfile(converted):
            return converted
        checkpoint = _download(url, root)
    else:
        source = os.path.abspath(checkpoint)
        converted = os.path.join(root, "converted", f"{stem}-{_key(source, name)}.gfocal.pth")
    cfg = LazyConfig.load(get_config_file(name))
    state, info = convert_state_dict(load_checkpoint_file(checkpoint), num_classes=cfg.model.num_classes)
    logger.info(f"{os.path.basename(checkpoint)}: {info.summary()}")
    os.makedirs(os.path.dirname(converted), exist_ok=True)
    save_checkpoint({"model": state, "__author__": f"gfocal conversion of {entry.checkpoint}"}, converted)
    return converted


def get_config(name: str, trained: bool = False, **kwargs):
    """The lazy config of ``name``; with ``trained``, ``train.init_checkpoint`` points at the
    converted official weights (see :func:`get_checkpoint` for ``kwargs``)."""
    cfg = LazyConfig.load(get_config_file(name))
    if trained:
        cfg.train.init_checkpoint = get_checkpoint(name, **kwargs)
    return cfg


def get(name: str, trained: bool = True, device: Optional[str] = None, **kwargs):
    """The model of ``name`` in eval mode, with the official weights when ``trained``."""
    cfg = get_config(name, trained=trained, **kwargs)
    model = instantiate(cfg.model)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    if trained:
        load_for_inference(model, cfg.train.init_checkpoint, cfg)
    return model


def load_trained(config_file: str, weights: str, overrides: Sequence[str] = ()):
    """A trained model in eval mode with gradients off (e.g. a distillation teacher), from its
    lazy config (a path, or a GFocal config name such as "COCO-Detection/gfl_R_101_FPN_ms2x.py")
    and weights (GFocal or official GFL checkpoints, a path or a URL)."""
    cfg = load_config(config_file if os.path.isfile(config_file) else get_config_file(config_file), overrides)
    if not weights or ("://" not in weights and not os.path.isfile(weights)):
        raise CheckpointError(f"the weights of {config_file}, {weights!r}: no such file (train that model first)")
    model = instantiate(cfg.model)
    load_for_inference(model, weights, cfg)
    logger.info(f"Loaded {config_file} with {weights}")
    return model.eval().requires_grad_(False)
