"""Deployment targets, all ratios measured in one run (2 threads, batch 1, 224 px, fp32 unless noted).

    python benchmarks/bench_deploy.py [--rounds 8] [--block 10] [--int8-only]

Per model (V3-Large, V3-Small, V2): torchvision eager; ONNX Runtime on torchvision's own ONNX export
(the peer); our fused + channels_last eager; every backend ``deploy`` measures; int8 (QDQ, ONNX
Runtime and OpenVINO, weight bits chosen for this CPU); bf16 (OpenVINO and fused PyTorch) where the
CPU has native bf16. The table starts with the CPU (model and instruction sets). Reports ratios to the
peer and the fraction of the compute limit reached
(multiply-adds x 2 / 372 GFLOP/s, the fp32 peak measured on this machine per the deploy issue).
``--int8-only`` loads just the peer and the int8 model in OpenVINO, as a deployment process would.
Rounds visit every backend in turn and time a block of calls each (after warm-up), so drifting load on
a shared machine hits all backends alike and one runtime's idle threads do not land in another's timing.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
import torchvision

from mobilenets import convert_state_dict, create_model, profile
from mobilenets.deploy.bench import bench_header
from mobilenets.deploy.int8_settings import weight_bits
from mobilenets.deploy.onnx import onnx_bytes
from mobilenets.deploy.predictor import build_runner
from mobilenets.deploy.quantize import quantize_onnx
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner, openvino_runner, torch_runner
from mobilenets.util.cpu import cpu_info

PEAK_GFLOPS = 372.0


def _medians(runners: dict, x: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.rounds):
        for k, run in runners.items():
            times[k].append(statistics.median(measure_ms(run, x, args.block)))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=10, help="timed calls per backend per round")
    parser.add_argument("--int8-only", action="store_true", help="only the peer and int8 in OpenVINO")
    args = parser.parse_args()
    torch.set_num_threads(2)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    print(bench_header(2) + f"; int8 weight bits {weight_bits()}\n")
    bf16 = cpu_info().native_bf16
    if args.int8_only:
        print("| model | peer ms | int8 OpenVINO ms | int8 / peer |\n|---|---|---|---|")
        for name in ("mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v2"):
            ref = getattr(torchvision.models, name)().eval()
            runners = {"peer": onnxruntime_runner(onnx_bytes(ref, torch.from_numpy(x)), "fp32")}
            ours = create_model(name).eval()
            ours.load_state_dict(convert_state_dict(ref.state_dict(), "torchvision", name))
            int8 = quantize_onnx(onnx_bytes(ours, torch.from_numpy(x)), torch.randn(32, 3, 224, 224))[0]
            runners["int8 ov"] = openvino_runner(int8, "int8")
            med = _medians(runners, x, args)
            print(f"| {name} | {med['peer']:.2f} | {med['int8 ov']:.2f} | {med['int8 ov'] / med['peer']:.2f} |")
        return
    print(
        "| model | torchvision eager ms | ORT on torchvision's ONNX ms (peer) | ours fused+CL eager ms (ratio to "
        "tv eager) | ours ORT ms | ours OpenVINO ms | deploy fp32 pick, ms (ratio to peer) | int8 ORT ms | "
        "int8 OpenVINO ms | best int8 / peer | bf16 OpenVINO ms | bf16 fused ms | best bf16 / peer | "
        "compute-limit fraction (deploy fp32) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v2"):
        ref = getattr(torchvision.models, name)().eval()
        ours = create_model(name).eval()
        ours.load_state_dict(convert_state_dict(ref.state_dict(), "torchvision", name))
        tv_onnx = onnx_bytes(ref, torch.from_numpy(x))
        cache: dict[str, bytes] = {}
        runners = {
            "tv eager": torch_runner(ref),
            "peer": onnxruntime_runner(tv_onnx, "fp32"),
            "fused": build_runner(ours, "fused", 2, cache),
            "onnxruntime": build_runner(ours, "onnxruntime", 2, cache),
            "openvino": build_runner(ours, "openvino", 2, cache),
        }
        int8 = quantize_onnx(cache["fp32"], torch.randn(32, 3, 224, 224))[0]
        runners["int8 ort"] = onnxruntime_runner(int8, "int8")
        runners["int8 ov"] = openvino_runner(int8, "int8")
        if bf16:
            runners["bf16 ov"] = build_runner(ours, "openvino", 2, cache, precision="bf16")
            runners["bf16 fused"] = build_runner(ours, "fused", 2, cache, precision="bf16")
        med = _medians(runners, x, args)
        pick = min(("fused", "onnxruntime", "openvino"), key=med.get)
        best8 = min(med["int8 ort"], med["int8 ov"])
        if bf16:
            best16 = min(med["bf16 ov"], med["bf16 fused"])
            b16 = f"{med['bf16 ov']:.2f} | {med['bf16 fused']:.2f} | {best16 / med['peer']:.2f}"
        else:
            b16 = "n/a | n/a | no native bf16"
        macs = profile(ours).macs
        limit_ms = 2 * macs / (PEAK_GFLOPS * 1e9) * 1e3
        print(
            f"| {name} | {med['tv eager']:.2f} | {med['peer']:.2f} | {med['fused']:.2f} "
            f"({med['fused'] / med['tv eager']:.2f}) | {med['onnxruntime']:.2f} | {med['openvino']:.2f} | "
            f"{pick} {med[pick]:.2f} ({med[pick] / med['peer']:.2f}) | {med['int8 ort']:.2f} | "
            f"{med['int8 ov']:.2f} | {best8 / med['peer']:.2f} | {b16} | {limit_ms / med[pick]:.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
