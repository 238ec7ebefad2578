"""SSDLite (MobileNetV2 paper sec. 6.2; MobileNetV3 sec. 6.2) on any MobileNet, in torchvision's ``SSD``.

torchvision keeps the detection machinery (default boxes, box coder, matcher, losses, NMS, the ``SSD``
wrapper); this module writes what SSDLite adds: the extra layers and the depthwise separable prediction
layers, fed by :class:`~mobilenets.models.taps.Taps`. Module names follow torchvision's, so its COCO
weights load by renaming the backbone only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDScoringHead

from mobilenets.models.layers import ConvNormAct
from mobilenets.models.model import MobileNet
from mobilenets.models.taps import Taps, ssdlite_cuts

EXTRA_DEPTHS = (512, 256, 256, 128)  # the four extra layers after the backbone (TF Object Detection API)
BN = dict(bn_eps=1e-3, bn_momentum=0.03)  # TF's 0.001 / 0.97, as torchvision's SSDLite


def extra_layer(in_ch: int, out_ch: int) -> nn.Sequential:
    """One SSDLite extra layer: 1x1 to half the depth, 3x3 depthwise at stride 2, 1x1 to the depth."""
    mid = out_ch // 2
    return nn.Sequential(
        ConvNormAct(in_ch, mid, 1, act="relu6", **BN),
        ConvNormAct(mid, mid, 3, 2, groups=mid, act="relu6", **BN),
        ConvNormAct(mid, out_ch, 1, act="relu6", **BN),
    )


def prediction_layer(in_ch: int, out_ch: int) -> nn.Sequential:
    """SSDLite's prediction layer: SSD's 3x3 convolution made depthwise separable (3x3 depthwise + BN +
    ReLU6, then a 1x1 convolution with bias)."""
    return nn.Sequential(ConvNormAct(in_ch, in_ch, 3, groups=in_ch, act="relu6", **BN), nn.Conv2d(in_ch, out_ch, 1))


class SSDLiteFeatures(nn.Module):
    """The backbone's two maps (strides 16 and 32) and four extra layers' (64 to 512 px: 6 maps)."""

    def __init__(self, net: MobileNet, width_mult: float = 1.0, min_depth: int = 16) -> None:
        super().__init__()
        self.body = Taps(net, ssdlite_cuts(net))
        depths = [max(min_depth, int(d * width_mult)) for d in EXTRA_DEPTHS]
        ins = [self.body.channels[-1], *depths[:-1]]
        self.extra = nn.ModuleList(extra_layer(i, o) for i, o in zip(ins, depths))
        self.channels = [*self.body.channels, *depths]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out = self.body(x)
        y = out[next(reversed(out))]
        for block in self.extra:
            y = block(y)
            out[str(len(out))] = y
        return out


class SSDLiteHead(nn.Module):
    """Box regression and class scores on every map, each a :func:`prediction_layer`."""

    def __init__(self, channels: list[int], anchors: list[int], num_classes: int) -> None:
        super().__init__()
        cls = nn.ModuleList(prediction_layer(c, num_classes * a) for c, a in zip(channels, anchors))
        reg = nn.ModuleList(prediction_layer(c, 4 * a) for c, a in zip(channels, anchors))
        self.classification_head = SSDScoringHead(cls, num_classes)
        self.regression_head = SSDScoringHead(reg, 4)

    def forward(self, x: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


def normal_init(module: nn.Module, std: float = 0.03) -> None:
    """torchvision's SSDLite initialisation: convolutions N(0, 0.03), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# torchvision's SSDLite320 post-processing; images scaled to [-1, 1] as the TF-slim backbones expect
SSD_DEFAULTS: dict[str, Any] = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300,
                                    topk_candidates=300, image_mean=[0.5] * 3, image_std=[0.5] * 3)  # fmt: skip


def ssdlite(net: MobileNet, num_classes: int = 91, size: int = 320, init_backbone: bool = True, **kwargs: Any) -> SSD:
    """SSDLite on ``net`` (a classification MobileNet, built with SSDLite's BN settings), in torchvision's
    ``SSD``: 6 maps, 6 default boxes per location (aspect ratios 1, 2, 3 and their inverses; scales 0.2
    to 0.95), ``size`` x ``size`` input. ``init_backbone``: torchvision's N(0, 0.03) for the backbone too
    (training from scratch); pass False to keep pretrained backbone weights. ``kwargs`` go to ``SSD``."""
    if init_backbone:
        normal_init(net)
    features = SSDLiteFeatures(net)
    normal_init(features.extra)
    boxes = DefaultBoxGenerator([[2, 3]] * len(features.channels), min_ratio=0.2, max_ratio=0.95)
    head = SSDLiteHead(features.channels, boxes.num_anchors_per_location(), num_classes)
    normal_init(head)
    model = SSD(features, boxes, (size, size), num_classes, head=head, **{**SSD_DEFAULTS, **kwargs})
    model.task = "detection"
    return model
