"""MobileNetV4 (Qin et al. 2024): the five models' tables as data (as the authors' TF Model Garden spec
writes them) and the width rule."""

from __future__ import annotations

from typing import NamedTuple

from mobilenets.models.layers import make_divisible
from mobilenets.models.spec import LayerSpec, NetSpec


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


def fused_ib(k: int, e: float, out: int, s: int = 1, n: int = 1) -> V4Row:
    return V4Row("fused", 0, k, e, out, s, n)


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


def resolve_rows(
    stages: tuple[tuple[V4Row, ...], ...], in_ch: int, act: str, layer_scale: float | None, width_mult: float
) -> list[LayerSpec]:
    """The blocks of V4's (and V5's) tables: every width ``make_divisible(c * alpha)``, expanded width
    ``make_divisible(ratio * input width)``; layer scale on UIB and attention blocks only."""
    blocks = []
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
    return blocks


def resolve_v4(
    stages: tuple[tuple[V4Row, ...], ...],
    stem: int,
    act: str = "relu",
    layer_scale: float | None = None,
    width_mult: float = 1.0,
) -> NetSpec:
    """V4's rule (timm): the widths of :func:`resolve_rows`, stem fixed below alpha 1, head 1280 never
    scaled. Layer scale (hybrids); the stride-32 stage ends in a 1x1 conv to 960."""
    stem_ch = stem if width_mult < 1 else make_divisible(stem * width_mult)
    blocks = resolve_rows(stages, stem_ch, act, layer_scale, width_mult)
    in_ch = blocks[-1].out_ch
    blocks.append(LayerSpec("conv", in_ch, make_divisible(V4_HEAD_CONV * width_mult), 1, 1, act, stage=len(stages)))
    return NetSpec(LayerSpec("conv", 0, stem_ch, 3, 2, act), tuple(blocks), head_hidden=V4_HEAD, head_act=act,
                   head_norm=True)  # fmt: skip
