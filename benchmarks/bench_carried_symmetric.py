"""The carried int8 ONNX file with symmetric int8 weights instead of Google's uint8 ones (not shipped).

    python benchmarks/bench_carried_symmetric.py [--limit N] [--clip]

For Google's quantized V1 0.25, V2 and V3-Small: the file ``export --int8`` writes (``carried_onnx``), and
the same file with each uint8 weight tensor rewritten as the phone files hold it: Google's integers
shifted by the zero point, per output channel on Google's scale, and a channel that spans more than
[-127, 127] rescaled to fit (``--clip``: its integers clipped to [-127, 127] instead). Batch-1 latency
(2 threads) of both in ONNX Runtime and OpenVINO as a ratio to ONNX Runtime fp32 of the float import, in
the same run, and top-1 and agreement with LiteRT running Google's file on the 1300 ImageNet images.
Prints Markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from bench_carried_int8 import FILES, batched_logits, google_file, start_table
from mobilenets.deploy.onnx import onnx_bytes
from mobilenets.deploy.quantize import carried_onnx
from mobilenets.evaluate.litert import top1_agreement
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner, openvino_runner


def symmetric_weights(data: bytes, clip: bool = False) -> tuple[bytes, int]:
    """``data`` with every uint8 weight as per-channel symmetric int8; and how many channels spanned more
    than [-127, 127] (rescaled, or with ``clip`` clipped)."""
    model = onnx.load_from_string(data)
    values = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant"}
    wide = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in values:
            continue
        q = numpy_helper.to_array(values[node.input[0]])
        if q.dtype != np.uint8:
            continue
        scale, zero = (numpy_helper.to_array(values.get(n) or consts[n]) for n in node.input[1:3])
        per_channel = (-1,) + (1,) * (q.ndim - 1)
        shifted = q.astype(np.float64) - np.broadcast_to(zero, q.shape[:1]).reshape(per_channel)
        reach = np.abs(shifted.reshape(len(q), -1)).max(1)
        wide += int((reach > 127).sum())
        if clip:
            shifted, reach = np.clip(shifted, -127, 127), np.minimum(reach, 127)
        shrink = np.maximum(reach / 127, 1.0)
        values[node.input[0]].CopyFrom(numpy_helper.from_array(
            np.round(shifted / shrink.reshape(per_channel)).astype(np.int8), node.input[0]))  # fmt: skip
        new_scale = np.broadcast_to(scale, q.shape[:1]) * shrink
        names = (f"{node.input[0]}.symmetric_scale", f"{node.input[0]}.symmetric_zero")
        model.graph.initializer.extend([numpy_helper.from_array(new_scale.astype(np.float32), names[0]),
                                        numpy_helper.from_array(np.zeros(len(q), np.int8), names[1])])  # fmt: skip
        node.input[1], node.input[2] = names
        del node.attribute[:]
        node.attribute.append(helper.make_attribute("axis", 0))
    return model.SerializeToString(), wide


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--clip", action="store_true", help="clip the integers out of [-127, 127], not rescale")
    args = parser.parse_args()
    columns = ["file", "weights", "runtime", "top-1", "agreement", "int8 ms / ORT fp32 ms (ratio)"]
    rows, labels = start_table(args.limit, columns)
    for name in FILES:
        _, model, _, ref, x = google_file(name, rows)
        one = torch.from_numpy(x[:1])
        uint8 = carried_onnx(model, one)
        int8, wide = symmetric_weights(uint8, args.clip)
        symmetric = f"symmetric int8 ({wide} channels {'clipped' if args.clip else 'rescaled'})"
        runs = {"fp32": onnxruntime_runner(onnx_bytes(model, one), "fp32")}
        for weights, data in (("Google's uint8", uint8), (symmetric, int8)):
            runs[weights, "ONNX Runtime"] = onnxruntime_runner(data, "int8")
            runs[weights, "OpenVINO"] = openvino_runner(data, "int8")
        times: dict = {k: [] for k in runs}
        for _ in range(5):  # rounds over all, so that drifting load hits them alike
            for k, run in runs.items():
                times[k].append(statistics.median(measure_ms(run, x[:1], 20)))
        ms = {k: statistics.median(v) for k, v in times.items()}
        for (weights, runtime), run in list(runs.items())[1:]:
            logits = batched_logits(run, x)
            top1, agree = (logits.argmax(1) == labels).mean(), top1_agreement(ref, logits)
            ratio = ms[weights, runtime] / ms["fp32"]
            print(f"| {name} | {weights} | {runtime} | {top1:.2%} | {agree:.2%} | "
                  f"{ms[weights, runtime]:.2f} / {ms['fp32']:.2f} ({ratio:.2f}) |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
