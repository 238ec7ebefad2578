"""int8 post-training quantization: OpenVINO NNCF on our ONNX export, written as a QDQ ONNX model.

Chosen by measurement (benchmarks/RESULTS.md): NNCF places the quantizers where OpenVINO's int8
kernels want them, and the QDQ file it writes runs in OpenVINO and in ONNX Runtime. Weights are int8
per channel (symmetric), activations per tensor (symmetric or with zero points, by the weight bits), with
bias correction and each ReLU6's output on all of [0, 6], calibrated on the user's images; the stem
convolution, which reads the image, stays fp32 (a few percent of the multiply-adds). Settings and their
measurements: :mod:`.int8_settings`. Weight bits follow the CPU (:func:`.int8_settings.weight_bits`).
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

from mobilenets.data.images import BUILTIN
from mobilenets.data.preprocess import list_images, preprocess
from mobilenets.deploy.accuracy_budget import check_max_drop, quantize_within, validation_set
from mobilenets.deploy.carried_graph import as_litert_computes
from mobilenets.deploy.contract import model_metadata, sized_cfg
from mobilenets.deploy.int8_settings import (
    as_written,
    import_nncf,
    int8_metadata,
    nncf_options,
    shrink_weights,
    stem_nodes,
    uint8_gemms_as_convs,
    weight_bits,
)
from mobilenets.deploy.onnx import add_metadata, check_onnx, onnx_bytes
from mobilenets.deploy.qat import qat_check, qat_finetune, qat_onnx
from mobilenets.deploy.wrappers import check_exportable, exportable
from mobilenets.models.fuse import fuse
from mobilenets.runtime.files import read_metadata
from mobilenets.util.errors import BadImageError, ExportError
from mobilenets.util.extras import check, needs
from mobilenets.util.files import atomic_write_bytes
from mobilenets.weights.tflite_quant import Plan, attach


def check_calib_size(size: Any) -> None:
    """Refuse a calibration size that is not an integer of at least 1."""
    if not isinstance(size, int) or size < 1:
        raise ExportError(f"The calibration size must be an integer at least 1, got {size!r}.")


def calibration_batch(calib: torch.Tensor | str | os.PathLike, cfg: dict[str, Any], limit: int = 128) -> torch.Tensor:
    """Calibration inputs: a tensor as given, or up to ``limit`` images found under a folder, preprocessed
    as ``cfg`` says; a model that normalizes inside (a detector: ``inside_model``) gets what its phone
    file takes, the whole image resized to its square, in [0, 1]."""
    check_calib_size(limit)
    if cfg.get("inside_model"):
        cfg = {**cfg, "mean": (0.0,) * 3, "std": (1.0,) * 3, "resize_mode": "tf-slim", "crop_pct": 1.0}
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


def int8_source(
    model: torch.nn.Module, calib: Any, size: int, calib_size: int = 128, *, carry: bool = True
) -> Plan | torch.Tensor:
    """What an int8 export of ``model`` at ``size`` x ``size`` quantizes with: the quantized TFLite file's own
    :class:`Plan` it was imported from when ``carry`` (ONNX, LiteRT and ExecuTorch keep it unless asked to
    calibrate) and the model still holds the file's weights, else up to ``calib_size`` inputs read from
    ``calib`` (:func:`calibration_batch`); refused in one sentence without calibration images or with inputs
    of another size."""
    plan = getattr(model, "tflite_quantization", None)
    if plan is not None and carry:
        if plan.fits(model):
            return plan
        if calib is None:
            raise ExportError(f"The model's weights have changed since they were read from {plan.source} "
                              "(fine-tuned?), so its quantization no longer fits them: give calibration images "
                              "(--calib DIR, calib=).")  # fmt: skip
    if calib is None:
        raise ExportError("int8 needs calibration images (--calib DIR, calib=): only a model imported from a "
                          "quantized TFLite file keeps its own quantization (ONNX, LiteRT, ExecuTorch), and "
                          "--recalibrate, --qat, --val and --weight-bits calibrate.")  # fmt: skip
    batch = calibration_batch(calib, sized_cfg(model, size), calib_size)
    if tuple(batch.shape[-2:]) != (size, size):
        raise ExportError(f"Calibration inputs are {tuple(batch.shape[-2:])}, but the export is {size}x{size}.")
    return batch


def quantize_onnx(
    fp32: bytes,
    calib: torch.Tensor,
    bits: int | str = "auto",
    val: tuple[np.ndarray, np.ndarray] | None = None,
    max_drop: float = 0.5,
) -> tuple[bytes, dict[str, Any]]:
    """int8 QDQ ONNX model from an fp32 export and calibration inputs, with ``bits``-bit weights
    (:func:`weight_bits`), the metadata kept and its settings added; with ``val`` (images, labels) within
    ``max_drop`` points of top-1 (:mod:`.accuracy_budget`). Returns it and what the budget measured."""
    nncf = import_nncf("int8 ONNX export")
    with needs("int8 ONNX export"):
        import onnx

    model = onnx.load_from_string(fp32)
    inputs = calib.numpy().astype(np.float32)
    dataset = nncf.Dataset([inputs[i : i + 1] for i in range(len(inputs))], lambda x: {"input": x})
    stem = stem_nodes(model)
    bits = weight_bits(bits)
    with redirect_stdout(io.StringIO()):  # NNCF's progress bars: stdout stays for results (--json)
        try:
            out = nncf.quantize(model, dataset, **nncf_options(stem, len(inputs), bits))
        except ValueError as exc:  # numpy: "Too many bins for data range" (a range of a few ulps)
            if "bins" not in str(exc):
                raise
            out = nncf.quantize(model, dataset, **nncf_options(stem, len(inputs), bits, histogram=False))
    as_written(out, keep=set(stem))
    budget: dict[str, Any] = {}
    if val is not None:
        out, budget = quantize_within(fp32, out, inputs, val, max_drop, bits)
    settings = int8_metadata(bits) | ({"kept_float": budget["kept_float"]} if budget else {})
    return add_metadata(out.SerializeToString(), {**read_metadata(model), "int8": settings}), budget


def carried_onnx(model: torch.nn.Module, x: torch.Tensor) -> bytes:
    """The int8 QDQ ONNX model of a model imported from a quantized TFLite file, on the file's own grids
    (``model.tflite_quantization``): its uint8 weights with their zero points and every activation's
    scale and zero point, nothing recalibrated; the operations Google's file computes in integers as
    LiteRT computes them (:func:`.carried_graph.as_litert_computes`). Checked in ONNX Runtime against the
    same rounding in PyTorch; the metadata is left to the caller."""
    with needs("int8 ONNX export"):
        import onnx

    plan = model.tflite_quantization
    rounded = attach(fuse(model), plan, weights=True)
    proto = onnx.load_from_string(onnx_bytes(rounded, x))
    shrink_weights(proto, keep=set())
    uint8_gemms_as_convs(proto)
    as_litert_computes(proto)
    data = proto.SerializeToString()
    diff = qat_check(data, rounded, x)
    if diff > 0.3:  # a rounding that goes the other way early moves the logits by several grid steps
        raise ExportError(f"The int8 ONNX model differs from {plan.source}'s quantization in PyTorch by "
                          f"{diff:.0%} of its largest logit; nothing was written. Please report this.")  # fmt: skip
    return data


def _export_carried(model: torch.nn.Module, path: Path, size: int, calib: Any) -> dict[str, Any]:
    """:func:`export_int8` of a model that carries its quantization (:func:`carried_onnx`); ``calib`` unused."""
    model = model.eval()
    meta = model_metadata(model, size=size) | {"int8": model.tflite_quantization.summary()}
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    data = add_metadata(carried_onnx(model, x), meta)
    atomic_write_bytes(path, data)
    report = {"path": str(path), "format": "onnx-int8", "img_size": size, "quantization": meta["int8"]["quantization"]}
    if calib is not None:
        report["calibration"] = "not used: the TFLite file's own quantization was kept (--recalibrate to calibrate)"
    return report | {"bytes": len(data)}


def export_int8(
    model: torch.nn.Module,
    path: str | os.PathLike,
    calib: Any = None,
    img_size: int | None = None,
    calib_size: int = 128,
    qat: str | None = None,
    qat_epochs: int = 1,
    qat_lr: float = 1e-3,
    bits: int | str = "auto",
    val: str | os.PathLike | None = None,
    max_drop: float = 0.5,
    recalibrate: bool = False,
) -> dict[str, Any]:
    """Export ``model`` to an int8 QDQ ONNX file at ``path`` calibrated on ``calib``. A model imported from
    a quantized TFLite file keeps that file's quantization instead (:func:`carried_onnx`), unless
    ``recalibrate`` or one of ``qat``, ``val``, ``bits`` asks for a calibration. With ``qat`` (training
    data, as ``mobilenets train --data`` takes) after quantization-aware fine-tuning on it. ``bits``: weight
    bits, 7 or 8 (default: what this CPU runs exactly; see :func:`weight_bits`). With ``val`` (labelled
    images, as ``mobilenets eval --data`` takes), the most sensitive layers stay float until top-1 on them
    is within ``max_drop`` points of fp32 (:mod:`.accuracy_budget`); refused if it cannot be."""
    check("int8", "int8 ONNX export")
    check_max_drop(max_drop)
    if val is not None and not Path(val).is_dir() and str(val) not in BUILTIN:
        raise ExportError(f"Validation folder {val} does not exist; give labelled images as eval --data takes.")
    model = exportable(model, "onnx", int8=True)
    path, size = check_exportable(model, path, img_size, "onnx")
    calibrating = recalibrate or bool(qat) or val is not None or bits != "auto"
    batch = int8_source(model, calib, size, calib_size, carry=not calibrating)
    if isinstance(batch, Plan):
        return _export_carried(model, path, size, calib)
    bits = weight_bits(bits)
    model = model.eval()
    x = batch[:1]
    meta = model_metadata(model, size=size)
    cfg = meta["pretrained_cfg"]
    fp32 = add_metadata(onnx_bytes(model, x), meta)
    check_onnx(fp32, model, x)
    report = {"path": str(path), "format": "onnx-int8", "img_size": size, "fp32_bytes": len(fp32),
              "calibration_images": len(batch), "weight_bits": bits}  # fmt: skip
    if qat:
        quantized = qat_finetune(model, qat, batch, epochs=qat_epochs, lr=qat_lr, bits=bits)
        data = add_metadata(qat_onnx(quantized, x), {**meta, "int8": int8_metadata(bits)})
        diff = qat_check(data, quantized, x)
        if diff > 0.1:
            raise ExportError(f"The int8 ONNX model differs from the fine-tuned model by {diff:.0%} of its "
                              "largest logit; nothing was written. Please report this with the model.")  # fmt: skip
        report |= {"qat_data": qat, "qat_epochs": qat_epochs, "qat_vs_onnx_rel_diff": diff}
    else:
        valset = validation_set(val, cfg, meta["class_names"]) if val is not None else None
        data, budget = quantize_onnx(fp32, batch, bits, valset, max_drop)
        report |= {"budget": budget} if budget else {}
    atomic_write_bytes(path, data)
    return report | {"bytes": len(data)}
