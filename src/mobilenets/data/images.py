"""Training data: image folders, scikit-learn's digits, CIFAR-10/100; checks and augmentation."""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from mobilenets.data.preprocess import class_folders, list_images, load_rgb
from mobilenets.util.errors import BadImageError, DataError
from mobilenets.util.extras import needs

BUILTIN = ("digits", "cifar10", "cifar100")
CIFAR = {
    "cifar10": ("cifar-10-batches-py", "CIFAR10", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                "batches.meta", "label_names", b"labels"),
    "cifar100": ("cifar-100-python", "CIFAR100", ["train"], "test", "meta", "fine_label_names", b"fine_labels"),
}  # fmt: skip


@dataclass
class Split:
    """Samples as (image source, label): a path, or a uint8 HWC array for in-memory datasets."""

    samples: list[tuple[Any, int]]
    classes: list[str]
    bad: list[str] = field(default_factory=list)


@dataclass
class TrainData:
    train: Split
    val: Split
    small: bool  # tiny images (digits, CIFAR, folders of them): pad-crop-flip instead of resized crops
    name: str

    @property
    def flip(self) -> bool:
        """Whether horizontal flips are fair augmentation (a mirrored digit is not the same digit)."""
        return self.name != "digits"


def data_root() -> Path:
    """Where built-in datasets are cached: ``$MOBILENETS_DATA`` or ``~/.cache/mobilenets/data``."""
    return Path(os.environ.get("MOBILENETS_DATA", Path.home() / ".cache" / "mobilenets" / "data"))


def _check_images(paths: list[Path]) -> list[str]:
    """Paths that do not decode (zero bytes, truncated, not an image)."""

    def bad(path: Path) -> str | None:
        try:
            load_rgb(path)
        except BadImageError:
            return str(path)
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [p for p in pool.map(bad, paths) if p]


def _folder_split(root: Path, classes: list[str] | None = None) -> Split:
    folders = class_folders(root)
    names = [f.name for f in folders]
    if classes is not None and names != classes:
        missing, extra = sorted(set(classes) - set(names)), sorted(set(names) - set(classes))
        raise DataError(f"The classes of {root} differ from train/: missing {missing or 'none'}, "
                        f"extra {extra or 'none'}; use the same class folders in both.")  # fmt: skip
    paths = [(p, i) for i, f in enumerate(folders) for p in list_images(f)]
    bad = set(_check_images([p for p, _ in paths]))
    return Split([(p, y) for p, y in paths if str(p) not in bad], names, sorted(bad))


def _digits() -> tuple[Split, Split]:
    """scikit-learn's 1797 real 8x8 handwritten digits, split 80/20 stratified with a fixed seed."""
    with needs("The digits dataset (scikit-learn's)"):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0 * 255).astype(np.uint8)
    idx_train, idx_val = train_test_split(np.arange(len(images)), test_size=0.2, random_state=0,
                                          stratify=digits.target)  # fmt: skip
    classes = [str(i) for i in range(10)]
    make = lambda idx: Split([(images[i], int(digits.target[i])) for i in idx], classes)  # noqa: E731
    return make(idx_train), make(idx_val)


class _SafeUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles: allow numpy arrays and builtins only, never arbitrary code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}  # fmt: skip

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def _read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, list[int]]:
    try:
        with path.open("rb") as f:
            batch = _SafeUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = [int(y) for y in batch[label_key]]
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a CIFAR batch file ({type(exc).__name__}: {exc}); delete it "
                        "to download again.") from None  # fmt: skip
    if len(labels) != len(data):
        raise DataError(f"{path} has {len(data)} images but {len(labels)} labels.")
    return data, labels


def _cifar(name: str, root: Path) -> tuple[Split, Split]:
    """CIFAR-10/100 in their own python format under ``root``, downloaded by torchvision if missing."""
    folder, tv_name, train_files, test_file, meta_file, names_key, label_key = CIFAR[name]
    base = root / folder
    if not (base / meta_file).is_file():
        import torchvision.datasets as tvd

        dataset = getattr(tvd, tv_name)
        try:
            dataset(str(root), train=True, download=True)
        except Exception as exc:  # noqa: BLE001 - offline, DNS, HTTP errors alike
            raise DataError(f"{name} is not in {base} and could not be downloaded ({type(exc).__name__}); "
                            f"offline, fetch {dataset.url} and extract it into {root}.") from None  # fmt: skip
    with (base / meta_file).open("rb") as f:
        meta = _SafeUnpickler(f, encoding="bytes").load()
    classes = [c.decode() if isinstance(c, bytes) else c for c in meta[names_key.encode()]]
    splits = []
    for files in (train_files, [test_file]):
        arrays, labels = zip(*(_read_cifar_batch(base / f, label_key) for f in files))
        data = np.concatenate(arrays)
        ys = [y for ls in labels for y in ls]
        splits.append(Split([(data[i], ys[i]) for i in range(len(ys))], classes))
    return splits[0], splits[1]


