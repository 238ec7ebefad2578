"""Google's quantization carried into the phone formats' int8 (PT2E), nothing calibrated.

A model imported from a quantized TFLite file knows every grid the file states
(``model.tflite_quantization``, :mod:`mobilenets.weights.tflite_quant`). Here each PT2E observer gets the
grid of the tensor it watches: the activations Google's own scales and zero points (a uint8 grid
``(s, z)`` is the int8 grid ``(s, z - 128)``: the same values), the weights Google's scale per output
channel, so that ``round(w / s)`` gives back Google's integers. XNNPACK's int8 weights are symmetric in
[-127, 127]; where Google's asymmetric uint8 weights span more than that (one or two channels of most
layers), that channel gets the smallest symmetric scale that holds it (clamping them instead cost 9
points of agreement on V3-Small).

So that the int8 file computes what Google's does, the operations Google's file runs in integers are
quantized too, which the phone quantizers leave float: hard-swish (LiteRT's integer HARD_SWISH),
residual sums, and the squeeze-excite gate, written as Google's file computes it, ``relu6(x + 3)``
rounded, then times 1/6 (:class:`HardSigmoidSteps`). Measured in benchmarks/RESULTS.md ("Google's
quantization carried into int8").
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mobilenets.deploy.pt2e import annotating, replaced
from mobilenets.util.errors import ExportError
from mobilenets.util.extras import needs
from mobilenets.weights.tflite_quant import Grid, Plan

EXTRA_OPS = ("hardswish", "add.Tensor", "add_.Tensor", "clamp", "mul.Tensor")


class HardSigmoidSteps(nn.Module):
    """``relu6(x + 3) / 6`` as two operations, as Google's TFLite files compute the gate: ADD (with a fused
    ReLU6) and MUL, each rounded to its own grid."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)


def gates_as_steps(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Hardsigmoid`` modules are :class:`HardSigmoidSteps`."""
    return replaced(model, lambda m: HardSigmoidSteps() if isinstance(m, nn.Hardsigmoid) else None)


def carrying_quantizer(inner: Any) -> Any:
    """``inner`` (LiteRT's or ExecuTorch's PT2E quantizer) that also quantizes :data:`EXTRA_OPS` where
    it leaves them float."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    spec = inner.global_config.input_activation

    def add(model: torch.fx.GraphModule) -> None:
        for node in model.graph.nodes:
            if node.op != "call_function" or "quantization_annotation" in node.meta:
                continue
            if any(op in str(node.target) for op in EXTRA_OPS):
                inputs = [a for a in node.args if isinstance(a, torch.fx.Node) and a.op != "get_attr"]
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map=dict.fromkeys(inputs, spec), output_qspec=spec, _annotated=True
                )

    return annotating(inner, add)


def _is_observer(node: torch.fx.Node) -> bool:
    return node.op == "call_module" and "activation_post_process" in str(node.target)


def _origin(node: torch.fx.Node) -> torch.fx.Node:
    """The node whose value an observer watches: through other observers and zero pads (which keep a grid
    whose zero is exact)."""
    while _is_observer(node) or (node.op == "call_function" and "pad" in str(node.target)):
        node = node.args[0]
    return node


def _module_nodes(gm: torch.fx.GraphModule) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """For each module path: its first node, its last node, and its last ``clamp`` node."""
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    clamp: dict[str, Any] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        for path, _ in node.meta.get("nn_module_stack", {}).values():
            first.setdefault(path, node)
            last[path] = node
            if "clamp" in str(node.target):
                clamp[path] = node
    return first, last, clamp


def _lookup(table: dict[str, Any], path: str) -> Any:
    """``table``'s entry for ``path`` or for the nearest module above it (an ``nn.Identity`` activation
    leaves no node: its output is its parent's)."""
    while path not in table and "." in path:
        path = path.rsplit(".", 1)[0]
    return table[path]


def _activation_grids(gm: torch.fx.GraphModule, plan: Plan) -> dict[torch.fx.Node, Grid]:
    """The grid of each value node the plan rounds."""
    first, last, clamp = _module_nodes(gm)
    grids = {}
    for name, where, grid in plan.rounds:
        if where == "output":
            grids[_lookup(last, name)] = grid
        elif where == "input":
            grids[_origin(_lookup(first, name).args[0])] = grid
        else:  # "shifted": the gate's relu6(x + 3)
            grids[clamp[name]] = grid
    for node in list(grids):  # what a clamp clamps (a conv or the gate's sum: one op with ReLU6 in TFLite)
        if "clamp" in str(node.target):
            grids.setdefault(_origin(node.args[0]), grids[node])
    return grids


def _fixed(observer: Any, grid: Grid) -> Any:
    from torchao.quantization.pt2e.observer import FixedQParamsObserver

    zero = grid.zero_point[0] - (128 if grid.lo == 0 else 0)  # uint8 (s, z) is int8 (s, z - 128)
    return FixedQParamsObserver(scale=grid.scale[0], zero_point=zero, dtype=observer.dtype,
                                quant_min=observer.quant_min, quant_max=observer.quant_max)  # fmt: skip


def _weight_observer(observer: Any, weight: torch.Tensor, grid: Grid) -> Any:
    """A per-channel symmetric observer whose scale is Google's where the channel's integers fit in
    [-127, 127], else the smallest symmetric scale that holds the channel."""
    from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver

    dims = tuple(range(1, weight.ndim))
    scale = torch.tensor(grid.scale).expand(weight.shape[0])
    reach = weight.abs().amax(dim=dims)
    levels = observer.quant_max
    fits = torch.round(reach / scale) <= levels
    bound = torch.where(fits, levels * scale, reach)
    fixed = PerChannelMinMaxObserver(ch_axis=observer.ch_axis, dtype=observer.dtype, qscheme=observer.qscheme,
                                     quant_min=observer.quant_min, quant_max=observer.quant_max)  # fmt: skip
    fixed(torch.stack([bound, -bound], 1))
    return fixed


def _set_observers(gm: torch.fx.GraphModule, plan: Plan) -> None:
    """Give every observer of a prepared model the plan's grid; refused if one has none."""
    grids = _activation_grids(gm, plan)
    for node in gm.graph.nodes:
        if not _is_observer(node):
            continue
        observer, source = getattr(gm, node.target), node.args[0]
        weight = plan.weights.get(source.target.rsplit(".", 1)[0]) if source.op == "get_attr" else None
        if weight is not None:
            setattr(gm, node.target, _weight_observer(observer, gm.get_parameter(source.target), weight))
            continue
        grid = grids.get(_origin(source))
        if grid is None:
            raise ExportError(f"{plan.source} states no grid for {source.name}; export with --recalibrate.")
        setattr(gm, node.target, _fixed(observer, grid))


def carried_pt2e(model: nn.Module, x: torch.Tensor, quantizer: Any, plan: Plan, fold: bool = True) -> nn.Module:
    """The PT2E int8 model of a model imported from a quantized TFLite file, on the file's own grids
    (``plan``, its :class:`Plan` with our module names)."""
    with needs("int8 for the phone formats"):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    net = gates_as_steps(model)
    prepared = prepare_pt2e(torch.export.export(net, (x,)).module(), carrying_quantizer(quantizer))
    _set_observers(prepared, plan)
    return convert_pt2e(prepared, fold_quantize=fold)
