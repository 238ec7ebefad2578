"""Google's TFLite MobileNets (float or uint8/int8) -> our PyTorch models, without TensorFlow.

The flatbuffer is read with the ``tflite`` package. The architecture is recognised by matching the
sequence of convolution weight shapes against every published configuration; the weights are then
copied convolution by convolution in graph order. Float files have BN folded into the conv biases
(our BN is set to the identity around them); quantized files are dequantized,
``(q - zero_point) * scale`` per tensor or per channel, int32 biases with their own scale. The ReLU6
that old uint8 files only imply by their activation ranges is kept as ReLU6.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.models.registry import build_model
from mobilenets.util.errors import WeightsError
from mobilenets.weights.tflite_quant import CONV_OPS, attach, quantization_plan, weights_digest

CANDIDATES: tuple[tuple[str, float, bool], ...] = (
    *[("mobilenet_v1", w, False) for w in (0.25, 0.5, 0.75, 1.0)],
    *[("mobilenet_v2", w, False) for w in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)],
    *[(n, w, m) for n in ("mobilenet_v3_large", "mobilenet_v3_small") for w in (0.75, 1.0)
      for m in (False, True)],
)  # fmt: skip


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    axis: int


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def value(self, index: int) -> np.ndarray:
        """The constant tensor ``index`` as float32, dequantized if it is quantized."""
        t = self.tensors[index]
        if t.data is None:
            raise WeightsError(f"TFLite tensor {t.name!r} has no data.")
        data = t.data.astype(np.float32)
        if t.scale is not None and t.dtype != "float32":
            shape = [1] * data.ndim
            if t.scale.size > 1:
                shape[t.axis] = -1
            data = (data - t.zero_point.reshape(shape)) * t.scale.reshape(shape)
        return data


_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 9: "int8", 7: "int16"}
_NP = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
       "int8": np.int8, "int16": np.int16}  # fmt: skip


def read_graph(path: str | os.PathLike) -> Graph:
    """The first subgraph of a TFLite file: tensors (with constant data) and ops in execution order."""
    import tflite

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"TFLite file {path} does not exist.")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise WeightsError(f"{path} is not a TFLite model (no 'TFL3' flatbuffer identifier).")
    opnames = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        g = model.Subgraphs(0)
        tensors = []
        for i in range(g.TensorsLength()):
            t = g.Tensors(i)
            dtype = _DTYPES.get(t.Type(), f"type{t.Type()}")
            raw = model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
            shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
            data = (np.frombuffer(raw.tobytes(), dtype=_NP[dtype]).reshape(shape)
                    if isinstance(raw, np.ndarray) and raw.size else None)  # fmt: skip
            q = t.Quantization()
            scale = zp = None
            axis = 0
            if q is not None and q.ScaleLength():
                scale = q.ScaleAsNumpy().astype(np.float32)
                zp = (q.ZeroPointAsNumpy().astype(np.float32) if q.ZeroPointLength()
                      else np.zeros_like(scale))  # fmt: skip
                axis = q.QuantizedDimension()
            tensors.append(Tensor(t.Name().decode(), shape, dtype, data, scale, zp, axis))
        ops = []
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = opnames.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            ops.append(Op(kind, [int(j) for j in op.InputsAsNumpy()],
                          [int(j) for j in op.OutputsAsNumpy()]))  # fmt: skip
        inputs, outputs = [int(j) for j in g.InputsAsNumpy()], [int(j) for j in g.OutputsAsNumpy()]
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged file
        raise WeightsError(
            f"{path} is truncated or corrupt: its flatbuffer cannot be read ({type(exc).__name__})."
        ) from None
    return Graph(tensors, ops, inputs, outputs)


def _torch_layers(model: nn.Module) -> list[nn.Module]:
    """Our convolutions and linear layers in forward order (the order TFLite runs them)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _tflite_shape(layer: nn.Module) -> tuple[int, ...]:
    """The TFLite weight shape of one of our layers: OHWI; depthwise 1HWC; linear as a 1x1 conv."""
    if isinstance(layer, nn.Linear):
        return (layer.out_features, 1, 1, layer.in_features)
    o, i, h, w = layer.weight.shape
    return (1, h, w, o) if layer.groups > 1 and layer.groups == o else (o, h, w, i)


@cache
def _candidate_shapes(name: str, width: float, minimalistic: bool) -> tuple[tuple[int, ...], ...]:
    kwargs = {"minimalistic": True} if minimalistic else {}
    model = build_model(name, width_mult=width, num_classes=1001, **kwargs)
    return tuple(_tflite_shape(m) for m in _torch_layers(model))


