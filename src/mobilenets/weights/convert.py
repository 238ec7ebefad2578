"""torchvision and timm state dicts -> ours, by naming each of our modules in the source's layout.

The layouts are generated from the same :class:`~mobilenets.models.spec.NetSpec` that builds our model, so a
converted state dict is complete by construction and any key the source lacks is named in the error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn

from mobilenets.models.registry import build_model
from mobilenets.models.spec import LayerSpec, NetSpec
from mobilenets.models.tasks import build_task_model, task_of
from mobilenets.util.errors import WeightsError

SOURCES = ("torchvision", "timm", "mobilenets")
TORCHVISION_FAMILIES = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
TORCHVISION_TASKS = ("ssdlite320_mobilenet_v3_large", "lraspp_mobilenet_v3_large")


def _torchvision_modules(spec: NetSpec, v3: bool) -> Iterator[tuple[str, str]]:
    """(our module, torchvision module) pairs for torchvision's MobileNetV2 / V3 layout."""
    yield from (("stem.0", "features.0.0"), ("stem.1", "features.0.1"))
    for i, b in enumerate(spec.blocks):
        ours, theirs = f"blocks.{i}", f"features.{i + 1}"
        if b.kind == "conv":
            yield from ((f"{ours}.0", f"{theirs}.0"), (f"{ours}.1", f"{theirs}.1"))
            continue
        parts = (["expand"] if b.mid_ch != b.in_ch else []) + ["dw"] + (["se"] if b.se_ch else [])
        # V3 wraps every unit (project too) in block.j; V2's conv.j holds the project conv and BN flat.
        sub = "block" if v3 else "conv"
        for j, part in enumerate([*parts, "project"] if v3 else parts):
            if part == "se":
                yield from (
                    (f"{ours}.se.fc1", f"{theirs}.{sub}.{j}.fc1"),
                    (f"{ours}.se.fc2", f"{theirs}.{sub}.{j}.fc2"),
                )
            else:
                yield from (
                    (f"{ours}.{part}.0", f"{theirs}.{sub}.{j}.0"),
                    (f"{ours}.{part}.1", f"{theirs}.{sub}.{j}.1"),
                )
        if not v3:
            n = len(parts)
            yield from ((f"{ours}.project.0", f"{theirs}.conv.{n}"), (f"{ours}.project.1", f"{theirs}.conv.{n + 1}"))
    if spec.head_conv:
        n = len(spec.blocks) + 1
        yield from (("head_conv.0", f"features.{n}.0"), ("head_conv.1", f"features.{n}.1"))
    if v3:
        yield from (("pre_logits.0", "classifier.0"), ("classifier", "classifier.3"))
    else:
        yield "classifier", "classifier.1"


def _torchvision_task_modules(model: nn.Module) -> Iterator[tuple[str, str]]:
    """(our module, torchvision module) pairs for torchvision's SSDLite320 and LR-ASPP on MobileNetV3-Large:
    our backbone pieces -> our classification names -> torchvision's classification names -> where
    torchvision's detection / segmentation backbone keeps them; the heads have torchvision's names."""
    detection = model.task == "detection"
    taps = model.backbone.body if detection else model.backbone
    prefix = "backbone.body." if detection else "backbone."
    tail = {k: v for k, v in model.model_args.items() if k == "reduced_tail"}
    classification = dict(_torchvision_modules(build_model(model.backbone_name, **tail).spec, v3=True))
    c4 = int(taps.classification_names["features.1.0.0"].split(".")[1]) + 1 if detection else 0

    def located(theirs: str) -> str:  # torchvision's classification name -> its name in the task model
        if not detection:
            return "backbone." + theirs.removeprefix("features.")
        _, i, *rest = theirs.split(".")
        i = int(i)
        if i < c4:
            return ".".join(["backbone.features.0", str(i), *rest])
        if i > c4:
            return ".".join(["backbone.features.1", str(i - c4), *rest])
        # features.c4.block.j...: the expansion ends piece 0; the rest (a slice: it keeps j) starts piece 1
        j = rest[1]
        return ".".join(["backbone.features.0", str(c4), *rest[2:]] if j == "0" else
                        ["backbone.features.1.0", j, *rest[2:]])  # fmt: skip

    for ours, name in taps.classification_names.items():
        if name in classification:
            yield prefix + ours, located(classification[name])
    for module, _ in model.named_modules():
        if module.startswith(("backbone.extra.", "head.", "classifier.")):
            yield module, module


