"""The MobileNet blocks: depthwise separable convolution (V1), the inverted residual with a linear
bottleneck (V2, V3), and MobileNetV4's Universal Inverted Bottleneck, fused inverted bottleneck and
Mobile MQA attention."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from mobilenets.models.layers import ConvNormAct, LayerScale, SqueezeExcite, conv2d, make_divisible, make_norm

_EXPLICIT_ATTENTION = ContextVar("explicit_attention", default=False)


@contextlib.contextmanager
def explicit_attention() -> Iterator[None]:
    """Inside: attention as explicit matmuls and softmax instead of ``F.scaled_dot_product_attention``
    (the same numbers; what ``FlopCounterMode`` can count on the CPU, where it counts SDPA as zero)."""
    token = _EXPLICIT_ATTENTION.set(True)
    try:
        yield
    finally:
        _EXPLICIT_ATTENTION.reset(token)


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: 3x3 depthwise conv + BN + act, then 1x1 pointwise conv + BN + act."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        dilation: int = 1,
        act: str = "relu6",
        **norm: object,
    ) -> None:
        super().__init__()
        self.dw = ConvNormAct(in_ch, in_ch, kernel, stride, dilation=dilation, groups=in_ch, act=act, **norm)
        self.pw = ConvNormAct(in_ch, out_ch, 1, act=act, **norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class Residual(nn.Module):
    """A block that adds its input to its output when the shape is kept. ``drop_path`` is stochastic
    depth (Huang et al., 2016): in training, the block's branch is dropped for a random part of the
    batch; :class:`MobileNet` sets it from ``drop_path_rate``, growing linearly with depth as timm does."""

    use_residual: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.drop_path: nn.Module = nn.Identity()

    def set_drop_path(self, rate: float) -> None:
        self.drop_path = StochasticDepth(rate, "row") if rate and self.use_residual else nn.Identity()

    def residual(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # in place on the branch's own output (as torchvision): its backward never needs it, and the
        # block input x, which a caller may hold, is left untouched
        return self.drop_path(y).add_(x) if self.use_residual else y


class InvertedResidual(Residual):
    """V2/V3 block: 1x1 expansion (omitted when the expanded width equals the input), depthwise conv,
    optional squeeze-and-excite, linear 1x1 projection; a residual when the shape is kept."""

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        dilation: int = 1,
        act: str = "relu6",
        se_ch: int | None = None,
        **norm: object,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        self.expand = ConvNormAct(in_ch, mid_ch, 1, act=act, **norm) if mid_ch != in_ch else nn.Identity()
        self.dw = ConvNormAct(mid_ch, mid_ch, kernel, stride, dilation=dilation, groups=mid_ch, act=act, **norm)
        self.se = SqueezeExcite(mid_ch, se_ch) if se_ch else nn.Identity()
        self.project = ConvNormAct(mid_ch, out_ch, 1, act=None, **norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(self.project(self.se(self.dw(self.expand(x)))), x)

    def split_at_expansion(self) -> tuple[nn.Module, nn.Module] | None:
        """(up to the expansion, the rest) for a strided block with an expansion, else ``None``:
        SSDLite's first map is the expansion of the first stride-32 block (MobileNetV2 sec. 6.2)."""
        if self.use_residual or isinstance(self.expand, nn.Identity):
            return None
        return self.expand, nn.Sequential(self.dw, self.se, self.project)


class UniversalInvertedBottleneck(Residual):
    """MobileNetV4's UIB: an optional depthwise conv before the expansion (BN, no activation), 1x1
    expansion, an optional depthwise conv after it (BN + activation), linear 1x1 projection, optional
    layer scale; a residual when the shape is kept. Its four instances are which depthwise convs exist:
    ExtraDW (both), IB (the middle one: MobileNetV2's block), ConvNext-like (the first), FFN (neither).
    A strided block strides in the middle depthwise conv, or in the first when there is no middle one."""

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        *,
        start_kernel: int = 0,
        kernel: int = 3,
        stride: int = 1,
        dilation: int = 1,
        act: str = "relu",
        layer_scale: float | None = None,
        **norm: object,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        start_stride = 1 if kernel else stride
        self.dw_start = (
            ConvNormAct(in_ch, in_ch, start_kernel, start_stride, dilation=dilation, groups=in_ch, act=None, **norm)
            if start_kernel
            else nn.Identity()
        )
        self.expand = ConvNormAct(in_ch, mid_ch, 1, act=act, **norm)
        self.dw_mid = (
            ConvNormAct(mid_ch, mid_ch, kernel, stride, dilation=dilation, groups=mid_ch, act=act, **norm)
            if kernel
            else nn.Identity()
        )
        self.project = ConvNormAct(mid_ch, out_ch, 1, act=None, **norm)
        self.layer_scale = LayerScale(out_ch, layer_scale) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(self.layer_scale(self.project(self.dw_mid(self.expand(self.dw_start(x))))), x)

    def split_at_expansion(self) -> tuple[nn.Module, nn.Module] | None:
        """As :meth:`InvertedResidual.split_at_expansion`, where the stride is after the expansion."""
        if self.use_residual or isinstance(self.dw_mid, nn.Identity):
            return None
        return nn.Sequential(self.dw_start, self.expand), nn.Sequential(self.dw_mid, self.project, self.layer_scale)


