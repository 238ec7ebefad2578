"""Training benchmarks: throughput vs torchvision in the same loop, and CIFAR-10 from scratch.

    python benchmarks/bench_train.py throughput [--steps 6]
    python benchmarks/bench_train.py cifar [--subset 10000] [--epochs 5]

``throughput``: images/s of a training step (AdamW, batch 16, 224 px, 2 threads) for our models and
torchvision's same architectures, interleaved. ``cifar``: the real CIFAR-10 JPEGs in
../shared/data/cifar10; the same loop (AdamW + cosine + label smoothing, pad-crop-flip, 32 px, batch
128) trains torchvision's MobileNetV3-Small and ours (same architecture, and ours with
``small_input=True``); test top-1 and wall time each.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset

from mobilenets import create_model
from mobilenets.data.images import ImageDataset, build_transforms, load_train_data

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def throughput(steps: int) -> None:
    torch.set_num_threads(2)
    print("| model | torchvision images/s | ours images/s | ratio |\n|---|---|---|---|")
    for name in ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"):
        models = {"tv": getattr(torchvision.models, name)(), "ours": create_model(name)}
        opts = {k: torch.optim.AdamW(m.parameters(), 1e-3) for k, m in models.items()}
        x, y = torch.randn(16, 3, 224, 224), torch.randint(0, 1000, (16,))
        times = {k: [] for k in models}
        for i in range(steps + 1):
            for k, m in models.items():
                t = time.perf_counter()
                loss = nn.functional.cross_entropy(m(x), y)
                opts[k].zero_grad()
                loss.backward()
                opts[k].step()
                if i:
                    times[k].append(time.perf_counter() - t)
        tv, ours = (16 / statistics.median(times[k]) for k in ("tv", "ours"))
        print(f"| {name} | {tv:.1f} | {ours:.1f} | {ours / tv:.2f} |", flush=True)


def _run(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader, epochs: int) -> tuple[float, float]:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    total = epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / len(train_loader))
                                              * 0.5 * (1 + math.cos(math.pi * s / total)))  # fmt: skip
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in train_loader:
            loss = crit(model(x.contiguous(memory_format=torch.channels_last)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    wall = time.perf_counter() - start
    model.eval()
    correct = n = 0
    with torch.inference_mode():
        for x, y in test_loader:
            correct += (model(x).argmax(1) == y).sum().item()
            n += len(y)
    return correct / n, wall


def cifar(subset: int, epochs: int) -> None:
    torch.set_num_threads(2)
    data = load_train_data(str(DATA / "cifar10"))
    cfg = {"input_size": (3, 32, 32), "mean": (0.4914, 0.4822, 0.4465), "std": (0.247, 0.243, 0.261)}
    train = ImageDataset(data.train, build_transforms(cfg, True, "none", True))
    test = ImageDataset(data.val, build_transforms(cfg, True, "none", False))
    if subset < len(train):
        train = Subset(train, torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:subset].tolist())
    print(f"CIFAR-10: {len(train)} training images, {epochs} epochs, test on {len(test)}")
    print("| model | test top-1 | train wall s |\n|---|---|---|")
    for label, build in (
        ("torchvision mobilenet_v3_small", lambda: torchvision.models.mobilenet_v3_small(num_classes=10)),
        ("ours mobilenet_v3_small", lambda: create_model("mobilenet_v3_small", num_classes=10)),
        ("ours mobilenet_v3_small small_input=True", lambda: create_model("mobilenet_v3_small", num_classes=10,
                                                                           small_input=True)),
    ):  # fmt: skip
        torch.manual_seed(0)
        model = build().to(memory_format=torch.channels_last)
        gen = torch.Generator().manual_seed(0)
        loader = DataLoader(train, 128, shuffle=True, num_workers=2, generator=gen, drop_last=True)
        top1, wall = _run(model, loader, DataLoader(test, 256, num_workers=2), epochs)
        print(f"| {label} | {top1:.2%} | {wall:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["throughput", "cifar"])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    throughput(args.steps) if args.what == "throughput" else cifar(args.subset, args.epochs)


if __name__ == "__main__":
    main()