def _timm_v4_block(b: LayerSpec, ours: str, theirs: str) -> Iterator[tuple[str, str]]:
    """timm's MobileNetV4 blocks: ``UniversalInvertedResidual``, ``EdgeResidual``, ``MobileAttention``."""
    if b.layer_scale:
        yield f"{ours}.layer_scale", f"{theirs}.layer_scale"
    if b.kind == "fused":
        yield from ((f"{ours}.expand.0", f"{theirs}.conv_exp"), (f"{ours}.expand.1", f"{theirs}.bn1"),
                    (f"{ours}.project.0", f"{theirs}.conv_pwl"), (f"{ours}.project.1", f"{theirs}.bn2"))  # fmt: skip
    elif b.kind == "uib":
        parts = [("dw_start", "dw_start")] * bool(b.start_kernel) + [("expand", "pw_exp")]
        parts += [("dw_mid", "dw_mid")] * bool(b.kernel) + [("project", "pw_proj")]
        for mine, timm in parts:
            yield from ((f"{ours}.{mine}.0", f"{theirs}.{timm}.conv"), (f"{ours}.{mine}.1", f"{theirs}.{timm}.bn"))
    else:  # mqa
        yield from ((f"{ours}.norm", f"{theirs}.norm"), (f"{ours}.query", f"{theirs}.attn.query.proj"),
                    (f"{ours}.output", f"{theirs}.attn.output.proj"))  # fmt: skip
        for part in ("key", "value"):
            yield f"{ours}.{part}", f"{theirs}.attn.{part}.proj"
            if b.kv_stride > 1:
                yield from ((f"{ours}.{part}_down.0", f"{theirs}.attn.{part}.down_conv"),
                            (f"{ours}.{part}_down.1", f"{theirs}.attn.{part}.norm"))  # fmt: skip


def _timm_block(b: LayerSpec, ours: str, theirs: str) -> Iterator[tuple[str, str]]:
    se = [(f"{ours}.se.fc1", f"{theirs}.se.conv_reduce"), (f"{ours}.se.fc2", f"{theirs}.se.conv_expand")]
    se = se if b.se_ch else []
    if b.kind in ("uib", "fused", "mqa"):
        yield from _timm_v4_block(b, ours, theirs)
    elif b.kind == "conv":
        yield from ((f"{ours}.0", f"{theirs}.conv"), (f"{ours}.1", f"{theirs}.bn1"))
    elif b.kind == "dws" or b.mid_ch == b.in_ch:  # timm's DepthwiseSeparableConv
        pw = "pw" if b.kind == "dws" else "project"
        yield from (
            (f"{ours}.dw.0", f"{theirs}.conv_dw"),
            (f"{ours}.dw.1", f"{theirs}.bn1"),
            *se,
            (f"{ours}.{pw}.0", f"{theirs}.conv_pw"),
            (f"{ours}.{pw}.1", f"{theirs}.bn2"),
        )
    else:
        yield from (
            (f"{ours}.expand.0", f"{theirs}.conv_pw"),
            (f"{ours}.expand.1", f"{theirs}.bn1"),
            (f"{ours}.dw.0", f"{theirs}.conv_dw"),
            (f"{ours}.dw.1", f"{theirs}.bn2"),
            *se,
            (f"{ours}.project.0", f"{theirs}.conv_pwl"),
            (f"{ours}.project.1", f"{theirs}.bn3"),
        )


