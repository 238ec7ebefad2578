"""A carried int8 ONNX model (Google's quantization, :func:`.quantize.carried_onnx`) rewritten to compute
what LiteRT computes on Google's file (:mod:`.litert_kernels`), in any ONNX runtime.

PyTorch's exporter writes each rounded operation as float between DequantizeLinear and QuantizeLinear,
and each runtime then rounds it its own way. Here, in place:

- a HardSwish keeps its float path, moved by whole steps to LiteRT's fixed-point value on the few inputs
  where that rounds the other way;
- an Add becomes a lookup in XNNPACK's table, indexed by the two uint8 inputs;
- a GlobalAveragePool whose input and output share a grid becomes the integer mean, rounded half up;
- a Pad of dequantized values pads the uint8 tensor with its zero point instead, so that the convolution
  after it reads a DequantizeLinear and ONNX Runtime runs it in its integer kernel (with the Pad between,
  it ran in float and rounded a few outputs the other way; stride-2 layers of Google's files pad).

Measured (1300 images, top-1 per image against LiteRT running Google's file): ONNX Runtime agreed on
91.46% (V3-Small), 99.15% (V2) and 99.69% (V1 0.25) before, and on all of them after; OpenVINO on
91.77%, 99.08% and 99.62% before, 97.54%, 99.08% and 99.62% after (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from mobilenets.deploy.int8_settings import graph_constants
from mobilenets.deploy.litert_kernels import add_table, hard_swish_table

_SHAPE_OPS = ("Flatten", "Reshape")


class _Graph:
    """Who makes and who reads each tensor of an ONNX graph, and its constants."""

    def __init__(self, model: Any) -> None:
        self.made_by = {out: n for n in model.graph.node for out in n.output}
        self.read_by: dict[str, list[Any]] = defaultdict(list)
        for n in model.graph.node:
            for name in n.input:
                self.read_by[name].append(n)
        self.consts = graph_constants(model)

    def grid(self, node: Any) -> tuple[float, int] | None:
        """(scale, zero point) of a per-tensor uint8 QuantizeLinear/DequantizeLinear ``node``."""
        if len(node.input) < 3:
            return None
        scale, zero = self.consts.get(node.input[1]), self.consts.get(node.input[2])
        if scale is None or zero is None or scale.size != 1 or zero.dtype != np.uint8:
            return None
        return float(scale), int(zero)

    def dequantized(self, name: str) -> tuple[str, tuple[float, int]] | None:
        """(uint8 tensor, grid) when ``name`` is a DequantizeLinear's output."""
        node = self.made_by.get(name)
        grid = self.grid(node) if node is not None and node.op_type == "DequantizeLinear" else None
        return (node.input[0], grid) if grid else None

    def quantized(self, node: Any) -> tuple[Any, list[Any], tuple[float, int]] | None:
        """(QuantizeLinear, shape ops between, grid) when ``node``'s output goes, through Flatten or
        Reshape only, to a single QuantizeLinear."""
        between, out = [], node.output[0]
        while len(self.read_by[out]) == 1:
            nxt = self.read_by[out][0]
            if nxt.op_type == "QuantizeLinear":
                grid = self.grid(nxt)
                return (nxt, between, grid) if grid else None
            if nxt.op_type not in _SHAPE_OPS:
                return None
            between.append(nxt)
            out = nxt.output[0]
        return None


def as_litert_computes(model: Any) -> Counter:
    """Rewrite ``model`` (an ONNX ModelProto of a carried file) in place; returns how many of each op."""
    g = _Graph(model)
    replace: dict[int, list[Any]] = {}  # id of the node whose place the new nodes take -> new nodes
    drop: set[int] = set()
    done: Counter = Counter()
    for node in list(model.graph.node):
        rewrite = _REWRITES.get(node.op_type)
        made = rewrite(g, node) if rewrite else None
        if made is None:
            continue
        at, new_nodes, gone, initializers = made
        replace[id(at)] = new_nodes
        drop.update(id(n) for n in gone)
        model.graph.initializer.extend(initializers)
        done[node.op_type] += 1
    nodes = []
    for n in model.graph.node:
        nodes.extend(replace.get(id(n), [] if id(n) in drop else [n]))
    _keep_used(model.graph, nodes)
    return done


