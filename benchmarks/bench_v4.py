"""MobileNetV4 against timm's and against V3 on this CPU: eager latency (same weights) and ONNX Runtime.

    python benchmarks/bench_v4.py [--rounds 5] [--block 10]

Batch 1, 2 threads, each model at its native resolution (V3 at 224), interleaved rounds; published top-1
beside (the papers' tables via ``mobilenets zoo``), as the trade-off users choose by.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import timm
import torch

from mobilenets import convert_state_dict, create_model
from mobilenets.deploy.bench import bench_header
from mobilenets.deploy.onnx import onnx_bytes
from mobilenets.evaluate.zoo import PUBLISHED
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner, torch_runner

MODELS = [
    ("mobilenet_v3_small", "mobilenetv3_small_100", 224),
    ("mobilenet_v3_large", "mobilenetv3_large_100", 224),
    ("mobilenet_v4_conv_small", "mobilenetv4_conv_small", 224),
    ("mobilenet_v4_conv_medium", "mobilenetv4_conv_medium", 256),
    ("mobilenet_v4_hybrid_medium", "mobilenetv4_hybrid_medium", 256),
    ("mobilenet_v4_conv_large", "mobilenetv4_conv_large", 384),
    ("mobilenet_v4_hybrid_large", "mobilenetv4_hybrid_large", 384),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(bench_header(2))
    print("| model | res | published top-1 | timm eager ms | ours eager ms | ours / timm | ours ONNX Runtime ms |")
    print("|---|---|---|---|---|---|---|")
    for name, timm_name, res in MODELS:
        ref = timm.create_model(timm_name).eval()
        ours = create_model(name, bn_eps=1e-5).eval()
        ours.load_state_dict(convert_state_dict(ref.state_dict(), "timm", name, bn_eps=1e-5))
        x = np.random.default_rng(0).standard_normal((1, 3, res, res), dtype=np.float32)
        runs = {"timm": torch_runner(ref), "ours": torch_runner(ours),
                "ort": onnxruntime_runner(onnx_bytes(ours, torch.from_numpy(x)), "fp32")}  # fmt: skip
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for k, run in runs.items():
                times[k].append(statistics.median(measure_ms(run, x, args.block)))
        med = {k: statistics.median(v) for k, v in times.items()}
        top1 = next((p.top1 for p in PUBLISHED if p.model == name and p.width_mult == 1.0), None)
        print(f"| {name} | {res} | {top1} | {med['timm']:.2f} | {med['ours']:.2f} | {med['ours'] / med['timm']:.3f} "
              f"| {med['ort']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
