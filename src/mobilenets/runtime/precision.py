"""The precisions each runtime keeps, which runtimes are installed, and the one precision check."""

from __future__ import annotations

from mobilenets.util.cpu import cpu_info
from mobilenets.util.errors import PrecisionError
from mobilenets.util.extras import EXTRA_OF, has, install_command

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
