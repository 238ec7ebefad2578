"""int8 within an accuracy budget for the phone formats: ``export --format tflite|pte --int8 --max-drop
POINTS --val DIR`` and ``deploy(backend="litert" | "executorch", precision="int8", val=, max_drop=)``.

NNCF's accuracy control works on ONNX models (:mod:`.accuracy_budget`); the PT2E files get per-layer
sensitivity instead. The model is quantized once in PyTorch as the file will be
(:func:`.pt2e.quantize_pt2e`), then each convolution and linear layer is put back to float in that graph
in turn (:func:`restored`: as a file that keeps it float computes it), and the layers are ranked by how
close that brings the logits on the validation images (at most :data:`RANKING_IMAGES`) to fp32's, by KL
divergence: one quantization, no runtime. The file is then written and measured in its own runtime with
the 1, 2, 4, ... most sensitive layers float, and the count between the last two halved down to the
fewest that keep top-1 within the budget of fp32's (PyTorch's: the fp32 files agree with it to 1e-4).
A budget that all the layers float cannot meet is refused in one sentence.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.pt2e import own_module, phone_activations, quantize_pt2e
from mobilenets.util.errors import ExportError

RANKING_IMAGES = 100  # validation images the ranking looks at: its cost (V2: about 6 min on 2 cores)
_LAYERS = ("conv2d", "linear")


def _is(node: Any, name: str) -> bool:
    return getattr(node, "op", None) == "call_function" and name in str(node.target)


def _rounded(node: Any) -> Any:
    """What ``node`` rounds, if it is a rounding (a dequantized quantize, or a fake-quantize); else None."""
    if _is(node, "fake_quantize"):
        return node.args[0]
    if _is(node, "dequantize") and _is(node.args[0], "quantize"):
        return node.args[0].args[0]
    return None


def _constant(model: torch.fx.GraphModule, node: Any) -> Any:
    """The value of a node computed from the model's attributes and constants alone."""
    if not isinstance(node, torch.fx.Node):
        return node
    if node.op == "get_attr":
        return functools.reduce(getattr, node.target.split("."), model)
    return node.target(*(_constant(model, arg) for arg in node.args), **node.kwargs)


def fake_quantized(quantized: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``quantized`` (converted, not folded) with each per-tensor quantize-dequantize pair as one
    ``fake_quantize_per_tensor_affine`` and each rounded weight computed once: the same numbers, faster
    in eager PyTorch."""
    graph = quantized.graph
    for dq in list(graph.nodes):
        source = _rounded(dq)
        if source is None:
            continue
        with graph.inserting_before(dq):
            if source.op == "get_attr":  # a weight: its rounding, once
                name = f"rounded_{source.target.replace('.', '_')}"
                quantized.register_buffer(name, _constant(quantized, dq))
                fake = graph.get_attr(name)
            else:
                fake = graph.call_function(torch.fake_quantize_per_tensor_affine, (source, *dq.args[0].args[1:5]))
        dq.replace_all_uses_with(fake)
    graph.eliminate_dead_code()
    quantized.recompile()
    return quantized


def restored(quantized: torch.fx.GraphModule, layer: str, float_layer: nn.Module) -> torch.fx.GraphModule:
    """A copy of a :func:`fake_quantized` PT2E model in which the module
    ``layer`` runs as ``float_layer`` would in a file that keeps it float: ``float_layer``'s weights and
    bias, its input not rounded (unless the input's producer rounds its own output, as a convolution fused
    with its ReLU does), and its output not rounded when it is the model's output."""
    model = copy.deepcopy(quantized)
    graph = model.graph
    for node in list(graph.nodes):
        if not any(_is(node, kind) for kind in _LAYERS) or own_module(node) != layer:
            continue
        args = list(node.args)
        source = _rounded(args[0])  # the input unrounded, unless its producer rounds it (as in the file)
        if source is not None and getattr(source.meta.get("quantization_annotation"), "output_qspec", None) is None:
            args[0] = source
        for i, value in ((1, float_layer.weight), (2, float_layer.bias)):
            name = f"float_{layer.replace('.', '_')}_{i}"
            model.register_buffer(name, None if value is None else value.detach().clone())
            with graph.inserting_before(node):
                args[i] = None if value is None else graph.get_attr(name)
        node.args = tuple(args)
        for rounding in [u for u in node.users if _rounded(u) is node]:
            if all(user.op == "output" for user in rounding.users):
                rounding.replace_all_uses_with(node)
    graph.eliminate_dead_code()
    model.recompile()
    return model


def _kl(reference: torch.Tensor, logits: torch.Tensor) -> float:
    p, q = torch.log_softmax(reference, 1), torch.log_softmax(logits, 1)
    return float((p.exp() * (p - q)).sum(1).mean())


def rank_layers(
    model: nn.Module, quantizer: Any, calib: torch.Tensor, images: torch.Tensor, keep: Collection[str] = ()
) -> list[str]:
    """The convolutions and linear layers of ``model`` (but ``keep``, float already), most sensitive to
    int8 first: by the KL divergence from fp32's logits on ``images`` left when each alone is float."""
    images = images[:: max(1, -(-len(images) // RANKING_IMAGES))]
    model = phone_activations(model)  # as the file is quantized
    quantized = fake_quantized(quantize_pt2e(model, calib[:2], quantizer, calib, fold=False, keep=keep, any_batch=True))

    def logits(net: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([net(batch) for batch in images.split(50)])

    reference = logits(model)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear) and n not in keep]
    modules = dict(model.named_modules())  # as they are in float: their own weights and biases
    score = {n: _kl(reference, logits(restored(quantized, n, modules[n]))) for n in layers}
    return sorted(layers, key=score.__getitem__)


def search(
    ranking: list[str],
    drop_with: Callable[[list[str]], tuple[float, Any]],
    max_drop: float,
    images: int,
    measured: dict[int, tuple[float, Any]],
) -> tuple[list[str], float, Any]:
    """The fewest of ``ranking``'s first layers kept float for which ``drop_with(layers)`` (the drop in
    points, and the file) is within ``max_drop``: 0, 1, 2, 4, ... layers, then halving the last step;
    refused in one sentence when all of them are not enough. ``measured``: what is known already, by count."""

    def within(k: int) -> bool:
        if k not in measured:
            measured[k] = drop_with(ranking[:k])
        return measured[k][0] <= max_drop + 1e-9

    low, high = -1, 0
    while not within(high):
        if high == len(ranking):
            raise ExportError(f"int8 loses {measured[high][0]:.2f} points of top-1 on the {images} --val images "
                              f"even with {high} layers kept float, more than --max-drop {max_drop:g}; allow "
                              "a larger drop. Nothing was written.")  # fmt: skip
        low, high = high, min(len(ranking), max(1, 2 * high))
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if within(middle) else (middle, high)
    return ranking[:high], *measured[high]


def top1(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 (%) of a runner over ``images``, one at a time."""
    return 100 * float(np.mean([run(image[None]).argmax() == label for image, label in zip(images, labels)]))
