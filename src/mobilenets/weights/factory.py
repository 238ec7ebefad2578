"""The one place models are built from a name and weights: ``create_model`` (a name, a catalogue weights
name, or a model name with ``pretrained=``), ``load_checkpoint`` (our training output) and
``guess_architecture`` (a bare torchvision/timm/our state dict). Detection and segmentation models get
their backbone built here, with its weights, and passed down (as torchvision's ``weights_backbone``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobilenets.models.registry import build_model
from mobilenets.models.tasks import build_task_model, list_models, task_of, task_options
from mobilenets.util.errors import WeightsError
from mobilenets.weights.catalog import get_weights, list_pretrained
from mobilenets.weights.convert import convert_for
from mobilenets.weights.hub import detect_source, fetch_weights, load_pretrained, read_state_dict, resolve
from mobilenets.weights.tflite import CANDIDATES, load_graph, read_graph, tflite_architecture

MODEL_JSON = "model.json"
BEST = "best.safetensors"


def create_model(name: str, *, pretrained: bool | str | None = None, **kwargs) -> nn.Module:
    """Build ``name`` (see :func:`list_models`) with the keyword options on the docs page "Choose a model".

    ``name`` may also be a weights name from :func:`list_pretrained` (``"mobilenet_v3_large.tv2_in1k"``): the
    model those weights need, with them loaded when ``pretrained=True``, as timm's ``create_model``.

    Detection (``ssdlite_<backbone>``) and segmentation (``lraspp_<backbone>``) names take
    ``num_classes``, ``width_mult``, ``pretrained_backbone`` (any ``pretrained`` value, for the backbone),
    ``reduced_tail`` and, for SSDLite, ``size`` and torchvision's ``SSD`` post-processing options.

    ``pretrained``: ``"torchvision"`` or ``"timm"`` (their default ImageNet weights via the torch.hub
    cache, see the weights catalogue; timm's were trained with BN eps 1e-5, which becomes the default then),
    a catalogue name, or a local file: a ``.tflite`` from Google, or a torchvision/timm/our state dict
    (safetensors or ``torch.save``).
    """
    if "." in name and name.split(".")[0] in list_models("all"):
        weights = get_weights(name)
        name, kwargs = weights.model, {**weights.model_args, **kwargs}
        pretrained = weights.name if pretrained is True else None if pretrained is False else pretrained
    if pretrained is True:
        raise WeightsError(f"pretrained=True needs a weights name such as {list_pretrained(name + '.*')[:1] or '...'}"
                         f"; or pass pretrained='torchvision', 'timm' or a file.")  # fmt: skip
    if task_of(name) != "classification":  # backbone weights: pretrained_backbone=
        model = _task_model(name, **kwargs)
        return load_pretrained(model, pretrained) if pretrained is not None else model
    weights = resolve(name, pretrained, float(kwargs.get("width_mult", 1.0))) if pretrained is not None else None
    if weights is not None:  # what the weights need (timm's BN eps 1e-5, a width), unless given
        kwargs = {**weights.model_args, **kwargs}
        if weights.source == "google":
            return load_tflite(fetch_weights(weights), model_name=name, **kwargs)
    if pretrained is not None and str(pretrained).endswith(".tflite"):
        return load_tflite(pretrained, model_name=name, **kwargs)
    model = build_model(name, **kwargs)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def load_tflite(
    path: str | os.PathLike, *, keep_background: bool = False, fake_quant: bool = False, **kwargs: Any
) -> nn.Module:
    """A PyTorch eval model with the weights of a Google TFLite MobileNet file.

    Outputs: 1000 logits in torchvision's class order (TF's background class 0 dropped), or all 1001
    with ``keep_background=True``. Inputs: normalized NCHW floats; ``model.pretrained_cfg`` holds the
    preprocessing (TF-slim: central crop 0.875, bilinear, mean/std 0.5, i.e. [-1, 1]). The model uses TF
    "SAME" padding, which the weights were trained with. ``kwargs`` (e.g. ``bn_momentum``) go to
    :func:`create_model`; ``model_name`` must match the file if given.

    ``fake_quant=True`` (quantized files) also rounds every activation to the file's uint8 grid, so
    that the model reproduces LiteRT's integer arithmetic rather than the float model it came from.
    """
    graph = read_graph(path)
    name, kwargs = tflite_architecture(graph, path, **kwargs)
    return load_graph(build_model(name, num_classes=1001, **kwargs), graph, path, keep_background, fake_quant)


def _task_model(name: str, pretrained_backbone: Any = None, **kwargs: Any) -> nn.Module:
    """A detection or segmentation model, its backbone built (with ``pretrained_backbone`` weights, any
    ``pretrained`` value) and passed down."""
    if pretrained_backbone is None:
        return build_task_model(name, **kwargs)
    backbone, net_args, _ = task_options(name, pretrained_backbone=True, **kwargs)
    net = create_model(backbone, pretrained=pretrained_backbone, **net_args)
    net.reset_classifier(0)
    return build_task_model(name, backbone=net, **kwargs)


def read_model_json(folder: Path) -> dict[str, Any]:
    path = folder / MODEL_JSON
    if not path.is_file():
        raise WeightsError(f"{folder} has no {MODEL_JSON}; is it a `mobilenets train` output folder?")
    return json.loads(path.read_text())


def load_checkpoint(path: str | Path) -> nn.Module:
    """Our training output: a folder (``best.safetensors`` + ``model.json``) or a weights file in one."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"Checkpoint {path} does not exist.")
    folder, weights = (path, path / BEST) if path.is_dir() else (path.parent, path)
    meta = read_model_json(folder)
    if not weights.is_file():
        raise WeightsError(f"{folder} has no {weights.name}; training has not finished an epoch yet.")
    build = build_model if task_of(meta["model"]) == "classification" else build_task_model
    model = build(meta["model"], **meta["model_args"])
    state = read_state_dict(weights)
    try:
        model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    except RuntimeError as exc:
        raise WeightsError(f"{weights} does not fit the {meta['model']} in {MODEL_JSON}: "
                           f"{str(exc).splitlines()[0]}") from None  # fmt: skip
    model.pretrained_cfg = meta["pretrained_cfg"]
    model.class_names = meta.get("class_names")
    model.label_map = meta.get("label_map")
    return model.eval()


def guess_architecture(state: dict[str, torch.Tensor]) -> nn.Module:
    """Our model for a bare torchvision/timm/ours state dict, found by trying each configuration."""
    source = detect_source(state)
    head = [v for k, v in state.items() if "classifier" in k and k.endswith("weight")]
    num_classes = int(head[-1].shape[0]) if head else 1000
    bn_eps = {"bn_eps": 1e-5} if source == "timm" else {}
    for name, width, minimal in CANDIDATES:
        kwargs = dict(width_mult=width, num_classes=num_classes, **bn_eps)
        if minimal:
            kwargs["minimalistic"] = True
        model = build_model(name, **kwargs)
        try:
            model.load_state_dict(convert_for(model, state, source))
        except ValueError:
            continue
        return model
    raise WeightsError(f"The {source} state dict matches no MobileNet configuration we know.")
