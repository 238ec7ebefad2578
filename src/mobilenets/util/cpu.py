"""What this CPU can do, detected once: the instruction sets that decide which kernels the runtimes pick.

Everything in the package that depends on the CPU asks :func:`cpu_info` (deploy's precisions, the int8
settings, ``bench`` headers, ``mobilenets env``, the tests). Sources, all maintained elsewhere: the
CPU's feature flags as ``py-cpuinfo`` reads them (on Linux, the kernel's ``/proc/cpuinfo``), PyTorch's
own kernel choice (``torch.backends.cpu.get_cpu_capability``). ``mobilenets env`` adds OpenVINO's view
(``OPTIMIZATION_CAPABILITIES``), and OpenVINO's compiled precision is checked on every compiled model.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass

# Instruction sets that change kernels, as named in the kernel's / py-cpuinfo's flags.
ISA_FLAGS = {
    "avx2": ("avx2",),
    "fma": ("fma",),
    "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"),
    "avx_vnni": ("avx_vnni", "avxvnni"),
    "avx512_bf16": ("avx512_bf16",),
    "amx_int8": ("amx_int8",),
    "amx_bf16": ("amx_bf16",),
    "neon": ("asimd", "neon"),
    "dotprod": ("asimddp", "dotprod"),
    "arm_bf16": ("bf16",),
    "i8mm": ("i8mm",),
}
PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's name, architecture and the instruction sets of :data:`ISA_FLAGS` it has."""

    model: str
    arch: str
    isa: tuple[str, ...]
    torch_kernels: str

    def has(self, name: str) -> bool:
        return name in self.isa

    @property
    def int8_dot(self) -> bool:
        """int8 dot products that accumulate u8 x s8 in 32 bits (VNNI, AMX, ARM dot-product): no
        saturation of full-range weights, and int8 that can beat fp32."""
        return any(self.has(n) for n in ("avx512_vnni", "avx_vnni", "amx_int8", "dotprod"))

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (AMX, AVX512-BF16, ARM BF16)."""
        return any(self.has(n) for n in ("amx_bf16", "avx512_bf16", "arm_bf16"))

    def refusal(self, precision: str) -> str | None:
        """Why ``precision`` cannot be promised on this CPU, in one sentence, or None."""
        if precision not in PRECISIONS:
            return f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}."
        if precision == "bf16" and not self.native_bf16:
            return (f"bf16 needs a CPU with native bf16 (AMX or AVX512-BF16 on x86, BF16 on ARM); this "
                    f"{self.model} has none of them: use precision 'fp32' or 'int8'.")  # fmt: skip
        return None

    @property
    def summary(self) -> str:
        """One line for headers: name, architecture and instruction sets."""
        return f"{self.model} ({self.arch}; {', '.join(self.isa) or 'no SIMD extensions detected'})"


@functools.cache
def cpu_info() -> CpuInfo:
    """This machine's CPU (computed once per process)."""
    import cpuinfo
    import torch

    info = cpuinfo.get_cpu_info()
    flags = {f.lower() for f in info.get("flags", [])}
    isa = [name for name, aliases in ISA_FLAGS.items() if flags.intersection(aliases)]
    model = info.get("brand_raw") or platform.processor() or "unknown CPU"
    return CpuInfo(model.strip(), platform.machine(), tuple(isa), torch.backends.cpu.get_cpu_capability())


def default_threads() -> int:
    """The threads a runtime gets unless told: 2 (one image stream's latency on the 2-core machines this
    project is measured on), or fewer where PyTorch is held to fewer (``OMP_NUM_THREADS``,
    ``torch.set_num_threads``): one setting for every runtime in the process, so that processes sharing
    the cores (the test suite's two workers) do not each spin up a pool per core."""
    import torch

    return min(2, torch.get_num_threads())
