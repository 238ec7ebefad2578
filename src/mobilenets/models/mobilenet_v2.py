"""MobileNetV2 (Sandler et al. 2018): Table 2 as data and the width rule."""

from __future__ import annotations

from typing import NamedTuple

from mobilenets.models.layers import make_divisible
from mobilenets.models.spec import LayerSpec, NetSpec


# --- MobileNetV2, Table 2 (Sandler et al. 2018): expansion t, channels c, repeats n, stride s ---
class V2Row(NamedTuple):
    t: int
    c: int
    n: int
    s: int


V2_STEM = 32
V2_TABLE = (
    V2Row(1, 16, 1, 1),
    V2Row(6, 24, 2, 2),
    V2Row(6, 32, 3, 2),
    V2Row(6, 64, 4, 2),
    V2Row(6, 96, 3, 1),
    V2Row(6, 160, 3, 2),
    V2Row(6, 320, 1, 1),
)
V2_HEAD = 1280


def resolve_v2(width_mult: float = 1.0) -> NetSpec:
    """V2's rule (torchvision, TF-slim): ``make_divisible(c * alpha)``, hidden ``round(in * t)``, head
    1280 unless alpha > 1."""
    stem = LayerSpec("conv", 0, make_divisible(V2_STEM * width_mult), 3, 2, "relu6")
    blocks, in_ch = [], stem.out_ch
    for stage, row in enumerate(V2_TABLE):
        out = make_divisible(row.c * width_mult)
        for i in range(row.n):
            stride = row.s if i == 0 else 1
            blocks.append(LayerSpec("ir", in_ch, out, 3, stride, "relu6", round(in_ch * row.t), stage=stage))
            in_ch = out
    return NetSpec(stem, tuple(blocks), head_conv=make_divisible(V2_HEAD * max(1.0, width_mult)))
