"""Google's TFLite MobileNets imported into PyTorch vs the LiteRT interpreter on the same real images.

    python benchmarks/tflite_vs_litert.py [--limit N]

For each file in ../shared/data/weights: top-1 / top-5 of LiteRT and of our imported model on the
1300 ImageNet validation images (TF-slim preprocessing, identical uint8 pixels for both), and the
per-image top-1 agreement; quantized files both dequantized (a float model) and with
``fake_quant=True`` (activations rounded to the file's uint8 grids). Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from mobilenets.evaluate.litert import compare_with_litert, eval_pixels
from mobilenets.weights.factory import load_tflite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = [
    "mobilenet_v1_0.25_224_float",
    "mobilenet_v1_0.25_224_quant",
    "mobilenet_v1_0.25_128_quant",
    "mobilenet_v1_0.5_160_quant",
    "mobilenet_v1_0.75_192_quant",
    "mobilenet_v2_1.0_224_quant",
    "mobilenet_v3_small_1.0_224_uint8",
]


def compare(name: str, rows: list[dict], cache: dict, fake_quant: bool = False) -> dict:
    path = DATA / "weights" / f"{name}.tflite"
    cfg = load_tflite(path).pretrained_cfg
    size = cfg["input_size"][1]
    if size not in cache:
        cache[size] = eval_pixels([DATA / "imagenet-val-1300" / "images" / r["file"] for r in rows], cfg)
    result = compare_with_litert(path, cache[size], np.array([int(r["label"]) for r in rows]), fake_quant)
    return {"file": name + (" (fake_quant)" if fake_quant else ""), "n": len(rows), **result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with (DATA / "imagenet-val-1300" / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))[: args.limit]
    print("| file | n | LiteRT top-1 | ours top-1 | diff (points) | LiteRT top-5 | ours top-5 | top-1 agreement |")
    print("|---|---|---|---|---|---|---|---|")
    cache: dict = {}
    for name, fake_quant in [(f, fq) for f in FILES for fq in (False, True) if fq <= ("float" not in f)]:
        r = compare(name, rows, cache, fake_quant)
        print(
            f"| {r['file']} | {r['n']} | {r['litert_top1']:.2%} | {r['ours_top1']:.2%} | "
            f"{(r['ours_top1'] - r['litert_top1']) * 100:+.2f} | {r['litert_top5']:.2%} | "
            f"{r['ours_top5']:.2%} | {r['agreement']:.2%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
