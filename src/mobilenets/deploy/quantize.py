"""int8 post-training quantization: ONNX Runtime's static QDQ quantization of our ONNX export.

Chosen by measurement (benchmarks/RESULTS.md): the QDQ model it writes runs in ONNX Runtime and in
OpenVINO. Weights and activations are uint8 (per-channel weights, per-tensor activations, min/max
calibration on the user's images). On x86 CPUs without VNNI (AVX2, like this project's machines) the
u8 x s8 multiply-add saturates 16-bit sums; ONNX Runtime's advice is U8U8 or 7-bit weights. Measured on
Google's MobileNetV2 from TFLite, all 1300 real ImageNet images, calibrated on 245 ants/bees images
(fp32: 80.00% top-1): U8S8 78.77% (with 7-bit weights, also with entropy or percentile calibration),
U8U8 with 7-bit weights 79.15%, U8U8 79.77%. U8U8 it is.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import atomic_write_bytes
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


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over a tensor, one image at a time."""

    def __init__(self, batch: torch.Tensor) -> None:
        self.items = iter(batch.numpy()[:, None].astype(np.float32))

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self.items, None)
        return None if item is None else {"input": item}


def quantize_onnx(fp32: bytes, calib: torch.Tensor) -> bytes:
    """int8 QDQ ONNX model from an fp32 export and calibration inputs (metadata kept)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(src).write_bytes(fp32)
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, dst, _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QUInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)  # fmt: skip
        out = onnx.load(dst)
        meta = {p.key: p.value for p in onnx.load(src).metadata_props}
        del out.metadata_props[:]
        for key, value in meta.items():
            entry = out.metadata_props.add()
            entry.key, entry.value = key, value
        return out.SerializeToString()


def export_int8(
    model: torch.nn.Module, path: str | os.PathLike, calib: Any, img_size: int | None = None, calib_size: int = 128
) -> dict[str, Any]:
    """Export ``model`` to an int8 QDQ ONNX file at ``path`` calibrated on ``calib``."""
    from .export import _add_metadata, _check_exportable, _onnx_bytes, check_onnx, model_metadata

    path = Path(path)
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ExportError(f"Cannot write {path}: {path.parent} is not a writable folder.")
    size = img_size or model.pretrained_cfg["input_size"][1]
    _check_exportable(model, size)
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
    data = quantize_onnx(fp32, batch)
    atomic_write_bytes(path, data)
    return {"path": str(path), "format": "onnx-int8", "img_size": size, "bytes": len(data),
            "fp32_bytes": len(fp32), "calibration_images": len(batch)}  # fmt: skip
