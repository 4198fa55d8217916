"""Loading lazy configs with checked overrides, the one path every GFocal entry point uses.

Overrides use Detectron2's (Hydra's) syntax, ``key.sub=value``, with two checks Detectron2
does not make: the key must exist in the config or be a parameter of the callable a ``LazyCall``
node builds (``+key=value`` adds a new key on purpose, as in Hydra), and the value must have the
current one's type (interpolations ``${...}`` and ``null`` are accepted).
"""

import difflib
import inspect
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import LazyConfig

from .errors import ConfigError

__all__ = ["load_config", "apply_overrides", "config_keys", "MOVED_MODULES"]

logger = logging.getLogger(__name__)

# Where modules lived before the package was grouped by role: a config saved then (its
# config.yaml names e.g. ``gfocal.evaluation.FastCOCOEvaluator``) loads with its targets rewritten.
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


def load_config(config_file: str, overrides: Sequence[str] = ()):
    """``LazyConfig.load(config_file)`` with ``overrides`` applied and checked, and dataset specs
    (``FORMAT:PATH...``) registered and replaced by their names (:func:`gfocal.data.resolve_dataset_specs`).

    Raises:
        ConfigError: the file is missing or cannot be loaded, or an override is wrong.
    """
    if not config_file:
        raise ConfigError("no config file given (--config-file PATH)")
    if not os.path.isfile(config_file):
        raise ConfigError(f"config file not found: {config_file}")
    try:
        cfg = LazyConfig.load(config_file)
    except Exception as e:  # a user's config with an error in it: say where, in one line
        raise ConfigError(f"cannot load config {config_file}: {type(e).__name__}: {e}") from e
    _rewrite_moved_targets(cfg, config_file)
    cfg = apply_overrides(cfg, overrides)
    from .data.specs import resolve_dataset_specs  # here: gfocal.data imports Detectron2's data stack

    return resolve_dataset_specs(cfg, overrides)


def _rewrite_moved_targets(cfg, config_file: str) -> None:
    """Rewrite every ``_target_`` string under a module path of :data:`MOVED_MODULES` to the
    module's new path, in place, with one warning."""
    moved = []
    for key in list(config_keys(cfg)):
        parent, _, name = key.rpartition(".")
        node = _node(cfg, key) if name == "_target_" else None
        target = node._value() if node is not None else None
        if isinstance(target, str) and target.rpartition(".")[0] in MOVED_MODULES:
            module, _, attr = target.rpartition(".")
            _node(cfg, parent)["_target_"] = f"{MOVED_MODULES[module]}.{attr}"
            moved.append(target)
    if moved:
        logger.warning(
            f"{config_file} names {len(moved)} target(s) at module paths from before GFocal's package was grouped "
            f"by role ({', '.join(sorted(set(moved)))}); loaded with their new paths. Save it again to update it."
        )


