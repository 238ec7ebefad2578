"""MobileNetV3 Large and Small (Howard et al. 2019): Tables 1 and 2 as data, the width rule, TF-slim's
minimalistic variant and torchvision's reduced tail."""

from __future__ import annotations

from typing import NamedTuple

from mobilenets.models.layers import make_divisible
from mobilenets.models.spec import LayerSpec, NetSpec, stage_ids


# --- MobileNetV3, Tables 1 (Large) and 2 (Small) (Howard et al. 2019) ---
class V3Row(NamedTuple):
    """Input size column omitted: kernel, exp size, #out, SE, NL (RE/HS), stride."""

    k: int
    exp: int
    out: int
    se: bool
    nl: str
    s: int


V3_STEM = 16
V3_LARGE = (
    V3Row(3, 16, 16, False, "RE", 1),
    V3Row(3, 64, 24, False, "RE", 2),
    V3Row(3, 72, 24, False, "RE", 1),
    V3Row(5, 72, 40, True, "RE", 2),
    V3Row(5, 120, 40, True, "RE", 1),
    V3Row(5, 120, 40, True, "RE", 1),
    V3Row(3, 240, 80, False, "HS", 2),
    V3Row(3, 200, 80, False, "HS", 1),
    V3Row(3, 184, 80, False, "HS", 1),
    V3Row(3, 184, 80, False, "HS", 1),
    V3Row(3, 480, 112, True, "HS", 1),
    V3Row(3, 672, 112, True, "HS", 1),
    V3Row(5, 672, 160, True, "HS", 2),
    V3Row(5, 960, 160, True, "HS", 1),
    V3Row(5, 960, 160, True, "HS", 1),
)
V3_LARGE_LAST, V3_LARGE_HEAD = 960, 1280
V3_SMALL = (
    V3Row(3, 16, 16, True, "RE", 2),
    V3Row(3, 72, 24, False, "RE", 2),
    V3Row(3, 88, 24, False, "RE", 1),
    V3Row(5, 96, 40, True, "HS", 2),
    V3Row(5, 240, 40, True, "HS", 1),
    V3Row(5, 240, 40, True, "HS", 1),
    V3Row(5, 120, 48, True, "HS", 1),
    V3Row(5, 144, 48, True, "HS", 1),
    V3Row(5, 288, 96, True, "HS", 2),
    V3Row(5, 576, 96, True, "HS", 1),
    V3Row(5, 576, 96, True, "HS", 1),
)
V3_SMALL_LAST, V3_SMALL_HEAD = 576, 1024
V3_ACT = {"RE": "relu", "HS": "hswish"}


def _v3_minimalistic(row: V3Row) -> V3Row:
    """TF-slim's minimalistic variant: 3x3 kernels, ReLU, no squeeze-and-excite."""
    return row._replace(k=3, se=False, nl="RE")


def _v3_reduced_tail(table: tuple[V3Row, ...]) -> tuple[V3Row, ...]:
    """torchvision's ``reduced_tail``: halve the channels of the last stage (for detection backbones)."""
    last = max(i for i, row in enumerate(table) if row.s == 2)
    return tuple(
        row if i < last else row._replace(out=row.out // 2, exp=row.exp if i == last else row.exp // 2)
        for i, row in enumerate(table)
    )


def resolve_v3(
    table: tuple[V3Row, ...],
    last: int,
    head: int,
    width_mult: float = 1.0,
    *,
    minimalistic: bool = False,
    reduced_tail: bool = False,
) -> NetSpec:
    """V3's rule (paper, TF-slim, Keras, timm): every width ``make_divisible(c * alpha)``; expanded
    width = ``make_divisible(ratio * rounded input)`` with the table's ``exp / in`` ratio; stem 16 fixed
    below alpha 0.75; head (1280 / 1024) never scaled. At alpha 1 this equals torchvision's model."""
    if reduced_tail:
        table, last, head = _v3_reduced_tail(table), last // 2, head // 2
    if minimalistic:
        table = tuple(_v3_minimalistic(row) for row in table)
    act = "relu" if minimalistic else "hswish"
    stem_ch = V3_STEM if width_mult < 0.75 else make_divisible(V3_STEM * width_mult)
    stem = LayerSpec("conv", 0, stem_ch, 3, 2, act)
    blocks, in_ch, table_in = [], stem_ch, V3_STEM
    stages = stage_ids([row.out for row in table])
    for row, stage in zip(table, stages):
        mid = make_divisible(in_ch * row.exp / table_in)
        out = make_divisible(row.out * width_mult)
        se = make_divisible(mid / 4) if row.se else None
        blocks.append(LayerSpec("ir", in_ch, out, row.k, row.s, V3_ACT[row.nl], mid, se, stage))
        in_ch, table_in = out, row.out
    last_ch = make_divisible(last * width_mult)
    blocks.append(LayerSpec("conv", in_ch, last_ch, 1, 1, act, stage=stages[-1] + 1))
    return NetSpec(stem, tuple(blocks), head_hidden=head, head_act=act)
