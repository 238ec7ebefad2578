"""A classification MobileNet cut into the feature maps a detection or segmentation head reads."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from mobilenets.models.model import MobileNet
from mobilenets.util.errors import ModelError

END = -1  # the cut after the whole body: the last block and the last 1x1 conv (``head_conv``)


class Taps(nn.Module):
    """The body of ``net`` (stem, blocks, last 1x1 conv; no pooling or classifier) as consecutive pieces
    ``features[i]``, each ending where a head reads a map. A cut is ``(position, at_expansion)``:
    position 0 is the stem, k the k-th block (1-based), :data:`END` the whole body; ``at_expansion`` cuts
    a block after its 1x1 expansion. Positions come from ``net.feature_info``, never from module names.

    ``forward`` returns ``{"0": map, "1": map, ...}``; ``channels`` and ``classification_names`` (each of
    our module names -> its name in ``net``, for loading classification weights) describe them."""

    def __init__(self, net: MobileNet, cuts: list[tuple[int, bool]]) -> None:
        super().__init__()
        layers = [net.stem, *net.blocks]
        pieces, rest, start = [], [], 0
        for position, at_expansion in cuts:
            if position == END:
                pieces.append(nn.Sequential(*rest, *layers[start:], net.head_conv))
                rest, start = [], len(layers)
                continue
            piece = [*rest, *layers[start : position + (0 if at_expansion else 1)]]
            rest = []
            if at_expansion:
                split = layers[position].split_at_expansion()
                if split is None:
                    raise ModelError(f"block {position} of {net.model_name} has no expansion to cut at.")
                piece.append(split[0])
                rest = [split[1]]
            pieces.append(nn.Sequential(*piece))
            start = position + 1
        self.features = nn.ModuleList(pieces)
        names = {id(m): name for name, m in net.named_modules()}
        self.classification_names = {n: names[id(m)] for n, m in self.named_modules() if id(m) in names and n}
        was_training = net.training
        with torch.no_grad():
            self.eval()
            self.channels = [y.shape[1] for y in self(torch.zeros(1, net.spec.stem.in_ch, 64, 64)).values()]
        self.train(was_training)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out = OrderedDict()
        for i, piece in enumerate(self.features):
            x = piece(x)
            out[str(i)] = x
        return out


def stage_end(net: MobileNet, reduction: int) -> int:
    """The position (0 = stem, k = k-th block) where the stage of nominal ``reduction`` (2, 4, 8, 16, 32)
    ends, from ``feature_info`` (one entry per stage end)."""
    return net.feature_info[(2, 4, 8, 16, 32).index(reduction)]["index"]


def ssdlite_cuts(net: MobileNet) -> list[tuple[int, bool]]:
    """SSDLite's two backbone maps: the expansion of the first stride-32 block (stride 16; MobileNetV2
    sec. 6.2, MobileNetV3 sec. 6.2 "C4"), or the end of the stride-16 stage where that block has no
    expansion before its stride (V1, FusedIB), and the end of the body (stride 32, "C5")."""
    first = stage_end(net, 16) + 1
    block = net.blocks[first - 1]
    splits = hasattr(block, "split_at_expansion") and block.split_at_expansion() is not None
    return [(first, True) if splits else (first - 1, False), (END, False)]


def lraspp_cuts(net: MobileNet) -> list[tuple[int, bool]]:
    """LR-ASPP's two maps: the first block at stride 8 (the low-level skip, where torchvision taps
    MobileNetV3-Large) and the end of the body (run at stride 16 with dilation)."""
    return [(stage_end(net, 4) + 1, False), (END, False)]