def config_keys(node, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a config, inner nodes included (``train``, ``train.max_iter``, ...)."""
    if isinstance(node, DictConfig):
        items = ((str(k), node._get_node(k)) for k in node.keys())
    elif isinstance(node, ListConfig):
        items = ((str(i), node._get_node(i)) for i in range(len(node)))
    else:
        return
    for key, child in items:
        full = f"{prefix}.{key}" if prefix else key
        yield full
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_interpolation():
            yield from config_keys(child, full)


def _node(cfg, key: str):
    """The node at dotted ``key`` ("" for ``cfg`` itself), or None where the config has none."""
    node = cfg
    for part in key.split(".") if key else ():
        if isinstance(node, DictConfig) and part in node:
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            return None
    return node


def _exists(cfg, key: str) -> bool:
    return _node(cfg, key) is not None


def _target_parameters(cfg, parent: str) -> Optional[Dict[str, inspect.Parameter]]:
    """Keyword parameters of the callable a LazyCall node at ``parent`` builds (None if the
    node is not a LazyCall, or its target cannot be inspected); ``{}`` means "accepts any"."""
    node = OmegaConf.select(cfg, parent, throw_on_resolution_failure=False) if parent else cfg
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return None
    target = node._target_
    try:
        if isinstance(target, str):
            from detectron2.utils.registry import locate

            target = locate(target)
        params = inspect.signature(target).parameters
    except Exception:
        return None
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {}
    return {
        name: p
        for name, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def _lazy_call_keys(cfg) -> Iterator[str]:
    """``parent.param`` for every parameter of every LazyCall target not set in the config."""
    for key in [""] + list(config_keys(cfg)):
        params = _target_parameters(cfg, key)
        for name in params or ():
            full = f"{key}.{name}" if key else name
            if not _exists(cfg, full):
                yield full


def _unknown_key(cfg, key: str, text: str) -> ConfigError:
    keys = list(config_keys(cfg)) + list(_lazy_call_keys(cfg))
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    if not close and parent and _exists(cfg, parent):
        siblings = [k for k in keys if k.startswith(parent + ".") and k.count(".") == key.count(".")]
        close = difflib.get_close_matches(key, siblings, n=3, cutoff=0.0)
    hint = f"; closest existing keys: {', '.join(close)}" if close else ""
    return ConfigError(
        f"override {text!r}: the config has no key {key!r}{hint} (write +{text} to add a new key on purpose)"
    )


_KINDS = (
    (bool, "a boolean"),  # before int: a bool is an int
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    ((list, tuple, ListConfig), "a list"),
    ((dict, DictConfig), "a mapping"),
)


_CHECKED_KINDS = ("a boolean", "an integer", "a number", "a list", "a mapping")


def _kind(value) -> str:
    return next((kind for types, kind in _KINDS if isinstance(value, types)), type(value).__name__)


def _check_value(current, key: str, text: str, value) -> None:
    """Refuse ``value`` unless it is of ``current``'s kind (a number may be an integer); strings and
    other leaves take anything (paths, names, device strings)."""
    if current is None or value is None or (isinstance(value, str) and value.startswith("${")):
        return
    expected, got = _kind(current), _kind(value)
    if expected in _CHECKED_KINDS and got != expected and (expected, got) != ("a number", "an integer"):
        raise ConfigError(f"override {text!r}: {key} is {current!r} ({expected}), got {value!r} ({got})")


def apply_overrides(cfg, overrides: Sequence[str]):
    """Apply ``key=value`` overrides to ``cfg`` in place, checked (see the module docstring).

    Raises:
        ConfigError: a malformed override, an unknown key without ``+``, or a value of the
            wrong type.
    """
    overrides: List[str] = [o for o in overrides if o]
    if not overrides:
        return cfg
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException:
            key, _, value = text.partition("=")
            hint = f" (quote a value with : # ? or spaces: {key}='{value}')" if any(c in value for c in ":#? ") else ""
            raise ConfigError(f"cannot parse override {text!r}: expected key.sub=value{hint}") from None
        if override.is_delete():
            raise ConfigError(f"override {text!r}: deleting keys (~key) is not supported")
        key, value = override.key_or_group, override.value()
        if override.is_add() or override.is_force_add():
            if override.is_add() and _exists(cfg, key):
                raise ConfigError(f"override {text!r}: {key} already exists; write {text.lstrip('+')} to change it")
        elif _exists(cfg, key):
            _check_value(OmegaConf.select(cfg, key, throw_on_resolution_failure=False), key, text, value)
        else:
            # A parameter of the LazyCall's target that the config leaves at its default.
            parent, _, name = key.rpartition(".")
            params = _target_parameters(cfg, parent)
            if params is None or (params and name not in params):
                raise _unknown_key(cfg, key, text)
            default = params[name].default if params else inspect.Parameter.empty
            if default is not inspect.Parameter.empty:
                _check_value(default, key, text, value)
        try:
            LazyConfig.apply_overrides(cfg, [text])
        except Exception as e:
            raise ConfigError(f"override {text!r}: {e}") from None
    return cfg
