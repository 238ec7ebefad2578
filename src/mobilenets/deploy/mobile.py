"""Phone formats: LiteRT ``.tflite``, ExecuTorch ``.pte`` (XNNPACK delegate) and Core ML ``.mlpackage``.

Each export starts from the fused model (BN folded), fp32 or int8, with a static batch of 1 as phone apps
run it, and is run once in its own runtime before it is kept (LiteRT's interpreter, ExecuTorch's runtime;
Core ML can only be inspected on Linux: predictions need macOS). An fp32 file that departs from PyTorch
by more than 1e-4 of the logits' scale is refused and nothing is left behind.

int8: ExecuTorch through PT2E with ``XNNPACKQuantizer``, LiteRT through litert-torch's PT2E quantizer
(ai-edge-quantizer's static recipe breaks the squeeze-excite gating of V3), both symmetric per-channel
weights and per-tensor activations calibrated on the user's images, with the ReLU6 ranges pinned and
the bias corrected (:mod:`.pt2e`; the classifier's last layer kept float); a model imported
from a quantized TFLite file keeps that file's scales and zero points instead, unless ``recalibrate``
(:mod:`.pt2e_carried`); Core ML int8 is weight-only (``linear_quantize_weights``): activation
quantization needs predictions, so a Mac.

The class names and preprocessing travel with every file: inside the Core ML model's metadata, and in a
JSON file with the same stem beside ``.tflite`` and ``.pte`` files (which carry no such metadata here).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.accuracy_budget import check_budget_format, validation_set
from mobilenets.deploy.contract import check_parity, model_metadata
from mobilenets.deploy.detection import check_int8_detector, check_phone_detector
from mobilenets.deploy.phone_budget import rank_layers, search, top1
from mobilenets.deploy.pt2e import float_layers, float_outputs, phone_activations, quantize_pt2e
from mobilenets.deploy.pt2e_carried import carried_pt2e
from mobilenets.deploy.quantize import int8_source
from mobilenets.deploy.wrappers import DetectionOutputs, NHWCInput, check_exportable
from mobilenets.models.blocks import explicit_attention
from mobilenets.models.fuse import fuse
from mobilenets.runtime.files import (
    FORMAT_RUNTIMES,
    MOBILE_FORMATS,
    RUNTIMES,
    check_installed,
    output_name,
    sidecar,
)
from mobilenets.runtime.runners import litert_io, open_runner
from mobilenets.util.errors import ExportError
from mobilenets.util.extras import needs
from mobilenets.util.files import atomic_write_bytes
from mobilenets.util.quiet import quiet
from mobilenets.weights.tflite_quant import Plan


def _quantizer(fmt: str) -> Any:
    """The PT2E quantizer of ``fmt``'s converter: symmetric per-channel weights, per-tensor activations."""
    if fmt == "tflite":
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

        return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))


def _int8(model: nn.Module, x: torch.Tensor, fmt: str, quantizer: Any, source: Any, keep: set[str]) -> nn.Module:
    """The PT2E int8 model: calibrated on ``source`` (a tensor) with the modules ``keep`` float, or on a
    TFLite file's quantization (a :class:`Plan`). LiteRT takes its weights unfolded."""
    if isinstance(source, Plan):
        return carried_pt2e(model, x, quantizer, source, fold=fmt != "tflite")
    return quantize_pt2e(model, x, quantizer, source, fold=fmt != "tflite", keep=keep)


def _tflite_bytes(model: nn.Module, x: torch.Tensor, source: Any, keep: set[str]) -> bytes:
    with needs("Export to LiteRT (.tflite)"):
        import litert_torch

    options = {}
    if source is not None:
        from litert_torch.quantize.quant_config import QuantConfig

        quantizer = _quantizer("tflite")
        model = _int8(model, x, "tflite", quantizer, source, keep)
        options["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
    with tempfile.TemporaryDirectory() as tmp:
        litert_torch.convert(model, (x,), **options).export(os.path.join(tmp, "m.tflite"))
        return Path(tmp, "m.tflite").read_bytes()


def _pte_bytes(model: nn.Module, x: torch.Tensor, source: Any, keep: set[str]) -> bytes:
    with needs("Export to ExecuTorch (.pte)"):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    if source is not None:
        model = _int8(model, x, "pte", _quantizer("pte"), source, keep)
    program = torch.export.export(model, (x,))
    return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


def _coreml_model(model: nn.Module, x: torch.Tensor, int8: bool, meta: dict[str, Any]) -> Any:
    with needs("Export to Core ML"):
        import coremltools as ct

    program = torch.export.export(model, (x,)).run_decompositions({})
    ml = ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32,
    )  # fp32 as asked (Core ML defaults to fp16)
    spec = ml.get_spec()
    ct.utils.rename_feature(spec, spec.description.input[0].name, "input")
    ct.utils.rename_feature(spec, spec.description.output[0].name, output_name(meta))
    ml = ct.models.MLModel(spec, weights_dir=ml.weights_dir)
    if int8:
        from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

        config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric"))
        ml = linear_quantize_weights(ml, config)
    ml.user_defined_metadata["mobilenets"] = json.dumps(meta)
    kind = {
        "segmentation": "segmentation model (per-pixel logits)",
        "detection": "detector (boxes and class probabilities, before NMS)",
    }.get(meta["task"], "image classifier")
    ml.short_description = f"{meta['model']}: {len(meta['class_names'])}-class {kind} (mobilenets)"
    return ml


