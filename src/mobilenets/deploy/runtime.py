"""CPU inference backends behind one interface, and ``deploy``: the fastest one, chosen by measurement.

Backends: ``eager`` (PyTorch as built), ``fused`` (BN folded, channels_last), ``compile``
(``torch.compile`` of the fused model), ``onnxruntime`` and ``openvino`` (fp32 ONNX export), ``int8``
(the int8 QDQ export in OpenVINO or ONNX Runtime, whichever is faster here).
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .export import ExportError, _add_metadata, _onnx_bytes, model_metadata
from .fuse import fuse

BACKENDS = ("eager", "fused", "compile", "onnxruntime", "openvino", "int8")
AUTO_FP32 = ("fused", "onnxruntime", "openvino")


def available(backend: str) -> bool:
    if backend in ("onnxruntime", "int8"):  # int8 always has ONNX Runtime, OpenVINO when installed
        return importlib.util.find_spec("onnxruntime") is not None
    if backend == "openvino":
        return importlib.util.find_spec("openvino") is not None
    return backend in BACKENDS


def _torch_runner(model: nn.Module, channels_last: bool) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        if channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return model(t).numpy()

    return run


def _ort_runner(onnx: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def _openvino_runner(onnx: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import openvino as ov

    core = ov.Core()
    # Unpinned threads: pinned ones ran 1.2-1.6x slower on this project's shared 2-core machines.
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
    compiled = core.compile_model(core.read_model(onnx), "CPU", config)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:  # the input shared, not copied: 0.1-0.2 ms less per call
        request.set_input_tensor(ov.Tensor(x, shared_memory=True))
        request.infer()
        return request.get_output_tensor().data.copy()

    return run


def int8_runner(onnx: bytes, threads: int, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """An int8 QDQ model in whichever of OpenVINO and ONNX Runtime runs ``x`` faster here (OpenVINO, by
    about 3x, on the AVX2 machines measured)."""
    runs = [_ort_runner(onnx, threads)] + ([_openvino_runner(onnx, threads)] if available("openvino") else [])
    return min(runs, key=lambda run: statistics.median(measure_ms(run, x, repeats=10)))


@dataclass
class Predictor:
    """A ready model on one backend: call it on an NCHW batch (numpy or torch) to get logits."""

    backend: str
    precision: str
    run: Callable[[np.ndarray], np.ndarray]
    cfg: dict[str, Any]
    class_names: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)
    onnx: bytes | None = None

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        expected = tuple(self.cfg["input_size"])
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"This {self.backend} predictor takes N x {' x '.join(map(str, expected))} inputs, "
                             f"got {tuple(x.shape)}; resize the images or deploy with img_size=.")  # fmt: skip
        if isinstance(x, torch.Tensor):
            return torch.from_numpy(self.run(np.ascontiguousarray(x.detach().cpu().float().numpy())))
        return self.run(np.ascontiguousarray(x, dtype=np.float32))


def build_runner(model: nn.Module, backend: str, threads: int, onnx: dict[str, bytes],
                 calib: Any = None, img_size: int = 224) -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    """One backend's batch function; ``onnx`` caches the fp32 / int8 exports between backends."""
    torch.set_num_threads(threads)
    if backend == "eager":
        return _torch_runner(model.eval(), False)
    if backend == "fused":
        return _torch_runner(fuse(model).to(memory_format=torch.channels_last), True)
    if backend == "compile":
        compiled = torch.compile(fuse(model).to(memory_format=torch.channels_last))
        return _torch_runner(compiled, True)
    x = torch.zeros(1, 3, img_size, img_size)
    if "fp32" not in onnx:
        onnx["fp32"] = _add_metadata(_onnx_bytes(model.eval(), x), model_metadata(model))
    if backend == "onnxruntime":
        return _ort_runner(onnx["fp32"], threads)
    if backend == "openvino":
        return _openvino_runner(onnx["fp32"], threads)
    if backend == "int8":
        if "int8" not in onnx:
            from .quantize import calibration_batch, quantize_onnx

            if calib is None:
                raise ExportError("int8 needs calibration data: pass calib= a tensor or a folder of images.")
            cfg = {**model.pretrained_cfg, "input_size": (3, img_size, img_size)}
            onnx["int8"] = quantize_onnx(onnx["fp32"], calibration_batch(calib, cfg))
        return int8_runner(onnx["int8"], threads, x.numpy())
    raise ValueError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")


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


def deploy(
    model: nn.Module,
    *,
    precision: str = "fp32",
    backend: str = "auto",
    calib: torch.Tensor | str | None = None,
    threads: int | None = None,
    img_size: int | None = None,
) -> Predictor:
    """The model on the fastest available CPU backend, measured here at batch 1.

    ``precision="int8"`` quantizes (NNCF, QDQ, calibrated on ``calib``: a tensor or a folder of
    images, searched recursively) and runs it in OpenVINO or ONNX Runtime, whichever is faster.
    ``backend="auto"`` measures ``fused``, ``onnxruntime`` and ``openvino`` (fp32) and keeps the
    fastest; any name in ``BACKENDS`` forces one.
    """
    if precision not in ("fp32", "int8"):
        raise ValueError(f"precision must be 'fp32' or 'int8', got {precision!r}.")
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; use 'auto' or one of {', '.join(BACKENDS)}.")
    if getattr(model, "features_only", False):
        raise ValueError("deploy needs a classifier; this model was built with features_only=True.")
    threads = threads or min(2, torch.get_num_threads())
    size = img_size or model.pretrained_cfg["input_size"][1]
    if precision == "int8":
        candidates = ["int8"]
    elif backend == "auto":
        candidates = [b for b in AUTO_FP32 if available(b)]
    else:
        candidates = [backend]
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    cache: dict[str, bytes] = {}
    best: tuple[float, str, Callable] | None = None
    timings = {}
    for name in candidates:
        run = build_runner(model, name, threads, cache, calib, size)
        timings[name] = statistics.median(measure_ms(run, x, repeats=15))
        if best is None or timings[name] < best[0]:
            best = (timings[name], name, run)
    meta = model_metadata(model)
    cfg = {**meta["pretrained_cfg"], "input_size": (3, size, size)}
    return Predictor(best[1], precision, best[2], cfg, meta["class_names"], timings,
                     cache.get("int8" if precision == "int8" else "fp32"))  # fmt: skip
