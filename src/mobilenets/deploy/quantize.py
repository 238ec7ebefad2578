"""int8 post-training quantization: OpenVINO NNCF on our ONNX export, written as a QDQ ONNX model.

Chosen by measurement (benchmarks/RESULTS.md): NNCF places the quantizers where OpenVINO's int8
kernels want them, and the QDQ file it writes runs in OpenVINO and in ONNX Runtime. Weights are int8
per channel (symmetric), activations uint8 per tensor (asymmetric: NNCF's "mixed" preset), with bias
correction, calibrated on the user's images; the stem convolution, which reads the image, stays fp32
(a few percent of the multiply-adds).

Weight bits follow the CPU that will run the file (:func:`weight_bits`; default: this one). x86 CPUs
without VNNI (AVX2) add pairs of u8 x s8 products in 16 bits, which saturates with full-range weights:
there weights use 7 of the 8 bits (NNCF's overflow fix for every convolution). CPUs with 32-bit int8 dot
products (AVX512-VNNI, AVX-VNNI, AMX, ARM dot-product) do not saturate and get full 8-bit weights. The
choice is stored in the file's metadata (``int8``), and running an 8-bit file on a CPU that saturates
it is warned about. Measured on Google's MobileNetV2 from TFLite, all
1300 real ImageNet images, calibrated on 256 ants/bees images (fp32: 80.00% top-1), in OpenVINO:
full-range weights 78.08%, 7-bit weights 78.92% (symmetric activations), 79.15% (asymmetric) and
79.15-79.38% with the stem in fp32 (79.23-79.31% in ONNX Runtime; NNCF runs differ by 2-3 images).
ONNX Runtime's own static quantization is slower in both runtimes here (U8U8 ran 1.7x the fp32 model).
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import atomic_write_bytes
from ..cpu import cpu_info
from ..evaluate import list_images
from ..preprocess import BadImageError, preprocess
from .export import ExportError


def calibration_batch(calib: torch.Tensor | str | os.PathLike, cfg: dict[str, Any], limit: int = 128) -> torch.Tensor:
    """Calibration inputs: a tensor as given, or up to ``limit`` images found under a folder."""
    if isinstance(calib, torch.Tensor):
        if calib.ndim != 4 or calib.shape[1] != 3:
            raise ExportError(f"A calibration tensor must be N x 3 x H x W, got {tuple(calib.shape)}.")
        return calib.float()
    folder = Path(calib)
    if not folder.is_dir():
        raise ExportError(f"Calibration folder {folder} does not exist.")
    paths = list_images(folder)
    if not paths:
        raise ExportError(f"Calibration folder {folder} holds no images (searched recursively).")
    step = max(1, len(paths) // limit)
    tensors = []
    for p in paths[::step][:limit]:
        try:
            tensors.append(preprocess(p, cfg))
        except BadImageError:
            continue
    if not tensors:
        raise ExportError(f"No readable images in calibration folder {folder}.")
    return torch.stack(tensors)


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
    return {"weight_bits": bits, "activations": "uint8 per tensor", "runs_exactly_on": runs_on,
            "made_on": cpu_info().summary}  # fmt: skip


def saturation_warning(meta: dict[str, Any]) -> str | None:
    """One sentence when an int8 file's weights saturate on this CPU, else None."""
    if meta.get("int8", {}).get("weight_bits") == 8 and not cpu_info().int8_dot:
        return ("This int8 file has full 8-bit weights, made for CPUs with VNNI/AMX; this "
                f"{cpu_info().model} saturates them and loses accuracy: re-export with --weight-bits 7.")  # fmt: skip
    return None


def nncf_options(stem: list[str], subset_size: int, bits: int) -> dict[str, Any]:
    """The ``nncf.quantize`` settings this package uses for post-training and quantization-aware
    training alike: mixed preset, ``bits``-bit weights (7 or 8), the stem (node names ``stem``) left in
    fp32. Quiets NNCF's logging to errors."""
    import logging

    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    nncf.set_log_level(logging.ERROR)
    return dict(preset=nncf.QuantizationPreset.MIXED, subset_size=subset_size,
                ignored_scope=nncf.IgnoredScope(names=stem),
                advanced_parameters=AdvancedQuantizationParameters(
                    overflow_fix=OverflowFix.ENABLE if bits == 7 else OverflowFix.DISABLE))  # fmt: skip


def stem_nodes(model: Any) -> list[str]:
    """Names of the ONNX nodes that read the image (the stem convolution)."""
    return [node.name for node in model.graph.node if model.graph.input[0].name in node.input]


