"""MobileNetV5's encoder (Gemma 3n's vision tower) on this CPU: the exports, their peak memory, and latency.

    python benchmarks/bench_v5.py [--sizes 256,768] [--repeats 3]

1. Each export of ``mobilenet_v5_300m_enc`` (random weights: the same graph and size as Gemma's) through
   the CLI, in its own process under ``/usr/bin/time -v``: ONNX at each size (checked in ONNX Runtime by the
   command itself), LiteRT and ExecuTorch fp32 at 256 px (checked in their runtimes); wall time, peak
   resident memory, file size.
2. Batch-1 latency at each size, interleaved, 2 threads: timm's eager model, ours eager (the same weights)
   and fused, and the exported ONNX file in ONNX Runtime and OpenVINO.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch

from mobilenets import convert_state_dict, create_model, fuse
from mobilenets.deploy.bench import bench_header
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner, openvino_runner, torch_runner

NAME, TIMM_NAME = "mobilenet_v5_300m_enc", "mobilenetv5_300m_enc"


def _export(fmt: str, size: int, out: Path) -> tuple[float, float, float, str]:
    """(seconds, peak GiB, file GB, status) of one export command in its own process."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "mobilenets", "export", "--model", NAME, "--format", fmt,
           "--img-size", str(size), "--output", str(out)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    errors = [line for line in done.stderr.splitlines() if "error:" in line] or ["failed"]
    status = "ok" if done.returncode == 0 else errors[-1].split("error:", 1)[-1].strip()[:120]
    size_gb = out.stat().st_size / 1e9 if out.is_file() else float("nan")
    return seconds, peak_kb / 2**20, size_gb, status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="256,768")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    torch.set_num_threads(2)
    print(bench_header(2))
    tmp = Path(tempfile.mkdtemp())
    print("| export | px | seconds | peak GiB | file GB | checked in its runtime |")
    print("|---|---|---|---|---|---|")
    jobs = [("onnx", s, ".onnx") for s in sizes] + [("tflite", 256, ".tflite"), ("pte", 256, ".pte")]
    for fmt, size, suffix in jobs:
        seconds, peak, gb, status = _export(fmt, size, tmp / f"v5_{size}{suffix}")
        print(f"| {fmt} | {size} | {seconds:.0f} | {peak:.1f} | {gb:.2f} | {status} |", flush=True)
    ref = timm.create_model(TIMM_NAME).eval()
    ours = create_model(NAME).eval()
    ours.load_state_dict(convert_state_dict(ref.state_dict(), "timm", NAME))
    print("\n| px | timm eager ms | ours eager ms | ours fused ms | ONNX Runtime ms | OpenVINO ms | eager / timm |")
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
        onnx = tmp / f"v5_{size}.onnx"
        runs = {"timm": torch_runner(ref), "eager": torch_runner(ours), "fused": torch_runner(fuse(ours))}
        if onnx.is_file():
            runs |= {"ort": onnxruntime_runner(str(onnx), "fp32"), "ov": openvino_runner(str(onnx), "fp32")}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, run in runs.items():
                times[k] += measure_ms(run, x, 1)
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = [f"{med[k]:.0f}" if k in med else "-" for k in ("timm", "eager", "fused", "ort", "ov")]
        print(f"| {size} | {' | '.join(cells)} | {med['eager'] / med['timm']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
