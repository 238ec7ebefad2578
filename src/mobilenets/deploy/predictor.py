"""CPU inference backends behind one interface, and ``deploy``: the fastest one that keeps a precision.

Backends: ``eager`` (PyTorch as built), ``fused`` (BN folded, channels_last), ``compile``
(``torch.compile`` of the fused model), ``onnxruntime`` and ``openvino`` (our ONNX export; for int8 its
QDQ int8 export), and the phone runtimes on this CPU, ``litert`` and ``executorch`` (XNNPACK; fp32 and
PT2E int8; batch 1 files, so a batch runs image by image). Precisions, each a promise checked where it
is computed: ``fp32``; ``bf16`` (PyTorch with bf16 weights and activations, OpenVINO's bf16 inference
precision), only on CPUs with native bf16; ``int8`` (the QDQ file, its float parts in fp32; the phone
runtimes' PT2E files). OpenVINO picks bf16 by itself on CPUs with AMX or
AVX512-BF16, falls back to f32 silently on AVX2 ones and emulates bf16 on AVX-512 ones without BF16, so
its precision hint is always set and read back from the compiled model.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.accuracy_budget import check_max_drop, validation_set
from mobilenets.deploy.contract import model_metadata
from mobilenets.deploy.mobile import phone_bytes, phone_int8
from mobilenets.deploy.onnx import add_metadata, onnx_bytes
from mobilenets.deploy.quantize import carried_onnx, int8_source, quantize_onnx
from mobilenets.models.fuse import fuse
from mobilenets.runtime.files import BACKEND_FORMATS
from mobilenets.runtime.precision import AUTO, BACKENDS, available, check_precision
from mobilenets.runtime.runners import DTYPES, measure_ms, open_runner, torch_runner
from mobilenets.util.cpu import PRECISIONS, cpu_info, default_threads
from mobilenets.util.errors import ExportError, PrecisionError
from mobilenets.util.extras import check
from mobilenets.weights.tflite_quant import Plan


@dataclass(repr=False)
class Predictor:
    """A ready model on one backend at one precision: call it on an NCHW batch (numpy or torch) to get logits."""

    backend: str
    precision: str
    run: Callable[[np.ndarray], np.ndarray]
    cfg: dict[str, Any]
    class_names: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)
    onnx: bytes | None = None
    cpu: str = field(default_factory=lambda: cpu_info().summary)
    budget: dict[str, Any] | None = None  # int8 with an accuracy budget: what it measured and kept float

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        expected = tuple(self.cfg["input_size"])
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ExportError(f"This {self.backend} predictor takes N x {' x '.join(map(str, expected))} inputs, "
                             f"got {tuple(x.shape)}; resize the images or deploy with img_size=.")  # fmt: skip
        if isinstance(x, torch.Tensor):
            return torch.from_numpy(self.run(np.ascontiguousarray(x.detach().cpu().float().numpy())))
        return self.run(np.ascontiguousarray(x, dtype=np.float32))

    def __repr__(self) -> str:
        size = "x".join(map(str, self.cfg["input_size"]))
        return (f"Predictor(backend={self.backend!r}, precision={self.precision!r}, input={size}, "
                f"classes={len(self.class_names)}, cpu={self.cpu!r})")  # fmt: skip


def build_runner(model: nn.Module, backend: str, threads: int, onnx: dict[str, bytes], calib: Any = None,
                 img_size: int = 224, precision: str = "fp32", budget: dict[str, Any] | None = None
                 ) -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    """One backend's batch function at ``precision``; ``onnx`` caches the fp32 / int8 exports between
    backends. ``budget`` (``{"val": (images, labels), "max_drop": points}``): the int8 model keeps layers
    float until it is within the budget (:mod:`.accuracy_budget`, :mod:`.phone_budget`); what was measured is put in
    ``budget["report"]``. Refuses (:class:`PrecisionError`) a precision the backend or this CPU cannot keep."""
    if backend not in BACKENDS:
        raise PrecisionError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    check_precision(precision, backend)
    torch.set_num_threads(threads)
    if backend == "eager":  # bf16: a bf16 copy, the caller's model stays as it is
        return torch_runner(model, precision)
    if backend in ("fused", "compile"):
        fused = fuse(model).to(dtype=DTYPES[precision], memory_format=torch.channels_last)
        return torch_runner(torch.compile(fused) if backend == "compile" else fused, precision, channels_last=True)
    x = torch.zeros(1, 3, img_size, img_size)
    int8 = precision == "int8"
    val, max_drop = (budget["val"], budget["max_drop"]) if budget else (None, 0.5)
    if backend in ("litert", "executorch"):
        fmt, net = BACKEND_FORMATS[backend], fuse(model)
        if not int8:
            return open_runner(backend, phone_bytes(net, fmt, x, None), precision, threads)
        source = int8_source(model, calib, img_size, carry=budget is None)
        data, info = phone_int8(net, fmt, x, source, val, max_drop)
        if budget is not None:
            budget["report"] = info["budget"]
        return open_runner(backend, data, precision, threads)
    check("onnx", f"The {backend} backend")
    if "fp32" not in onnx:
        onnx["fp32"] = add_metadata(onnx_bytes(model.eval(), x), model_metadata(model))
    if int8 and "int8" not in onnx:
        source = int8_source(model, calib, img_size, carry=budget is None)
        if isinstance(source, Plan):  # a quantized TFLite file's own quantization
            onnx["int8"] = carried_onnx(model.eval(), x)
        else:
            onnx["int8"], report = quantize_onnx(onnx["fp32"], source, val=val, max_drop=max_drop)
            if budget is not None:
                budget["report"] = report
    return open_runner(backend, onnx["int8" if int8 else "fp32"], precision, threads)


def auto_candidates(precision: str) -> list[tuple[str, str]]:
    """(backend, precision) pairs ``deploy(backend="auto")`` measures for an asked ``precision``: that
    precision's backends and those of every higher precision this CPU keeps (never a lower one)."""
    order = PRECISIONS[::-1]  # int8 < bf16 < fp32
    keep = [p for p in order[order.index(precision) :] if cpu_info().refusal(p) is None]
    return [(b, p) for p in keep for b in AUTO[p] if available(b)]


