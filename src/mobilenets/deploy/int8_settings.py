"""The int8 settings shared by post-training quantization (:mod:`.quantize`) and quantization-aware
fine-tuning (:mod:`.qat`): NNCF's options, the weight bits for a CPU, what the file records of them, and
the compact storage of the weights.

Weight bits follow the CPU that will run the file (:func:`weight_bits`; default: this one). x86 CPUs
without VNNI (AVX2) add pairs of u8 x s8 products in 16 bits, which saturates with full-range weights:
there weights use 7 of the 8 bits (NNCF's overflow fix for every convolution). CPUs with 32-bit int8 dot
products (AVX512-VNNI, AVX-VNNI, AMX, ARM dot-product) do not saturate and get full 8-bit weights. The
choice is stored in the file's metadata (``int8``), and running an 8-bit file on a CPU that saturates
it is warned about.

Activations follow the weight bits: with 8-bit weights (the VNNI/AMX setting) NNCF's performance preset
quantizes them symmetrically (int8, uint8 where they are never negative); with 7-bit weights (AVX2) the
mixed preset gives signed activations a zero point. OpenVINO's AMX kernels take no input zero point: with
zero points its int8 V2 ran 14 of its 34 pointwise convolutions in fp32 and 0.58x ONNX Runtime fp32's
latency, symmetric 0.36x (V3-Small 1.18x -> 0.71x), top-1 within 4 of 1300 images either way
(benchmarks/RESULTS.md, "Symmetric activations on VNNI/AMX").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobilenets.util.cpu import cpu_info
from mobilenets.util.errors import ExportError
from mobilenets.util.extras import needs


def weight_bits(bits: int | str = "auto") -> int:
    """7 or 8: ``"auto"`` gives 8 where this CPU has 32-bit int8 dot products, else 7."""
    if bits == "auto":
        return 8 if cpu_info().int8_dot else 7
    if bits not in (7, 8, "7", "8"):
        raise ExportError(f"int8 weight bits must be auto, 7 or 8, got {bits!r}.")
    return int(bits)


def int8_metadata(bits: int) -> dict[str, Any]:
    """What an int8 file records of its settings (the ``int8`` entry of its metadata)."""
    runs_on = "any CPU" if bits == 7 else "CPUs with VNNI, AMX or ARM dot-product (AVX2 alone saturates)"
    activations = "per tensor, with zero points" if bits == 7 else "per tensor, symmetric (uint8 where never negative)"
    return {"weight_bits": bits, "activations": activations, "runs_exactly_on": runs_on,
            "made_on": cpu_info().summary}  # fmt: skip


def import_nncf(purpose: str) -> Any:
    """NNCF with its log at errors only; a missing NNCF is one sentence naming ``purpose`` and the extra."""
    import logging

    with needs(purpose):
        import nncf
    nncf.set_log_level(logging.ERROR)
    return nncf


def nncf_options(
    stem: list[str], subset_size: int, bits: int, graph: bool = True, histogram: bool | None = None
) -> dict[str, Any]:
    """The ``nncf.quantize`` settings this package uses for post-training and quantization-aware
    training alike: ``bits``-bit weights (7 or 8) and the activations that go with them (mixed preset
    for 7, performance for 8; see the module's docstring), the stem (node names ``stem``) left in
    fp32. For a ``graph`` (ONNX, post-training) model also activation ranges from histograms (NNCF's
    ``HISTOGRAM`` estimator, not the mean of per-image min/max) and NNCF's full bias correction, which
    its Torch backend lacks; quantization-aware training learns its ranges and starts from NNCF's
    defaults (the demo: 45 s instead of 67). ``histogram=False``: the default ranges for a graph too,
    for activations too narrow for a histogram (a random model on random inputs, as ``bench``
    calibrates). Quiets NNCF's logging to errors.

    Measured (benchmarks/RESULTS.md, "int8 by default"), ONNX Runtime top-1 drop on the 1300 images,
    calibrated on 128 COCO or ants/bees photos: Google's float V1 0.25 2.62 -> 0.23-0.46 points, V2
    0.54 -> 0.31 (COCO), V3-Small 0.24 (COCO) and +0.38 (ants/bees)."""
    nncf = import_nncf("int8 ONNX export")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE if bits == 7 else OverflowFix.DISABLE)
    if graph if histogram is None else histogram:
        advanced.activations_range_estimator_params = RangeEstimatorParametersSet.HISTOGRAM
    preset = nncf.QuantizationPreset.MIXED if bits == 7 else nncf.QuantizationPreset.PERFORMANCE
    options = dict(preset=preset, subset_size=subset_size,
                   ignored_scope=nncf.IgnoredScope(names=stem), advanced_parameters=advanced)  # fmt: skip
    return options | ({"fast_bias_correction": False} if graph else {})


def stem_nodes(model: Any) -> list[str]:
    """Names of the ONNX nodes that read the image (the stem convolution)."""
    return [node.name for node in model.graph.node if model.graph.input[0].name in node.input]


def graph_constants(model: Any) -> dict[str, np.ndarray]:
    """The values of an ONNX graph's constant tensors: initializers, through Constant and Identity nodes."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type == "Identity" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
    return consts


def pin_relu6_ranges(model: Any) -> None:
    """Set the grid of each activation quantized as it leaves a ReLU6 (``Clip(0, 6)``) to all of [0, 6]
    (uint8, steps of 6/255), in place. NNCF's histogram ranges cut some at 3.3-4.5 on
    the calibration photos, which images like the model's own then exceed. Google's V2 recalibrated,
    1300 ImageNet images (benchmarks/RESULTS.md, "ReLU6 ranges pinned in ONNX"): calibrated on ants/bees
    ONNX Runtime 78.92% -> 79.62%, OpenVINO 79.00% -> 79.85% (fp32 80.00%); on COCO 79.31/79.46% ->
    79.62/79.62%; with 7-bit weights (AVX2's setting) V2 lost 1.31-1.69 points and now 0.00-0.54; float
    V1 0.25 within a few images either way. The phone formats pin them too
    (:func:`.pt2e.pin_relu6_ranges`)."""
    from onnx import TensorProto, numpy_helper

    consts, made_by = graph_constants(model), {out: n for n in model.graph.node for out in n.output}
    grids = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        clip = made_by.get(node.input[0]) if node.op_type == "QuantizeLinear" else None
        if clip is None or clip.op_type != "Clip" or len(clip.input) < 3 or len(node.input) < 3:
            continue
        bounds = [consts.get(name) for name in clip.input[1:3]]
        if any(b is None for b in bounds) or [float(b) for b in bounds] != [0.0, 6.0]:
            continue
        scale, zero = grids.get(node.input[1]), grids.get(node.input[2])
        if scale is None or zero is None or zero.data_type != TensorProto.UINT8:
            continue
        scale.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(scale), 6 / 255), scale.name))
        zero.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(zero)), zero.name))


