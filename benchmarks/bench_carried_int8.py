"""Google's uint8 TFLite MobileNets exported to int8 ONNX on their own quantization, against LiteRT.

    python benchmarks/bench_carried_int8.py [--limit N]

For each quantized file in ../shared/data/weights: the int8 ONNX file ``export --int8`` writes without
``--calib`` (Google's scales and zero points carried), run in ONNX Runtime and OpenVINO on the 1300
ImageNet images (the same uint8 pixels as LiteRT gets): top-1, and the per-image top-1 agreement with
LiteRT running Google's file (ties in LiteRT's uint8 probabilities count either way; strict in brackets).
Then latency at batch 1 of the carried file against the file's float import exported to fp32 ONNX, in
ONNX Runtime, in the same run. Prints Markdown rows for benchmarks/RESULTS.md.
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
from mobilenets.deploy.onnx import onnx_bytes
from mobilenets.deploy.quantize import carried_onnx
from mobilenets.evaluate.litert import eval_pixels, litert_logits, top1_agreement
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner, openvino_runner
from mobilenets.weights.factory import load_tflite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = ["mobilenet_v1_0.25_224_quant", "mobilenet_v2_1.0_224_quant", "mobilenet_v3_small_1.0_224_uint8"]


def _logits(run, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run(x[i : i + 50]) for i in range(0, len(x), 50)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with (DATA / "imagenet-val-1300" / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))[: args.limit]
    labels = np.array([int(r["label"]) for r in rows])
    print(bench_header(2))
    print("| file | LiteRT top-1 | runtime | top-1 | agreement (strict) | int8 ms | fp32 ms | int8 / fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in FILES:
        path = DATA / "weights" / f"{name}.tflite"
        model = load_tflite(path)
        pixels = eval_pixels([DATA / "imagenet-val-1300" / "images" / r["file"] for r in rows], model.pretrained_cfg)
        ref = litert_logits(path, pixels)[:, 1:]
        x = torch.stack([to_tensor(p, model.pretrained_cfg) for p in pixels]).numpy()
        one = torch.from_numpy(x[:1])
        int8, fp32 = carried_onnx(model, one), onnx_bytes(model, one)
        for runtime, make in (("ONNX Runtime", onnxruntime_runner), ("OpenVINO", openvino_runner)):
            run = make(int8, "int8", 2)
            logits = _logits(run, x)
            strict = (logits.argmax(1) == ref.argmax(1)).mean()
            ms = fp32_ms = float("nan")
            if runtime == "ONNX Runtime":
                ms = statistics.median(measure_ms(run, x[:1], 50))
                fp32_ms = statistics.median(measure_ms(make(fp32, "fp32", 2), x[:1], 50))
            print(f"| {name} | {(ref.argmax(1) == labels).mean():.2%} | {runtime} | "
                  f"{(logits.argmax(1) == labels).mean():.2%} | {top1_agreement(ref, logits):.2%} ({strict:.2%}) | "
                  f"{ms:.2f} | {fp32_ms:.2f} | {ms / fp32_ms:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
