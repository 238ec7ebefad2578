"""What ``deploy(model, precision="int8", calib=DIR)`` measures and chooses on this CPU, for Google's files.

    python benchmarks/bench_deploy_int8.py [--calib DIR] [--rounds 2]

For float V1 0.25, V2 and V3-Small (carried: Google's own quantization, the default; recalibrated: as
``del model.tflite_quantization`` or ``--recalibrate`` does), each ``deploy`` call with ``backend="auto"``
measures every backend at int8 and at the higher precisions this CPU keeps (batch 1, 2 threads) and
returns the fastest. Prints one Markdown row per call: each measured latency, the choice, and the best
int8 latency as a ratio to ONNX Runtime fp32 measured in the same call.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mobilenets import deploy
from mobilenets.deploy.bench import bench_header
from mobilenets.weights.factory import load_tflite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = [  # (file, recalibrated)
    ("mobilenet_v1_0.25_224_float", False),
    ("mobilenet_v2_1.0_224_quant", False),
    ("mobilenet_v2_1.0_224_quant", True),
    ("mobilenet_v3_small_1.0_224_uint8", False),
    ("mobilenet_v3_small_1.0_224_uint8", True),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calib", default=str(DATA / "coco128" / "images"))
    parser.add_argument("--rounds", type=int, default=2, help="deploy calls per model (the machine is noisy)")
    args = parser.parse_args()
    print(bench_header(2) + f"; --calib {args.calib}\n")
    print("| model | quantization | measured ms | chosen | best int8 / ORT fp32 |\n|---|---|---|---|---|")
    for name, recalibrate in CASES:
        for _ in range(args.rounds):
            model = load_tflite(DATA / "weights" / f"{name}.tflite").eval()
            if recalibrate:
                del model.tflite_quantization
            kind = "recalibrated" if recalibrate else ("carried" if "float" not in name else "calibrated")
            pred = deploy(model, precision="int8", calib=args.calib)
            times = pred.timings_ms
            int8, peer = min(ms for key, ms in times.items() if key.endswith("int8")), times["onnxruntime"]
            said = ", ".join(f"{key} {ms:.2f}" for key, ms in sorted(times.items(), key=lambda kv: kv[1]))
            print(f"| {name} | {kind} | {said} | {pred.backend} {pred.precision} | "
                  f"{int8:.2f} / {peer:.2f} ({int8 / peer:.2f}) |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
