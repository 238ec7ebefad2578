"""The papers' architecture tables as data, one row per block, and each family's width rule.

A family's ``resolve_*`` function turns its table and a width multiplier into a :class:`NetSpec`
of concrete layer widths; :mod:`mobilenets.model` builds modules from that and nothing else.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import NamedTuple

from .layers import make_divisible


@dataclass(frozen=True)
class LayerSpec:
    """One block with concrete widths. ``kind``: ``conv`` (plain conv-BN-act), ``dws`` (V1 depthwise
    separable), ``ir`` (inverted residual), and MobileNetV4's ``uib`` (universal inverted bottleneck:
    ``start_kernel`` / ``kernel`` are its first / middle depthwise kernels, 0 for none), ``fused``
    (fused inverted bottleneck) and ``mqa`` (Mobile MQA: ``heads``, ``key_dim``, ``kv_stride``).
    ``layer_scale``: the initial value of a residual branch's layer scale, or None."""

    kind: str
    in_ch: int
    out_ch: int
    kernel: int = 3
    stride: int = 1
    act: str | None = "relu6"
    mid_ch: int = 0
    se_ch: int | None = None
    stage: int = 0
    start_kernel: int = 0
    heads: int = 0
    key_dim: int = 0
    kv_stride: int = 1
    layer_scale: float | None = None


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem, blocks and head (``head_conv``: 1x1 conv-BN-act before pooling, V2;
    ``head_hidden``: 1x1 conv after pooling, with bias + act (V3) or, with ``head_norm``, without bias
    and with BN + act (V4))."""

    stem: LayerSpec
    blocks: tuple[LayerSpec, ...]
    head_conv: int | None = None
    head_hidden: int | None = None
    head_act: str = "relu6"
    head_norm: bool = False


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
    stages = _stage_ids([row.out for row in V1_TABLE])
    for row, stage in zip(V1_TABLE, stages):
        out = v1_width(row.out, width_mult)
        blocks.append(LayerSpec("dws", in_ch, out, 3, row.stride, "relu6", stage=stage))
        in_ch = out
    return NetSpec(stem, tuple(blocks))


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
    stages = _stage_ids([row.out for row in table])
    for row, stage in zip(table, stages):
        mid = make_divisible(in_ch * row.exp / table_in)
        out = make_divisible(row.out * width_mult)
        se = make_divisible(mid / 4) if row.se else None
        blocks.append(LayerSpec("ir", in_ch, out, row.k, row.s, V3_ACT[row.nl], mid, se, stage))
        in_ch, table_in = out, row.out
    last_ch = make_divisible(last * width_mult)
    blocks.append(LayerSpec("conv", in_ch, last_ch, 1, 1, act, stage=stages[-1] + 1))
    return NetSpec(stem, tuple(blocks), head_hidden=head, head_act=act)


# --- MobileNetV4, the appendix tables (Qin et al. 2024), as the authors' TF Model Garden spec writes them ---
class V4Row(NamedTuple):
    """One row: block kind, first and middle depthwise kernels of a UIB (0: none; for ``conv`` and
    ``fused`` rows ``k`` is the convolution's kernel), expansion ratio (of the block's input width),
    output channels, stride, repeats; attention rows: heads, key (= value) dim, key/value stride."""

    kind: str
    start_k: int
    k: int
    e: float
    out: int
    s: int = 1
    n: int = 1
    heads: int = 0
    dim: int = 0
    kv_stride: int = 1


def conv(k: int, out: int, s: int = 1) -> V4Row:
    return V4Row("conv", 0, k, 0, out, s)


def fused_ib(k: int, e: float, out: int, s: int) -> V4Row:
    return V4Row("fused", 0, k, e, out, s)


def uib(start_k: int, k: int, e: float, out: int, s: int = 1, n: int = 1) -> V4Row:
    """ExtraDW: both kernels; IB: ``start_k=0``; ConvNext-like: ``k=0``; FFN: both 0."""
    return V4Row("uib", start_k, k, e, out, s, n)


def mqa(heads: int, dim: int, kv_stride: int, out: int) -> V4Row:
    return V4Row("mqa", 0, 3, 0, out, 1, 1, heads, dim, kv_stride)


V4_HEAD_CONV, V4_HEAD = 960, 1280
# Conv-S's stride-4 and stride-8 stages: the reference writes them as plain conv-BN-ReLU pairs (a ReLU
# after the 1x1 too), which the paper's table labels FusedIB; we follow the reference (and timm's weights).
V4_CONV_SMALL = (
    (conv(3, 32, 2), conv(1, 32)),
    (conv(3, 96, 2), conv(1, 64)),
    (uib(5, 5, 3, 96, 2), uib(0, 3, 2, 96, n=4), uib(3, 0, 4, 96)),
    (uib(3, 3, 6, 128, 2), uib(5, 5, 4, 128), uib(0, 5, 4, 128), uib(0, 5, 3, 128), uib(0, 3, 4, 128, n=2)),
)
V4_CONV_MEDIUM = (
    (fused_ib(3, 4, 48, 2),),
    (uib(3, 5, 4, 80, 2), uib(3, 3, 2, 80)),
    (uib(3, 5, 6, 160, 2), uib(3, 3, 4, 160, n=2), uib(3, 5, 4, 160), uib(3, 3, 4, 160), uib(3, 0, 4, 160),
     uib(0, 0, 2, 160), uib(3, 0, 4, 160)),
    (uib(5, 5, 6, 256, 2), uib(5, 5, 4, 256), uib(3, 5, 4, 256, n=2), uib(0, 0, 4, 256), uib(3, 0, 4, 256),
     uib(3, 5, 2, 256), uib(5, 5, 4, 256), uib(0, 0, 4, 256, n=2), uib(5, 0, 2, 256)),
)  # fmt: skip
V4_CONV_LARGE = (
    (fused_ib(3, 4, 48, 2),),
    (uib(3, 5, 4, 96, 2), uib(3, 3, 4, 96)),
    (uib(3, 5, 4, 192, 2), uib(3, 3, 4, 192, n=3), uib(3, 5, 4, 192), uib(5, 3, 4, 192, n=5), uib(3, 0, 4, 192)),
    (uib(5, 5, 4, 512, 2), uib(5, 5, 4, 512, n=3), uib(5, 0, 4, 512), uib(5, 3, 4, 512), uib(5, 0, 4, 512, n=2),
     uib(5, 3, 4, 512), uib(5, 5, 4, 512), uib(5, 0, 4, 512, n=3)),
)  # fmt: skip
V4_HYBRID_MEDIUM = (
    (fused_ib(3, 4, 48, 2),),
    (uib(3, 5, 4, 80, 2), uib(3, 3, 2, 80)),
    (uib(3, 5, 6, 160, 2), uib(0, 0, 2, 160), uib(3, 3, 4, 160), uib(3, 5, 4, 160), mqa(4, 64, 2, 160),
     uib(3, 3, 4, 160), mqa(4, 64, 2, 160), uib(3, 0, 4, 160), mqa(4, 64, 2, 160), uib(3, 3, 4, 160),
     mqa(4, 64, 2, 160), uib(3, 0, 4, 160)),
    (uib(5, 5, 6, 256, 2), uib(5, 5, 4, 256), uib(3, 5, 4, 256, n=2), uib(0, 0, 2, 256), uib(3, 5, 2, 256),
     uib(0, 0, 2, 256), uib(0, 0, 4, 256), mqa(4, 64, 1, 256), uib(3, 0, 4, 256), mqa(4, 64, 1, 256),
     uib(5, 5, 4, 256), mqa(4, 64, 1, 256), uib(5, 0, 4, 256), mqa(4, 64, 1, 256), uib(5, 0, 4, 256)),
)  # fmt: skip
V4_HYBRID_LARGE = (
    (fused_ib(3, 4, 48, 2),),
    (uib(3, 5, 4, 96, 2), uib(3, 3, 4, 96)),
    (uib(3, 5, 4, 192, 2), uib(3, 3, 4, 192, n=3), uib(3, 5, 4, 192), uib(5, 3, 4, 192, n=2), mqa(8, 48, 2, 192),
     uib(5, 3, 4, 192), mqa(8, 48, 2, 192), uib(5, 3, 4, 192), mqa(8, 48, 2, 192), uib(5, 3, 4, 192),
     mqa(8, 48, 2, 192), uib(3, 0, 4, 192)),
    (uib(5, 5, 4, 512, 2), uib(5, 5, 4, 512, n=3), uib(5, 0, 4, 512), uib(5, 3, 4, 512), uib(5, 0, 4, 512, n=2),
     uib(5, 3, 4, 512), uib(5, 5, 4, 512), mqa(8, 64, 1, 512), uib(5, 0, 4, 512), mqa(8, 64, 1, 512),
     uib(5, 0, 4, 512), mqa(8, 64, 1, 512), uib(5, 0, 4, 512), mqa(8, 64, 1, 512), uib(5, 0, 4, 512)),
)  # fmt: skip


def resolve_v4(
    stages: tuple[tuple[V4Row, ...], ...],
    stem: int,
    act: str = "relu",
    layer_scale: float | None = None,
    width_mult: float = 1.0,
) -> NetSpec:
    """V4's rule (timm): every width ``make_divisible(c * alpha)``, expanded width
    ``make_divisible(ratio * input width)``, stem fixed below alpha 1, head 1280 never scaled. Layer
    scale (hybrids) on UIB and attention blocks only; the stride-32 stage ends in a 1x1 conv to 960."""
    stem_ch = stem if width_mult < 1 else make_divisible(stem * width_mult)
    blocks, in_ch = [], stem_ch
    for stage, rows in enumerate(stages):
        for row in rows:
            out = make_divisible(row.out * width_mult)
            for i in range(row.n):
                stride = row.s if i == 0 else 1
                mid = make_divisible(in_ch * row.e) if row.e else 0
                scale = layer_scale if row.kind in ("uib", "mqa") else None
                blocks.append(LayerSpec(row.kind, in_ch, out, row.k, stride, act, mid, stage=stage,
                                        start_kernel=row.start_k, heads=row.heads, key_dim=row.dim,
                                        kv_stride=row.kv_stride, layer_scale=scale))  # fmt: skip
                in_ch = out
    blocks.append(LayerSpec("conv", in_ch, make_divisible(V4_HEAD_CONV * width_mult), 1, 1, act, stage=len(stages)))
    return NetSpec(LayerSpec("conv", 0, stem_ch, 3, 2, act), tuple(blocks), head_hidden=V4_HEAD, head_act=act,
                   head_norm=True)  # fmt: skip


def _stage_ids(outs: list[int]) -> list[int]:
    """Stage index per row: a stage is a run of rows with the same output width in the table."""
    ids = [0]
    for prev, cur in itertools.pairwise(outs):
        ids.append(ids[-1] + (cur != prev))
    return ids


def with_in_chans(spec: NetSpec, in_chans: int) -> NetSpec:
    """The same network reading ``in_chans`` input channels."""
    return replace(spec, stem=replace(spec.stem, in_ch=in_chans))


def for_small_input(spec: NetSpec) -> NetSpec:
    """The usual adaptation to 32-pixel images (CIFAR): stem and first downsampling block at stride 1,
    so the last feature map is 4x4 instead of 1x1."""
    first = next(i for i, b in enumerate(spec.blocks) if b.stride == 2)
    blocks = tuple(replace(b, stride=1) if i == first else b for i, b in enumerate(spec.blocks))
    return replace(spec, stem=replace(spec.stem, stride=1), blocks=blocks)