class FusedInvertedBottleneck(Residual):
    """FusedIB (MobileNetV4's stride-4 stage): a full kxk convolution that expands (BN + activation),
    then a linear 1x1 projection; a residual when the shape is kept."""

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        dilation: int = 1,
        act: str = "relu",
        **norm: object,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        self.expand = ConvNormAct(in_ch, mid_ch, kernel, stride, dilation=dilation, act=act, **norm)
        self.project = ConvNormAct(mid_ch, out_ch, 1, act=None, **norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(self.project(self.expand(x)), x)


class MobileMQA(Residual):
    """Mobile multi-query attention (MobileNetV4's hybrids, MobileNetV5): a norm of the input (BN; RMS
    norm in V5), ``heads`` query heads sharing one key and one value head, keys and values optionally
    downsampled by a stride-``kv_stride`` 3x3 depthwise conv + norm each, output projection, layer
    scale, residual. 1x1 convolutions without bias; scaled dot-product attention with scale
    ``key_dim ** -0.5``."""

    def __init__(
        self,
        channels: int,
        *,
        heads: int,
        key_dim: int,
        kv_stride: int = 1,
        dilation: int = 1,
        layer_scale: float | None = None,
        norm: str = "batch",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.norm = make_norm(channels, norm, bn_eps, bn_momentum)
        norm = dict(norm=norm, bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding)
        self.query = conv2d(channels, heads * key_dim, 1)

        def down() -> nn.Module:
            if kv_stride == 1:
                return nn.Identity()
            return ConvNormAct(channels, channels, 3, kv_stride, dilation=dilation, groups=channels, act=None, **norm)

        self.key_down, self.value_down = down(), down()
        self.key, self.value = conv2d(channels, key_dim, 1), conv2d(channels, key_dim, 1)
        self.output = conv2d(heads * key_dim, channels, 1)
        self.layer_scale = LayerScale(channels, layer_scale) if layer_scale else nn.Identity()

    def init_weights(self) -> None:
        """Xavier-uniform projections and downsampling convs, as timm found steadier for the hybrids."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        y = self.norm(x)
        q = self.query(y).reshape(b, self.heads, self.key_dim, h * w).transpose(-1, -2)  # B, heads, HW, d
        k = self.key(self.key_down(y)).flatten(2).transpose(1, 2).unsqueeze(1)  # B, 1, M, d: shared
        v = self.value(self.value_down(y)).flatten(2).transpose(1, 2).unsqueeze(1)
        if _EXPLICIT_ATTENTION.get():
            o = ((q * self.key_dim**-0.5) @ k.transpose(-1, -2)).softmax(-1) @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v)
        o = o.transpose(1, 2).reshape(b, h, w, self.heads * self.key_dim).permute(0, 3, 1, 2)
        return self.residual(self.layer_scale(self.output(o)), x)


class FusionAdapter(nn.Module):
    """MobileNetV5's multi-scale fusion adapter: the given feature maps (the stride-16 and stride-32 stage
    ends) resized to the largest (nearest neighbour) and concatenated on channels, a UIB FFN block (1x1
    expansion x2 with activation, linear 1x1 projection to ``out_ch``, no residual), average-pooled to
    ``size`` x ``size`` (bilinear resize when the map is not a multiple of it), then a norm: the image
    as ``size ** 2`` tokens of ``out_ch`` channels."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        size: int,
        *,
        act: str,
        norm: str = "batch",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        self.size = size
        options = dict(norm=norm, bn_eps=bn_eps, bn_momentum=bn_momentum, padding=padding)
        self.ffn = UniversalInvertedBottleneck(in_ch, make_divisible(in_ch * 2), out_ch, kernel=0, act=act, **options)
        self.ffn.use_residual = False
        self.norm = make_norm(out_ch, norm, bn_eps, bn_momentum)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        h, w = maps[0].shape[-2:]
        x = torch.cat([m if m.shape[-2:] == (h, w) else F.interpolate(m, size=(h, w), mode="nearest") for m in maps], 1)
        x = self.ffn(x)
        if (h, w) != (self.size, self.size):
            if h % self.size or w % self.size:
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear")
            else:
                x = F.avg_pool2d(x, (h // self.size, w // self.size))
        return self.norm(x)
