"""MobileNetV5 (Google, 2025): the vision encoder of Gemma 3n, built from MobileNetV4's blocks. There is no
paper; the tables are timm's ``mobilenetv5.py`` (the reference implementation), written in V4's rows.

Against V4: RMS norm over channels instead of BN, GELU (tanh form) everywhere, layer scale 1e-5 on UIB and
attention blocks, a 3x3 stride-2 stem to 64 channels with a bias, no 1x1 head conv; the stride-16 and
stride-32 stage ends go through the multi-scale fusion adapter to 2048 channels at 16x16 (256 tokens,
whatever the input size), which the classifier variants pool.
"""

from __future__ import annotations

from mobilenets.models.layers import make_divisible
from mobilenets.models.mobilenet_v4 import V4Row, fused_ib, mqa, resolve_rows, uib
from mobilenets.models.spec import LayerSpec, NetSpec

V5_STEM, V5_ADAPTER, V5_TOKENS_SIDE, V5_LAYER_SCALE = 64, 2048, 16, 1e-5
V5_300M = (
    (fused_ib(3, 4, 128, 2), fused_ib(3, 4, 128, n=2)),
    (uib(3, 5, 6, 256, 2), uib(5, 0, 4, 256), uib(3, 0, 4, 256), uib(5, 0, 4, 256), uib(3, 0, 4, 256)),
    (uib(5, 5, 6, 640, 2), uib(5, 0, 4, 640, n=7), uib(0, 0, 1, 640),
     *(mqa(12, 64, 2, 640), uib(0, 0, 2, 640)) * 14),
    (uib(5, 5, 6, 1280, 2), *(mqa(16, 96, 1, 1280), uib(0, 0, 2, 1280)) * 19),
)  # fmt: skip
V5_BASE = (  # timm's scaled-down variant (no published weights)
    (fused_ib(3, 4, 128, 2), fused_ib(3, 4, 128, n=2)),
    (uib(3, 5, 6, 256, 2), uib(5, 0, 4, 256), uib(3, 0, 4, 256), uib(5, 0, 4, 256), uib(3, 0, 4, 256)),
    (uib(5, 5, 6, 512, 2), uib(5, 0, 4, 512, n=2), uib(0, 0, 1, 512), *(mqa(8, 64, 1, 512), uib(0, 0, 2, 512)) * 6),
    (uib(5, 5, 6, 1024, 2), *(mqa(16, 64, 1, 1024), uib(0, 0, 2, 1024)) * 7),
)  # fmt: skip


def resolve_v5(stages: tuple[tuple[V4Row, ...], ...], encoder: bool = False, width_mult: float = 1.0) -> NetSpec:
    """V5's spec: V4's width rule (:func:`~.mobilenet_v4.resolve_rows`; the stem fixed below alpha 1), the
    adapter's 2048 channels never scaled; ``encoder``: the model returns the adapter's tokens."""
    act = "gelu_tanh"
    stem_ch = V5_STEM if width_mult < 1 else make_divisible(V5_STEM * width_mult)
    stem = LayerSpec("conv", 0, stem_ch, 3, 2, act, bias=True)
    blocks = resolve_rows(stages, stem_ch, act, V5_LAYER_SCALE, width_mult)
    return NetSpec(stem, tuple(blocks), head_act=act, norm="rms", adapter=V5_ADAPTER,
                   adapter_size=V5_TOKENS_SIDE, encoder=encoder)  # fmt: skip
