"""One runner per runtime, one interface: ``open_runner(runtime, model_or_file, precision, threads)``.

A runner is a batch function: a float NCHW array in (NHWC for files exported with an NHWC input), the
model's outputs out, as numpy arrays (PyTorch's also takes and gives tensors). The precision is always
given, and checked against the runtime and this CPU (:func:`.precision.check_precision`) before anything
loads: for a file it is what the file holds (``int8`` for a QDQ ONNX or a PT2E phone file), for OpenVINO
the inference precision it is compiled for (read back from the compiled model), for PyTorch the dtype of
the weights and activations. The phone files have a batch of 1: a batch runs image by image.

Every ONNX Runtime session in the package is made by :func:`onnx_session`, every LiteRT interpreter by
:func:`litert_io`. ``threads`` left out is :func:`.cpu.default_threads`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.runtime.files import check_installed, output_name
from mobilenets.runtime.precision import check_precision
from mobilenets.util.cpu import cpu_info, default_threads
from mobilenets.util.errors import PrecisionError, RuntimeUnavailable
from mobilenets.util.extras import needs
from mobilenets.util.files import as_file
from mobilenets.util.quiet import quiet

Runner = Callable[[np.ndarray], np.ndarray]
OPENVINO_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the parts left in float run in f32
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def torch_runner(model: nn.Module, precision: str = "fp32", *, task: str = "classification",
                 channels_last: bool = False, amp: Callable[[], Any] = contextlib.nullcontext) -> Callable:  # fmt: skip
    """``model`` in eval mode without autograd, at ``precision`` (``bf16``: a bf16 copy unless it is one
    already), on its device: tensors in and out, or numpy arrays in and out. Segmentation gives its ``out``
    logits; detection takes a list of [0, 1] CHW images and gives torchvision's detections. ``amp``: an
    autocast context for training's evaluation."""
    check_precision(precision, "eager")
    dtype = DTYPES[precision]
    param = next(model.parameters())
    model = (copy.deepcopy(model).to(dtype) if param.dtype != dtype else model).eval()
    device = param.device

    def run(batch: Any) -> Any:
        if task == "detection":
            with torch.inference_mode(), amp():
                return model([im.to(device) for im in batch])
        numpy = isinstance(batch, np.ndarray)
        x = (torch.from_numpy(batch) if numpy else batch).to(device, dtype)
        with torch.inference_mode(), amp():
            y = model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        y = (y["out"] if task == "segmentation" else y).float()
        return y.numpy() if numpy else y

    return run


def onnx_session(data: bytes | str | os.PathLike, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session over an ONNX model (bytes or path), all graph optimizations on;
    ``threads`` intra-op threads (default: as many as PyTorch uses, one per core unless ``OMP_NUM_THREADS``
    says fewer)."""
    with needs("Running an ONNX model"):
        import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads or torch.get_num_threads(), 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = data if isinstance(data, bytes) else str(data)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def onnxruntime_runner(data: bytes | str, precision: str, threads: int | None = None) -> Runner:
    """An ONNX model (fp32, or the QDQ int8 export) in ONNX Runtime; first input to first output."""
    check_precision(precision, "onnxruntime")
    session = onnx_session(data, threads or default_threads())
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def openvino_runner(data: bytes | str, precision: str, threads: int | None = None) -> Runner:
    """OpenVINO on the CPU with its inference precision set for ``precision`` and checked on the compiled
    model (:class:`PrecisionError` if OpenVINO chose another)."""
    check_precision(precision, "openvino")
    with needs("The openvino backend"):
        import openvino as ov

    core = ov.Core()
    # Unpinned threads: pinned ones ran 1.2-1.6x slower on this project's shared 2-core machines.
    config = {"INFERENCE_NUM_THREADS": threads or default_threads(), "PERFORMANCE_HINT": "LATENCY",
              "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": OPENVINO_HINT[precision]}  # fmt: skip
    model = core.read_model(data) if isinstance(data, bytes) else core.read_model(str(data))
    compiled = core.compile_model(model, "CPU", config)
    got = compiled.get_property("INFERENCE_PRECISION_HINT")
    if got != getattr(ov.Type, OPENVINO_HINT[precision]):
        raise PrecisionError(f"OpenVINO compiled the model in {got.get_type_name()}, not {precision}, on this "
                             f"{cpu_info().model}; use another precision or backend.")  # fmt: skip
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:  # the input shared, not copied: 0.1-0.2 ms less per call
        request.set_input_tensor(ov.Tensor(np.ascontiguousarray(x, dtype=np.float32), shared_memory=True))
        request.infer()
        return request.get_output_tensor().data.copy()

    return run


def openvino_kernels(data: bytes | str, x: np.ndarray) -> list[tuple[str, str, str]]:
    """(operation, kernel, node name) of each operation OpenVINO executed on ``x``, as its profiling
    counters name them: e.g. ``("Convolution", "brgconv_avx512_amx_1x1_I8", "/blocks/...")``. With the
    f32 hint, as :func:`openvino_runner` compiles int8 files."""
    with needs("The openvino backend"):
        import openvino as ov

    config = {"INFERENCE_NUM_THREADS": default_threads(), "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True}
    core = ov.Core()
    model = core.read_model(data) if isinstance(data, bytes) else core.read_model(str(data))
    request = core.compile_model(model, "CPU", config).create_infer_request()
    request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
    done = [p for p in request.get_profiling_info() if p.status.name == "EXECUTED"]
    return [(p.node_type, p.exec_type, p.node_name) for p in done]


def litert_io(data: bytes | str | os.PathLike, threads: int | None = None,
              builtin: bool = False) -> tuple[Any, dict[str, Any], dict[str, Any]]:  # fmt: skip
    """LiteRT's interpreter over a ``.tflite`` (bytes or path), with its input and output details; its
    XNNPACK kernels, or with ``builtin`` its own built-in ones."""
    with needs("Running a .tflite file"):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if builtin else OpResolverType.AUTO
    threads = threads or default_threads()
    with quiet(), as_file(data, ".tflite") as path:
        interpreter = Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=kind)
        interpreter.allocate_tensors()
    return interpreter, interpreter.get_input_details()[0], interpreter.get_output_details()[0]


def litert_runner(data: bytes | str | os.PathLike, precision: str, threads: int | None = None,
                  builtin: bool = False) -> Runner:  # fmt: skip
    """A ``.tflite`` file in LiteRT's interpreter (XNNPACK; ``builtin``: LiteRT's own kernels), one image
    at a time. Float inputs of an integer-input file (litert-torch's int8 files, Google's uint8 ones) are
    quantized with the file's own scale; inputs already of the file's integer type go in as they are
    (Google's uint8 pixels). Outputs are dequantized."""
    check_precision(precision, "litert")
    interpreter, inp, out = litert_io(data, threads, builtin)
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]

    def run(x: np.ndarray) -> np.ndarray:
        outs = []
        for image in x:
            image = image[None]
            if image.dtype != inp["dtype"]:
                image = image.astype(np.float32)
                if in_scale:
                    info = np.iinfo(inp["dtype"])
                    image = np.clip(np.round(image / in_scale) + in_zero, info.min, info.max).astype(inp["dtype"])
            interpreter.set_tensor(inp["index"], np.ascontiguousarray(image))
            interpreter.invoke()
            y = interpreter.get_tensor(out["index"])
            outs.append((y.astype(np.float32) - out_zero) * out_scale if out_scale else y.copy())
        return np.concatenate(outs)

    return run


