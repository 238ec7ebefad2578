"""The int8 accuracy budget of the phone formats: ``export --format tflite|pte --int8 --max-drop P --val DIR``.

    python benchmarks/bench_phone_budget.py [--weights NAME ...] [--budgets 0.5 0.3] [--formats tflite pte]
        [--no-heldout]

For Google's float MobileNetV1 0.25 (by default), LiteRT and ExecuTorch, each budget: the export with the
128 COCO photos as --calib and, as --val, (a) the 1300 ImageNet images, the issue's command (the drop on
them is what the budget measured in the runtime), and (b) half of them (every other image), the file then
scored on the other half (held out: what the budget gives on images it never saw). Prints the drop of
plain int8 and with the budget, the layers kept float, the file's size and the export's seconds, as
Markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mobilenets.data.preprocess import preprocess
from mobilenets.deploy.bench import bench_header
from mobilenets.deploy.mobile import export_mobile
from mobilenets.deploy.phone_budget import top1
from mobilenets.runtime.files import FORMAT_RUNTIMES
from mobilenets.runtime.runners import open_runner
from mobilenets.weights.factory import load_tflite

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VAL = DATA / "imagenet-val-1300"


def _half(rows: list[dict[str, str]], folder: Path) -> Path:
    """``rows`` as an ``eval --data`` folder of links to the real images."""
    (folder / "images").mkdir(parents=True)
    for r in rows:
        (folder / "images" / r["file"]).symlink_to(VAL / "images" / r["file"])
    with (folder / "labels.csv").open("w") as f:
        f.write("file,label\n" + "".join(f"{r['file']},{r['label']}\n" for r in rows))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", nargs="+", default=["mobilenet_v1_0.25_224_float"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.5, 0.3])
    parser.add_argument("--formats", nargs="+", default=["tflite", "pte"])
    parser.add_argument("--no-heldout", action="store_true", help="only the 1300 images as --val")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with (VAL / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    print(bench_header(2))
    print("| model | runtime | --max-drop | --val | plain int8 drop | drop with the budget | held-out drop "
          "| layers kept float | MB | export s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        seen, held = _half(rows[::2], Path(tmp, "seen")), rows[1::2]
        for name in args.weights:
            model = load_tflite(DATA / "weights" / f"{name}.tflite").eval()
            images = torch.stack([preprocess(VAL / "images" / r["file"], model.pretrained_cfg) for r in held]).numpy()
            labels = np.array([int(r["label"]) for r in held])
            fp32 = top1(open_runner("eager", model, "fp32"), images, labels)
            for fmt in args.formats:
                for budget in args.budgets:
                    for val in (VAL,) if args.no_heldout else (VAL, seen):
                        out = Path(tmp, f"q.{fmt}")
                        start = time.perf_counter()
                        report = export_mobile(model, out, fmt, calib=DATA / "coco128" / "images", int8=True,
                                               val=val, max_drop=budget)  # fmt: skip
                        seconds = time.perf_counter() - start
                        got = report["budget"]
                        heldout = ""
                        if val == seen:
                            run = open_runner(FORMAT_RUNTIMES[fmt], out.read_bytes(), "int8")
                            heldout = f"{fp32 - top1(run, images, labels):.2f}"
                        print(f"| {name} | {FORMAT_RUNTIMES[fmt]} | {budget} | {got['val_images']} "
                              f"| {got['ptq_drop']:.2f} | {got['drop']:.2f} | {heldout} "
                              f"| {', '.join(got['kept_float'])} | {report['bytes'] / 1e6:.2f} | {seconds:.0f} |",
                              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
