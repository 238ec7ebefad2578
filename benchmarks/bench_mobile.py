"""Phone formats on real weights: size, parity, top-1 on the 1300 real images, latency next to ONNX Runtime.

    python benchmarks/bench_mobile.py [--out DIR] [--models v2 v3s] [--rounds 5]

Google's MobileNetV2 and V3-Small (TFLite files in ../shared/data/weights, imported into our models) are
exported to LiteRT, ExecuTorch and Core ML, fp32 and int8 (calibrated on hymenoptera/train, 128 images),
each evaluated in its own runtime on all 1300 ImageNet images (Core ML: size only; predictions need a Mac)
and timed at batch 1 with 2 threads against ONNX Runtime on our fp32 ONNX export, interleaved in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mobilenets.deploy.bench import bench_header
from mobilenets.deploy.export import export
from mobilenets.evaluate.classify import _Images, find_eval_set
from mobilenets.runtime.classifier import load_classifier
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner
from mobilenets.weights.factory import load_tflite

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MODELS = {"v2": "mobilenet_v2_1.0_224_quant.tflite", "v3s": "mobilenet_v3_small_1.0_224_uint8.tflite"}
EXT = {"onnx": "onnx", "tflite": "tflite", "pte": "pte", "coreml": "mlpackage"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/bench_mobile")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    print(bench_header(2))
    print("| model | format | precision | file MB | export s | max rel diff vs PyTorch | top-1 (1300) | ms (batch 1) "
          "| ms / ORT fp32 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for key in args.models:
        model = load_tflite(DATA / "weights" / MODELS[key])
        x_one = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
        rows, runs = [], {}
        for fmt in ("onnx", "tflite", "pte", "coreml"):
            for int8 in (False, True):
                if fmt == "onnx" and int8:
                    continue
                path = out / f"{key}{'-int8' if int8 else ''}.{EXT[fmt]}"
                start = time.perf_counter()
                calib = DATA / "hymenoptera" / "train" if int8 else None
                report = export(model, path, fmt, int8=int8, calib=calib)
                seconds = time.perf_counter() - start
                size = report["bytes"] / 1e6
                diff = report["max_rel_diff"]
                top1, name = "Mac only", f"{fmt} {'int8' if int8 else 'fp32'}"
                if fmt != "coreml":
                    clf = load_classifier(str(path))
                    images = _Images(find_eval_set(DATA / "imagenet-val-1300", clf.class_names).samples, clf.cfg)
                    hits = 0
                    for i in range(0, len(images), 50):
                        items = [images[j] for j in range(i, min(i + 50, len(images)))]
                        logits = clf.run(torch.stack([t for t, _, _ in items]))
                        hits += int((logits.argmax(1) == torch.tensor([y for _, y, _ in items])).sum())
                    top1 = f"{hits / len(images):.2%}"
                    runs[name] = clf.run
                rows.append([key, fmt, "int8" if int8 else "fp32", f"{size:.2f}", f"{seconds:.0f}",
                             "" if diff is None else f"{diff:.1e}", top1, name])  # fmt: skip
        x = torch.from_numpy(x_one)
        ort_run = onnxruntime_runner((out / f"{key}.onnx").read_bytes(), "fp32")
        runs["onnx fp32"] = lambda t, r=ort_run: torch.from_numpy(r(t.numpy()))
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for k, run in runs.items():
                times[k].append(statistics.median(measure_ms(run, x, 10)))
        med = {k: statistics.median(v) for k, v in times.items()}
        for r in rows:
            name = r.pop()
            ms = f"{med[name]:.2f} | {med[name] / med['onnx fp32']:.2f}" if name in med else "n/a | n/a"
            print("| " + " | ".join(r) + f" | {ms} |", flush=True)


if __name__ == "__main__":
    main()
