"""Export to ONNX (checked against ONNX Runtime), TorchScript, a PT2 archive, or the phone formats of
:mod:`.mobile` (LiteRT, ExecuTorch, Core ML); atomically."""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_write_bytes
from ..extras import check, needs

FORMATS = ("onnx", "torchscript", "pt2", "tflite", "pte", "coreml")
OPSET = 18


class ExportError(ValueError):
    """An export that cannot be done as asked; nothing was written."""


def model_metadata(model: nn.Module, class_names: list[str] | None = None) -> dict[str, Any]:
    """What travels inside an export: architecture, preprocessing and class names."""
    from ..dense_eval import model_class_names
    from ..inference import _names_for

    if getattr(model, "task", "classification") != "classification":
        names = class_names or model_class_names(model)
    else:
        names = _names_for(getattr(model, "num_classes", 0), class_names or getattr(model, "class_names", None))
    meta = {
        "model": getattr(model, "model_name", None),
        "task": getattr(model, "task", "classification"),
        "model_args": getattr(model, "model_args", {}),
        "pretrained_cfg": getattr(model, "pretrained_cfg", {}),
        "class_names": names,
        "label_map": getattr(model, "label_map", None),
    }
    if hasattr(model, "selection"):  # a detector without its NMS: what the app does after it
        meta["outputs"] = "A x (4 + C): box x1, y1, x2, y2 as fractions of the side, then C class probabilities"
        meta["selection"] = model.selection
    return meta


def carry_description(wrapper: nn.Module, model: nn.Module) -> None:
    """Give a wrapper around ``model`` the attributes an export's metadata reads (name, arguments,
    preprocessing, classes, task)."""
    for name in ("model_name", "model_args", "pretrained_cfg", "num_classes", "class_names", "label_map", "task"):
        setattr(wrapper, name, getattr(model, name, None))


class SegmentationLogits(nn.Module):
    """A segmentation model as one tensor function (``{"out": logits}`` -> logits), for ONNX and int8."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        carry_description(self, model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def exportable(model: nn.Module, format: str, int8: bool = False) -> nn.Module:
    """The module to export: a segmentation model as its logits (every format; the phone formats at a fixed
    size), a detector whole for ONNX (NMS is an ONNX operator) and as its decoded boxes and class
    probabilities for the others (:class:`.detection.DetectionOutputs`: NMS goes in the app); int8 detection
    is for the phone formats only (the ONNX graph holds NMS)."""
    from .detection import DetectionOutputs

    task = getattr(model, "task", "classification")
    if task == "classification" or isinstance(model, (SegmentationLogits, DetectionOutputs)):
        return model
    if task == "segmentation":
        return SegmentationLogits(model)
    from .mobile import MOBILE_FORMATS

    if int8 and format not in MOBILE_FORMATS:
        raise ExportError("int8 detection is offered for the phone formats (tflite, pte, coreml), not for "
                          f"{format}; export {format} in fp32.")  # fmt: skip
    return model if format == "onnx" else DetectionOutputs(model.eval())


def _check_exportable(model: nn.Module, path: str | os.PathLike, img_size: int | None) -> tuple[Path, int]:
    """The output path and input size of an export, once checked: a writable folder, a classifier, a
    size of at least 32 (default: the model's own)."""
    from .detection import DetectionOutputs

    path = Path(path)
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ExportError(f"Cannot write {path}: {path.parent} is not a writable folder.")
    size = img_size or getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224))[1]
    if isinstance(model, DetectionOutputs) and size != model.size:
        raise ExportError(f"This detector resizes every image to {model.size} px; export it at that size "
                          f"(--img-size {model.size}) or build it with size={size}.")  # fmt: skip
    if getattr(model, "features_only", False):
        raise ExportError("Export needs a classifier; this model was built with features_only=True.")
    if size < 32:
        raise ExportError(f"--img-size must be at least 32 for export, got {size}.")
    return path, size


def _onnx_bytes(model: nn.Module, x: torch.Tensor) -> bytes:
    """The ONNX model (opset 18, dynamic batch (and height and width for segmentation), BN folded,
    HardSwish/HardSigmoid native).

    PyTorch's TorchScript-based exporter first: it writes the same graph as the dynamo exporter for
    these models in a tenth of the time (3 s vs 26 s for V3-Large here); the dynamo exporter if it fails.
    """
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(tmp, "model.onnx")
        names = dict(input_names=["input"], output_names=["logits"], opset_version=OPSET)
        axes = {0: "batch", 2: "height", 3: "width"} if isinstance(model, SegmentationLogits) else {0: "batch"}
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            try:
                torch.onnx.export(model, (x,), path, dynamo=False, dynamic_axes={"input": axes}, **names)
            except Exception:  # noqa: BLE001 - fall back to the other exporter
                torch.onnx.export(model, (x,), path, dynamo=True, dynamic_shapes={"x": {0: "batch"}},
                                  external_data=False, **names)  # fmt: skip
        return Path(path).read_bytes()


def _add_metadata(data: bytes, meta: dict[str, Any]) -> bytes:
    with needs("Export to ONNX"):
        import onnx

    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "mobilenets", json.dumps(meta)
    return proto.SerializeToString()


