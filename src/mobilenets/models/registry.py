"""Model names -> spec, defaults and options; ``create_model`` and ``list_models``."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mobilenets.models import mobilenet_v1, mobilenet_v2, mobilenet_v3, mobilenet_v4, mobilenet_v5
from mobilenets.models.model import MobileNet
from mobilenets.models.spec import NetSpec, for_small_input, with_in_chans
from mobilenets.util.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_cfg(
    input_size: int = 224,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> dict[str, Any]:
    """Preprocessing for a model without Google's TFLite weights: ImageNet evaluation (torchvision's for
    V1-V3, timm's for V4 and V5)."""
    return dict(input_size=(3, input_size, input_size), crop_pct=crop_pct, interpolation=interpolation, mean=mean,
                std=std)  # fmt: skip


@dataclass(frozen=True)
class ModelEntry:
    """What a model name means: how to resolve its spec, its defaults and the options it adds."""

    resolve: Callable[..., NetSpec]
    bn_eps: float
    dropout: float
    options: tuple[str, ...] = field(default=())
    cfg: dict[str, Any] = field(default_factory=default_cfg)
    num_classes: int = 1000
    padding: str = "symmetric"


_V3_OPTIONS = ("minimalistic", "reduced_tail")
MODELS: dict[str, ModelEntry] = {
    "mobilenet_v1": ModelEntry(mobilenet_v1.resolve_v1, 1e-5, 1e-3),
    "mobilenet_v2": ModelEntry(mobilenet_v2.resolve_v2, 1e-5, 0.2),
    "mobilenet_v3_large": ModelEntry(
        partial(mobilenet_v3.resolve_v3, mobilenet_v3.V3_LARGE, mobilenet_v3.V3_LARGE_LAST, mobilenet_v3.V3_LARGE_HEAD),
        1e-3,
        0.2,
        _V3_OPTIONS,
    ),
    "mobilenet_v3_small": ModelEntry(
        partial(mobilenet_v3.resolve_v3, mobilenet_v3.V3_SMALL, mobilenet_v3.V3_SMALL_LAST, mobilenet_v3.V3_SMALL_HEAD),
        1e-3,
        0.2,
        _V3_OPTIONS,
    ),
}
# MobileNetV4: BN eps 1e-5 as timm (its weights are the only published ones); dropout 0.2 (the reference's
# configs; 0.3 for Conv-S); timm's evaluation preprocessing at each model's native resolution.
_V4 = {  # table, stem width, activation, layer scale, dropout, preprocessing
    "mobilenet_v4_conv_small": (mobilenet_v4.V4_CONV_SMALL, 32, "relu", None, 0.3, (224, 0.875)),
    "mobilenet_v4_conv_medium": (mobilenet_v4.V4_CONV_MEDIUM, 32, "relu", None, 0.2, (256, 0.95)),
    "mobilenet_v4_conv_large": (mobilenet_v4.V4_CONV_LARGE, 24, "relu", None, 0.2, (384, 0.95)),
    "mobilenet_v4_hybrid_medium": (mobilenet_v4.V4_HYBRID_MEDIUM, 32, "relu", 1e-5, 0.2, (256, 0.95)),
    "mobilenet_v4_hybrid_large": (mobilenet_v4.V4_HYBRID_LARGE, 24, "gelu", 1e-5, 0.2, (384, 0.95)),
}
MODELS |= {
    name: ModelEntry(
        partial(mobilenet_v4.resolve_v4, table, stem, act, scale), 1e-5, dropout, cfg=default_cfg(*eval_size, "bicubic")
    )
    for name, (table, stem, act, scale, dropout, eval_size) in _V4.items()
}
# MobileNetV5 (timm's definitions): Gemma 3n's encoder takes [0, 1] pixels at 768 px with TF "SAME"
# padding and returns the adapter's tokens; the classifier variants pool them (no dropout, as timm).
_GEMMA_CFG = default_cfg(768, 1.0, "bicubic", (0.0,) * 3, (1.0,) * 3)
MODELS |= {
    "mobilenet_v5_300m_enc": ModelEntry(partial(mobilenet_v5.resolve_v5, mobilenet_v5.V5_300M, True), 1e-5, 0.0,
                                        cfg=_GEMMA_CFG, num_classes=0, padding="same"),
    "mobilenet_v5_300m": ModelEntry(partial(mobilenet_v5.resolve_v5, mobilenet_v5.V5_300M), 1e-5, 0.0,
                                    cfg=_GEMMA_CFG),
    "mobilenet_v5_base": ModelEntry(partial(mobilenet_v5.resolve_v5, mobilenet_v5.V5_BASE), 1e-5, 0.0,
                                    cfg=default_cfg(256, 1.0, "bicubic", (0.5,) * 3, (0.5,) * 3)),
}  # fmt: skip
COMMON_OPTIONS = (
    "num_classes",
    "width_mult",
    "in_chans",
    "dropout",
    "bn_eps",
    "bn_momentum",
    "features_only",
    "out_indices",
    "output_stride",
    "padding",
    "small_input",
    "drop_path_rate",
    "dilated",
)


