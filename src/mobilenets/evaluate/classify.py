"""Top-1 / top-5 evaluation of a :class:`~mobilenets.runtime.classifier.Classifier` on a folder of images."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mobilenets.data.images import BUILTIN, load_train_data
from mobilenets.data.preprocess import (
    BadImageError,
    DataError,
    class_folders,
    eval_resize_crop,
    list_images,
    preprocess,
    to_tensor,
)
from mobilenets.runtime.classifier import Classifier
from mobilenets.weights.classes import imagenet_wnids


@dataclass
class EvalSet:
    samples: list[tuple[Path, int]]
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len({label for _, label in self.samples}) == 1:
            self.warnings.append(f"all {len(self.samples)} images are of one class: top-1 says how often the "
                                 "model outputs it, not how well it tells classes apart.")  # fmt: skip


def order_warning(data: object, data_classes: list[str], model_classes: list[str]) -> list[str]:
    """The warning for ``data`` whose class names are not the model's, matched to them by order alone
    (none for a model without class names, ``0``, ``1``, ...)."""
    if model_classes == [str(i) for i in range(len(model_classes))]:
        return []
    return [f"{data}'s classes ({', '.join(data_classes[:3])}, ...) are not the model's "
            f"({', '.join(model_classes[:3])}, ...) and were matched by their order: the scores mean "
            "something only if that order is the model's."]  # fmt: skip


def _label(row: dict[str, str], line: int, path: Path, num_classes: int) -> int:
    """A labels.csv row's class index, one the model can output."""
    try:
        label = int(row["label"])
    except (TypeError, ValueError):
        raise DataError(f"{path}:{line} has label {row['label']!r}; labels are class indices.") from None
    if not 0 <= label < num_classes:
        raise DataError(f"{path}:{line} has label {label}, but the model's classes are 0..{num_classes - 1}; "
                        "fix the label or evaluate a model with those classes.")  # fmt: skip
    return label


def find_eval_set(data: str | Path, model_classes: list[str]) -> EvalSet:
    """Images and labels in the model's class indices.

    ``data``: ``digits``/``cifar10``/``cifar100`` (their validation split); a folder with
    ``labels.csv`` (``file,label``) and ``images/``; or class subfolders
    (``data/val`` or ``data/test`` first if present). Folder names map to the model's classes by
    name, by ImageNet wnid for 1000-class models, or else by sorted order when the counts agree.
    """
    if str(data) in BUILTIN:
        val = load_train_data(str(data)).val
        if len(val.classes) != len(model_classes):
            raise DataError(f"{data} has {len(val.classes)} classes but the model has {len(model_classes)}.")
        return EvalSet(val.samples)
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist.")
    labels = root / "labels.csv"
    if labels.is_file():
        with labels.open() as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"file", "label"} <= set(rows[0]):
            raise DataError(f"{labels} needs a header 'file,label' and one row per image.")
        images = root / "images" if (root / "images").is_dir() else root
        return EvalSet([(images / r["file"], _label(r, n, labels, len(model_classes))) for n, r in enumerate(rows, 2)])
    for sub in ("val", "test"):
        if (root / sub).is_dir():
            root = root / sub
            break
    folders = class_folders(root)
    names = [p.name for p in folders]
    warnings: list[str] = []
    if len(model_classes) in (1000, 1001) and all(n.startswith("n") for n in names):
        wnids = imagenet_wnids()
        offset = len(model_classes) - 1000
        unknown = [n for n in names if n not in wnids]
        if unknown:
            raise DataError(f"Folder(s) {', '.join(unknown[:5])} are no ImageNet wnids.")
        index = {n: wnids.index(n) + offset for n in names}
    elif set(names) <= set(model_classes):
        index = {n: model_classes.index(n) for n in names}
    elif len(names) == len(model_classes):
        index = {n: i for i, n in enumerate(names)}
        warnings = order_warning(root, names, model_classes)
    else:
        raise DataError(f"{root} has {len(names)} classes ({', '.join(names[:5])}...) but the model "
                        f"has {len(model_classes)} ({', '.join(model_classes[:5])}...).")  # fmt: skip
    samples = [(p, index[f.name]) for f in folders for p in list_images(f)]
    return EvalSet(samples, warnings)


class _Images(Dataset):
    def __init__(self, samples: list[tuple[Path, int]], cfg: dict) -> None:
        self.samples, self.cfg = samples, cfg

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        try:
            if isinstance(path, np.ndarray):
                img = eval_resize_crop(Image.fromarray(path).convert("RGB"), self.cfg)
                return to_tensor(img, self.cfg), label, ""
            return preprocess(path, self.cfg), label, ""
        except (BadImageError, FileNotFoundError):
            _, h, w = self.cfg["input_size"]
            return torch.zeros(3, h, w), label, str(path)


def topk_hits(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """How many rows of ``logits`` have label ``y`` first, and within their top 5."""
    pred = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return int((pred[:, 0] == y).sum()), int((pred == y[:, None]).any(dim=1).sum())


def evaluate(clf: Classifier, data: str | Path, batch_size: int = 32, workers: int = 2) -> dict:
    """``{"top1", "top5", "n", "skipped", "warnings"}`` (fractions); unreadable images are skipped and
    listed; ``warnings``: why the numbers may mean little (one class, classes matched by order)."""
    ev = find_eval_set(data, clf.class_names)
    loader = DataLoader(_Images(ev.samples, clf.cfg), batch_size=batch_size, num_workers=workers)
    top1 = top5 = n = 0
    skipped: list[str] = []
    for x, y, bad in tqdm(loader, desc="eval", unit="batch", disable=not sys.stderr.isatty()):
        keep = torch.tensor([not b for b in bad])
        skipped += [b for b in bad if b]
        if not keep.any():
            continue
        hit1, hit5 = topk_hits(clf.run(x[keep]).float(), y[keep])
        top1, top5, n = top1 + hit1, top5 + hit5, n + int(keep.sum())
    if n == 0:
        raise DataError(f"No readable images in {data}.")
    return {"top1": top1 / n, "top5": top5 / n, "n": n, "skipped": skipped, "warnings": ev.warnings}


def predict_images(clf: Classifier, paths: list[str], top_k: int = 5) -> list[dict]:
    """Top-k classes with names and probabilities for each image."""
    results = []
    for path in paths:
        x = preprocess(path, clf.cfg)[None]
        probs = clf.run(x).float().softmax(dim=1)[0]
        k = min(top_k, probs.numel())
        values, indices = probs.topk(k)
        results.append({
            "image": str(path),
            "top": [{"index": int(i), "name": clf.class_names[int(i)], "prob": round(float(p), 6)}
                    for p, i in zip(values, indices)],
        })  # fmt: skip
    return results