def read_metadata(proto: Any) -> dict[str, Any]:
    """The ``mobilenets`` metadata entry of an ONNX model proto (empty if it has none)."""
    entry = {p.key: p.value for p in proto.metadata_props}.get("mobilenets")
    return json.loads(entry) if entry else {}


RTOL = 1e-4  # an export's outputs may differ from PyTorch's by this fraction of their scale (max |output|)


def relative_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """Max |got - ref| over the scale of ``ref`` (its max |value|): the error a runtime adds, whatever the
    size of the logits (PyTorch fp32 against fp64 is about 1e-6 of it)."""
    return float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-12))


def check_parity(runtime: str, got: np.ndarray, ref: np.ndarray, int8: bool = False) -> float:
    """The one export check, for every format: finite outputs and, in fp32, within :data:`RTOL` of the
    outputs' scale of PyTorch's; raises :class:`ExportError` (nothing is written) otherwise."""
    rel = relative_diff(got, ref)
    if not np.isfinite(got).all() or (not int8 and rel > RTOL):
        raise ExportError(f"{runtime}'s outputs differ from PyTorch's by {rel:.1e} of their scale "
                          f"(> {RTOL}); nothing was written.")  # fmt: skip
    return rel


def check_onnx(data: bytes, model: nn.Module, x: torch.Tensor) -> float:
    """:func:`check_parity` of ONNX Runtime against ``model`` on ``x`` and on a batch of 2; the worst."""
    with needs("Checking an ONNX export"):
        import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (x, torch.cat([x, x.flip(0) * 0.5])):
        with torch.inference_mode():
            ref = model(batch).numpy()
        worst = max(worst, check_parity("ONNX Runtime", session.run(None, {"input": batch.numpy()})[0], ref))
    return worst


def export(
    model: nn.Module,
    path: str | os.PathLike,
    format: str = "onnx",
    img_size: int | None = None,
    class_names: list[str] | None = None,
    *,
    int8: bool = False,
    calib: Any = None,
    channels_last_input: bool = False,
) -> dict[str, Any]:
    """Write ``model`` to ``path`` as ONNX (checked in ONNX Runtime: :func:`check_parity`), TorchScript, PT2,
    or for phones ``tflite`` / ``pte`` / ``coreml`` (:func:`.mobile.export_mobile`). The input is NCHW
    float (NHWC with ``channels_last_input``, phone formats only), normalized as ``model.pretrained_cfg``
    says; every file carries that, the class names and the architecture. ``int8=True`` quantizes,
    calibrated on ``calib`` (a folder of images or a tensor): ONNX, LiteRT, ExecuTorch; Core ML int8 is
    weight-only. Returns a report."""
    if format not in FORMATS:
        raise ExportError(f"Unknown export format {format!r}; use one of {', '.join(FORMATS)}.")
    model = exportable(model, format, int8)
    if int8 and calib is None:
        raise ExportError("int8 needs calibration images: pass calib= a folder of images or a tensor.")
    if channels_last_input and format in ("onnx", "torchscript", "pt2"):
        raise ExportError("channels_last_input is for the phone formats (tflite, pte, coreml).")
    if format in ("tflite", "pte", "coreml"):
        from .mobile import export_mobile

        return export_mobile(model, path, format, img_size, class_names, calib if int8 else None,
                             channels_last_input=channels_last_input)  # fmt: skip
    if int8:
        if format != "onnx":
            raise ExportError(f"int8 is not offered for {format}; use onnx, tflite, pte or coreml.")
        from .quantize import export_int8

        return export_int8(model, path, calib, img_size)
    if format == "onnx":
        check("onnx", "Export to ONNX")
    model = model.eval()
    path, size = _check_exportable(model, path, img_size)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    meta = model_metadata(model, class_names)
    meta["pretrained_cfg"] = {**meta["pretrained_cfg"], "input_size": (3, size, size)}
    report: dict[str, Any] = {"path": str(path), "format": format, "img_size": size}
    from .detection import DetectionOutputs, detection_onnx

    if getattr(model, "task", None) == "detection" and not isinstance(model, DetectionOutputs):  # NMS inside
        data, report["max_box_diff_onnxruntime"] = detection_onnx(model, meta)
    elif format == "onnx":
        data = _add_metadata(_onnx_bytes(model, x), meta)
        report["max_rel_diff"] = check_onnx(data, model, x)
    elif format == "torchscript":
        buf = io.BytesIO()
        with torch.no_grad():
            traced = torch.jit.trace(model, x)
        torch.jit.save(traced, buf, _extra_files={"mobilenets.json": json.dumps(meta)})
        data = buf.getvalue()
    else:
        buf = io.BytesIO()
        x2 = torch.cat([x, x])  # batch 1 would be specialised to a constant
        program = torch.export.export(model, (x2,), dynamic_shapes={"x": {0: torch.export.Dim.AUTO}})
        torch.export.save(program, buf, extra_files={"mobilenets.json": json.dumps(meta)})
        data = buf.getvalue()
    atomic_write_bytes(path, data)
    report["bytes"] = len(data)
    return report
