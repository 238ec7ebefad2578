"""Fetch and load pretrained weights: torchvision/timm releases through the torch.hub cache, or files.

Files are never unpickled with code execution: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from .convert import convert_for

# torchvision's recommended ImageNet weights per model (the weight enum gives URL and transforms).
TORCHVISION_WEIGHTS = {
    "mobilenet_v2": ("MobileNet_V2_Weights", "IMAGENET1K_V2"),
    "mobilenet_v3_large": ("MobileNet_V3_Large_Weights", "IMAGENET1K_V2"),
    "mobilenet_v3_small": ("MobileNet_V3_Small_Weights", "IMAGENET1K_V1"),
}
# torchvision's COCO weights of its two MobileNet detection and segmentation models.
TORCHVISION_TASK_WEIGHTS = {
    "ssdlite320_mobilenet_v3_large": "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1",
    "lraspp_mobilenet_v3_large": "LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1",
}
# timm's default ImageNet weights on the Hugging Face hub, per (model, width).
TIMM_WEIGHTS = {
    ("mobilenet_v1", 1.0): "mobilenetv1_100.ra4_e3600_r224_in1k",
    ("mobilenet_v2", 0.5): "mobilenetv2_050.lamb_in1k",
    ("mobilenet_v2", 1.0): "mobilenetv2_100.ra_in1k",
    ("mobilenet_v2", 1.4): "mobilenetv2_140.ra_in1k",
    ("mobilenet_v3_large", 1.0): "mobilenetv3_large_100.ra_in1k",
    ("mobilenet_v3_small", 0.5): "mobilenetv3_small_050.lamb_in1k",
    ("mobilenet_v3_small", 0.75): "mobilenetv3_small_075.lamb_in1k",
    ("mobilenet_v3_small", 1.0): "mobilenetv3_small_100.lamb_in1k",
    ("mobilenet_v4_conv_small", 1.0): "mobilenetv4_conv_small.e2400_r224_in1k",
    ("mobilenet_v4_conv_medium", 1.0): "mobilenetv4_conv_medium.e500_r256_in1k",
    ("mobilenet_v4_conv_large", 1.0): "mobilenetv4_conv_large.e600_r384_in1k",
    ("mobilenet_v4_hybrid_medium", 1.0): "mobilenetv4_hybrid_medium.ix_e550_r256_in1k",
    ("mobilenet_v4_hybrid_large", 1.0): "mobilenetv4_hybrid_large.ix_e600_r384_in1k",
}
# timm's evaluation input size and crop for tags not at 224 px / 0.875 (its pretrained_cfg).
TIMM_EVAL = {
    "mobilenetv4_conv_medium.e500_r256_in1k": (256, 0.95),
    "mobilenetv4_conv_large.e600_r384_in1k": (384, 0.95),
    "mobilenetv4_hybrid_medium.ix_e550_r256_in1k": (256, 0.95),
    "mobilenetv4_hybrid_large.ix_e600_r384_in1k": (384, 0.95),
}


class WeightsError(ValueError):
    """A weights file or source that cannot be loaded; the message says why and what to do."""


def hub_dir() -> Path:
    """torch.hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch(url: str, filename: str | None = None) -> Path:
    """The cached file for ``url``, downloaded into the torch.hub cache if missing."""
    path = hub_dir() / (filename or os.path.basename(url))
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
        raise WeightsError(
            f"Could not download {url} ({type(exc).__name__}); offline, fetch it elsewhere and put it at {path}."
        ) from None
    return path


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a ``torch.save``-d state dict / checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{path} is not a readable safetensors file ({exc}).") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"Refusing to load {path}: unpickling it would run code or build objects other than "
            f"tensors ({str(exc).splitlines()[0][:160]}); save a plain state dict or safetensors."
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {exc}).") from None
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict of tensors.")
    return obj


def detect_source(state_dict: dict[str, torch.Tensor]) -> str:
    """``torchvision``, ``timm`` or ``mobilenets``, from the key layout."""
    keys = [k.removeprefix("module.") for k in state_dict]
    if any(k.startswith("features.") for k in keys):
        return "torchvision"
    if any(k.startswith("conv_stem.") for k in keys):
        return "timm"
    if any(k.startswith("stem.") for k in keys):
        return "mobilenets"
    raise WeightsError(
        f"The state dict is neither torchvision's, timm's nor ours (first key {keys[0] if keys else None!r})."
    )


def _torchvision_release(name: str) -> tuple[Path, dict[str, Any]]:
    import torchvision.models as tvm

    if name in TORCHVISION_TASK_WEIGHTS:
        weights = tvm.get_weight(TORCHVISION_TASK_WEIGHTS[name])
        cfg = dict(source=f"torchvision {TORCHVISION_TASK_WEIGHTS[name]}", url=weights.url,
                   categories=list(weights.meta["categories"]))  # fmt: skip
        return fetch(weights.url), cfg
    if name not in TORCHVISION_WEIGHTS:
        raise WeightsError(f"torchvision publishes no {name} weights; it has {', '.join(TORCHVISION_WEIGHTS)}.")
    enum, tag = TORCHVISION_WEIGHTS[name]
    weights = getattr(getattr(tvm, enum), tag)
    tf = weights.transforms()
    crop, resize = tf.crop_size[0], tf.resize_size[0]
    cfg = dict(
        input_size=(3, crop, crop),
        crop_pct=crop / resize,
        interpolation="bilinear",
        mean=tuple(tf.mean),
        std=tuple(tf.std),
        source=f"torchvision {enum}.{tag}",
        url=weights.url,
    )
    return fetch(weights.url), cfg


def _timm_release(name: str, width_mult: float) -> tuple[Path, dict[str, Any]]:
    tag = TIMM_WEIGHTS.get((name, width_mult))
    if tag is None:
        have = ", ".join(f"{n} width_mult={w}" for n, w in TIMM_WEIGHTS)
        raise WeightsError(f"timm publishes no weights for {name} width_mult={width_mult}; it has {have}.")
    url = f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors"
    size, crop = TIMM_EVAL.get(tag, (224, 0.875))
    cfg = dict(
        input_size=(3, size, size),
        crop_pct=crop,
        interpolation="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=f"timm {tag}",
        url=url,
    )
    return fetch(url, f"{tag}.safetensors"), cfg


def load_pretrained(model: nn.Module, pretrained: str | os.PathLike) -> nn.Module:
    """Load ``pretrained`` (``"torchvision"``, ``"timm"`` or a weights file) into ``model`` in place,
    and record the weights' preprocessing in ``model.pretrained_cfg``."""
    name, args = model.model_name, model.model_args
    cfg: dict[str, Any] = dict(model.pretrained_cfg)
    if pretrained == "torchvision":
        path, cfg = _torchvision_release(name)
        source = "torchvision"
    elif pretrained == "timm":
        path, cfg = _timm_release(name, float(args.get("width_mult", 1.0)))
        source = "timm"
    else:
        path, source = Path(pretrained), None
        if path.suffix == ".tflite":
            raise WeightsError("Load .tflite files with mobilenets.load_tflite(path).")
    state_dict = read_state_dict(path)
    source = source or detect_source(state_dict)
    try:
        converted = convert_for(model, state_dict, source)
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    model.load_state_dict(converted)
    cfg.setdefault("source", str(path))
    model.pretrained_cfg = cfg
    return model
