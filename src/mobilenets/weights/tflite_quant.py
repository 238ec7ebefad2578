"""The quantization of Google's uint8/int8 TFLite files, carried by the imported model as data.

A quantized file states a grid (scale, zero point, integer range) for every tensor: the input, each
convolution's weights and its output (after its fused or implied activation), the pre-activation and
output of each HARD_SWISH, the squeeze-excite gate and product, each residual sum and the pooled
features. :func:`quantization_plan` maps those grids onto our modules, by walking the graph in execution
order beside our layers, into a :class:`Plan` kept on the model (``model.tflite_quantization``), and
:func:`attach` rounds the model's tensors to them with PyTorch's fake-quantize functions: in PyTorch
(``load_tflite(..., fake_quant=True)``) and in an int8 ONNX export, whose exporter writes each rounding
as a QuantizeLinear/DequantizeLinear pair on Google's own scales and zero points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass(frozen=True)
class Grid:
    """An integer grid: ``x ~ (q - zero_point) * scale`` with ``lo <= q <= hi``, per tensor or, for
    weights, per output channel (``scale``/``zero_point`` of one value or one per channel)."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    lo: int
    hi: int

    @classmethod
    def of(cls, t: Any) -> Grid:
        """The grid of a TFLite tensor (``tflite.Tensor``) with quantization parameters."""
        lo, hi = (0, 255) if t.dtype == "uint8" else (-128, 127)
        return cls(tuple(float(s) for s in t.scale), tuple(int(z) for z in t.zero_point), lo, hi)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.scale) == 1:
            return torch.fake_quantize_per_tensor_affine(x, self.scale[0], self.zero_point[0], self.lo, self.hi)
        scale = torch.tensor(self.scale, dtype=torch.float32)
        zero = torch.tensor(self.zero_point, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(x, scale, zero, 0, self.lo, self.hi)

    def describe(self) -> str:
        kind = "uint8" if self.lo == 0 else "int8"
        return f"{kind} per {'tensor' if len(self.scale) == 1 else 'channel'}"


@dataclass
class Plan:
    """Where the model's tensors are rounded: ``rounds`` of (module name, where, grid), where is
    ``"output"``, ``"input"`` or ``"shifted"`` (a squeeze-excite gate's ``relu6(x + 3)``, before its
    1/6), and each convolution's or linear layer's weight grid, by module name. ``digest``: the
    :func:`weights_digest` of the weights the grids were read with; the plan fits those alone."""

    source: str
    rounds: list[tuple[str, str, Grid]] = field(default_factory=list)
    weights: dict[str, Grid] = field(default_factory=dict)
    digest: str = ""

    def under(self, prefix: str) -> Plan:
        """The same plan for a model that holds this one as its submodule ``prefix``."""
        return Plan(self.source, [(f"{prefix}.{n}", w, g) for n, w, g in self.rounds],
                    {f"{prefix}.{n}": g for n, g in self.weights.items()}, self.digest)  # fmt: skip

    def fits(self, model: nn.Module) -> bool:
        """Whether ``model`` still holds the weights this plan was read with (not fine-tuned since)."""
        return self.digest == weights_digest(model)

    def summary(self) -> dict[str, Any]:
        """What an int8 file records of a carried quantization."""
        weights = sorted({g.describe() for g in self.weights.values()})
        activations = sorted({g.describe() for _, _, g in self.rounds})
        return {"quantization": "carried from the TFLite file", "source": self.source, "weights": ", ".join(weights),
                "activations": ", ".join(activations) + ", the file's scales"}  # fmt: skip


def weights_digest(model: nn.Module) -> str:
    """A fingerprint of ``model``'s floating-point weights and buffers, by name."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if tensor.is_floating_point():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class _Round(nn.Module):
    """Rounds a weight to its grid (a parametrization: the ONNX exporter writes it as Q/DQ on the weight)."""

    def __init__(self, grid: Grid) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.grid(w)


def _output_hook(grid: Grid) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
    return lambda _module, _inputs, y: grid(y)


def _input_hook(grid: Grid) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]:
    return lambda _module, inputs: (grid(inputs[0]), *inputs[1:])


def _shifted_hook(grid: Grid) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]:
    """A hard-sigmoid computed as Google's files do: ``relu6(x + 3)`` rounded to ``grid``, then / 6."""
    return lambda _module, inputs, _y: grid(torch.clamp(inputs[0] + 3.0, 0.0, 6.0)) / 6.0


def attach(model: nn.Module, plan: Plan, weights: bool = False) -> nn.Module:
    """Round ``model``'s activations (and with ``weights``, its weights) to ``plan``'s grids, in place."""
    for name, where, grid in plan.rounds:
        module = model.get_submodule(name)
        if where == "output":
            module.register_forward_hook(_output_hook(grid))
        elif where == "input":
            module.register_forward_pre_hook(_input_hook(grid))
        else:
            module.register_forward_hook(_shifted_hook(grid))
    if weights:
        for name, grid in plan.weights.items():
            parametrize.register_parametrization(model.get_submodule(name), "weight", _Round(grid))
    return model


def _layer_rounds(model: nn.Module, name: str, hswish_next: bool) -> tuple[tuple[str, str], str | None]:
    """Where a convolution's output grid applies ((module, output/input)), and the module whose output
    a following HARD_SWISH op's grid stands for (None when no HARD_SWISH follows)."""
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    module = model.get_submodule(parent) if parent else model
    if isinstance(module, nn.Sequential) and len(module) == 3:  # ConvNormAct: conv, norm, act
        return ((f"{parent}.2", "input"), f"{parent}.2") if hswish_next else ((f"{parent}.2", "output"), None)
    if name.endswith("se.fc1"):
        return (f"{parent}.act", "output"), None
    if name == "pre_logits.0":
        return ((name, "output"), "pre_logits.1") if hswish_next else (("pre_logits.1", "output"), None)
    return (name, "output"), None


def quantization_plan(model: nn.Module, graph: Any, layers: list[nn.Module], source: str) -> Plan:
    """The :class:`Plan` of a quantized TFLite ``graph`` for ``model`` (``layers``: its convolutions and
    linear layers in the graph's order)."""
    names = {id(m): n for n, m in model.named_modules()}
    plan = Plan(source)
    consumers: dict[int, list[str]] = {}
    for op in graph.ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op.kind)
    first = graph.tensors[graph.inputs[0]]
    layer_iter = iter(layers)
    pending_act = block = pooled = None
    for op in graph.ops:
        out = graph.tensors[op.outputs[0]]
        if out.scale is None:
            continue
        grid = Grid.of(out)
        if op.kind in CONV_OPS:
            name = names[id(next(layer_iter))]
            weight = graph.tensors[op.inputs[1]]
            if weight.scale is not None and weight.dtype in ("uint8", "int8"):
                plan.weights[name] = Grid.of(weight)
            if op.inputs[0] == graph.inputs[0] and first.scale is not None:
                plan.rounds.append((name, "input", Grid.of(first)))
            if pooled is not None:
                plan.rounds.append((name, "input", pooled))
                pooled = None
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            if parent.startswith("blocks.") or parent == "stem":
                block = ".".join(parent.split(".")[:2])
            target, pending_act = _layer_rounds(model, name, "HARD_SWISH" in consumers.get(op.outputs[0], []))
            plan.rounds.append((*target, grid))
        elif op.kind == "AVERAGE_POOL_2D":
            pooled = grid
        elif op.kind == "HARD_SWISH" and pending_act is not None:
            plan.rounds.append((pending_act, "output", grid))
            pending_act = None
        elif op.kind == "MUL" and block is not None and hasattr(model.get_submodule(block), "se"):
            const = any(graph.tensors[i].data is not None for i in op.inputs)
            plan.rounds.append((f"{block}.se.gate" if const else f"{block}.se", "output", grid))
        elif op.kind == "ADD" and block is not None:
            const = any(graph.tensors[i].data is not None for i in op.inputs)
            if const and hasattr(model.get_submodule(block), "se"):  # the gate's relu6(x + 3)
                plan.rounds.append((f"{block}.se.gate", "shifted", grid))
            elif not const and getattr(model.get_submodule(block), "use_residual", False):
                plan.rounds.append((block, "output", grid))
    return plan