def phone_bytes(model: nn.Module, fmt: str, x: torch.Tensor, source: Any, keep: Collection[str] = ()) -> bytes:
    """A ``tflite`` or ``pte`` file's bytes for an eval-mode model taking ``x``; int8 when ``source`` is given
    (calibration images, with the modules ``keep``, :func:`.pt2e.float_layers` and
    :func:`.pt2e.float_outputs` left float; or
    the :class:`Plan` of a quantized TFLite import's own quantization).
    Attention (MobileNetV4's hybrids) is traced as explicit matmuls and softmax: the same numbers, and
    ExecuTorch's lowering of the fused kernel's output turned a later reshape into an impossible view."""
    keep = set(keep) | float_layers(model) | float_outputs(model)
    with quiet(), explicit_attention():
        return (_tflite_bytes if fmt == "tflite" else _pte_bytes)(phone_activations(model), x, source, keep)


def phone_int8(
    model: nn.Module, fmt: str, x: torch.Tensor, source: Any, val: Any = None, max_drop: float = 0.5
) -> tuple[bytes, dict[str, Any]]:
    """:func:`phone_bytes` in int8 and what it kept: with ``val`` (images and labels as numpy arrays, laid
    out as ``x``), the most sensitive layers float until top-1 in the runtime is within ``max_drop``
    points of fp32's (:mod:`.phone_budget`), refused in one sentence if it cannot be."""
    if isinstance(source, Plan):
        return phone_bytes(model, fmt, x, source), source.summary()
    info = {"quantization": "calibrated (PT2E)", "kept_float": sorted(float_layers(model))}
    if val is None:
        return phone_bytes(model, fmt, x, source), info
    images, labels = val
    reference = top1(open_runner("eager", model, "fp32"), images, labels)

    def drop_with(layers: list[str]) -> tuple[float, bytes]:
        data = phone_bytes(model, fmt, x, source, keep=layers)
        return reference - top1(open_runner(FORMAT_RUNTIMES[fmt], data, "int8"), images, labels), data

    first = drop_with([])
    kept, (drop, data) = [], first
    if drop > max_drop:
        with quiet():
            ranking = rank_layers(model, _quantizer(fmt), source, torch.from_numpy(images), info["kept_float"])
        kept, drop, data = search(ranking, drop_with, max_drop, len(labels), {0: first})
    info["kept_float"] += kept
    budget = {"val_images": len(labels), "val_top1_fp32": reference / 100, "max_drop": max_drop,
              "ptq_drop": first[0], "drop": drop, "kept_float": info["kept_float"]}  # fmt: skip
    return data, info | {"budget": budget}


