"""Parameter and multiply-add counts with the convention that reproduces the papers' tables."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mobilenets.models.blocks import explicit_attention
from mobilenets.util.errors import ModelError


@dataclass(frozen=True)
class Profile:
    """``params``: every parameter, BN included; ``params_no_bn``: without BN's scale and shift, as
    TF-slim's tables count them (its frozen graphs fold BN away); ``macs``: multiply-adds of every
    convolution and linear layer (SE and classifier included) for one image."""

    params: int
    params_no_bn: int
    macs: int
    input_size: int

    @property
    def size_mb(self) -> float:
        """fp32 weight size in megabytes."""
        return self.params * 4 / 1e6


def count_macs(model: nn.Module, input_size: int = 224, in_chans: int = 3) -> int:
    """Multiply-adds for one ``input_size`` image: ``FlopCounterMode``'s count halved, attention included
    (run as explicit matmuls: ``FlopCounterMode`` counts the CPU's fused attention kernel as zero).
    Detection models: the backbone, extra layers and prediction layers (not resizing or NMS)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, input_size, input_size, device=next(model.parameters()).device)  # meta: shapes only
    try:
        with torch.no_grad(), explicit_attention(), FlopCounterMode(display=False) as counter:
            if getattr(model, "task", None) == "detection":  # the network, without resizing and NMS
                model.head(list(model.backbone(x).values()))
            else:
                model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def profile(model: nn.Module, input_size: int = 224) -> Profile:
    """Parameters and multiply-adds of ``model`` at ``input_size`` x ``input_size``."""
    if not isinstance(input_size, int) or input_size < 8:
        raise ModelError(f"input_size must be an integer >= 8, got {input_size!r}.")
    params = sum(p.numel() for p in model.parameters())
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return Profile(params, params - bn, count_macs(model, input_size, first.in_channels), input_size)
