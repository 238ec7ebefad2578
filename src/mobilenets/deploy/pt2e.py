"""int8 for the phone formats through PyTorch's PT2E flow (LiteRT's and ExecuTorch's quantizers), with
the two corrections that make it keep its accuracy by default.

Both quantizers take symmetric per-channel int8 weights ([-127, 127]) and per-tensor activations from a
histogram observer; on their own they lost 1.6 points of top-1 on Google's MobileNetV2 and 10.9 on its
float MobileNetV1 0.25 (ExecuTorch, 1300 ImageNet images, 128 COCO photos to calibrate). Two causes:

- ReLU6 is traced as ``clamp(x, 0, 6)`` (:class:`Clamp6`); the quantizers observe the convolution's output
  before the clamp, whose range (BN folded, no bound) is far wider than [0, 6], so each activation lost
  most of its 256 steps. :func:`pin_relu6_ranges` gives those observers the clamp's range, [0, 6].
- Rounding each weight channel to its grid shifts the mean of the layer's output. :func:`correct_bias`
  measures that shift on the calibration images (the rounding error convolved with each layer's
  float input) and takes it off the bias (the data-aware bias correction of Nagel et al., 2019).

With both (benchmarks/RESULTS.md, "int8 by default"): V2 in ExecuTorch 78.38% -> 79.85% (fp32 80.00%),
V1 0.25 54.69% -> 65.00% (fp32 65.54%).

A classifier's last linear layer stays float in both formats (:func:`float_layers`): in int8 (its input,
its weights and the logits it writes) it cost Google's float V1 0.25 3.15 points in LiteRT and 2.77 in
ExecuTorch with ants/bees as --calib (0.92 and 0.62 with COCO); float, 0.08 and 0.62 (COCO: 0.31 lost,
0.08 gained), for 0.6% of the multiply-adds, but its weights in fp32 (V1 0.25's files 0.55-0.61 ->
1.31-1.35 MB; V2's about +3.8 MB).
A detector's own operations after its head (box decoding, softmax, the concatenation of boxes and
probabilities: :func:`float_outputs`) stay float in both: quantized, the probabilities and the boxes shared
one [0, 1] grid of 1/256 steps, and ExecuTorch's int8 SSDLite gave 4 distinct probability values.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn

from mobilenets.deploy.wrappers import DetectionOutputs
from mobilenets.util.extras import needs

WEIGHT_LEVELS = 127  # symmetric int8 weights of both quantizers: [-127, 127] per output channel


def float_layers(model: nn.Module) -> set[str]:
    """The layers an int8 phone file (LiteRT, ExecuTorch) keeps float: a classifier's final linear layer
    (``classifier``)."""
    return {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] == "classifier"}


def float_outputs(model: nn.Module) -> set[str]:
    """The modules whose own operations an int8 file keeps float: a detector's outputs (its
    :class:`.wrappers.DetectionOutputs`: box decoding, softmax and concatenation; its head stays int8)."""
    return {n for n, m in model.named_modules() if isinstance(m, DetectionOutputs)}


def own_module(node: Any) -> str | None:
    """The name of the innermost module whose forward traced the graph ``node`` (``""``: the model's own
    forward), or None for a node no module traced (inputs, constants)."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    return stack[-1][0] if stack else None


def keeping_float(inner: Any, keep: Collection[str]) -> Any:
    """``inner`` (LiteRT's or ExecuTorch's PT2E quantizer) without its annotations on the operations of the
    modules ``keep`` (names) themselves, not of their submodules: those run in float, their inputs
    dequantized."""

    def drop(model: torch.fx.GraphModule) -> None:
        for node in model.graph.nodes:
            if own_module(node) in keep:
                node.meta.pop("quantization_annotation", None)

    return annotating(inner, drop)


class Clamp6(nn.Module):
    """ReLU6 written as ``clamp(x, 0, 6)``: the same numbers, but the int8 conversions keep it right, which
    they do not for ReLU6's ``hardtanh``. Measured on Google's MobileNetV2: LiteRT int8 agreed with the
    fake-quantized model on 43% of images with ``hardtanh``, 97% with ``clamp`` (top-1 79.08%);
    ExecuTorch int8 top-1 went from 78.62% to 79.00%."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, 0.0, 6.0)


class GeluTanh(nn.Module):
    """GELU's tanh form written out, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: ExecuTorch's XNNPACK
    computes ``gelu(approximate="tanh")`` with an approximation 3.8e-5 off per layer (MobileNetV5's encoder
    ended 6.4e-4 off PyTorch, refused by the 1e-4 check); written out it is 8e-8 off."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def replaced(model: nn.Module, swap: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    """A copy of ``model`` in which each submodule that ``swap`` returns a module for is that module."""
    model = copy.deepcopy(model)
    for module in model.modules():
        for name, child in module.named_children():
            new = swap(child)
            if new is not None:
                setattr(module, name, new)
    return model


def _phone_form(module: nn.Module) -> nn.Module | None:
    if isinstance(module, nn.ReLU6):
        return Clamp6()
    if isinstance(module, nn.GELU) and module.approximate == "tanh":
        return GeluTanh()
    return None


def phone_activations(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.ReLU6`` replaced by :class:`Clamp6` and every tanh-form
    ``nn.GELU`` by :class:`GeluTanh`: the same numbers, which the phone runtimes then keep."""
    return replaced(model, _phone_form)


