"""Image loading and the evaluation preprocessing that travels with a model's weights."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFile

from mobilenets.util.errors import BadImageError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def load_rgb(path: str | Path | BinaryIO) -> Image.Image:
    """An RGB PIL image; CMYK, RGBA, palette, 16-bit grey and 1-pixel images are converted. ``path`` may be
    an open binary file (its ``name`` is what an error names)."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(img, dtype=np.float64)
                    img = Image.fromarray((arr / max(arr.max(), 1) * 255).astype(np.uint8), "L")
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    img = img.convert("RGBA")
                    background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                    img = Image.alpha_composite(background, img)
                return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        name = getattr(path, "name", path)
        raise BadImageError(f"{name} is not a readable image ({type(exc).__name__}: {exc})") from None


def eval_resize_crop(img: Image.Image, cfg: dict[str, Any]) -> Image.Image:
    """Resize and centre-crop as the weights expect.

    ``tf-slim`` (Google's weights): central crop of ``crop_pct`` of the image, then bilinear resize to
    the input size. Otherwise (torchvision/timm): resize the shorter side to ``size / crop_pct``,
    then centre-crop ``size``.
    """
    _, h, w = cfg["input_size"]
    crop_pct = cfg.get("crop_pct", 0.875)
    resample = Image.BICUBIC if cfg.get("interpolation") == "bicubic" else Image.BILINEAR
    W, H = img.size
    if cfg.get("resize_mode") == "tf-slim":
        cw, ch = round(W * crop_pct), round(H * crop_pct)
        left, top = (W - cw) // 2, (H - ch) // 2
        return img.crop((left, top, left + cw, top + ch)).resize((w, h), resample)
    short = round(min(h, w) / crop_pct)
    scale = short / min(W, H)
    img = img.resize((max(w, round(W * scale)), max(h, round(H * scale))), resample)
    W, H = img.size
    left, top = (W - w) // 2, (H - h) // 2
    return img.crop((left, top, left + w, top + h))


def to_tensor(img: Image.Image | np.ndarray, cfg: dict[str, Any]) -> torch.Tensor:
    """CHW float tensor normalized with the weights' mean and std."""
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float32).view(3, 1, 1)
    return (arr - mean) / std


def preprocess(path: str | Path, cfg: dict[str, Any]) -> torch.Tensor:
    """Load ``path`` and apply the evaluation preprocessing of ``cfg`` (a model's ``pretrained_cfg``)."""
    return to_tensor(eval_resize_crop(load_rgb(path), cfg), cfg)


class EvalTransform:
    """The evaluation preprocessing of ``cfg`` as a torchvision-style transform on PIL images."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return to_tensor(eval_resize_crop(img, self.cfg), self.cfg)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of ``root``; empty ones are an error naming them."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root} has no class subfolders (and no labels.csv with images/).")
    empty = [p.name for p in folders if not list_images(p)]
    if empty:
        raise DataError(f"Class folder(s) with no images in {root}: {', '.join(empty)}; "
                        "add images or remove them.")  # fmt: skip
    return folders
