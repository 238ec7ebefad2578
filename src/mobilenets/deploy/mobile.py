"""Phone formats: LiteRT ``.tflite``, ExecuTorch ``.pte`` (XNNPACK delegate) and Core ML ``.mlpackage``.

Each export starts from the fused model (BN folded), fp32 or int8, with a static batch of 1 as phone apps
run it, and is run once in its own runtime before it is kept (LiteRT's interpreter, ExecuTorch's runtime;
Core ML can only be inspected on Linux: predictions need macOS). An fp32 file that departs from PyTorch
by more than 1e-4 of the logits' scale is refused and nothing is left behind.

int8: ExecuTorch through PT2E with ``XNNPACKQuantizer``, LiteRT through litert-torch's PT2E quantizer
(ai-edge-quantizer's static recipe breaks the squeeze-excite gating of V3), both symmetric per-channel
weights and per-tensor activations calibrated on the user's images; Core ML int8 is weight-only
(``linear_quantize_weights``): activation quantization needs predictions, so a Mac.

The class names and preprocessing travel with every file: inside the Core ML model's metadata, and in a
JSON file with the same stem beside ``.tflite`` and ``.pte`` files (which carry no such metadata here).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_write_bytes
from ..extras import check, needs
from ..models.blocks import explicit_attention
from .export import ExportError, check_parity, model_metadata
from .fuse import fuse

MOBILE_FORMATS = ("tflite", "pte", "coreml")
SUFFIXES = {"tflite": ".tflite", "pte": ".pte", "coreml": ".mlpackage"}


def check_installed(fmt: str) -> None:
    """One sentence naming the extra when a format's converter or runtime is missing."""
    check("mobile", f"--format {fmt}")


class NHWCInput(nn.Module):
    """Takes NHWC images, as Android and iOS camera buffers are laid out, and runs ``model`` on NCHW."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2))


@contextlib.contextmanager
def _quiet():
    """The converters' and runtimes' progress output, logs and warnings (Python's and their native
    libraries', written straight to file descriptor 2) kept off the user's terminal."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _pt2e(model: nn.Module, x: torch.Tensor, quantizer: Any, calib: torch.Tensor, fold: bool = True) -> nn.Module:
    """The PT2E int8 model: prepared, calibrated one image at a time (the exported batch size), converted."""
    with needs("int8 for the phone formats"):
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), quantizer)
    with torch.no_grad():
        for image in calib:
            prepared(image[None])
    return convert_pt2e(prepared, fold_quantize=fold)


class Clamp6(nn.Module):
    """ReLU6 written as ``clamp(x, 0, 6)``: the same numbers, but the int8 conversions keep it right, which
    they do not for ReLU6's ``hardtanh``. Measured on Google's MobileNetV2: LiteRT int8 agreed with the
    fake-quantized model on 43% of images with ``hardtanh``, 97% with ``clamp`` (top-1 79.08%);
    ExecuTorch int8 top-1 went from 78.62% to 79.00%."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, 0.0, 6.0)


def _relu6_as_clamp(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.ReLU6`` replaced by :class:`Clamp6`."""
    model = copy.deepcopy(model)
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, Clamp6())
    return model


