"""Eager CPU forward: our models vs torchvision's same architecture, in one run (issue: core).

    python benchmarks/bench_eager.py [--threads 2] [--repeats 30]

Interleaves the two models round by round so that machine noise hits both alike; prints the median
latency of each and the ratio ours / torchvision.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from mobilenets import convert_state_dict, create_model


def timed(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        model(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, 224 px, median of {args.repeats}")
    print("| model | batch | torchvision ms | ours ms | ratio |\n|---|---|---|---|---|")
    for name in ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"):
        ref = getattr(torchvision.models, name)().eval()
        ours = create_model(name).eval()
        ours.load_state_dict(convert_state_dict(ref.state_dict(), "torchvision", name))
        for batch in (1, 16):
            x = torch.randn(batch, 3, 224, 224)
            for _ in range(3):
                timed(ref, x), timed(ours, x)
            t_ref, t_ours = [], []
            for _ in range(args.repeats):
                t_ref.append(timed(ref, x))
                t_ours.append(timed(ours, x))
            a, b = statistics.median(t_ref) * 1e3, statistics.median(t_ours) * 1e3
            print(f"| {name} | {batch} | {a:.2f} | {b:.2f} | {b / a:.3f} |", flush=True)


if __name__ == "__main__":
    main()