def _timm_modules(spec: NetSpec) -> Iterator[tuple[str, str]]:
    """(our module, timm module) pairs for timm's MobileNetV3 / EfficientNet (V1, V2), V4 and V5 layouts."""
    if spec.adapter:  # V5: a ConvNormAct stem, the fusion adapter ("msfa")
        yield from (("stem.0", "conv_stem.conv"), ("stem.1", "conv_stem.bn"), ("adapter.norm", "msfa.norm"))
        for mine, timm in (("expand", "pw_exp"), ("project", "pw_proj")):
            yield from (
                (f"adapter.ffn.{mine}.0", f"msfa.ffn.{timm}.conv"),
                (f"adapter.ffn.{mine}.1", f"msfa.ffn.{timm}.bn"),
            )
    else:
        yield from (("stem.0", "conv_stem"), ("stem.1", "bn1"))
    first = {}
    for i, b in enumerate(spec.blocks):
        first.setdefault(b.stage, i)
        yield from _timm_block(b, f"blocks.{i}", f"blocks.{b.stage}.{i - first[b.stage]}")
    if spec.head_conv:
        yield from (("head_conv.0", "conv_head"), ("head_conv.1", "bn2"))
    if spec.head_norm:
        yield from (("pre_logits.0.0", "conv_head"), ("pre_logits.0.1", "norm_head"))
    elif spec.head_hidden:
        yield "pre_logits.0", "conv_head"
    yield "classifier", "classifier"


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str, name: str, **kwargs: object
) -> dict[str, torch.Tensor]:
    """Rename a ``source`` (``torchvision``, ``timm`` or ``mobilenets``) state dict for our ``name``
    built with ``kwargs``; shapes are checked, a missing or misshapen key raises ``ValueError``.
    Detection and segmentation: torchvision's ``ssdlite320_mobilenet_v3_large`` and
    ``lraspp_mobilenet_v3_large``."""
    if task_of(name) != "classification":
        return convert_for(build_task_model(name, **kwargs), state_dict, source)
    return convert_for(build_model(name, **kwargs), state_dict, source)


def convert_for(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """:func:`convert_state_dict` for a model already built (ours, from ``create_model``)."""
    name, kwargs = model.model_name, model.model_args
    if source not in SOURCES:
        raise WeightsError(f"Unknown source {source!r}; use one of {', '.join(SOURCES)}.")
    task = getattr(model, "task", "classification")
    have = TORCHVISION_TASKS if task != "classification" else TORCHVISION_FAMILIES
    if source == "torchvision" and name not in have:
        raise WeightsError(f"torchvision has no {name}; it has {', '.join(have)}.")
    if source == "timm" and task != "classification":
        raise WeightsError(f"timm has no detection or segmentation models; load {name} from torchvision or ours.")
    target = model.state_dict()
    state_dict = _strip_prefix(state_dict)
    if source == "mobilenets":
        pairs = {k.rsplit(".", 1)[0]: k.rsplit(".", 1)[0] for k in target}
    elif source == "torchvision" and task != "classification":
        pairs = dict(_torchvision_task_modules(model))
    elif source == "torchvision":
        pairs = dict(_torchvision_modules(model.spec, v3=name != "mobilenet_v2"))
    else:
        pairs = dict(_timm_modules(model.spec))
    out, used = {}, set()
    for key, like in target.items():
        module, leaf = key.rsplit(".", 1)
        src = f"{pairs[module]}.{leaf}"
        if src not in state_dict:
            if leaf == "num_batches_tracked":
                out[key] = like.clone()
                continue
            raise WeightsError(
                f"The {source} state dict has no {src!r} (needed for our {key!r}); "
                f"is it a {name} with these options ({kwargs or 'defaults'})?"
            )
        value = state_dict[src]
        if value.numel() != like.numel():
            raise WeightsError(
                f"{source} {src!r} has shape {tuple(value.shape)} but our {name} needs "
                f"{tuple(like.shape)}: check width_mult and num_classes."
            )
        out[key] = value.reshape(like.shape).to(like.dtype)
        used.add(src)
    extra = sorted(set(state_dict) - used - {k for k in state_dict if k.endswith("num_batches_tracked")})
    if extra:
        raise WeightsError(
            f"The {source} state dict has {len(extra)} key(s) our {name} does not use, "
            f"e.g. {extra[0]!r}: it is another architecture or configuration."
        )
    return out