def _tflite_bytes(model: nn.Module, x: torch.Tensor, calib: torch.Tensor | None) -> bytes:
    with needs("Export to LiteRT (.tflite)"):
        import litert_torch

    options = {}
    if calib is not None:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig

        quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        model = _pt2e(model, x, quantizer, calib, fold=False)
        options["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
    with tempfile.TemporaryDirectory() as tmp:
        litert_torch.convert(model, (x,), **options).export(os.path.join(tmp, "m.tflite"))
        return Path(tmp, "m.tflite").read_bytes()


def _pte_bytes(model: nn.Module, x: torch.Tensor, calib: torch.Tensor | None) -> bytes:
    with needs("Export to ExecuTorch (.pte)"):
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    if calib is not None:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        model = _pt2e(model, x, quantizer, calib)
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


def output_name(meta: dict[str, Any]) -> str:
    """The output's name in a Core ML model: ``detections`` for a detector (boxes and probabilities),
    ``logits`` for the others."""
    return "detections" if meta.get("task") == "detection" else "logits"


def phone_bytes(model: nn.Module, fmt: str, x: torch.Tensor, calib: torch.Tensor | None) -> bytes:
    """A ``tflite`` or ``pte`` file's bytes for an eval-mode model taking ``x``; int8 when ``calib`` is given.
    Attention (MobileNetV4's hybrids) is traced as explicit matmuls and softmax: the same numbers, and
    ExecuTorch's lowering of the fused kernel's output turned a later reshape into an impossible view."""
    with _quiet(), explicit_attention():
        return (_tflite_bytes if fmt == "tflite" else _pte_bytes)(_relu6_as_clamp(model), x, calib)


def sidecar(path: Path) -> Path:
    """The JSON file that carries a ``.tflite`` / ``.pte`` export's classes and preprocessing: the file's
    name plus ``.json`` (``m.tflite.json``), so that a ``.tflite`` and a ``.pte`` of one stem, or a
    training folder's ``model.json``, never share one."""
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    side = sidecar(path)
    return json.loads(side.read_text()) if side.is_file() else None


@contextlib.contextmanager
def _as_file(data: bytes | str, suffix: str) -> Iterator[str]:
    """A path for a model given as bytes (a temporary file, removed once loaded) or as a path.

    The runtimes load from a path, where they own what they read: loaded from Python bytes, ExecuTorch
    read the buffer after Python had freed it (a segmentation fault when the runner was collected)."""
    if not isinstance(data, bytes):
        yield str(data)
        return
    fd, name = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield name
    finally:
        os.unlink(name)


def litert_io(data: bytes | str, threads: int = 2) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """LiteRT's interpreter over a ``.tflite`` (bytes or path), with its input and output details."""
    with needs("Running a .tflite file"):
        from ai_edge_litert.interpreter import Interpreter

    with _quiet(), _as_file(data, ".tflite") as path:
        interpreter = Interpreter(model_path=path, num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter, interpreter.get_input_details()[0], interpreter.get_output_details()[0]


def litert_runner(data: bytes | str, threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """A batch function over a ``.tflite`` file (its bytes or path) in LiteRT's interpreter (XNNPACK),
    one image at a time (the file's batch is 1), float in and out: int8 inputs and outputs (what
    litert-torch's int8 files have) are quantized and dequantized with the file's own scales."""
    interpreter, inp, out = litert_io(data, threads)
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]

    def run(x: np.ndarray) -> np.ndarray:
        outs = []
        for image in x:
            image = image[None].astype(np.float32)
            if in_scale:
                info = np.iinfo(inp["dtype"])
                image = np.clip(np.round(image / in_scale) + in_zero, info.min, info.max).astype(inp["dtype"])
            interpreter.set_tensor(inp["index"], np.ascontiguousarray(image))
            interpreter.invoke()
            y = interpreter.get_tensor(out["index"])
            outs.append((y.astype(np.float32) - out_zero) * out_scale if out_scale else y.copy())
        return np.concatenate(outs)

    return run


RUNTIMES = {"tflite": "LiteRT", "pte": "ExecuTorch"}  # each phone format's runtime here
BACKEND_FORMATS = {"litert": "tflite", "executorch": "pte"}  # ``bench`` backend -> phone format


def phone_runner(data: bytes | str, fmt: str, threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """A batch function over a ``.tflite`` or ``.pte`` file (its bytes or path) in its own runtime."""
    return (litert_runner if fmt == "tflite" else executorch_runner)(data, threads)


_EXECUTORCH_THREADS: list[int] = []  # the thread count ExecuTorch's pool was last reset to


def executorch_runner(data: bytes | str, threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """A batch function over a ``.pte`` program (bytes or path) in ExecuTorch's runtime (XNNPACK), one
    image at a time. Threads are set through ExecuTorch's only handle for them, a private call that
    replaces the process's thread pool under every program already loaded: it is made only when the
    count changes (in practice once per process), never between loads at the same count."""
    with _quiet():
        with needs("Running a .pte file"):
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime

        if _EXECUTORCH_THREADS[-1:] != [threads]:
            _unsafe_reset_threadpool(threads)
            _EXECUTORCH_THREADS.append(threads)
        with _as_file(data, ".pte") as path:
            program = Runtime.get().load_program(path)
            method = program.load_method("forward")

    # One tuple holds both: CPython frees a tuple's items last to first, so the method goes before the
    # program it runs from (as a default argument the program was freed first: defaults go before closures).
    loaded = (program, method)

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([loaded[1].execute((torch.from_numpy(image[None]).float(),))[0].numpy() for image in x])

    return run


def _check_runtime(fmt: str, data: bytes, reference: nn.Module, x: torch.Tensor, int8: bool) -> dict[str, Any]:
    """Run the export once in its own runtime: fp32 within 1e-4 of the outputs' scale (detectors: the same
    detections), int8 finite (detectors: in range, see :func:`.detection.check_int8_detector`)."""
    if fmt == "coreml":
        return {"runtime_check": "spec only: Core ML predictions need macOS"}
    from .detection import DetectionOutputs, check_int8_detector, check_phone_detector

    run, runtime = phone_runner(data, fmt), RUNTIMES[fmt]
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
) -> dict[str, Any]:
    """Write ``model`` as a ``.tflite``, ``.pte`` or Core ML ``.mlpackage`` at ``path``; int8 when
    ``calib`` (a folder of images or an N x 3 x H x W tensor) is given. Checked in its runtime first
    (see the module doc); returns a report."""
    from .export import _check_exportable
    from .quantize import calibration_batch

    if format not in MOBILE_FORMATS:
        raise ExportError(f"Unknown phone format {format!r}; use one of {', '.join(MOBILE_FORMATS)}.")
    suffix = SUFFIXES[format]
    if Path(path).suffix != suffix:
        raise ExportError(f"A {format} export is a {suffix} file; name the output {Path(path).stem}{suffix}.")
    check_installed(format)
    path, size = _check_exportable(model, path, img_size)
    meta = model_metadata(model, class_names)
    cfg = meta["pretrained_cfg"] = {**meta["pretrained_cfg"], "input_size": (3, size, size)}
    batch = calibration_batch(calib, cfg, calib_size) if calib is not None else None
    if batch is not None and tuple(batch.shape[-2:]) != (size, size):
        raise ExportError(f"Calibration inputs are {tuple(batch.shape[-2:])}, but the export is {size}x{size}.")
    net = fuse(model.eval())
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    if channels_last_input:
        net, x = NHWCInput(net).eval(), x.permute(0, 2, 3, 1).contiguous()
        batch = batch.permute(0, 2, 3, 1).contiguous() if batch is not None else None
    meta |= {"format": format, "input_layout": "NHWC" if channels_last_input else "NCHW", "batch": 1,
             "precision": "int8" if batch is not None else "fp32"}  # fmt: skip
    int8 = batch is not None
    if format == "coreml":
        with _quiet():
            ml = _coreml_model(net, x, int8, meta)
    else:
        data = phone_bytes(net, format, x, batch)
    report = {"path": str(path), "format": format, "img_size": size, "precision": meta["precision"],
              "input_layout": meta["input_layout"]}  # fmt: skip
    if format == "coreml":
        report |= _check_runtime(format, b"", net, x, int8)
        _save_package(ml, path)
        report["bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return report
    report |= _check_runtime(format, data, net, x, int8)
    if format == "tflite":  # what an app feeds: float, or int8 with these scales (litert-torch's int8 files)
        _, inp, out = litert_io(data)
        meta["io"] = {
            d["name"]: {"dtype": np.dtype(d["dtype"]).name, "shape": d["shape"].tolist(),
                        "scale_zero_point": list(map(float, d["quantization"]))}
            for d in (inp, out)
        }  # fmt: skip
    atomic_write_bytes(sidecar(path), json.dumps(meta).encode())
    atomic_write_bytes(path, data)
    return report | {"bytes": len(data), "metadata": str(sidecar(path))}


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


def coreml_runner(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """A batch function over a Core ML package; predictions exist only on macOS."""
    if platform.system() != "Darwin":
        raise ExportError(f"{Path(path).name} is a Core ML model: its predictions need macOS (coremltools "
                          "cannot run it on Linux); evaluate the .tflite or .pte export here instead.")  # fmt: skip
    check_installed("coreml")
    with needs("Running a Core ML model"):
        import coremltools as ct

    ml = ct.models.MLModel(str(path))
    name = output_name(json.loads(ml.user_defined_metadata["mobilenets"]))
    return lambda x: np.concatenate([ml.predict({"input": image[None]})[name] for image in x])
