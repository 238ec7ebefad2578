"""One MobileNet module, built from a :class:`~mobilenets.models.spec.NetSpec`: stem, blocks, head, features."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.models.blocks import (
    DepthwiseSeparable,
    FusedInvertedBottleneck,
    FusionAdapter,
    InvertedResidual,
    MobileMQA,
    Residual,
    UniversalInvertedBottleneck,
)
from mobilenets.models.layers import ConvNormAct, make_activation
from mobilenets.models.spec import LayerSpec, NetSpec
from mobilenets.util.errors import ModelError

OUTPUT_STRIDES = (8, 16, 32)


class FeatureInfo(list):
    """Per feature map: ``num_chs``, ``reduction`` and ``module`` (as timm's ``feature_info``)."""

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self]


# Each block kind of the specs and the module that builds it from (spec, dilation, norm options).
BLOCKS: dict[str, Callable[[LayerSpec, int, dict[str, Any]], nn.Module]] = {
    "conv": lambda s, d, norm: ConvNormAct(s.in_ch, s.out_ch, s.kernel, s.stride, dilation=d, act=s.act,
                                           bias=s.bias, **norm),
    "dws": lambda s, d, norm: DepthwiseSeparable(s.in_ch, s.out_ch, kernel=s.kernel, stride=s.stride, dilation=d,
                                                 act=s.act, **norm),
    "ir": lambda s, d, norm: InvertedResidual(s.in_ch, s.mid_ch, s.out_ch, kernel=s.kernel, stride=s.stride,
                                              dilation=d, act=s.act, se_ch=s.se_ch, **norm),
    "uib": lambda s, d, norm: UniversalInvertedBottleneck(
        s.in_ch, s.mid_ch, s.out_ch, start_kernel=s.start_kernel, kernel=s.kernel, stride=s.stride, dilation=d,
        act=s.act, layer_scale=s.layer_scale, **norm),
    "fused": lambda s, d, norm: FusedInvertedBottleneck(s.in_ch, s.mid_ch, s.out_ch, kernel=s.kernel,
                                                        stride=s.stride, dilation=d, act=s.act, **norm),
    "mqa": lambda s, d, norm: MobileMQA(s.in_ch, heads=s.heads, key_dim=s.key_dim, kv_stride=s.kv_stride,
                                        dilation=d, layer_scale=s.layer_scale, **norm),
}  # fmt: skip


def _build_block(spec: LayerSpec, dilation: int, norm: dict[str, Any]) -> nn.Module:
    return BLOCKS[spec.kind](spec, dilation, norm)


def _build_body(spec: NetSpec, norm: dict[str, Any], output_stride: int, dilate_first: bool
                ) -> tuple[list[nn.Module], list[int], list[int]]:  # fmt: skip
    """The blocks, with stride-2 layers past ``output_stride`` made stride 1 and the layers after them
    dilated instead; and the reduction after the stem and each block, actual and nominal (without dilation:
    it decides the stage ends)."""
    stride, dilation, blocks = spec.stem.stride, 1, []
    reductions, nominal = [stride], [stride]
    for layer in spec.blocks:
        nominal.append(nominal[-1] * layer.stride)
        next_dilation = dilation
        if stride * layer.stride > output_stride:
            next_dilation, layer = dilation * layer.stride, replace(layer, stride=1)
        else:
            stride *= layer.stride
        blocks.append(_build_block(layer, next_dilation if dilate_first else dilation, norm))
        dilation = next_dilation
        reductions.append(stride)
    return blocks, reductions, nominal


def _feature_info(spec: NetSpec, reductions: list[int], nominal: list[int]) -> FeatureInfo:
    """One entry per stage end (the last layer before the nominal reduction changes)."""
    info = FeatureInfo()
    widths = [spec.stem.out_ch] + [b.out_ch for b in spec.blocks]
    for i, red in enumerate(nominal):
        if i + 1 == len(nominal) or nominal[i + 1] != red:
            name = "stem" if i == 0 else f"blocks.{i - 1}"
            info.append(dict(num_chs=widths[i], reduction=reductions[i], module=name, index=i))
    return info