_EXECUTORCH_THREADS: list[int] = []  # the thread count ExecuTorch's pool was last reset to


def executorch_runner(data: bytes | str | os.PathLike, precision: str, threads: int | None = None) -> Runner:
    """A ``.pte`` program in ExecuTorch's runtime (XNNPACK), one image at a time. Threads are set through
    ExecuTorch's only handle for them, a private call that replaces the process's thread pool under every
    program already loaded: it is made only when the count changes (in practice once per process)."""
    check_precision(precision, "executorch")
    with quiet():
        with needs("Running a .pte file"):
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime

        threads = threads or default_threads()
        if _EXECUTORCH_THREADS[-1:] != [threads]:
            _unsafe_reset_threadpool(threads)
            _EXECUTORCH_THREADS.append(threads)
        with as_file(data, ".pte") as path:
            program = Runtime.get().load_program(path)
            method = program.load_method("forward")

    # One tuple holds both: CPython frees a tuple's items last to first, so the method goes before the
    # program it runs from (as a default argument the program was freed first: defaults go before closures).
    loaded = (program, method)

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([loaded[1].execute((torch.from_numpy(image[None]).float(),))[0].numpy() for image in x])

    return run


def coreml_runner(path: str | os.PathLike, precision: str, threads: int | None = None) -> Runner:
    """A Core ML package; its predictions exist only on macOS (refused elsewhere, in one sentence)."""
    if platform.system() != "Darwin":
        raise RuntimeUnavailable(f"{Path(path).name} is a Core ML model: its predictions need macOS "
                                 "(coremltools cannot run it on Linux); evaluate the .tflite or .pte export "
                                 "here instead.")  # fmt: skip
    check_precision(precision)
    check_installed("coreml")
    with needs("Running a Core ML model"):
        import coremltools as ct

    ml = ct.models.MLModel(str(path))
    name = output_name(json.loads(ml.user_defined_metadata["mobilenets"]))
    return lambda x: np.concatenate([ml.predict({"input": image[None]})[name] for image in x])


FILE_RUNNERS: dict[str, Callable[..., Runner]] = {
    "onnxruntime": onnxruntime_runner,
    "openvino": openvino_runner,
    "litert": litert_runner,
    "executorch": executorch_runner,
    "coreml": coreml_runner,
}


def open_runner(runtime: str, source: Any, precision: str, threads: int | None = None) -> Runner:
    """The runner of ``runtime`` (``eager`` for a PyTorch module, or a key of :data:`FILE_RUNNERS` for a
    file's bytes or path) at ``precision``."""
    if runtime == "eager":
        return torch_runner(source, precision)
    if runtime not in FILE_RUNNERS:
        raise PrecisionError(f"Unknown runtime {runtime!r}; use eager or one of {', '.join(FILE_RUNNERS)}.")
    return FILE_RUNNERS[runtime](source, precision, threads)


def measure_ms(run: Callable[[np.ndarray], Any], x: np.ndarray, repeats: int = 20,
               min_seconds: float = 0.0) -> list[float]:  # fmt: skip
    """Latencies (ms) of ``repeats`` calls after a warm-up of at least 3 calls and 50 ms. (ONNX Runtime's
    threads keep spinning for tens of ms after a call: the next runtime's first calls in the same process
    ran 1.4x slower, and with 3 warm-up calls OpenVINO's int8 V2 timed 2.37 ms instead of 1.78.)"""
    warm, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - warm < 0.05:
        run(x)
        calls += 1
    times, start = [], time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t) * 1e3)
    return times
