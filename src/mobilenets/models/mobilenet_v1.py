"""MobileNetV1 (Howard et al. 2017): Table 1 as data and the width rule."""

from __future__ import annotations

from typing import NamedTuple

from mobilenets.models.spec import LayerSpec, NetSpec, stage_ids


# --- MobileNetV1, Table 1 (Howard et al. 2017): depthwise separable rows (out channels, stride) ---
class V1Row(NamedTuple):
    out: int
    stride: int


V1_STEM = 32
V1_TABLE = (
    V1Row(64, 1),
    V1Row(128, 2),
    V1Row(128, 1),
    V1Row(256, 2),
    V1Row(256, 1),
    V1Row(512, 2),
    *[V1Row(512, 1)] * 5,
    V1Row(1024, 2),
    V1Row(1024, 1),
)


def v1_width(channels: int, width_mult: float) -> int:
    """V1's rule: truncate ``c * alpha`` (TF-slim's ``min_depth`` of 8 as the floor)."""
    return max(8, int(channels * width_mult))


def resolve_v1(width_mult: float = 1.0) -> NetSpec:
    stem = LayerSpec("conv", 0, v1_width(V1_STEM, width_mult), 3, 2, "relu6")
    blocks, in_ch = [], stem.out_ch
    stages = stage_ids([row.out for row in V1_TABLE])
    for row, stage in zip(V1_TABLE, stages):
        out = v1_width(row.out, width_mult)
        blocks.append(LayerSpec("dws", in_ch, out, 3, row.stride, "relu6", stage=stage))
        in_ch = out
    return NetSpec(stem, tuple(blocks))
