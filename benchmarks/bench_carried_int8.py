"""Google's uint8 TFLite MobileNets exported to int8 on their own quantization, against LiteRT.

    python benchmarks/bench_carried_int8.py [--limit N]

For each quantized file in ../shared/data/weights: the int8 files ``export --int8`` writes without
``--calib`` (Google's scales and zero points carried): ONNX run in ONNX Runtime and OpenVINO, ``.tflite``
in LiteRT, ``.pte`` in ExecuTorch, on the 1300 ImageNet images (the same uint8 pixels as LiteRT gets):
top-1, and the per-image top-1 agreement with LiteRT running Google's file (its default kernels,
XNNPACK; ties in LiteRT's uint8 probabilities count either way; strict in brackets). The first row of
each file is LiteRT itself on Google's file with its built-in kernels instead of XNNPACK: how far two
correct integer implementations of the same file are apart. Then latency at batch 1 of each carried file
against the file's float import exported to fp32 ONNX in ONNX Runtime, in the same run. Prints
Markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np
import torch

from mobilenets.data.preprocess import to_tensor
from mobilenets.deploy.bench import bench_header
from mobilenets.deploy.mobile import phone_bytes
from mobilenets.deploy.onnx import onnx_bytes
from mobilenets.deploy.quantize import carried_onnx
from mobilenets.evaluate.litert import eval_pixels, litert_logits, top1_agreement
from mobilenets.models.fuse import fuse
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner, open_runner, openvino_runner
from mobilenets.weights.factory import load_tflite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = ["mobilenet_v1_0.25_224_quant", "mobilenet_v2_1.0_224_quant", "mobilenet_v3_small_1.0_224_uint8"]


def batched_logits(run, x: np.ndarray) -> np.ndarray:
    """``run`` over ``x`` in batches of 50."""
    return np.concatenate([run(x[i : i + 50]) for i in range(0, len(x), 50)])


def _row(name: str, ref: np.ndarray, labels: np.ndarray, runtime: str, logits: np.ndarray, ms: str = "") -> str:
    strict = (logits.argmax(1) == ref.argmax(1)).mean()
    ref_top1, top1 = (ref.argmax(1) == labels).mean(), (logits.argmax(1) == labels).mean()
    agree = top1_agreement(ref, logits)
    return f"| {name} | {ref_top1:.2%} | {runtime} | {top1:.2%} | {agree:.2%} ({strict:.2%}) | {ms} |"


def start_table(limit: int | None, columns: list[str]) -> tuple[list[dict[str, str]], np.ndarray]:
    """Two threads, the CPU's header line and the Markdown table's head; the images' rows and labels."""
    torch.set_num_threads(2)
    print(bench_header(2))
    print(f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}")
    return imagenet_rows(limit)


def imagenet_rows(limit: int | None) -> tuple[list[dict[str, str]], np.ndarray]:
    """The first ``limit`` rows of the 1300 ImageNet images' labels.csv, and their labels."""
    with (DATA / "imagenet-val-1300" / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))[:limit]
    return rows, np.array([int(r["label"]) for r in rows])


def google_file(name: str, rows: list[dict[str, str]]) -> tuple[Path, torch.nn.Module, list, np.ndarray, np.ndarray]:
    """Google's ``name``.tflite: its path, its import, the images' uint8 pixels as LiteRT gets them, LiteRT's
    logits on them (background class dropped) and our preprocessing of the same pixels."""
    path = DATA / "weights" / f"{name}.tflite"
    model = load_tflite(path)
    pixels = eval_pixels([DATA / "imagenet-val-1300" / "images" / r["file"] for r in rows], model.pretrained_cfg)
    x = torch.stack([to_tensor(p, model.pretrained_cfg) for p in pixels]).numpy()
    return path, model, pixels, litert_logits(path, pixels)[:, 1:], x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    columns = ["file", "LiteRT top-1", "runtime", "top-1", "agreement (strict)", "int8 ms / ORT fp32 ms (ratio)"]
    rows, labels = start_table(args.limit, columns)
    for name in FILES:
        path, model, pixels, ref, x = google_file(name, rows)
        one = torch.from_numpy(x[:1])
        builtin = litert_logits(path, pixels, builtin=True)[:, 1:]
        print(_row(name, ref, labels, "LiteRT, built-in kernels (Google's file)", builtin))
        int8 = carried_onnx(model, one)
        ms32 = statistics.median(measure_ms(onnxruntime_runner(onnx_bytes(model, one), "fp32", 2), x[:1], 50))
        runs = {"ONNX Runtime": onnxruntime_runner(int8, "int8", 2), "OpenVINO": openvino_runner(int8, "int8", 2)}
        for fmt, runtime, label in (("tflite", "litert", "LiteRT"), ("pte", "executorch", "ExecuTorch")):
            runs[label] = open_runner(runtime, phone_bytes(fuse(model), fmt, one, model.tflite_quantization), "int8")
        for runtime, run in runs.items():
            ms8 = statistics.median(measure_ms(run, x[:1], 50))
            ratio = f"{ms8:.2f} / {ms32:.2f} ({ms8 / ms32:.2f})"
            print(_row(name, ref, labels, runtime, batched_logits(run, x), ratio))


if __name__ == "__main__":
    main()
