"""Fetch and load pretrained weights: torchvision/timm releases through the torch.hub cache, or files.

Files are never unpickled with code execution: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from mobilenets.util.errors import UnknownWeights, WeightsError
from mobilenets.util.files import load_tensors_only
from mobilenets.util.net import answers
from mobilenets.weights.catalog import BY_FILE, BY_NAME, Weights, release
from mobilenets.weights.convert import convert_for


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
    with path.open("rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip, or its legacy pickle
        raise WeightsError(f"{path} is neither a PyTorch checkpoint nor a safetensors file; give a state dict "
                           "saved with torch.save, or a .safetensors file.")  # fmt: skip
    try:
        obj = load_tensors_only(path)
    except pickle.UnpicklingError:
        raise WeightsError(f"Refusing to load {path}: it is a pickle that would run code or build objects other "
                           "than tensors; save a plain state dict (torch.save(model.state_dict())) or "
                           "safetensors.") from None  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{path} is a damaged PyTorch checkpoint ({type(exc).__name__}); save it again.") from None
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


def hf_cache_dir() -> Path:
    """The Hugging Face hub's cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def fetch_hf(repo: str, filename: str, url: str) -> Path:
    """A file of a Hugging Face hub repo, in that hub's cache layout (``models--ORG--NAME/refs/main`` names
    the snapshot holding it), where ``huggingface_hub`` and timm find it too; downloaded there if missing
    (with torch.hub's downloader: no ``huggingface_hub`` needed)."""
    root = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
    ref = root / "refs" / "main"
    cached = root / "snapshots" / ref.read_text().strip() / filename if ref.is_file() else None
    if cached is not None and cached.is_file():
        return cached
    host = urlparse(url).hostname or "huggingface.co"
    proxied = any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy"))
    try:
        if not (proxied or answers(host, 443)):  # fail in seconds, not after the downloader's retries
            raise ConnectionError(f"{host} does not answer")
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as head:
            commit = head.headers.get("X-Repo-Commit") or "main"
        path = root / "snapshots" / commit / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
        return path
    except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
        where = root / "snapshots" / "REVISION" / filename
        raise WeightsError(f"Could not download {url} ({type(exc).__name__}); offline, fetch it elsewhere and "
                           f"put it at {where}, with refs/main holding REVISION (the Hugging Face hub cache's "
                           "layout).") from None  # fmt: skip


def fetch_weights(weights: Weights) -> Path:
    """The cached file of a catalogue entry (downloaded into the torch.hub cache, or the Hugging Face hub's for
    ``hf_repo`` entries, if missing), checked against the entry's sha256 where the catalogue has one."""
    if weights.hf_repo:
        return fetch_hf(weights.hf_repo, weights.url.rsplit("/", 1)[-1], weights.url)  # model.safetensors
    path = fetch(weights.url, weights.cache_name)
    if weights.sha256 and hashlib.sha256(path.read_bytes()).hexdigest() != weights.sha256:
        raise WeightsError(f"{path} is not the published {weights.name} file (its sha256 differs); "
                           "delete it and download it again.")  # fmt: skip
    return path


def resolve(name: str, pretrained: str | os.PathLike, width: float = 1.0) -> Weights | None:
    """The catalogue entry ``pretrained`` names for model ``name`` at ``width`` ("torchvision", "timm", a
    ``model.tag`` name, or a release's own file name that is not a file here, fetched as the release:
    ``mobilenet_v2_1.0_224_quant.tflite``); ``None`` for a file path."""
    try:
        if pretrained in ("torchvision", "timm"):
            return release(name, str(pretrained), width)
        named = isinstance(pretrained, str) and not Path(pretrained).exists()
        if named and (pretrained in BY_NAME or pretrained in BY_FILE):
            weights = BY_NAME.get(pretrained) or BY_FILE[pretrained]
            if weights.model != name:
                raise UnknownWeights(f"{pretrained} are weights for {weights.model}, not {name}.")
            return weights
    except UnknownWeights as exc:
        raise WeightsError(str(exc)) from None
    return None


def load_pretrained(model: nn.Module, pretrained: str | os.PathLike) -> nn.Module:
    """Load ``pretrained`` (``"torchvision"``, ``"timm"``, a catalogue name or a weights file) into ``model`` in place,
    and record the weights' preprocessing in ``model.pretrained_cfg``."""
    cfg: dict[str, Any] = dict(model.pretrained_cfg)
    weights = resolve(model.model_name, pretrained, float(model.model_args.get("width_mult", 1.0)))
    if weights is not None:
        if weights.source == "google":
            raise WeightsError(f"{weights.name} is a TFLite file: create_model({weights.name!r}, pretrained=True) "
                               "loads it.")  # fmt: skip
        path, source, cfg = fetch_weights(weights), weights.source, weights.pretrained_cfg(cfg)
    else:
        path, source = Path(pretrained), None
        if path.suffix == ".tflite":
            raise WeightsError("Load .tflite files with mobilenets.load_tflite(path).")
    state_dict = read_state_dict(path)
    source = source or detect_source(state_dict)
    fresh_head = getattr(model, "num_classes", 0) if weights is not None and weights.classes == "none" else 0
    if fresh_head:
        model.reset_classifier(0)  # an encoder's weights: the classifier starts fresh, for fine-tuning
    try:
        converted = convert_for(model, state_dict, source)
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    model.load_state_dict(converted)
    if fresh_head:
        model.reset_classifier(fresh_head)
    cfg.setdefault("source", str(path))
    model.pretrained_cfg = cfg
    return model
