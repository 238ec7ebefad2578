"""The two MobileNet blocks: depthwise separable convolution (V1) and the inverted residual with a
linear bottleneck (V2, V3)."""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvNormAct, SqueezeExcite


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


class InvertedResidual(nn.Module):
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
        y = self.project(self.se(self.dw(self.expand(x))))
        # in place on the projection's own output (as torchvision): its backward never needs it, and
        # the block input x, which a caller may hold, is left untouched
        return y.add_(x) if self.use_residual else y
