"""``mobilenets env``: what a bug report needs: versions, the CPU and what runs here at which precision."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

from mobilenets.runtime.precision import BACKENDS, PRECISION_BACKENDS, available
from mobilenets.util.cpu import PRECISIONS, cpu_info

PACKAGES = ("mobilenets", "torch", "torchvision", "numpy", "onnx", "onnxruntime", "openvino", "nncf", "timm",
            "ai-edge-litert", "executorch", "litert-torch", "coremltools")  # fmt: skip


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions, CPU, instruction sets, installed backends and, per precision, the backends that keep it
    here (an empty list with the reason where the CPU cannot)."""
    cpu = cpu_info()
    backends = [b for b in BACKENDS if available(b)]
    precisions: dict[str, Any] = {}
    for p in PRECISIONS:
        reason = cpu.refusal(p)
        precisions[p] = {"backends": [] if reason else [b for b in PRECISION_BACKENDS[p] if b in backends]}
        if reason:
            precisions[p]["refused"] = reason
    info = {"cpu": cpu.model, "arch": cpu.arch, "isa": list(cpu.isa), "torch_kernels": cpu.torch_kernels,
            "int8_dot_products": cpu.int8_dot, "native_bf16": cpu.native_bf16, "backends": backends,
            "precisions": precisions, "python": platform.python_version(),
            "versions": {p: v for p in PACKAGES if (v := _version(p))}}  # fmt: skip
    if "openvino" in backends:
        import openvino as ov

        info["openvino_capabilities"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return info


def render(info: dict[str, Any]) -> str:
    isa = ", ".join(info["isa"]) or "none detected"
    lines = [f"cpu             {info['cpu']} ({info['arch']})",
             f"isa             {isa} (torch kernels: {info['torch_kernels']})"]  # fmt: skip
    if "openvino_capabilities" in info:
        lines.append(f"openvino        {', '.join(info['openvino_capabilities'])}")
    lines.append(f"backends        {', '.join(info['backends'])}")
    for p, entry in info["precisions"].items():
        lines.append(f"{p:<15} {', '.join(entry['backends']) if entry['backends'] else 'no: ' + entry['refused']}")
    lines.append(f"python          {info['python']}")
    lines += [f"{k:<15} {v}" for k, v in info["versions"].items()]
    return "\n".join(lines)