def load_train_data(data: str, option: str = "--data") -> TrainData:
    """``data``: ``digits``, ``cifar10``, ``cifar100`` or a folder with ``train/`` and ``val/`` (or
    ``test/``) class subfolders. Unreadable images are left out and listed in ``bad``. Errors name the
    command-line ``option`` that gave ``data``."""
    if data == "digits":
        return TrainData(*_digits(), small=True, name="digits")
    if data in CIFAR:
        return TrainData(*_cifar(data, data_root()), small=True, name=data)
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"{option} {data} is neither a folder nor one of {', '.join(BUILTIN)}.")
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder; it needs train/ and val/ (or test/) class subfolders.")
    val_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if val_dir is None:
        raise DataError(f"{root} has no val/ or test/ folder beside train/.")
    train = _folder_split(root / "train")
    if len(train.classes) < 2:
        raise DataError(f"{root / 'train'} has {len(train.classes)} class folder(s); a classifier needs at "
                        "least 2 (one subfolder of images per class).")  # fmt: skip
    val = _folder_split(val_dir, train.classes)
    for split, folder in ((train, root / "train"), (val, val_dir)):
        if not split.samples:
            raise DataError(f"{folder} holds no readable image; put the images in its class subfolders.")
    return TrainData(train, val, small=_tiny(train), name=root.name)


SMALL_SIDE = 64  # images this small get CIFAR's augmentation: a random resized crop of 32 px destroys them


def _tiny(split: Split, sample: int = 64) -> bool:
    """Whether a folder holds tiny images (CIFAR-like, at most ``SMALL_SIDE`` px on each side), judged
    from the headers of up to ``sample`` images spread over the split."""
    step = max(1, len(split.samples) // sample)
    sizes = []
    for path, _ in split.samples[::step][:sample]:
        with Image.open(path) as img:
            sizes.append(max(img.size))
    return bool(sizes) and max(sizes) <= SMALL_SIDE


class ImageDataset(Dataset):
    """A :class:`Split` through a transform; in-memory arrays and files alike become RGB PIL images."""

    def __init__(self, split: Split, transform: Any) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        source, label = self.split.samples[i]
        img = Image.fromarray(source).convert("RGB") if isinstance(source, np.ndarray) else load_rgb(source)
        return self.transform(img), label


def build_transforms(
    cfg: dict[str, Any],
    small: bool,
    augment: str,
    train: bool,
    flip: bool = True,
    randaug_magnitude: int = 9,
    pad_crop: bool = True,
) -> v2.Compose:
    """torchvision.transforms.v2 pipelines. Train: random resized crop + flip + ``augment``
    (``trivial``, ``randaug`` at ``randaug_magnitude`` or ``none``); tiny images: pad-and-crop if
    ``pad_crop`` (+ flip if ``flip``). Eval: resize to ``size / crop_pct`` and centre-crop (tiny images:
    resize)."""
    size = cfg["input_size"][1]
    norm = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg["mean"], cfg["std"])]
    if not train:
        if small:
            return v2.Compose([v2.Resize((size, size), antialias=True), *norm])
        return v2.Compose([v2.Resize(round(size / cfg.get("crop_pct", 0.875)), antialias=True),
                           v2.CenterCrop(size), *norm])  # fmt: skip
    if small:
        ops: list[Any] = [v2.Resize((size, size), antialias=True)]
        ops += [v2.RandomCrop(size, padding=size // 8)] if pad_crop else []
        ops += [v2.RandomHorizontalFlip()] if flip else []
    else:
        ops = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    if augment == "trivial":
        ops.append(v2.TrivialAugmentWide())
    elif augment == "randaug":
        ops.append(v2.RandAugment(magnitude=randaug_magnitude))
    return v2.Compose([*ops, *norm])
