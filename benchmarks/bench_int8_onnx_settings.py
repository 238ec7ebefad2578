"""The int8 ONNX file's settings, one at a time: activations with zero points (NNCF's mixed preset) or
symmetric (performance), ReLU6 outputs on NNCF's ranges or pinned to [0, 6].

    python benchmarks/bench_int8_onnx_settings.py [--limit N] [--calib DIR] [--weight-bits 7|8] [--peer openvino]

For Google's V2 and V3-Small (recalibrated, as ``--recalibrate`` does) and float V1 0.25 (TFLite files in
../shared/data/weights): ``quantize_onnx`` with this CPU's weight bits (or ``--weight-bits``), as
``export --int8`` does, and with the preset swapped in ``nncf_options`` or ``pin_relu6_ranges`` left
out, calibrated on ``--calib`` (default: the COCO photos). Top-1 of each file in ONNX Runtime and
OpenVINO on the 1300 ImageNet images, against the fp32 export's; how many convolutions OpenVINO runs in
fp32 (its profiling counters); and batch-1 latency (2 threads) of the file in OpenVINO as a ratio to
ONNX Runtime running the fp32 export (``--peer openvino``: OpenVINO running it), in the same run. Prints
Markdown rows for benchmarks/RESULTS.md, then the kernels OpenVINO ran the int8 convolutions in.

An AVX2-only CPU's kernels on a newer x86 CPU: ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's dispatcher control)
makes OpenVINO use them; ONNX Runtime has no such switch and keeps this CPU's.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np
import torch

from mobilenets.data.preprocess import to_tensor
from mobilenets.deploy import int8_settings, quantize
from mobilenets.deploy.bench import bench_header
from mobilenets.deploy.onnx import onnx_bytes
from mobilenets.evaluate.litert import eval_pixels
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner, openvino_kernels, openvino_runner
from mobilenets.weights.factory import load_tflite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = ["mobilenet_v2_1.0_224_quant", "mobilenet_v3_small_1.0_224_uint8", "mobilenet_v1_0.25_224_float"]


NNCF_OPTIONS, PIN_RELU6 = int8_settings.nncf_options, int8_settings.pin_relu6_ranges


def _settings(preset: str, pin: bool):
    """``nncf_options`` with NNCF's ``preset``, and ``pin_relu6_ranges`` or nothing in its place."""
    import nncf

    def options(*args, **kwargs):
        return NNCF_OPTIONS(*args, **kwargs) | {"preset": getattr(nncf.QuantizationPreset, preset)}

    return options, PIN_RELU6 if pin else (lambda model: None)


VARIANTS = {  # label: (NNCF preset, ReLU6 ranges pinned)
    "zero points (mixed), NNCF's ReLU6 ranges": ("MIXED", False),
    "zero points, ReLU6 on [0, 6]": ("MIXED", True),
    "symmetric (performance), NNCF's ReLU6 ranges": ("PERFORMANCE", False),
    "symmetric, ReLU6 on [0, 6]": ("PERFORMANCE", True),
}


def _top1(run, x: np.ndarray, labels: np.ndarray) -> float:
    out = np.concatenate([run(x[i : i + 1]) for i in range(len(x))])
    return float((out.argmax(1) == labels).mean() * 100)


def _conv_kernels(data: bytes, x: np.ndarray) -> list[str]:
    """The kernel OpenVINO compiled each convolution of an int8 file to (stem included)."""
    return [kernel for op, kernel, _ in openvino_kernels(data, x) if "Convolution" in op]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--calib", default=str(DATA / "coco128" / "images"))
    parser.add_argument("--weight-bits", default="auto", help="7 (AVX2's setting) or 8 (VNNI/AMX); default: this CPU's")
    parser.add_argument("--peer", choices=["onnxruntime", "openvino"], default="onnxruntime", help="fp32 runtime timed")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with (DATA / "imagenet-val-1300" / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))[: args.limit]
    labels = np.array([int(r["label"]) for r in rows])
    print(bench_header(2) + f"; int8 weight bits {int8_settings.weight_bits(args.weight_bits)}; --calib {args.calib}\n")
    peer_name = {"onnxruntime": "ORT", "openvino": "OpenVINO"}[args.peer]
    print("| model | fp32 top-1 | settings | ORT int8 top-1 | OpenVINO int8 top-1 | convolutions OpenVINO runs "
          f"in fp32 | OpenVINO int8 ms / {peer_name} fp32 ms (ratio) |\n|---|---|---|---|---|---|---|")  # fmt: skip
    kernels: set[str] = set()
    for name in FILES:
        model = load_tflite(DATA / "weights" / f"{name}.tflite").eval()
        pixels = eval_pixels([DATA / "imagenet-val-1300" / "images" / r["file"] for r in rows], model.pretrained_cfg)
        x = torch.stack([to_tensor(p, model.pretrained_cfg) for p in pixels]).numpy()
        calib = quantize.calibration_batch(args.calib, model.pretrained_cfg)
        fp32 = onnx_bytes(model, torch.from_numpy(x[:1]))
        peer = (onnxruntime_runner if args.peer == "onnxruntime" else openvino_runner)(fp32, "fp32")
        files = {}
        for said, (preset, pin) in VARIANTS.items():
            quantize.nncf_options, int8_settings.pin_relu6_ranges = _settings(preset, pin)
            files[said] = quantize.quantize_onnx(fp32, calib, args.weight_bits)[0]
        quantize.nncf_options, int8_settings.pin_relu6_ranges = NNCF_OPTIONS, PIN_RELU6
        runs = {"peer": peer, **{said: openvino_runner(data, "int8") for said, data in files.items()}}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(8):  # rounds over all, so that drifting load hits them alike
            for k, run in runs.items():
                times[k].append(statistics.median(measure_ms(run, x[:1], 20)))
        ms = {k: statistics.median(v) for k, v in times.items()}
        ref = _top1(onnxruntime_runner(fp32, "fp32"), x, labels)
        for said, data in files.items():
            ort, ov = _top1(onnxruntime_runner(data, "int8"), x, labels), _top1(runs[said], x, labels)
            convs = _conv_kernels(data, x[:1])
            kernels |= {k for k in convs if "I8" in k}
            fp32_convs = sum("f32" in k for k in convs)
            print(f"| {name} | {ref:.2f} | {said} | {ort:.2f} ({ort - ref:+.2f}) | {ov:.2f} ({ov - ref:+.2f}) | "
                  f"{fp32_convs} | {ms[said]:.2f} / {ms['peer']:.2f} ({ms[said] / ms['peer']:.2f}) |",
                  flush=True)  # fmt: skip
    print(f"\nOpenVINO's int8 convolution kernels: {', '.join(sorted(kernels))}")


if __name__ == "__main__":
    main()