def _check_runtime(fmt: str, data: bytes, reference: nn.Module, x: torch.Tensor, int8: bool) -> dict[str, Any]:
    """Run the export once in its own runtime: fp32 within 1e-4 of the outputs' scale (detectors: the same
    detections), int8 finite (detectors: in range, see :func:`.detection.check_int8_detector`)."""
    if fmt == "coreml":
        return {"runtime_check": "spec only: Core ML predictions need macOS"}

    run = open_runner(FORMAT_RUNTIMES[fmt], data, "int8" if int8 else "fp32")
    runtime = RUNTIMES[fmt]
    nhwc = isinstance(reference, NHWCInput)
    if isinstance(inner := reference.model if nhwc else reference, DetectionOutputs):

        def nchw_run(b: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(run((b.permute(0, 2, 3, 1) if nhwc else b).contiguous().numpy()))

        if int8:
            return {"runtime_check": runtime, **check_int8_detector(nchw_run, inner, runtime)}
        return {"runtime_check": runtime, "max_box_diff": check_phone_detector(nchw_run, inner, runtime)}
    batch = torch.cat([x, x.flip(-1) * 0.5])
    with torch.inference_mode():
        ref = reference(batch).numpy()
    got = run(batch.numpy())
    return {"runtime_check": runtime, "max_rel_diff": check_parity(runtime, got, ref, int8)}


def export_mobile(
    model: nn.Module,
    path: str | os.PathLike,
    format: str,
    img_size: int | None = None,
    class_names: list[str] | None = None,
    calib: Any = None,
    calib_size: int = 128,
    channels_last_input: bool = False,
    int8: bool = False,
    recalibrate: bool = False,
    val: str | os.PathLike | None = None,
    max_drop: float = 0.5,
) -> dict[str, Any]:
    """Write ``model`` as a ``.tflite``, ``.pte`` or Core ML ``.mlpackage`` at ``path``; int8 when
    ``int8`` or ``calib`` (a folder of images or an N x 3 x H x W tensor) is given: a model imported from a
    quantized TFLite file keeps that file's quantization in ``tflite`` and ``pte`` unless ``recalibrate``
    or ``val``. With ``val`` (labelled images, as ``eval --data`` takes) the most sensitive layers stay
    float until top-1 on them is within ``max_drop`` points of fp32 (:mod:`.phone_budget`).
    Checked in its runtime first (see the module doc); returns a report."""
    if format not in MOBILE_FORMATS:
        raise ExportError(f"Unknown phone format {format!r}; use one of {', '.join(MOBILE_FORMATS)}.")
    check_installed(format)
    path, size = check_exportable(model, path, img_size, format)
    meta = model_metadata(model, class_names, size)
    int8 = int8 or calib is not None
    valset = None
    if val is not None:
        check_budget_format(int8, format)
        valset = validation_set(val, meta["pretrained_cfg"], meta["class_names"])
    carry = format != "coreml" and not recalibrate and val is None
    source = int8_source(model, calib, size, calib_size, carry=carry) if int8 else None
    net = fuse(model.eval())
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    if channels_last_input:
        net, x = NHWCInput(net).eval(), x.permute(0, 2, 3, 1).contiguous()
        source = source.under("model") if isinstance(source, Plan) else _nhwc(source)
        valset = (_nhwc(valset[0]), valset[1]) if valset is not None else None
    meta |= {"format": format, "input_layout": "NHWC" if channels_last_input else "NCHW", "batch": 1,
             "precision": "int8" if int8 else "fp32"}  # fmt: skip
    report = {"path": str(path), "format": format, "img_size": size, "precision": meta["precision"],
              "input_layout": meta["input_layout"]}  # fmt: skip
    if format == "coreml":
        return report | _write_coreml(net, x, int8, meta, path)
    if source is None:
        data = phone_bytes(net, format, x, None)
    else:
        data, meta["int8"] = phone_int8(net, format, x, source, valset, max_drop)
        report |= {k: meta["int8"][k] for k in ("quantization", "budget") if k in meta["int8"]}
        if isinstance(source, Plan) and calib is not None:
            report["calibration"] = "not used: the TFLite file's own quantization was kept (--recalibrate to calibrate)"
    report |= _check_runtime(format, data, net, x, int8)
    if format == "tflite":
        meta["io"] = _tflite_io(data)
    atomic_write_bytes(sidecar(path), json.dumps(meta).encode())
    atomic_write_bytes(path, data)
    return report | {"bytes": len(data), "metadata": str(sidecar(path))}


def _write_coreml(net: nn.Module, x: torch.Tensor, int8: bool, meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """The Core ML package of ``net`` written at ``path``, metadata inside; its part of the report."""
    with quiet():
        ml = _coreml_model(net, x, int8, meta)
    check = _check_runtime("coreml", b"", net, x, int8)
    _save_package(ml, path)
    return check | {"bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file())}


def _nhwc(batch: Any) -> Any:
    """A batch of NCHW inputs (a tensor, an array or ``None``), channels last."""
    if isinstance(batch, np.ndarray):
        return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
    return None if batch is None else batch.permute(0, 2, 3, 1).contiguous()


def _tflite_io(data: bytes) -> dict[str, Any]:
    """What an app feeds a ``.tflite`` and gets back: float, or int8 with these scales (litert-torch's
    int8 files), per input and output name."""
    _, inp, out = litert_io(data)
    return {d["name"]: {"dtype": np.dtype(d["dtype"]).name, "shape": d["shape"].tolist(),
                        "scale_zero_point": list(map(float, d["quantization"]))} for d in (inp, out)}  # fmt: skip


def _save_package(ml: Any, path: Path) -> None:
    """Save a Core ML package (a folder) under a temporary name, then move it into place."""
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        ml.save(str(tmp))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
