"""``mobilenets demo``: the main job, offline and in a few minutes on 2 cores.

Trains a MobileNetV3-Small on scikit-learn's real handwritten digits, evaluates it, exports it to
ONNX, quantizes it to int8 (post-training, and with quantization-aware fine-tuning), and prints one
table: accuracy, parameters, multiply-adds, size and latency per stage; the training curves and the
zoo's accuracy/multiply-adds plot go to ``output``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from mobilenets.evaluate.zoo import plot, zoo_rows
from mobilenets.models.profile import profile
from mobilenets.runtime.runners import measure_ms, onnxruntime_runner
from mobilenets.train.config import TrainConfig
from mobilenets.train.loop import train
from mobilenets.util.cpu import default_threads
from mobilenets.util.extras import check
from mobilenets.weights.factory import load_checkpoint

DEMO = dict(model="mobilenet_v3_small", data="digits", epochs=6, batch_size=64, img_size=32, workers=0)


def _latency_ms(fn: Any, x: Any) -> float:
    return statistics.median(measure_ms(fn, x, repeats=30))


def run_demo(output: str) -> list[dict[str, Any]]:
    """Run the demo into ``output``; returns the summary rows it prints."""
    for extra in ("demo", "onnx", "int8", "plots"):
        check(extra, "mobilenets demo")
    out = Path(output)
    torch.set_num_threads(default_threads())
    result = train(TrainConfig(output=str(out), **DEMO))
    model = load_checkpoint(out)  # the best epoch's weights (best.safetensors): the row's top-1 is theirs
    size = DEMO["img_size"]
    prof = profile(model, size)
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        eager_ms = _latency_ms(model, x)
    rows = [dict(stage="eager fp32", top1=result["best"], params=prof.params, macs=prof.macs,
                 size_kb=prof.params * 4 / 1024, latency_ms=eager_ms)]  # fmt: skip
    rows += _deploy_rows(model, out, x)
    plot(zoo_rows(), str(out / "zoo.png"))
    print(f"\nMobileNetV3-Small on digits ({len(result['history'])} epochs, {size}x{size} px), outputs in {out}:")
    print(f"{'stage':<14} {'val top-1':>9} {'params':>9} {'MAdds':>9} {'size KB':>8} {'latency ms':>10}")
    for r in rows:
        print(f"{r['stage']:<14} {r['top1']:>9.2%} {r['params']:>9,} {r['macs']:>9,} {r['size_kb']:>8.0f} "
              f"{r['latency_ms']:>10.3f}")  # fmt: skip
    print(f"plots: {out / 'curves.png'}, {out / 'zoo.png'}")
    return rows


def _deploy_rows(model: torch.nn.Module, out: Path, x: torch.Tensor) -> list[dict[str, Any]]:
    """Fuse, export to ONNX and int8 (calibrated on training images; then with one epoch of
    quantization-aware fine-tuning), each evaluated on the digits validation split and timed here at batch 1."""
    from PIL import Image

    from mobilenets.data.images import build_transforms, load_train_data
    from mobilenets.deploy import export, fuse
    from mobilenets.deploy.quantize import export_int8
    from mobilenets.evaluate.classify import evaluate
    from mobilenets.runtime.classifier import load_classifier, torch_classifier

    data = load_train_data("digits")
    tf = build_transforms(model.pretrained_cfg, True, "none", False)
    calib = torch.stack([tf(Image.fromarray(a).convert("RGB")) for a, _ in data.train.samples[::12]])
    fused = fuse(model).to(memory_format=torch.channels_last)
    fused.pretrained_cfg, fused.num_classes = model.pretrained_cfg, model.num_classes
    with torch.inference_mode():
        fused_ms = _latency_ms(fused, x.contiguous(memory_format=torch.channels_last))
    fused_acc = evaluate(torch_classifier(fused, data.train.classes), "digits", workers=0)["top1"]
    prof = profile(model, x.shape[-1])
    rows = [dict(stage="fused eager", top1=fused_acc, params=prof.params_no_bn, macs=prof.macs,
                 size_kb=prof.params_no_bn * 4 / 1024, latency_ms=fused_ms)]  # fmt: skip
    for stage, path, write in (
        ("onnx fp32", out / "model.onnx", lambda p: export(model, p, "onnx", class_names=data.train.classes)),
        ("onnx int8", out / "model.int8.onnx", lambda p: export_int8(model, p, calib)),
        ("onnx int8 QAT", out / "model.qat.onnx", lambda p: export_int8(model, p, calib, qat="digits")),
    ):
        write(path)
        clf = load_classifier(str(path))
        acc = evaluate(clf, "digits", workers=0)["top1"]
        # ONNX Runtime only: OpenVINO's int8 inference crashed (SIGSEGV) in this process after NNCF on an
        # Intel Xeon with AMX (2026-12-03; alone it runs); `mobilenets bench` compares the runtimes.
        precision = "int8" if "int8" in stage else "fp32"
        latency = _latency_ms(onnxruntime_runner(path.read_bytes(), precision), x.numpy())
        rows.append(dict(stage=stage, top1=acc, params=prof.params_no_bn, macs=prof.macs,
                         size_kb=path.stat().st_size / 1024, latency_ms=latency))  # fmt: skip
    return rows
