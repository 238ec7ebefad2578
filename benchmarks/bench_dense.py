"""Detection and segmentation on coco128 (train on train2017, evaluate on val2017), and SSDLite training
throughput against torchvision's in the same loop.

    python benchmarks/bench_dense.py transfer [--epochs 12] [--keep DIR] [--task T] [--start S]
    python benchmarks/bench_dense.py throughput [--steps 6]
    python benchmarks/bench_dense.py int8 --checkpoint DIR [--phone]

``transfer``: SSDLite (320 px) and LR-ASPP (256 px, the 21 VOC classes) on MobileNetV2, once from Google's
ImageNet weights (../shared/data/weights/mobilenet_v2_1.0_224_quant.tflite, the ``finetune`` recipe) and
once from random initialisation (the ``short`` recipe), the same epochs and batch, through
``mobilenets train``; prints the best validation mAP / mIoU and the wall time of each.
``int8``: a trained segmentation checkpoint (e.g. ``transfer --keep``'s LR-ASPP) in PyTorch, as fp32 ONNX
and as int8 ONNX (calibrated on 64 coco128 train2017 photos), each run over coco128 val2017 in ONNX Runtime:
mIoU and pixel accuracy; with ``--phone`` also fp32 and int8 LiteRT and ExecuTorch files at the
checkpoint's size (square: each photo is resized to it and the mask back, as an app would).
``throughput``: images/s of a training step (SSD losses, AdamW, batch 8, 320 px, 2 threads) of our
``ssdlite320_mobilenet_v3_large`` and torchvision's, interleaved on the same batches.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO128 = DATA / "coco128"
V2_WEIGHTS = DATA / "weights" / "mobilenet_v2_1.0_224_quant.tflite"


def transfer(epochs: int, keep: str | None, task: str, starts: tuple[str, ...]) -> None:
    import json
    import shutil

    runs = [
        ("ssdlite_mobilenet_v2", COCO128 / "object_detection" / "config.yaml", ["--img-size", "320"], "map"),
        ("lraspp_mobilenet_v2", COCO128 / "semantic_segmentation" / "config.yaml",
         ["--img-size", "256", "--label-map", "coco-voc"], "miou"),
    ]  # fmt: skip
    print("| model | start | recipe | epochs | best val | wall s |\n|---|---|---|---|---|---|")
    for model, data, extra, metric in runs:
        if task != "both" and (task == "detection") != model.startswith("ssdlite"):
            continue
        for start in starts:
            with tempfile.TemporaryDirectory() as out:
                cmd = [sys.executable, "-m", "mobilenets", "train", "--model", model, "--data", str(data),
                       "--output", out, "--epochs", str(epochs), "--batch-size", "16", *extra]  # fmt: skip
                if start == "imagenet":
                    cmd += ["--pretrained", str(V2_WEIGHTS)]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                wall = time.perf_counter() - t0
                meta = json.loads((Path(out) / "model.json").read_text())
                if keep:
                    shutil.copytree(out, Path(keep) / f"{model}-{start}", dirs_exist_ok=True)
            best = meta["metrics"][f"val_{metric}"]
            recipe = meta["recipe"]["name"]
            print(f"| {model} | {start} | {recipe} | {epochs} | {metric} {best:.2%} (epoch {meta['metrics']['epoch']}) "
                  f"| {wall:.0f} |", flush=True)  # fmt: skip


def int8(checkpoint: str, phone: bool) -> None:
    from mobilenets.deploy.export import export
    from mobilenets.deploy.quantize import export_int8
    from mobilenets.evaluate.dense import evaluate_dense
    from mobilenets.runtime.classifier import load_classifier

    data = str(COCO128 / "semantic_segmentation" / "config.yaml")
    calib = sorted((COCO128 / "images" / "train2017").glob("*.jpg"))[:64]
    print("| model | runtime | precision | mIoU | pixel acc | n |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        calib_dir = Path(tmp) / "calib"
        calib_dir.mkdir()
        for p in calib:
            (calib_dir / p.name).symlink_to(p)
        clf = load_classifier(checkpoint=checkpoint)
        export(clf.model, Path(tmp) / "fp32.onnx")
        export_int8(clf.model, Path(tmp) / "int8.onnx", str(calib_dir), calib_size=64)
        files = [f"{tmp}/fp32.onnx", f"{tmp}/int8.onnx"]
        for fmt in ("tflite", "pte") if phone else ():
            size = clf.cfg["input_size"][-1]
            export(clf.model, Path(tmp) / f"fp32.{fmt}", fmt, img_size=size)
            export(clf.model, Path(tmp) / f"int8.{fmt}", fmt, img_size=size, int8=True, calib=str(calib_dir))
            files += [f"{tmp}/fp32.{fmt}", f"{tmp}/int8.{fmt}"]
        for loaded in (clf, *map(lambda f: load_classifier(weights=f), files)):
            r = evaluate_dense(loaded, data, workers=0)
            runtime = loaded.description.split(" ")[0] if loaded.model is None else "PyTorch"
            precision = "int8" if "int8" in loaded.description else "fp32"
            print(f"| {clf.model.model_name} | {runtime} | {precision} | {r['miou']:.2%} | {r['pixel_acc']:.2%} "
                  f"| {r['n']} |", flush=True)  # fmt: skip


def throughput(steps: int) -> None:
    from mobilenets import create_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    models = {"torchvision": torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None,
                                                                                        weights_backbone=None),
              "ours": create_model("ssdlite320_mobilenet_v3_large")}  # fmt: skip
    opts = {k: torch.optim.AdamW(m.parameters(), 1e-3) for k, m in models.items()}
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 320, 320, generator=gen) for _ in range(8)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 200.0, 220.0], [100.0, 50.0, 300.0, 310.0]]),
                "labels": torch.tensor([1, 18])} for _ in images]  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(steps + 1):
        for k, m in models.items():
            m.train()
            t0 = time.perf_counter()
            loss = sum(m(images, targets).values())
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if i:  # the first step warms up
                times[k].append(time.perf_counter() - t0)
    ips = {k: len(images) / statistics.median(v) for k, v in times.items()}
    print("| model | torchvision images/s | ours images/s | ratio |\n|---|---|---|---|")
    print(f"| ssdlite320_mobilenet_v3_large | {ips['torchvision']:.1f} | {ips['ours']:.1f} | "
          f"{ips['ours'] / ips['torchvision']:.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("transfer")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--keep", metavar="DIR", help="keep the training outputs in DIR/<model>-<start>")
    p.add_argument("--task", choices=["detection", "segmentation", "both"], default="both")
    p.add_argument("--start", choices=["imagenet", "scratch", "both"], default="both")
    sub.add_parser("throughput").add_argument("--steps", type=int, default=6)
    p = sub.add_parser("int8")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--phone", action="store_true", help="also LiteRT and ExecuTorch files (fixed size)")
    args = parser.parse_args()
    if args.what == "transfer":
        starts = ("imagenet", "scratch") if args.start == "both" else (args.start,)
        transfer(args.epochs, args.keep, args.task, starts)
    elif args.what == "int8":
        int8(args.checkpoint, args.phone)
    else:
        throughput(args.steps)


if __name__ == "__main__":
    main()
