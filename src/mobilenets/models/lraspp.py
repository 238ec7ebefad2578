"""LR-ASPP, MobileNetV3's segmentation head (MobileNetV3 paper sec. 6.3, Figure 10), on any MobileNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.models.model import MobileNet
from mobilenets.models.taps import Taps, lraspp_cuts


class LRASPPHead(nn.Module):
    """The stride-16 map through a 1x1 conv + BN + ReLU, gated by a sigmoid of its global average (a
    squeeze-and-excite-like 1x1 conv on the pooled map), upsampled to the stride-8 skip; each branch gets
    a 1x1 classifier and the two are added. Names as torchvision's, so its weights load unchanged."""

    def __init__(self, low_ch: int, high_ch: int, num_classes: int, inter_ch: int = 128) -> None:
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_ch, inter_ch, 1, bias=False), nn.BatchNorm2d(inter_ch), nn.ReLU())
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_ch, inter_ch, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_ch, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_ch, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


class LRASPP(nn.Module):
    """A MobileNet (run at output stride 16) with the LR-ASPP head; ``forward`` returns ``{"out": logits}``
    at the input's resolution, as torchvision's segmentation models do."""

    task = "segmentation"

    def __init__(self, net: MobileNet, num_classes: int = 21, inter_ch: int = 128) -> None:
        super().__init__()
        self.backbone = Taps(net, lraspp_cuts(net))
        self.classifier = LRASPPHead(*self.backbone.channels, num_classes, inter_ch)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low, high = self.backbone(x).values()
        out = self.classifier(low, high)
        return {"out": F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)}
