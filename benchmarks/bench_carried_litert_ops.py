"""The carried int8 ONNX file with and without LiteRT's arithmetic for hard-swish, residual sums,
pooling and padding (:func:`mobilenets.deploy.carried_graph.as_litert_computes`), in the same run.

    python benchmarks/bench_carried_litert_ops.py [--limit N] [--rounds R]

For each of Google's quantized files: per-image top-1 agreement with LiteRT running Google's file (its
default kernels, XNNPACK; ties in LiteRT's uint8 outputs count either way), top-1, and latency at batch 1
(median of 50 calls, the best of ``--rounds`` rounds that alternate the two files) in ONNX Runtime and
OpenVINO. Prints Markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
from unittest import mock

import torch

from bench_carried_int8 import FILES, batched_logits, google_file, start_table
from mobilenets.deploy.quantize import carried_onnx
from mobilenets.evaluate.litert import top1_agreement
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner, openvino_runner

BEFORE, AFTER = "float between Q/DQ (as exported)", "as LiteRT computes"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    columns = ["file", "runtime", "hard-swish, sums, pooling, padding", "agreement", "top-1", "ms, batch 1", "ratio"]
    rows, labels = start_table(args.limit, columns)
    for name in FILES:
        _, model, _, ref, x = google_file(name, rows)
        one = torch.from_numpy(x[:1])
        with mock.patch("mobilenets.deploy.quantize.as_litert_computes", lambda proto: None):
            files = {BEFORE: carried_onnx(model, one)}
        files[AFTER] = carried_onnx(model, one)
        for runtime, make in (("ONNX Runtime", onnxruntime_runner), ("OpenVINO", openvino_runner)):
            runs = {label: make(data, "int8", 2) for label, data in files.items()}
            times: dict[str, list[float]] = {label: [] for label in runs}
            for _ in range(args.rounds):
                for label, run in runs.items():
                    times[label].append(statistics.median(measure_ms(run, x[:1], 50)))
            for label, run in runs.items():
                logits = batched_logits(run, x)
                agree, top1 = top1_agreement(ref, logits), (logits.argmax(1) == labels).mean()
                ms, ratio = min(times[label]), min(times[label]) / min(times[BEFORE])
                print(f"| {name} | {runtime} | {label} | {agree:.2%} | {top1:.2%} | {ms:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
