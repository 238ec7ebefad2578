"""Small building layers shared by every MobileNet: rounding, conv-norm-act, squeeze-and-excite, layer scale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.util.errors import ModelError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True),
    "gelu": nn.GELU,  # exact (erf) form, as timm's MobileNetV4-Hybrid-L
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),  # MobileNetV5
}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_value`` (default
    ``divisor``) and never more than 10% below ``value`` (TF-slim's ``_make_divisible``)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_activation(name: str | None) -> nn.Module:
    """The activation module for a spec name (``relu``, ``relu6``, ``hswish``, ``gelu``) or identity for
    None.

    In place where PyTorch offers it, as torchvision's: it only ever follows a BN or linear layer inside
    our own units, whose backward does not need their output, so no tensor a user holds (a feature map,
    a block output) is ever overwritten.
    """
    return nn.Identity() if name is None else ACTIVATIONS[name]()


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: for stride 2 on even sizes it pads 0 before, 1 after.

    Google's TF/TFLite weights were trained with it; symmetric padding shifts every strided layer by
    half a pixel and costs about 20 points of top-1 on real images. The padding is integer arithmetic on
    the input's size (no ``math.ceil``, no ``max``: kernel >= stride makes it non-negative), so a traced
    export (ONNX with free height and width) keeps it a function of the size instead of constants.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if any(k < s for k, s in zip(self.kernel_size, self.stride, strict=True)):
            raise ModelError(f"SAME padding here needs kernel >= stride, got {self.kernel_size} / {self.stride}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(
            reversed(x.shape[-2:]),
            reversed(self.kernel_size),
            reversed(self.stride),
            reversed(self.dilation),
        ):
            total = ((size + s - 1) // s - 1) * s + (k - 1) * d + 1 - size
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def conv2d(
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
    padding: str = "symmetric",
) -> nn.Conv2d:
    """A convolution with PyTorch's symmetric padding or TF "SAME" padding (``padding="same"``).

    Stride-1 convolutions pad symmetrically either way (that *is* SAME for odd kernels), so only
    strided layers pay for dynamic padding.
    """
    if padding == "same" and stride > 1:
        return SamePadConv2d(in_ch, out_ch, kernel, stride, 0, dilation, groups, bias)
    return nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2 * dilation, dilation, groups, bias)


class RMSNorm2d(nn.Module):
    """RMS normalization over the channels of each pixel, with a learned per-channel scale and no shift
    (MobileNetV5's norm: ``x / sqrt(mean_c(x^2) + eps) * weight``)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return x * self.weight.view(1, -1, 1, 1)


def make_norm(channels: int, norm: str = "batch", bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> nn.Module:
    """Batch norm (V1-V4) or :class:`RMSNorm2d` (V5) over ``channels``."""
    if norm == "rms":
        return RMSNorm2d(channels)
    return nn.BatchNorm2d(channels, eps=bn_eps, momentum=bn_momentum)


class ConvNormAct(nn.Sequential):
    """Convolution, a norm (batch norm; RMS norm for V5) and an optional activation: the unit every
    MobileNet is made of."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 1,
        stride: int = 1,
        *,
        dilation: int = 1,
        groups: int = 1,
        act: str | None = "relu",
        bias: bool = False,
        norm: str = "batch",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        padding: str = "symmetric",
    ) -> None:
        super().__init__(
            conv2d(in_ch, out_ch, kernel, stride, dilation, groups, bias=bias, padding=padding),
            make_norm(out_ch, norm, bn_eps, bn_momentum),
            make_activation(act),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite (Hu et al.), as MobileNetV3 uses it: pool, 1x1 reduce, ReLU, 1x1 expand,
    hard-sigmoid gate."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * scale


class LayerScale(nn.Module):
    """A learned per-channel scale of a residual branch (MobileNetV4's hybrids: initialised to 1e-5)."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(1, -1, 1, 1)