def as_written(model: Any, keep: set[str]) -> None:
    """A post-training int8 ONNX model as its file holds it, in place: each ReLU6 output on [0, 6]
    (:func:`pin_relu6_ranges`), the weights stored compactly (:func:`shrink_weights`, ``keep`` fp32). The
    written file and the candidates the accuracy budget measures both go through it."""
    pin_relu6_ranges(model)
    shrink_weights(model, keep)


def uint8_gemms_as_convs(model: Any) -> None:
    """Each fully connected layer with uint8 weights (Google's, carried) as the 1x1 convolution Google's
    file has, in place: the same integers, the same arithmetic. OpenVINO keeps a fully connected layer's
    uint8 weights compressed, and its AVX2 kernels cannot run that ("could not create a primitive
    descriptor for the inner product", OpenVINO 2026.4 with oneDNN limited to AVX2); a convolution's
    weights it unpacks when compiling. Shifting them to int8 instead would also do for OpenVINO, but ONNX
    Runtime's AVX2 kernels saturate full-range int8 weights (see :func:`weight_bits`)."""
    from onnx import TensorProto, helper, numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    made_by = {out: n for n in model.graph.node for out in n.output}
    for gemm in [n for n in model.graph.node if n.op_type == "Gemm"]:
        dq = made_by.get(gemm.input[1])
        attrs = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        plain = attrs.get("transB") == 1 and not attrs.get("transA") and attrs.get("alpha", 1.0) == 1.0
        plain = plain and attrs.get("beta", 1.0) == 1.0
        if not plain or dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in weights:
            continue
        kernel = weights[dq.input[0]]
        if kernel.data_type != TensorProto.UINT8:
            continue
        kernel.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(kernel)[:, :, None, None], kernel.name))
        name, inputs, outputs = gemm.name or gemm.output[0], list(gemm.input), list(gemm.output)
        shapes = [
            numpy_helper.from_array(np.array(s, np.int64), f"{name}.shape{len(s)}") for s in ([0, -1, 1, 1], [0, -1])
        ]
        model.graph.initializer.extend(shapes)
        at = list(model.graph.node).index(gemm)
        model.graph.node.remove(gemm)
        for i, node in enumerate([
            helper.make_node("Reshape", [inputs[0], shapes[0].name], [f"{name}.nchw"], name=f"{name}.to_nchw"),
            helper.make_node("Conv", [f"{name}.nchw", *inputs[1:]], [f"{name}.out_nchw"], name=name),
            helper.make_node("Reshape", [f"{name}.out_nchw", shapes[1].name], outputs, name=f"{name}.to_nc"),
        ]):  # fmt: skip
            model.graph.node.insert(at + i, node)


def shrink_weights(model: Any, keep: set[str]) -> None:
    """Store the weights compactly, in place.

    Weights under a ``QuantizeLinear`` (what PyTorch's exporter writes for fake-quantized weights) are
    quantized once into the file as int8. Float convolution weights NNCF left unquantized (squeeze-excite
    layers, kept in fp32 for accuracy) are stored as fp16 and cast back: compute stays fp32, the runtimes
    fold the cast when loading. (Stored as int8 with a DequantizeLinear, OpenVINO dequantized them on
    every call: V3-Small ran 1.3x slower.) Convolutions named in ``keep`` keep their fp32 weights."""
    with needs("int8 ONNX export"):
        import onnx
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    consts = graph_constants(model)
    for node in list(model.graph.node):
        if node.op_type == "QuantizeLinear" and node.input[0] in weights:
            w, scale, zero = (consts[n] for n in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % w.ndim
            shape = [-1 if d == axis else 1 for d in range(w.ndim)] if scale.ndim else []
            info = np.iinfo(zero.dtype)
            q = np.clip(np.round(w / scale.reshape(shape)) + zero.reshape(shape), info.min, info.max)
            model.graph.initializer.append(numpy_helper.from_array(q.astype(zero.dtype), node.output[0]))
            model.graph.node.remove(node)
        elif node.op_type == "Conv" and node.input[1] in weights and node.name not in keep:
            name = node.input[1]
            half = numpy_helper.from_array(numpy_helper.to_array(weights[name]).astype(np.float16), f"{name}.fp16")
            model.graph.initializer.remove(weights[name])
            model.graph.initializer.append(half)
            cast = helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT)
            model.graph.node.insert(list(model.graph.node).index(node), cast)
    used = {i for node in model.graph.node for i in node.input}
    for t in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(t)
