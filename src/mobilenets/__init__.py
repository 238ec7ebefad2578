"""MobileNetV1, V2 and V3, exact to the papers, with real weights and the whole deployment workflow."""

from __future__ import annotations

from torch import nn

from .deploy import deploy, export, fuse
from .models.layers import make_divisible
from .models.registry import build_model
from .models.tasks import build_task_model, list_models, task_of
from .profile import Profile, profile
from .weights import convert_state_dict, load_pretrained
from .weights.tflite import load_tflite

__version__ = "0.1.0"


def create_model(name: str, *, pretrained: str | None = None, **kwargs) -> nn.Module:
    """Build ``name`` (see :func:`list_models`) with the keyword options of the README.

    Detection (``ssdlite_<backbone>``) and segmentation (``lraspp_<backbone>``) names take
    ``num_classes``, ``width_mult``, ``pretrained_backbone`` (any ``pretrained`` value, for the backbone),
    ``reduced_tail`` and, for SSDLite, ``size`` and torchvision's ``SSD`` post-processing options.

    ``pretrained``: ``"torchvision"`` or ``"timm"`` (official ImageNet weights via the torch.hub
    cache; timm's own weights were trained with BN eps 1e-5, which becomes the default then), or a
    local file: a ``.tflite`` from Google, or a torchvision/timm/our state dict (safetensors or
    ``torch.save``).
    """
    if task_of(name) != "classification":  # backbone weights: pretrained_backbone=
        model = build_task_model(name, **kwargs)
        return load_pretrained(model, pretrained) if pretrained is not None else model
    if pretrained is not None and str(pretrained).endswith(".tflite"):
        return load_tflite(pretrained, model_name=name, **kwargs)
    if pretrained == "timm":
        kwargs.setdefault("bn_eps", 1e-5)
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
    "load_tflite",
    "make_divisible",
    "profile",
]