def quantize_onnx(fp32: bytes, calib: torch.Tensor, bits: int | str = "auto") -> bytes:
    """int8 QDQ ONNX model from an fp32 export and calibration inputs, with ``bits``-bit weights
    (:func:`weight_bits`); the metadata kept, its settings added."""
    import nncf
    import onnx

    from .export import _add_metadata, read_metadata

    model = onnx.load_from_string(fp32)
    inputs = calib.numpy().astype(np.float32)
    dataset = nncf.Dataset([inputs[i : i + 1] for i in range(len(inputs))], lambda x: {"input": x})
    stem = stem_nodes(model)
    bits = weight_bits(bits)
    with redirect_stdout(io.StringIO()):  # NNCF's progress bars: stdout stays for results (--json)
        out = nncf.quantize(model, dataset, **nncf_options(stem, len(inputs), bits))
    shrink_weights(out, keep=set(stem))
    return _add_metadata(out.SerializeToString(), {**read_metadata(model), "int8": int8_metadata(bits)})


def shrink_weights(model: Any, keep: set[str]) -> None:
    """Store the weights compactly, in place.

    Weights under a ``QuantizeLinear`` (what PyTorch's exporter writes for fake-quantized weights) are
    quantized once into the file as int8. Float convolution weights NNCF left unquantized (squeeze-excite
    layers, kept in fp32 for accuracy) are stored as fp16 and cast back: compute stays fp32, the runtimes
    fold the cast when loading. (Stored as int8 with a DequantizeLinear, OpenVINO dequantized them on
    every call: V3-Small ran 1.3x slower.) Convolutions named in ``keep`` keep their fp32 weights."""
    import onnx
    from onnx import helper, numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    consts = dict(weights)  # values of constant tensors, through Constant and Identity nodes
    for n in model.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = n.attribute[0].t
        elif n.op_type == "Identity" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
    for node in list(model.graph.node):
        if node.op_type == "QuantizeLinear" and node.input[0] in weights:
            w, scale, zero = (numpy_helper.to_array(consts[n]) for n in node.input)
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
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


def export_int8(
    model: torch.nn.Module,
    path: str | os.PathLike,
    calib: Any,
    img_size: int | None = None,
    calib_size: int = 128,
    qat: str | None = None,
    qat_epochs: int = 1,
    qat_lr: float = 1e-3,
    bits: int | str = "auto",
) -> dict[str, Any]:
    """Export ``model`` to an int8 QDQ ONNX file at ``path`` calibrated on ``calib``; with ``qat`` (training
    data, as ``mobilenets train --data`` takes) after quantization-aware fine-tuning on it. ``bits``: weight
    bits, 7 or 8 (default: what this CPU runs exactly; see :func:`weight_bits`)."""
    from .export import _add_metadata, _check_exportable, _onnx_bytes, check_onnx, model_metadata

    path, size = _check_exportable(model, path, img_size)
    bits = weight_bits(bits)
    cfg = {**model.pretrained_cfg, "input_size": (3, size, size)}
    batch = calibration_batch(calib, cfg, calib_size)
    if batch.shape[-1] != size or batch.shape[-2] != size:
        raise ExportError(f"Calibration inputs are {tuple(batch.shape[-2:])}, but the export is {size}x{size}.")
    model = model.eval()
    x = batch[:1]
    meta = model_metadata(model)
    meta["pretrained_cfg"] = cfg
    fp32 = _add_metadata(_onnx_bytes(model, x), meta)
    check_onnx(fp32, model, x)
    report = {"path": str(path), "format": "onnx-int8", "img_size": size, "fp32_bytes": len(fp32),
              "calibration_images": len(batch), "weight_bits": bits}  # fmt: skip
    if qat:
        from .qat import qat_check, qat_finetune, qat_onnx

        quantized = qat_finetune(model, qat, batch, epochs=qat_epochs, lr=qat_lr, bits=bits)
        data = _add_metadata(qat_onnx(quantized, x), {**meta, "int8": int8_metadata(bits)})
        diff = qat_check(data, quantized, x)
        if diff > 0.1:
            raise ExportError(f"The int8 ONNX model differs from the fine-tuned model by {diff:.0%} of its "
                              "largest logit; nothing was written. Please report this with the model.")  # fmt: skip
        report |= {"qat_data": qat, "qat_epochs": qat_epochs, "qat_vs_onnx_rel_diff": diff}
    else:
        data = quantize_onnx(fp32, batch, bits)
    atomic_write_bytes(path, data)
    return report | {"bytes": len(data)}
