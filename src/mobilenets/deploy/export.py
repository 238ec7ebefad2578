"""Export to ONNX (checked against ONNX Runtime), TorchScript, a PT2 archive, or the phone formats of
:mod:`.mobile` (LiteRT, ExecuTorch, Core ML); atomically."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import torch
from torch import nn

from mobilenets.deploy.accuracy_budget import check_budget_format
from mobilenets.deploy.contract import check_output, model_metadata
from mobilenets.deploy.detection import detection_onnx
from mobilenets.deploy.mobile import export_mobile
from mobilenets.deploy.onnx import add_metadata, check_onnx, onnx_bytes
from mobilenets.deploy.quantize import check_calib_size, export_int8
from mobilenets.deploy.wrappers import DetectionOutputs, check_exportable, exportable
from mobilenets.runtime.files import MOBILE_FORMATS
from mobilenets.util.errors import ExportError
from mobilenets.util.extras import check
from mobilenets.util.files import atomic_write_bytes


def export(
    model: nn.Module,
    path: str | os.PathLike,
    format: str = "onnx",
    img_size: int | None = None,
    class_names: list[str] | None = None,
    *,
    int8: bool = False,
    calib: Any = None,
    calib_size: int = 128,
    val: str | os.PathLike | None = None,
    max_drop: float = 0.5,
    channels_last_input: bool = False,
    recalibrate: bool = False,
) -> dict[str, Any]:
    """Write ``model`` to ``path`` as ONNX (checked in ONNX Runtime: :func:`check_parity`), TorchScript, PT2,
    or for phones ``tflite`` / ``pte`` / ``coreml`` (:func:`.mobile.export_mobile`). The input is NCHW
    float (NHWC with ``channels_last_input``, phone formats only), normalized as ``model.pretrained_cfg``
    says; every file carries that, the class names and the architecture. ``int8=True`` quantizes,
    calibrated on ``calib`` (a folder of images, ``calib_size`` of them read, or a tensor): ONNX, LiteRT,
    ExecuTorch; Core ML int8 is weight-only. int8 with ``val`` (labelled images; ONNX, LiteRT, ExecuTorch)
    keeps the most sensitive layers float until top-1 on them is within ``max_drop`` points of fp32. A model
    imported from a quantized TFLite file keeps that file's quantization in int8 ONNX, LiteRT and ExecuTorch
    unless ``recalibrate`` or ``val``. Returns a report."""
    check_output(path, format)
    if int8:
        check_calib_size(calib_size)
    model = exportable(model, format, int8)
    if val is not None:
        check_budget_format(int8, format)
    if channels_last_input and format not in MOBILE_FORMATS:
        raise ExportError("channels_last_input is for the phone formats (tflite, pte, coreml).")
    if format in ("tflite", "pte", "coreml"):
        return export_mobile(model, path, format, img_size, class_names, calib if int8 else None, calib_size,
                             channels_last_input=channels_last_input, int8=int8, recalibrate=recalibrate,
                             val=val, max_drop=max_drop)  # fmt: skip
    if int8:
        if format != "onnx":
            raise ExportError(f"int8 is not offered for {format}; use onnx, tflite, pte or coreml.")

        return export_int8(
            model, path, calib, img_size, calib_size, val=val, max_drop=max_drop, recalibrate=recalibrate
        )
    if format == "onnx":
        check("onnx", "Export to ONNX")
    model = model.eval()
    path, size = check_exportable(model, path, img_size, format)
    meta = model_metadata(model, class_names, size)
    report: dict[str, Any] = {"path": str(path), "format": format, "img_size": size}
    data, checks = _desktop_bytes(model, format, size, meta)
    atomic_write_bytes(path, data)
    return report | checks | {"bytes": len(data)}


def _desktop_bytes(model: nn.Module, format: str, size: int, meta: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """An ONNX (checked in ONNX Runtime; a detector whole, NMS inside), TorchScript or PT2 file's bytes,
    with ``meta`` inside, and what the check measured."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    if getattr(model, "task", None) == "detection" and not isinstance(model, DetectionOutputs):
        data, diff = detection_onnx(model, meta)
        return data, {"max_box_diff_onnxruntime": diff}
    if format == "onnx":
        data = add_metadata(onnx_bytes(model, x), meta)
        return data, {"max_rel_diff": check_onnx(data, model, x)}
    buf = io.BytesIO()
    if format == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, x)
        torch.jit.save(traced, buf, _extra_files={"mobilenets.json": json.dumps(meta)})
    else:
        x2 = torch.cat([x, x])  # batch 1 would be specialised to a constant
        program = torch.export.export(model, (x2,), dynamic_shapes={"x": {0: torch.export.Dim.AUTO}})
        torch.export.save(program, buf, extra_files={"mobilenets.json": json.dumps(meta)})
    return buf.getvalue(), {}
