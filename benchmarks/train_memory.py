"""Peak resident memory of the default ``mobilenets train`` (1 epoch, Google's V2 weights, every other flag
default), for a classifier, SSDLite and LR-ASPP: the trainer's resident memory, and the proportional set
size of its whole process tree (data workers and the batch-size trials included), sampled every 0.1 s.

    python benchmarks/train_memory.py [--out /tmp/train_memory]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
V2 = SHARED / "weights" / "mobilenet_v2_1.0_224_quant.tflite"
RUNS = {
    "mobilenet_v2": ["--data", str(SHARED / "hymenoptera")],
    "ssdlite_mobilenet_v2": ["--data", str(SHARED / "coco128" / "object_detection" / "config.yaml")],
    "lraspp_mobilenet_v2": ["--data", str(SHARED / "coco128" / "semantic_segmentation" / "config.yaml")],
}


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that share them (forked data
    workers share most of the trainer's), so a tree's sum counts each page once."""
    try:
        line = next(x for x in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if x.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0
    return int(line.split()[1]) * 1024


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found + [g for c in found for g in children(c)]


def measure(cmd: list[str]) -> tuple[int, int, float, str, str]:
    """(trainer peak, tree peak, seconds, the batch size chosen, "ok" or the error) of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    own = tree = 0
    while proc.poll() is None:
        main = rss_bytes(proc.pid)
        own, tree = max(own, main), max(tree, sum(pss_bytes(p) for p in [proc.pid, *children(proc.pid)]))
        time.sleep(0.1)
    err = proc.stderr.read()
    batch = re.search(r"batch size (\d+)", err)
    status = "ok" if proc.returncode == 0 else err.strip().splitlines()[-1]
    return own, tree, time.perf_counter() - t0, batch.group(1) if batch else "?", status


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/train_memory")
    args = p.parse_args()
    print("| model | batch size (auto) | trainer peak RSS GB | process tree peak PSS GB | wall s | exit |")
    print("|---|---|---|---|---|---|")
    for model, extra in RUNS.items():
        cmd = [sys.executable, "-m", "mobilenets", "train", "--model", model, "--pretrained", str(V2),
               "--output", f"{args.out}/{model}", "--epochs", "1", *extra]  # fmt: skip
        own, tree, wall, batch, status = measure(cmd)
        print(f"| {model} | {batch} | {own / 1e9:.2f} | {tree / 1e9:.2f} | {wall:.0f} | {status} |", flush=True)


if __name__ == "__main__":
    main()