def deploy(
    model: nn.Module,
    *,
    precision: str = "fp32",
    backend: str = "auto",
    calib: torch.Tensor | str | None = None,
    threads: int | None = None,
    img_size: int | None = None,
    val: str | None = None,
    max_drop: float = 0.5,
) -> Predictor:
    """The model on the fastest CPU backend that keeps ``precision``, measured here at batch 1.

    ``precision``: ``"fp32"``, ``"bf16"`` (CPUs with native bf16 only; refused elsewhere) or ``"int8"``
    (NNCF post-training quantization to a QDQ ONNX model calibrated on ``calib``, a tensor or a folder of
    images, with the weight bits chosen for this CPU; PT2E for LiteRT and ExecuTorch; a model imported from a
    quantized TFLite file runs on that file's own quantization in each, ``calib`` unused: ``val`` or ``del
    model.tflite_quantization`` calibrates it). ``backend="auto"`` measures every backend of :data:`AUTO`
    at that precision and at the higher ones this CPU keeps, and returns the fastest: on CPUs where int8 is
    slower than fp32 (AVX2 without VNNI) ``precision="int8"`` may so return an fp32 predictor, never a lower
    precision than asked. Naming a backend runs exactly that backend and precision. ``Predictor.backend`` /
    ``.precision`` say what was chosen, ``.timings_ms`` what was measured.
    ``val`` (labelled images, as ``mobilenets eval --data`` takes them) with ``precision="int8"``: the int8
    model keeps its most sensitive layers float until its top-1 on ``val`` is within ``max_drop`` points of
    fp32, or is refused (as ``export --int8 --max-drop --val``: NNCF's accuracy control in ONNX Runtime and
    OpenVINO, per-layer sensitivity in LiteRT and ExecuTorch); ``Predictor.budget`` says what it kept.
    """
    check_precision(precision, None if backend == "auto" else backend)
    if backend != "auto" and backend not in BACKENDS:
        raise PrecisionError(f"Unknown backend {backend!r}; use 'auto' or one of {', '.join(BACKENDS)}.")
    if getattr(model, "features_only", False):
        raise ExportError("deploy needs a classifier; this model was built with features_only=True.")
    threads = threads or default_threads()
    size = img_size or model.pretrained_cfg["input_size"][1]
    candidates = auto_candidates(precision) if backend == "auto" else [(backend, precision)]
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    cache: dict[str, bytes] = {}
    budget = _budget(model, precision, size, val, max_drop)
    runs, timings = {}, {}
    for name, prec in candidates:
        key = name if prec == "fp32" else f"{name} {prec}"
        int8_budget = budget if prec == "int8" else None
        runs[key] = (name, prec, build_runner(model, name, threads, cache, calib, size, prec, int8_budget))
        timings[key] = statistics.median(measure_ms(runs[key][2], x, repeats=15))
    name, prec, run = runs[min(timings, key=timings.get)]
    meta = model_metadata(model, size=size)
    cfg = meta["pretrained_cfg"]
    onnx = cache.get("int8" if prec == "int8" else "fp32")
    report = budget.get("report") if budget and prec == "int8" else None
    return Predictor(name, prec, run, cfg, meta["class_names"], timings, onnx, budget=report)


def _budget(model: nn.Module, precision: str, size: int, val: str | None, max_drop: float) -> dict[str, Any] | None:
    """The accuracy budget :func:`build_runner` takes, checked; ``None`` without ``val``."""
    if val is None:
        return None
    if precision != "int8":
        raise ExportError("An accuracy budget (val=, max_drop=) goes with precision='int8'.")
    check_max_drop(max_drop)
    meta = model_metadata(model, size=size)
    return {"val": validation_set(val, meta["pretrained_cfg"], meta["class_names"]), "max_drop": max_drop}