class MobileNet(nn.Module):
    """A MobileNet (V1 to V5) from its spec.

    ``forward_features`` returns the last feature map (before pooling); ``features_only=True`` makes
    ``forward`` return the maps at the ends of the stride-2, 4, 8, 16 and 32 stages instead (those
    chosen by ``out_indices``). ``output_stride`` 16 or 8 replaces the last strides by dilation: in the
    blocks after a removed stride (timm's rule), or from the block that lost it on (``dilate_first``,
    torchvision's ``dilated=True``).
    ``drop_path_rate``: stochastic depth of the residual blocks, rising linearly to it with depth.
    With a fusion adapter (V5) ``forward_features`` returns the adapter's map, and an ``encoder`` spec's
    ``forward`` returns that map too.
    """

    def __init__(
        self,
        spec: NetSpec,
        *,
        num_classes: int = 1000,
        dropout: float = 0.2,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        features_only: bool = False,
        out_indices: tuple[int, ...] = (0, 1, 2, 3, 4),
        output_stride: int = 32,
        padding: str = "symmetric",
        drop_path_rate: float = 0.0,
        dilate_first: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_path_rate < 1.0:
            raise ModelError(f"drop_path_rate must lie in [0, 1), got {drop_path_rate!r}.")
        if output_stride not in OUTPUT_STRIDES:
            raise ModelError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}.")
        if padding not in ("symmetric", "same"):
            raise ModelError(f"padding must be 'symmetric' or 'same', got {padding!r}.")
        self.spec = spec
        norm = dict(norm=spec.norm, bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding)
        self.stem = _build_block(spec.stem, 1, norm)
        blocks, reductions, nominal = _build_body(spec, norm, output_stride, dilate_first)
        self.blocks = nn.Sequential(*blocks)
        for i, block in enumerate(blocks):  # stochastic depth grows linearly with depth (timm's rule)
            if isinstance(block, Residual):
                block.set_drop_path(drop_path_rate * i / len(blocks))
        self.feature_info = _feature_info(spec, reductions, nominal)
        bad_index = max(out_indices, default=0) >= len(self.feature_info) or min(out_indices, default=0) < 0
        if features_only and bad_index:
            raise ModelError(f"out_indices must lie in 0..{len(self.feature_info) - 1}, got {tuple(out_indices)}.")
        self.features_only = features_only
        self.out_indices = tuple(out_indices)
        if features_only:
            self.feature_info = FeatureInfo(self.feature_info[i] for i in self.out_indices)
            return
        self._build_head(spec, norm, dropout)
        self.classifier: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)
        self._init_weights()

    def _build_head(self, spec: NetSpec, norm: dict[str, Any], dropout: float) -> None:
        """The layers after the last block: the 1x1 head conv (V1-V3) or V5's fusion adapter of the last
        two stages, then pooling and the pre-logits layer (V3: linear with bias; V4: a 1x1 conv with BN
        on the pooled map)."""
        norm = {k: v for k, v in norm.items() if k != "padding"}
        width = spec.blocks[-1].out_ch if spec.blocks else spec.stem.out_ch
        self.head_conv = ConvNormAct(width, spec.head_conv, 1, act=spec.head_act, **norm) if spec.head_conv \
            else nn.Identity()  # fmt: skip
        self.num_features = spec.adapter or spec.head_conv or width
        self.fused_maps = tuple(f["index"] for f in self.feature_info[-2:]) if spec.adapter else ()
        if spec.adapter:
            fused_ch = sum(f["num_chs"] for f in self.feature_info[-2:])
            self.adapter = FusionAdapter(fused_ch, spec.adapter, spec.adapter_size, act=spec.head_act, **norm)
        if spec.head_norm:
            self.pre_logits = nn.Sequential(ConvNormAct(self.num_features, spec.head_hidden, 1, act=spec.head_act,
                                                        **norm))  # fmt: skip
        elif spec.head_hidden:
            self.pre_logits = nn.Sequential(
                nn.Linear(self.num_features, spec.head_hidden), make_activation(spec.head_act)
            )
        else:
            self.pre_logits = nn.Identity()
        self.head_hidden_size = spec.head_hidden or self.num_features
        self.dropout = nn.Dropout(dropout)

    def _init_weights(self) -> None:
        """torchvision's initialisation: Kaiming-normal (fan-out) convs, N(0, 0.01) linears."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # blocks with an initialisation of their own (Mobile MQA)
            if hasattr(m, "init_weights"):
                m.init_weights()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: no classifier)."""
        if num_classes < 0:
            raise ModelError(f"num_classes must be >= 0, got {num_classes}.")
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.head_hidden_size, num_classes) if num_classes else nn.Identity()
        if num_classes:
            nn.init.normal_(self.classifier.weight, 0, 0.01)
            nn.init.zeros_(self.classifier.bias)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not self.features_only and self.fused_maps:
            return self.adapter(self._maps(x, self.fused_maps))
        x = self.blocks(self.stem(x))
        return x if self.features_only else self.head_conv(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # adaptive_avg_pool2d rather than mean(): it exports as ONNX GlobalAveragePool, which ONNX
        # Runtime runs faster than ReduceMean (measured: 4-9% of V3's latency)
        x = F.adaptive_avg_pool2d(x, 1)
        x = self.pre_logits(x).flatten(1) if self.spec.head_norm else self.pre_logits(x.flatten(1))
        return x if pre_logits else self.classifier(self.dropout(x))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps named by ``feature_info`` (``out_indices`` when ``features_only``)."""
        return self._maps(x, {f["index"] for f in self.feature_info})

    def _maps(self, x: torch.Tensor, wanted: set[int] | tuple[int, ...]) -> list[torch.Tensor]:
        """The outputs of the stem (0) and of the blocks (1...) numbered in ``wanted``, in order."""
        x = self.stem(x)
        out = [x] if 0 in wanted else []
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i in wanted:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_intermediates(x)
        if self.spec.encoder:
            return self.forward_features(x)
        return self.forward_head(self.forward_features(x))