def recognise(graph: Graph) -> tuple[str, float, bool]:
    """(model name, width, minimalistic) whose convolutions match the graph's, else ``WeightsError``."""
    convs = [op for op in graph.ops if op.kind in CONV_OPS]
    shapes = tuple(graph.tensors[op.inputs[1]].shape for op in convs)
    for cand in CANDIDATES:
        if _candidate_shapes(*cand) == shapes:
            return cand
    kinds = sorted({op.kind for op in graph.ops})
    raise WeightsError(
        f"The TFLite graph is no MobileNet we know: {len(convs)} convolutions (first weight shapes "
        f"{list(shapes[:3])}) and ops {', '.join(kinds)}; supported: V1, V2, V3-Large/Small."
    )


def _identity_bn(bn: nn.BatchNorm2d, bias: torch.Tensor) -> None:
    """Make ``bn`` add ``bias`` and nothing else (the folded BN of a TFLite float graph)."""
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.fill_(1.0)
    bn.bias.copy_(bias)


def _preprocessing(graph: Graph, size: tuple[int, int]) -> dict[str, Any]:
    """TF-slim's evaluation preprocessing; for uint8 inputs mean/std reproduce the input quantization."""
    t = graph.tensors[graph.inputs[0]]
    mean, std = 0.5, 0.5
    if t.dtype in ("uint8", "int8") and t.scale is not None:
        offset = 128 if t.dtype == "int8" else 0
        mean = float(t.zero_point[0] + offset) / 255
        std = 1.0 / (255 * float(t.scale[0]))
    return dict(input_size=(3, *size), crop_pct=0.875, interpolation="bilinear", resize_mode="tf-slim",
                mean=(mean,) * 3, std=(std,) * 3)  # fmt: skip


def _copy_convs(graph: Graph, model: nn.Module) -> None:
    """Copy every convolution of the TFLite graph, in graph order, into ``model``'s (a bias without a conv
    bias becomes the shift of an identity BN)."""
    convs = [op for op in graph.ops if op.kind in CONV_OPS]
    bns = {id(m[0]): m[1] for m in model.modules()
           if isinstance(m, nn.Sequential) and len(m) > 1 and isinstance(m[1], nn.BatchNorm2d)}  # fmt: skip
    with torch.no_grad():
        for op, layer in zip(convs, _torch_layers(model)):
            weight = torch.from_numpy(graph.value(op.inputs[1]))
            weight = weight.permute(3, 0, 1, 2) if op.kind == "DEPTHWISE_CONV_2D" else weight.permute(0, 3, 1, 2)
            layer.weight.copy_(weight.reshape(layer.weight.shape))
            has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
            bias = torch.from_numpy(graph.value(op.inputs[2])) if has_bias else torch.zeros(weight.shape[0])
            if layer.bias is not None:
                layer.bias.copy_(bias)
            else:
                _identity_bn(bns[id(layer)], bias)


def tflite_architecture(graph: Graph, path: str | os.PathLike, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """The model name and build options a TFLite graph needs (its width, TF "SAME" padding, minimalistic
    V3), merged with the caller's ``kwargs``; refused in one sentence where they disagree with the file."""
    name, width, minimalistic = recognise(graph)
    if kwargs.get("width_mult", width) != width:
        raise WeightsError(f"{path} holds width_mult={width:g}, not {kwargs['width_mult']}.")
    kwargs.update(width_mult=width, padding="same")
    if minimalistic:
        kwargs["minimalistic"] = True
    expected = kwargs.pop("model_name", None)
    if expected is not None and expected != name:
        raise WeightsError(f"{path} holds a {name} (width {width:g}), not a {expected}.")
    return name, kwargs


def load_graph(model: nn.Module, graph: Graph, path: str | os.PathLike, keep_background: bool = False,
               fake_quant: bool = False) -> nn.Module:  # fmt: skip
    """Copy a TFLite graph's weights into ``model`` (built with 1001 classes from
    :func:`tflite_architecture`'s options); see :func:`mobilenets.load_tflite`."""
    _copy_convs(graph, model)
    if not keep_background:
        head = model.classifier
        model.reset_classifier(1000)
        with torch.no_grad():
            model.classifier.weight.copy_(head.weight[1:])
            model.classifier.bias.copy_(head.bias[1:])
    if graph.tensors[graph.inputs[0]].scale is not None:
        plan = quantization_plan(model, graph, _torch_layers(model), str(path))
        head = plan.weights.get("classifier")
        if head is not None and len(head.scale) == 1001 and not keep_background:  # per channel: drop background
            plan.weights["classifier"] = replace(head, scale=head.scale[1:], zero_point=head.zero_point[1:])
        plan.digest = weights_digest(model)
        model.tflite_quantization = plan
        if fake_quant:
            attach(model, model.tflite_quantization)
    h, w = graph.tensors[graph.inputs[0]].shape[1:3]
    model.model_args = {**model.model_args, "num_classes": 1001 if keep_background else 1000}
    model.pretrained_cfg = {**_preprocessing(graph, (h, w)), "source": str(path),
                            "classes": "imagenet1k+background" if keep_background else "imagenet1k"}  # fmt: skip
    return model.eval()
