"""Detection and segmentation model names: ``ssdlite_<backbone>`` and ``lraspp_<backbone>`` for every
classification model, and torchvision's two names, ``ssdlite320_mobilenet_v3_large`` and
``lraspp_mobilenet_v3_large``, configured as torchvision configures them.

Decisions (the papers where they speak, torchvision where they do not):
- SSDLite: 320 x 320 input, BN eps 1e-3 / momentum 0.03 everywhere, MobileNetV3 backbones with the
  reduced tail (MobileNetV3 sec. 6.2) unless ImageNet backbone weights are loaded (they have the full tail;
  torchvision does the same), torchvision's N(0, 0.03) initialisation when training from scratch.
- LR-ASPP: the backbone at output stride 16 (``dilated=True``: the last stage dilated from its first block on,
  as torchvision), its own BN defaults, 128 channels in the head.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mobilenets.models.lraspp import LRASPP
from mobilenets.models.model import MobileNet
from mobilenets.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODELS, build_model, model_entry
from mobilenets.models.registry import list_models as list_classifiers
from mobilenets.models.ssdlite import BN, ssdlite
from mobilenets.util.errors import ModelError

TASKS = {"ssdlite_": "detection", "lraspp_": "segmentation"}
ALIASES = {"ssdlite320_mobilenet_v3_large": "ssdlite_mobilenet_v3_large"}
DEFAULT_CLASSES = {"detection": 91, "segmentation": 21}  # COCO's 91 ids; VOC's 21 classes
SSD_OPTIONS = ("score_thresh", "nms_thresh", "detections_per_img", "topk_candidates", "size")
BACKBONE_OPTIONS = ("width_mult", "reduced_tail", "minimalistic", "padding")
OPTIONS = ("num_classes", *BACKBONE_OPTIONS)


def task_of(name: str) -> str:
    """``classification``, ``detection`` or ``segmentation``, from the model name."""
    name = ALIASES.get(name, name)
    return next((task for prefix, task in TASKS.items() if name.startswith(prefix)), "classification")


def list_models(task: str = "classification") -> list[str]:
    """The names ``create_model`` accepts for ``task``: ``classification``, ``detection``,
    ``segmentation`` or ``all``."""
    if task == "classification":
        return list_classifiers()
    if task == "all":
        return sorted(n for t in ("classification", "detection", "segmentation") for n in list_models(t))
    prefix = next((p for p, t in TASKS.items() if t == task), None)
    if prefix is None:
        raise ModelError(f"Unknown task {task!r}; use classification, detection, segmentation or all.")
    return sorted([prefix + n for n in MODELS] + [a for a, n in ALIASES.items() if n.startswith(prefix)])


def task_backbone(name: str) -> str:
    """The classification model under a detection or segmentation name (unknown ones: the registry's
    one-sentence error)."""
    canonical = ALIASES.get(name, name)
    prefix = next(p for p, t in TASKS.items() if t == task_of(canonical))
    backbone = canonical.removeprefix(prefix)
    model_entry(backbone)
    return backbone


def task_options(name: str, pretrained_backbone: bool = False, **kwargs: Any) -> tuple[str, dict, dict]:
    """Validate a task model's options: (backbone name, the backbone's build options, the head's options).
    The backbone's depend on the task and on whether it gets ImageNet weights (``pretrained_backbone``)."""
    task, backbone = task_of(name), task_backbone(name)
    allowed = OPTIONS + SSD_OPTIONS if task == "detection" else OPTIONS
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"{name}() got unexpected keyword argument(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}."
        )
    num_classes = kwargs.pop("num_classes", DEFAULT_CLASSES[task])
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ModelError(f"num_classes must be an integer >= 2 (background included), got {num_classes!r}.")
    net_args = {k: kwargs.pop(k) for k in BACKBONE_OPTIONS if k in kwargs}
    if task == "detection":
        if "reduced_tail" in model_entry(backbone).options:
            net_args.setdefault("reduced_tail", not pretrained_backbone)
        net_args.update(BN)
    else:
        net_args["dilated"] = True
    return backbone, net_args, {"num_classes": num_classes, **kwargs}


def build_task_model(name: str, backbone: MobileNet | None = None, **kwargs: Any) -> nn.Module:
    """Build a detection or segmentation model (see the module docstring for the configuration) on
    ``backbone``, a classification net built with :func:`task_options`' backbone options and its classifier
    removed (pretrained weights: the factory passes it, as torchvision's ``weights_backbone``); a random
    one when ``None``."""
    task = task_of(name)
    backbone_name, net_args, head = task_options(name, pretrained_backbone=backbone is not None, **kwargs)
    net = backbone if backbone is not None else build_model(backbone_name, num_classes=0, **net_args)
    num_classes = head.pop("num_classes")
    if task == "detection":
        model = ssdlite(net, num_classes, init_backbone=backbone is None, **head)
    else:
        model = LRASPP(net, num_classes)
    model.model_name = name
    model.num_classes = num_classes
    # Weights can change the backbone (Google's TFLite files: TF "SAME" padding, minimalistic V3), so
    # its own arguments are the ones recorded: a checkpoint then rebuilds the net it was trained as.
    given = {k: net_args[k] for k in BACKBONE_OPTIONS if k in net_args}
    built = {k: net.model_args[k] for k in BACKBONE_OPTIONS if k in net.model_args}
    model.model_args = {"num_classes": num_classes, **given, **built, **head}
    model.backbone_name = backbone_name
    model.pretrained_cfg = _preprocessing(task, head.get("size", 320))
    return model


def _preprocessing(task: str, size: int) -> dict[str, Any]:
    """Detection: torchvision's SSD resizes and scales to [-1, 1] inside the model (give it [0, 1] images
    of any size). Segmentation: ImageNet normalisation, shorter side resized to 520 (torchvision's
    evaluation of LR-ASPP)."""
    if task == "detection":
        return dict(input_size=(3, size, size), mean=(0.5,) * 3, std=(0.5,) * 3, inside_model=True)
    return dict(input_size=(3, 520, 520), resize=520, mean=IMAGENET_MEAN, std=IMAGENET_STD, inside_model=False)