def annotating(inner: Any, amend: Callable[[torch.fx.GraphModule], None]) -> Any:
    """``inner`` (LiteRT's or ExecuTorch's PT2E quantizer) with ``amend`` run on its annotated graph."""
    from torchao.quantization.pt2e.quantizer import Quantizer

    class Amended(Quantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = inner.annotate(model)
            amend(model)
            return model

        def validate(self, model: torch.fx.GraphModule) -> None:
            inner.validate(model)

    return Amended()


def _weight_error(weight: torch.Tensor) -> torch.Tensor:
    """What rounding ``weight`` to symmetric per-output-channel int8 adds to it."""
    dims = tuple(range(1, weight.ndim))
    scale = weight.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / WEIGHT_LEVELS
    return torch.clamp(torch.round(weight / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS) * scale - weight


def correct_bias(model: nn.Module, calib: torch.Tensor, keep: Collection[str] = ()) -> nn.Module:
    """A copy of ``model`` whose convolutions and linear layers (but those named in ``keep``, which stay
    float) have the mean output shift of their int8 weight rounding, measured on ``calib``, taken off their
    bias (a zero bias added where there is none)."""
    model = copy.deepcopy(model).eval()
    layers = [m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in keep]
    shift: dict[nn.Module, torch.Tensor] = {}
    measuring: list[nn.Module] = []  # the layer run on its weight error (its own hook must not fire)

    def measure(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if measuring:
            return
        error = {"weight": _weight_error(layer.weight)}
        if layer.bias is not None:
            error["bias"] = torch.zeros_like(layer.bias)
        measuring.append(layer)
        try:  # the layer's own forward: its padding (SAME included), groups and strides
            y = torch.func.functional_call(layer, error, inputs)
        finally:
            measuring.pop()
        mean = y.mean(dim=(0, 2, 3)) if y.ndim == 4 else y.reshape(-1, y.shape[-1]).mean(0)
        shift[layer] = shift.get(layer, 0) + mean * len(inputs[0])

    hooks = [layer.register_forward_pre_hook(measure) for layer in layers]
    with torch.no_grad():
        for batch in calib.split(16):
            model(batch)
        for layer in layers:
            if layer in shift:
                if layer.bias is None:
                    layer.bias = nn.Parameter(torch.zeros(layer.weight.shape[0]))
                layer.bias -= shift[layer] / len(calib)
    for hook in hooks:
        hook.remove()
    return model


def pin_relu6_ranges(prepared: torch.fx.GraphModule) -> int:
    """Give every observer around a ``clamp(x, 0, 6)`` of a calibrated PT2E model the range [0, 6]; returns
    how many it set."""
    from torchao.quantization.pt2e.observer import MinMaxObserver

    pinned = 0
    for node in prepared.graph.nodes:
        if node.op != "call_function" or "clamp" not in str(node.target) or tuple(node.args[1:3]) != (0.0, 6.0):
            continue
        for around in [node.args[0], *node.users]:
            observer = getattr(prepared, around.target, None) if around.op == "call_module" else None
            if observer is None or not hasattr(observer, "quant_min"):
                continue
            fixed = MinMaxObserver(dtype=observer.dtype, qscheme=observer.qscheme,
                                   quant_min=observer.quant_min, quant_max=observer.quant_max)  # fmt: skip
            fixed(torch.tensor([0.0, 6.0]))
            setattr(prepared, around.target, fixed)
            pinned += 1
    return pinned


def quantize_pt2e(
    model: nn.Module,
    x: torch.Tensor,
    quantizer: Any,
    calib: torch.Tensor,
    fold: bool = True,
    keep: Collection[str] = (),
    any_batch: bool = False,
) -> nn.Module:
    """The PT2E int8 model of ``model`` (ReLU6 as :class:`Clamp6`), traced on ``x`` (for any batch size
    with ``any_batch``; ``x`` then holds two inputs): bias corrected, prepared, calibrated one image at a
    time (the exported batch size), ReLU6 ranges pinned, converted; the operations of the modules ``keep``
    (names; not of their submodules) float."""
    with needs("int8 for the phone formats"):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = correct_bias(model, calib, keep)
    batch = ({0: torch.export.Dim.AUTO},) if any_batch else None
    traced = torch.export.export(model, (x,), dynamic_shapes=batch).module()
    prepared = prepare_pt2e(traced, keeping_float(quantizer, keep))
    with torch.no_grad():
        for image in calib:
            prepared(image[None])
    pin_relu6_ranges(prepared)
    return convert_pt2e(prepared, fold_quantize=fold)
