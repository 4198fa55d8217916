"""Any timm model as a Detectron2 :class:`Backbone` (``timm.create_model(..., features_only=True)``).

    backbone = TimmBackbone(model_name="lcnet_075", out_indices=(2, 3, 4))
    backbone.output_shape()  # {"res3": ShapeSpec(channels=..., stride=8), "res4": ..., "res5": ...}

Feature names follow Detectron2's ResNet: ``res{log2(stride)}`` (``res3`` is stride 8), so an FPN
or :class:`~gfocal.modeling.LightPAN` built for a ResNet reads a timm model unchanged. Channels and
strides come from the model's ``feature_info``. Nothing is downloaded unless asked: ``pretrained``
is False by default; with ``pretrained=True`` timm fetches the weights from its hub (network
needed), or reads ``checkpoint_path`` (a local file of the model's weights) instead.
"""

import difflib
import math
import os
from typing import Dict, Optional, Sequence

from torch import Tensor, nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone

from ..errors import ConfigError

__all__ = ["TimmBackbone"]


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("TimmBackbone needs timm: pip install timm==1.0.31 (setup_env.sh installs it)") from None
    return timm


class TimmBackbone(Backbone):
    """A timm model's feature maps at ``out_indices`` as a Detectron2 backbone.

    Args:
        model_name: a timm model name (``timm.list_models()``), e.g. "lcnet_075".
        out_indices: which of the model's feature levels to return (indices into its
            ``feature_info``; timm's default features are strides 2, 4, 8, 16, 32 for most CNNs).
        pretrained: load the model's pretrained weights (from timm's hub unless
            ``checkpoint_path`` is given).
        checkpoint_path: a local weights file for ``pretrained`` (no network needed).
        norm_eval: keep the BatchNorms in eval mode while training (frozen statistics, as with
            pretrained detection backbones).
        **kwargs: more arguments of ``timm.create_model`` (e.g. ``drop_path_rate``).
    """

    def __init__(
        self,
        *,
        model_name: str,
        out_indices: Sequence[int] = (2, 3, 4),
        pretrained: bool = False,
        checkpoint_path: Optional[str] = None,
        norm_eval: bool = False,
        **kwargs,
    ):
        super().__init__()
        timm = _timm()
        out_indices = self.check_settings(model_name, out_indices, pretrained, checkpoint_path)
        overlay = {"file": checkpoint_path} if checkpoint_path else None
        try:
            self.body = timm.create_model(
                model_name,
                pretrained=pretrained,
                features_only=True,
                out_indices=out_indices,
                pretrained_cfg_overlay=overlay,
                **kwargs,
            )
        except (OSError, RuntimeError) as e:  # no network (hub), a missing or foreign file
            if not pretrained:
                raise
            where = f"from {checkpoint_path}" if checkpoint_path else "from timm's hub (no network?)"
            first_line = (str(e).splitlines() or [""])[0][:200]
            raise ConfigError(
                f"TimmBackbone: cannot load pretrained weights of {model_name} {where}: {type(e).__name__}: "
                f"{first_line}; give checkpoint_path=FILE (the model's weights) or pretrained=False"
            ) from None
        self.norm_eval = norm_eval
        self._out_features, self._out_feature_strides, self._out_feature_channels = [], {}, {}
        for info in self.body.feature_info.get_dicts():
            name = f"res{int(round(math.log2(info['reduction'])))}"
            self._out_features.append(name)
            self._out_feature_strides[name] = info["reduction"]
            self._out_feature_channels[name] = info["num_chs"]
        if len(set(self._out_features)) != len(self._out_features):
            raise ConfigError(
                f"TimmBackbone: out_indices={list(out_indices)} of {model_name} give two levels of one stride "
                f"({self._out_features}); pick one index per stride"
            )

    @staticmethod
    def check_settings(model_name: str, out_indices: Sequence[int], pretrained: bool = False, checkpoint_path=None):
        """Raise ConfigError for a name timm lacks (with the closest ones), ``out_indices`` the
        model lacks, or a ``checkpoint_path`` that cannot be read; no weights are built or
        fetched. Returns the indices as a tuple of ints."""
        timm = _timm()
        names = timm.list_models()
        if model_name not in names:
            close = difflib.get_close_matches(model_name, names, n=5, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ConfigError(f"unknown timm model {model_name!r}{hint} (timm.list_models() lists them)")
        if checkpoint_path and not pretrained:
            raise ConfigError(f"TimmBackbone: checkpoint_path={checkpoint_path!r} is read only with pretrained=True")
        probe = timm.create_model(model_name, pretrained=False, features_only=True)
        levels = len(probe.feature_info)
        out_indices = tuple(int(i) for i in out_indices)
        valid = all(0 <= i < levels for i in out_indices) and list(out_indices) == sorted(set(out_indices))
        if not out_indices or not valid:
            strides = [info["reduction"] for info in probe.feature_info.get_dicts()]
            raise ConfigError(
                f"TimmBackbone: out_indices={list(out_indices)} for {model_name}, which has {levels} feature levels "
                f"(strides {strides}): give increasing indices in [0, {levels - 1}]"
            )
        if checkpoint_path and not os.path.isfile(checkpoint_path):
            raise ConfigError(f"TimmBackbone: checkpoint_path={checkpoint_path!r} is not a file")
        return out_indices

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """(N, 3, H, W) normalised images -> {name: (N, C_i, H / s_i, W / s_i)}."""
        return dict(zip(self._out_features, self.body(x)))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    @property
    def size_divisibility(self) -> int:
        return 0

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }
