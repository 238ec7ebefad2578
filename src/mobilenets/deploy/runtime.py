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

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..cpu import PRECISIONS, cpu_info
from ..extras import EXTRA_OF, check, has, install_command, needs
from .export import ExportError, _add_metadata, _onnx_bytes, model_metadata
from .fuse import fuse

BACKENDS = ("eager", "fused", "compile", "onnxruntime", "openvino", "litert", "executorch")
# Which backends compute each precision, and which of them ``deploy(backend="auto")`` measures (the phone
# runtimes take 20-60 s to convert for, so they are measured only when named).
PRECISION_BACKENDS = {
    "fp32": BACKENDS,
    "bf16": ("eager", "fused", "compile", "openvino"),
    "int8": ("onnxruntime", "openvino", "litert", "executorch"),
}
AUTO = {
    "fp32": ("fused", "onnxruntime", "openvino"),
    "bf16": ("fused", "openvino"),
    "int8": ("onnxruntime", "openvino"),
}
OPENVINO_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the parts left in float run in f32


class PrecisionError(ValueError):
    """A precision that this CPU or backend cannot keep."""


RUNTIME_PACKAGES = {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",),
                    "litert": ("litert_torch", "ai_edge_litert"), "executorch": ("executorch",)}  # fmt: skip


def install_hint(backends: list[str]) -> str:
    """What to pip install for missing backends."""
    return install_command(*(EXTRA_OF[p] for b in backends for p in RUNTIME_PACKAGES.get(b, ())))


def available(backend: str) -> bool:
    return backend in BACKENDS and all(has(p) for p in RUNTIME_PACKAGES.get(backend, ()))


def check_precision(precision: str, backend: str | None = None) -> None:
    """Raise :class:`PrecisionError` (one sentence) unless this CPU and ``backend`` can keep ``precision``."""
    reason = cpu_info().refusal(precision)
    if reason is None and backend is not None and backend not in PRECISION_BACKENDS[precision]:
        reason = (
            f"The {backend} backend does not run {precision}; use one of {', '.join(PRECISION_BACKENDS[precision])}."
        )
    if reason:
        raise PrecisionError(reason)


def _torch_runner(model: nn.Module, channels_last: bool, dtype: torch.dtype = torch.float32) -> Callable:
    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).to(dtype)
        if channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return model(t).float().numpy()

    return run


