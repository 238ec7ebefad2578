"""MobileNetV1, V2 and V3, exact to the papers, with real weights and the whole deployment workflow."""

from __future__ import annotations

from torch import nn

from .deploy import deploy, export, fuse
from .models.layers import make_divisible
from .models.registry import build_model
from .models.tasks import build_task_model, list_models, task_of
from .profile import Profile, profile
from .weights import convert_state_dict, load_pretrained
from .weights.catalog import get_weights, list_pretrained
from .weights.hub import fetch_weights, resolve
from .weights.tflite import load_tflite

__version__ = "0.1.0"


def create_model(name: str, *, pretrained: bool | str | None = None, **kwargs) -> nn.Module:
    """Build ``name`` (see :func:`list_models`) with the keyword options of the README.

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
        raise ValueError(f"pretrained=True needs a weights name such as {list_pretrained(name + '.*')[:1] or '...'}"
                         f"; or pass pretrained='torchvision', 'timm' or a file.")  # fmt: skip
    if task_of(name) != "classification":  # backbone weights: pretrained_backbone=
        model = build_task_model(name, **kwargs)
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


__all__ = [
    "Profile",
    "__version__",
    "convert_state_dict",
    "create_model",
    "deploy",
    "export",
    "fuse",
    "list_models",
    "list_pretrained",
    "load_tflite",
    "make_divisible",
    "profile",
]