def list_models() -> list[str]:
    """The model names ``create_model`` accepts."""
    return sorted(MODELS)


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a ``ValueError`` listing the valid names otherwise."""
    if name not in MODELS:
        close = difflib.get_close_matches(str(name), MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"Unknown model {name!r}; available: {', '.join(list_models())}.{hint}")
    return MODELS[name]


def build_model(name: str, **kwargs: Any) -> MobileNet:
    """Build an untrained model (``create_model`` without weights)."""
    entry = model_entry(name)
    unknown = sorted(set(kwargs) - set(COMMON_OPTIONS) - set(entry.options))
    if unknown:
        allowed = ", ".join(COMMON_OPTIONS + entry.options)
        raise TypeError(f"{name}() got unexpected keyword argument(s) {', '.join(unknown)}; allowed: {allowed}.")
    width_mult = kwargs.get("width_mult", 1.0)
    if not isinstance(width_mult, (int, float)) or width_mult <= 0:
        raise ModelError(f"width_mult must be a number > 0, got {width_mult!r}.")
    in_chans = kwargs.get("in_chans", 3)
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ModelError(f"in_chans must be a positive integer, got {in_chans!r}.")
    v3 = {k: kwargs[k] for k in ("minimalistic", "reduced_tail") if k in kwargs}
    output_stride = kwargs.get("output_stride", 32)
    if kwargs.get("dilated"):
        if output_stride not in (16, 32):
            raise ModelError("dilated=True means output_stride=16; pass one or the other.")
        output_stride = 16
    spec = with_in_chans(entry.resolve(width_mult=float(width_mult), **v3), in_chans)
    if spec.encoder and kwargs.get("num_classes"):
        raise ModelError(f"{name} is an encoder (it returns its tokens, no classes); for a classifier use "
                         f"{name.removesuffix('_enc')}.")  # fmt: skip
    if kwargs.get("small_input"):
        spec = for_small_input(spec)
    model = MobileNet(
        spec,
        num_classes=kwargs.get("num_classes", entry.num_classes),
        dropout=kwargs.get("dropout", entry.dropout),
        bn_eps=kwargs.get("bn_eps", entry.bn_eps),
        bn_momentum=kwargs.get("bn_momentum", 0.1),
        features_only=kwargs.get("features_only", False),
        out_indices=tuple(kwargs.get("out_indices", (0, 1, 2, 3, 4))),
        output_stride=output_stride,
        padding=kwargs.get("padding", entry.padding),
        drop_path_rate=kwargs.get("drop_path_rate", 0.0),
        dilate_first=bool(kwargs.get("dilated")),
    )
    model.model_name = name
    model.model_args = dict(kwargs)
    model.pretrained_cfg = dict(entry.cfg)
    return model