def _ort_runner(onnx: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    with needs("The onnxruntime backend"):
        import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def _openvino_runner(onnx: bytes, threads: int, precision: str = "fp32") -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO on the CPU with its inference precision set for ``precision`` and checked on the compiled
    model (:class:`PrecisionError` if OpenVINO chose another)."""
    with needs("The openvino backend"):
        import openvino as ov

    core = ov.Core()
    # Unpinned threads: pinned ones ran 1.2-1.6x slower on this project's shared 2-core machines.
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False,
              "INFERENCE_PRECISION_HINT": OPENVINO_HINT[precision]}  # fmt: skip
    compiled = core.compile_model(core.read_model(onnx), "CPU", config)
    got = compiled.get_property("INFERENCE_PRECISION_HINT")
    if got != getattr(ov.Type, OPENVINO_HINT[precision]):
        raise PrecisionError(f"OpenVINO compiled the model in {got.get_type_name()}, not {precision}, on this "
                             f"{cpu_info().model}; use another precision or backend.")  # fmt: skip
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:  # the input shared, not copied: 0.1-0.2 ms less per call
        request.set_input_tensor(ov.Tensor(x, shared_memory=True))
        request.infer()
        return request.get_output_tensor().data.copy()

    return run


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

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        expected = tuple(self.cfg["input_size"])
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"This {self.backend} predictor takes N x {' x '.join(map(str, expected))} inputs, "
                             f"got {tuple(x.shape)}; resize the images or deploy with img_size=.")  # fmt: skip
        if isinstance(x, torch.Tensor):
            return torch.from_numpy(self.run(np.ascontiguousarray(x.detach().cpu().float().numpy())))
        return self.run(np.ascontiguousarray(x, dtype=np.float32))

    def __repr__(self) -> str:
        size = "x".join(map(str, self.cfg["input_size"]))
        return (f"Predictor(backend={self.backend!r}, precision={self.precision!r}, input={size}, "
                f"classes={len(self.class_names)}, cpu={self.cpu!r})")  # fmt: skip


def build_runner(model: nn.Module, backend: str, threads: int, onnx: dict[str, bytes], calib: Any = None,
                 img_size: int = 224, precision: str = "fp32") -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    """One backend's batch function at ``precision``; ``onnx`` caches the fp32 / int8 exports between
    backends. Refuses (:class:`PrecisionError`) a precision the backend or this CPU cannot keep."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    check_precision(precision, backend)
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if backend == "eager":  # a bf16 copy: the caller's model stays as it is
        return _torch_runner(
            model.eval() if precision == "fp32" else copy.deepcopy(model).eval().to(dtype), False, dtype
        )
    if backend in ("fused", "compile"):
        fused = fuse(model).to(dtype=dtype, memory_format=torch.channels_last)
        return _torch_runner(torch.compile(fused) if backend == "compile" else fused, True, dtype)
    x = torch.zeros(1, 3, img_size, img_size)
    calib_cfg = {**model.pretrained_cfg, "input_size": (3, img_size, img_size)}
    if backend in ("litert", "executorch"):
        from .mobile import BACKEND_FORMATS, phone_bytes, phone_runner
        from .quantize import calibration_batch

        if precision == "int8" and calib is None:
            raise ExportError("int8 needs calibration data: pass calib= a tensor or a folder of images.")
        batch = calibration_batch(calib, calib_cfg) if precision == "int8" else None
        fmt = BACKEND_FORMATS[backend]
        return phone_runner(phone_bytes(fuse(model), fmt, x, batch), fmt, threads)
    check("onnx", f"The {backend} backend")
    if "fp32" not in onnx:
        onnx["fp32"] = _add_metadata(_onnx_bytes(model.eval(), x), model_metadata(model))
    if precision == "int8" and "int8" not in onnx:
        from .quantize import calibration_batch, quantize_onnx

        if calib is None:
            raise ExportError("int8 needs calibration data: pass calib= a tensor or a folder of images.")
        onnx["int8"] = quantize_onnx(onnx["fp32"], calibration_batch(calib, calib_cfg))
    data = onnx["int8" if precision == "int8" else "fp32"]
    return _ort_runner(data, threads) if backend == "onnxruntime" else _openvino_runner(data, threads, precision)


def measure_ms(run: Callable[[np.ndarray], Any], x: np.ndarray, repeats: int = 20,
               min_seconds: float = 0.0) -> list[float]:  # fmt: skip
    """Latencies (ms) of ``repeats`` calls after warm-up."""
    for _ in range(3):
        run(x)
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t) * 1e3)
    return times


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
) -> Predictor:
    """The model on the fastest CPU backend that keeps ``precision``, measured here at batch 1.

    ``precision``: ``"fp32"``, ``"bf16"`` (CPUs with native bf16 only; refused elsewhere) or ``"int8"``
    (NNCF post-training quantization to a QDQ ONNX model calibrated on ``calib``, a tensor or a folder of
    images, with the weight bits chosen for this CPU). ``backend="auto"`` measures every backend of
    :data:`AUTO` at that precision and at the higher ones this CPU keeps, and returns the fastest: on
    CPUs where int8 is slower than fp32 (AVX2 without VNNI) ``precision="int8"`` may so return an fp32
    predictor, never a lower precision than asked. Naming a backend runs exactly that backend and
    precision. ``Predictor.backend`` / ``.precision`` say what was chosen, ``.timings_ms`` what was measured.
    """
    check_precision(precision, None if backend == "auto" else backend)
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; use 'auto' or one of {', '.join(BACKENDS)}.")
    if getattr(model, "features_only", False):
        raise ValueError("deploy needs a classifier; this model was built with features_only=True.")
    threads = threads or min(2, torch.get_num_threads())
    size = img_size or model.pretrained_cfg["input_size"][1]
    candidates = auto_candidates(precision) if backend == "auto" else [(backend, precision)]
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    cache: dict[str, bytes] = {}
    runs, timings = {}, {}
    for name, prec in candidates:
        key = name if prec == "fp32" else f"{name} {prec}"
        runs[key] = (name, prec, build_runner(model, name, threads, cache, calib, size, prec))
        timings[key] = statistics.median(measure_ms(runs[key][2], x, repeats=15))
    name, prec, run = runs[min(timings, key=timings.get)]
    meta = model_metadata(model)
    cfg = {**meta["pretrained_cfg"], "input_size": (3, size, size)}
    onnx = cache.get("int8" if prec == "int8" else "fp32")
    return Predictor(name, prec, run, cfg, meta["class_names"], timings, onnx)
