"""What a family's table resolves to: a :class:`NetSpec` of concrete layer widths, one :class:`LayerSpec`
per block, which :mod:`.model` builds modules from and nothing else. Each family's table and width rule
live in its own module (``mobilenet_v1`` ... ``mobilenet_v4``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LayerSpec:
    """One block with concrete widths. ``kind``: ``conv`` (plain conv-BN-act), ``dws`` (V1 depthwise
    separable), ``ir`` (inverted residual), and MobileNetV4's ``uib`` (universal inverted bottleneck:
    ``start_kernel`` / ``kernel`` are its first / middle depthwise kernels, 0 for none), ``fused``
    (fused inverted bottleneck) and ``mqa`` (Mobile MQA: ``heads``, ``key_dim``, ``kv_stride``).
    ``layer_scale``: the initial value of a residual branch's layer scale, or None. ``bias``: a plain
    conv's bias (V5's stem)."""

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
    bias: bool = False


@dataclass(frozen=True)
class NetSpec:
    """A whole network: stem, blocks and head (``head_conv``: 1x1 conv-BN-act before pooling, V2;
    ``head_hidden``: 1x1 conv after pooling, with bias + act (V3) or, with ``head_norm``, without bias
    and with BN + act (V4)). ``norm``: ``batch`` or ``rms`` (V5). ``adapter``: V5's fusion adapter
    of the last two stages to ``adapter`` channels at ``adapter_size`` x ``adapter_size``, the feature map
    the head pools; ``encoder``: the model returns that map (Gemma 3n's vision tower)."""

    stem: LayerSpec
    blocks: tuple[LayerSpec, ...]
    head_conv: int | None = None
    head_hidden: int | None = None
    head_act: str = "relu6"
    head_norm: bool = False
    norm: str = "batch"
    adapter: int | None = None
    adapter_size: int = 16
    encoder: bool = False


def stage_ids(outs: list[int]) -> list[int]:
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
