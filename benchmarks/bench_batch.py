"""Prediction at scale: images/s of `mobilenets predict SOURCE --output DIR` (its defaults) against a plain
PyTorch DataLoader loop with torchvision's model, and of the same job on Ray with 1 and 2 model actors.

    python benchmarks/bench_batch.py [--model mobilenet_v3_large] [--repeat 2]

Over the 1300 ImageNet photos of ../shared/data/imagenet-val-1300 (``--repeat`` times, as links of
other names in a temporary folder, so that start-up weighs less), each run alone, one after the other,
in a fresh process (`python -m mobilenets ...`, the command a user runs); peak memory is the largest sum of the resident
memory of the process and its children (DataLoader workers; Ray's processes for the Ray runs), sampled
every 0.2 s. The baseline is torchvision's `mobilenet_v3_large` (same architecture, random weights: the
work does not depend on them) behind `ImageFolder`-style loading with torchvision's transforms (resize
256, centre crop 224), a DataLoader with 2 workers, batch 32, `torch.inference_mode`, top-5 per image.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-1300"

BASELINE = """
import sys, time, torch, torchvision
from PIL import Image
from torchvision import transforms as T
paths = open(sys.argv[1]).read().split()
norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), norm])
class Images(torch.utils.data.Dataset):
    def __len__(self): return len(paths)
    def __getitem__(self, i): return tf(Image.open(paths[i]).convert("RGB"))
model = getattr(torchvision.models, sys.argv[2])().eval()
start = time.perf_counter()
rows = []
with torch.inference_mode():
    for x in torch.utils.data.DataLoader(Images(), batch_size=32, num_workers=2):
        rows += model(x).softmax(1).topk(5).indices.tolist()
print(len(rows) / (time.perf_counter() - start))
"""


def peak_rss(proc: subprocess.Popen) -> list[int]:
    """Sample the resident memory of ``proc`` and its children until it ends; returns [peak bytes]."""
    peak = [0]

    def sample() -> None:
        try:
            parent = psutil.Process(proc.pid)
            while proc.poll() is None:
                procs = [parent, *parent.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total)
                time.sleep(0.2)
        except psutil.Error:
            pass

    threading.Thread(target=sample, daemon=True).start()
    return peak


def run(cmd: list[str]) -> tuple[str, float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = peak_rss(proc)
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return out.strip().splitlines()[-1], time.perf_counter() - start, peak[0] / 2**30


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v3_large")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    listing = tmp / "list.txt"
    images = []
    for r in range(args.repeat):
        for src in sorted((DATA / "images").iterdir()):
            (tmp / f"{r}_{src.name}").symlink_to(src)
            images.append(str(tmp / f"{r}_{src.name}"))
    listing.write_text("\n".join(images) + "\n")
    out, wall, mem = run([sys.executable, "-c", BASELINE, str(listing), args.model])
    print(f"| torchvision DataLoader loop (eager fp32, 2 workers) | {float(out):.1f} | 1.00 | {wall:.1f} | {mem:.2f} |")
    base = float(out)
    jobs = [("mobilenets predict --output (defaults)", []),
            ("mobilenets predict --engine ray --workers 1", ["--engine", "ray", "--workers", "1"]),
            ("mobilenets predict --engine ray --workers 2", ["--engine", "ray", "--workers", "2"])]  # fmt: skip
    for i, (label, extra) in enumerate(jobs):
        cmd = [sys.executable, "-m", "mobilenets", "predict", str(listing), "--model", args.model,
               "--output", str(tmp / f"out{i}"), *extra]  # fmt: skip
        out, wall, mem = run(cmd)
        summary = json.loads(out)
        rate = summary["written"] / wall  # end to end: start-up, model load and backend choice included
        print(f"| {label} ({summary['backend']}) | {summary['images_per_s']:.1f} (end to end {rate:.1f}) | "
              f"{summary['images_per_s'] / base:.2f} | {wall:.1f} | {mem:.2f} |")  # fmt: skip
        assert summary["written"] == len(images), summary


if __name__ == "__main__":
    main()