def _keep_used(graph: Any, nodes: list[Any]) -> None:
    """``graph``'s nodes become ``nodes`` less those whose outputs nothing reads, and its initializers
    those still read."""
    wanted = {o.name for o in graph.output}
    while True:
        read = {name for n in nodes for name in n.input} | wanted
        kept = [n for n in nodes if any(out in read for out in n.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    del graph.node[:]
    graph.node.extend(nodes)
    read = {name for n in nodes for name in n.input}
    unread = [t for t in graph.initializer if t.name not in read]
    for t in unread:
        graph.initializer.remove(t)


class _Ops:
    """ONNX nodes and constants being written for one rewritten operation, named after it."""

    def __init__(self, name: str) -> None:
        self.name, self.nodes, self.inits = name, [], []

    def const(self, value: Any, dtype: Any = np.int32) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), f"{self.name}.c{len(self.inits)}"))
        return self.inits[-1].name

    def __call__(self, op_type: str, *inputs: Any, out: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        names = [self.const(i) if isinstance(i, int) else i for i in inputs]
        out = out or f"{self.name}.t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, names, [out], name=f"{self.name}.{len(self.nodes)}", **attrs))
        return out

    def int32(self, x: str) -> str:
        from onnx import TensorProto

        return self("Cast", x, to=TensorProto.INT32)

    def lookup(self, table: np.ndarray, index: str, out: str) -> str:
        """``table`` (uint8) at ``index``, into ``out``: exact in any runtime, but ONNX Runtime's Gather
        takes about 7.5 ns an element."""
        return self("Gather", self.const(table.reshape(-1), np.uint8), index, out=out, axis=0)


def _add(g: _Graph, node: Any) -> tuple | None:
    """Add between DequantizeLinear and QuantizeLinear -> a lookup in XNNPACK's table
    (:func:`.add_table`) at ``256 * a + b``. Its integer arithmetic written out in int32 was exact in ONNX
    Runtime, but OpenVINO computes fused int32 operations in float32, and missed one pair in 65536 for
    13 of 40 random grids."""
    inputs, out = [g.dequantized(name) for name in node.input], g.quantized(node)
    if out is None or None in inputs or out[1]:
        return None
    (q, _, grid), ((a, a_grid), (b, b_grid)) = out, inputs
    ops = _Ops(node.name or node.output[0])
    ops.lookup(add_table(a_grid, b_grid, grid), ops("Add", ops("Mul", ops.int32(a), 256), ops.int32(b)), q.output[0])
    return q, ops.nodes, [node, q], ops.inits


def _hard_swish(g: _Graph, node: Any) -> tuple | None:
    """HardSwish between DequantizeLinear and QuantizeLinear -> the same float path, moved by whole steps
    to LiteRT's value (:func:`.hard_swish_table`) for the few inputs (0-3 of 256 per layer of V3-Small)
    where its fixed point rounds the other way. The float results of the others lie further from a
    rounding tie than float32's errors reach (0.0002 of a step at the nearest on V3-Small); where one
    does not, a lookup in the table."""
    src, out = g.dequantized(node.input[0]), g.quantized(node)
    if src is None or out is None or out[1]:
        return None
    (x, (scale, zero)), (q, _, grid) = src, out
    table = hard_swish_table(scale, zero, *grid).astype(np.int64)
    real = (np.arange(256) - zero) * scale
    steps = real * np.clip(real + 3, 0, 6) / 6 / grid[0] + grid[1]
    in_range = (steps > -0.5) & (steps < 255.5)
    wrong = np.flatnonzero(np.clip(np.rint(steps), 0, 255) != table)
    ops = _Ops(node.name or node.output[0])
    error = 2e-6 * np.abs(steps - grid[1]) + 1e-5  # float32's, several roundings on the way, in steps
    if (np.abs(steps - np.floor(steps) - 0.5) < error)[in_range].any():
        ops.lookup(table, ops.int32(x), q.output[0])
        return q, ops.nodes, [node, q], ops.inits
    if not len(wrong):
        return None
    y = node.output[0]
    for value in wrong:
        step = float(table[value] - np.clip(np.rint(steps[value]), 0, 255)) * grid[0]
        y = ops("Where", ops("Equal", x, ops.const(value, np.uint8)), ops("Add", y, ops.const(step, np.float32)), y)
    q.input[0] = y
    return q, [*ops.nodes, q], [], ops.inits


def _integer_mean(g: _Graph, node: Any) -> tuple | None:
    """GlobalAveragePool on one grid -> the uint8 mean, rounded half up, then the same shape ops."""
    from onnx import TensorProto, helper

    src, out = g.dequantized(node.input[0]), g.quantized(node)
    if src is None or out is None or src[1] != out[2]:
        return None
    (x, _), (q, between, _) = src, out
    ops = _Ops(node.name or node.output[0])
    total = ops("ReduceSum", ops.int32(x), ops.const([2, 3], np.int64), keepdims=1)
    count = ops.int32(ops("ReduceProd", ops("Shape", x, start=2), keepdims=0))
    # floor((2 * total + count) / (2 * count)), the division made exact first: OpenVINO computes fused
    # int32 operations in float32 and rounds a quotient to nearest (values here stay below 2**24)
    twice, over = ops("Add", ops("Mul", total, 2), count), ops("Mul", count, 2)
    mean = ops("Div", ops("Sub", twice, ops("Mod", twice, over)), over)
    y = ops("Cast", mean, out=None if between else q.output[0], to=TensorProto.UINT8)
    for k, op in enumerate(between):
        attrs = {a.name: helper.get_attribute_value(a) for a in op.attribute}
        y = ops(op.op_type, y, *op.input[1:], out=q.output[0] if k == len(between) - 1 else None, **attrs)
    return q, ops.nodes, [node, q, *between], ops.inits


def _pad_integers(g: _Graph, node: Any) -> tuple | None:
    """Pad (constant zeros) of a DequantizeLinear's output -> Pad of its uint8 input with the zero point."""
    from onnx import helper

    src = g.dequantized(node.input[0])
    mode = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"constant")
    if src is None or mode != b"constant" or (len(node.input) > 2 and node.input[2]):
        return None
    (x, (_, zero)), dq = src, g.made_by[node.input[0]]
    ops = _Ops(node.name or node.output[0])
    padded = ops("Pad", x, node.input[1], ops.const(zero, np.uint8), mode="constant")
    ops("DequantizeLinear", padded, *dq.input[1:], out=node.output[0])
    return node, ops.nodes, [node], ops.inits


_REWRITES = {"HardSwish": _hard_swish, "Add": _add, "GlobalAveragePool": _integer_mean, "Pad": _pad_integers}
