"""Load any supported model file for inference: ours, torchvision/timm state dicts, TFLite, ONNX.

A :class:`Classifier` is a batch function (normalized NCHW float tensor -> logits) together with the
preprocessing and class names that travel with the weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.models.fuse import fuse
from mobilenets.models.tasks import task_of
from mobilenets.runtime.detection import phone_detector
from mobilenets.runtime.files import (
    FORMAT_RUNTIMES,
    RUNTIMES,
    check_installed,
    read_sidecar,
    saturation_warning,
    sidecar,
)
from mobilenets.runtime.runners import coreml_runner, onnx_session, open_runner, torch_runner
from mobilenets.util.errors import WeightsError
from mobilenets.util.extras import check
from mobilenets.weights.catalog import task_classes
from mobilenets.weights.classes import imagenet_names
from mobilenets.weights.factory import MODEL_JSON, create_model, guess_architecture, load_checkpoint, load_tflite
from mobilenets.weights.hub import read_state_dict


@dataclass
class Classifier:
    """A loaded model of any task. ``run`` maps a normalized NCHW batch to logits (segmentation: per
    pixel); for detection, a list of [0, 1] CHW images to torchvision's ``[{"boxes", "scores", "labels"}]``.
    ``cfg`` is the preprocessing to apply first."""

    run: Callable[[Any], Any]
    cfg: dict[str, Any]
    class_names: list[str]
    description: str
    model: nn.Module | None = None
    warning: str | None = None  # one sentence a command prints before using it
    task: str = "classification"
    label_map: str | None = None  # segmentation masks the model was trained on (see dense_data)


def names_for(num_classes: int, names: list[str] | None = None) -> list[str]:
    if names:
        return list(names)
    if num_classes == 1000:
        return imagenet_names()
    if num_classes == 1001:
        return ["background", *imagenet_names()]
    return [str(i) for i in range(num_classes)]


def torch_classifier(model: nn.Module, names: list[str] | None = None, description: str = "") -> Classifier:
    """A PyTorch model of any task, in fp32 (:func:`.runners.torch_runner`), channels_last on images and a
    classifier's BN folded (:func:`~mobilenets.models.fuse.fuse`; not where hooks, such as the fake-quant
    rounding of Google's uint8 files, hang on its layers). MobileNetV2 at batch 100 here: 34 ms per image
    in NCHW, 20 in channels_last, 13 fused as well."""
    task = getattr(model, "task", "classification")
    names = model_class_names(model) if task != "classification" else names_for(model.num_classes, names)
    hooked = any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    net = fuse(model) if task == "classification" and not hooked else model
    run = torch_runner(net, task=task, channels_last=task != "detection")
    return Classifier(run, dict(model.pretrained_cfg), names,
                      description or getattr(model, "model_name", "model"), model, task=task,
                      label_map=getattr(model, "label_map", None))  # fmt: skip


def onnx_classifier(path: Path) -> Classifier:
    """Our ONNX export in ONNX Runtime, with the preprocessing and classes in its metadata."""
    check("onnx", "Running an ONNX file")
    try:
        session = onnx_session(path)
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{path} is not a loadable ONNX model ({type(exc).__name__}).") from None
    meta = session.get_modelmeta().custom_metadata_map
    if "mobilenets" not in meta:
        raise WeightsError(f"{path} has no mobilenets metadata (preprocessing, classes); export it "
                           "with `mobilenets export`.")  # fmt: skip
    info = json.loads(meta["mobilenets"])
    name = session.get_inputs()[0].name
    task = task_of(info.get("model") or "")

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: np.ascontiguousarray(x.numpy())})[0])

    def detect(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        outputs = (session.run(None, {name: np.ascontiguousarray(im.numpy())}) for im in images)
        return [{k: torch.from_numpy(v) for k, v in zip(("boxes", "scores", "labels"), out)} for out in outputs]

    return Classifier(detect if task == "detection" else run, info["pretrained_cfg"], info["class_names"],
                      f"ONNX {path.name}", warning=saturation_warning(info), task=task,
                      label_map=info.get("label_map"))  # fmt: skip


SIDECAR_KEYS = ("format", "precision", "pretrained_cfg", "class_names")  # what a phone file's JSON must hold


def mobile_classifier(path: Path) -> Classifier:
    """Our LiteRT / ExecuTorch / Core ML export, run in its own runtime with the preprocessing and classes
    that travel with it (``NAME.json`` beside ``.tflite`` / ``.pte`` files, inside Core ML packages)."""
    if path.suffix == ".mlpackage":
        run, runtime = coreml_runner(path, "fp32"), "Core ML"  # refuses first where it cannot predict
        import coremltools as ct

        info = json.loads(ct.models.MLModel(str(path), skip_model_load=True).user_defined_metadata["mobilenets"])
    else:
        info = read_sidecar(path)
        if info is None:
            raise WeightsError(f"{path} has no {sidecar(path).name} beside it (classes, preprocessing); "
                               "export it with `mobilenets export --format " + path.suffix[1:] + "`.")  # fmt: skip
        missing = [k for k in SIDECAR_KEYS if k not in info]
        if missing:
            raise WeightsError(f"{sidecar(path)} is not a mobilenets export's description (no "
                               f"{', '.join(missing)}); export the model again with `mobilenets export --format "
                               f"{path.suffix[1:]}`.")  # fmt: skip
        check_installed(info["format"])
        fmt_runtime = FORMAT_RUNTIMES[info["format"]]
        run, runtime = open_runner(fmt_runtime, path, info["precision"]), RUNTIMES[info["format"]]
    nhwc = info.get("input_layout") == "NHWC"
    task, size = info.get("task", "classification"), info["pretrained_cfg"]["input_size"][-1]

    def batch(x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1) if nhwc else x
        return torch.from_numpy(run(np.ascontiguousarray(x.numpy(), dtype=np.float32)))

    def fixed_size(x: torch.Tensor) -> torch.Tensor:  # the file's size in, logits at the input's size out
        logits = batch(torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear"))
        return torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear")

    chosen = {"segmentation": fixed_size}.get(task, batch)
    if task == "detection":
        chosen = phone_detector(batch, size, info["selection"])
    return Classifier(chosen, info["pretrained_cfg"], info["class_names"],
                      f"{runtime} {path.name} ({info['precision']})", task=task,
                      label_map=info.get("label_map"))  # fmt: skip


def load_classifier(
    weights: str | None = None,
    checkpoint: str | None = None,
    model: str | None = None,
    pretrained: str | None = None,
    need_classes: bool = True,
) -> Classifier:
    """The model a command names with ``--weights FILE``, ``--checkpoint DIR`` or ``--model NAME
    [--pretrained SRC]`` (exactly one of the three). ``need_classes``: refuse a model without classes (an
    encoder such as ``mobilenet_v5_300m_enc``), which predicting and evaluating need and exporting does not."""
    clf = _load(weights, checkpoint, model, pretrained)
    if need_classes and clf.model is not None and getattr(clf.model, "num_classes", None) == 0:
        raise WeightsError(f"{clf.description} has no classes (an encoder, or num_classes=0): predict and eval "
                           "need a classifier (for MobileNetV5, mobilenet_v5_300m).")  # fmt: skip
    return clf


def _load(weights: str | None, checkpoint: str | None, model: str | None, pretrained: str | None) -> Classifier:
    given = [x for x in (weights, checkpoint, model) if x]
    if len(given) != 1:
        raise WeightsError("Name the model once: --weights FILE, --checkpoint DIR or --model NAME.")
    if checkpoint:
        net = load_checkpoint(checkpoint)
        return torch_classifier(net, net.class_names, f"checkpoint {checkpoint}")
    if model:
        net = create_model(model, pretrained=pretrained)
        clf = torch_classifier(net, description=f"{model} ({pretrained or 'untrained'})")
        if pretrained is None:
            clf.warning = (f"{model} has random weights (no --pretrained): what it outputs means nothing; "
                           "add --pretrained torchvision, timm or a weights file.")  # fmt: skip
        return clf
    path = Path(weights)
    if path.suffix == ".mlpackage" and path.is_dir():
        return mobile_classifier(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist.")
    if path.suffix == ".onnx":
        return onnx_classifier(path)
    if path.suffix == ".pte" or (path.suffix == ".tflite" and path.with_name(path.name + ".json").is_file()):
        return mobile_classifier(path)
    if path.suffix == ".tflite":  # Google's own files: imported into PyTorch
        try:
            net = load_tflite(path)
        except WeightsError as exc:
            raise WeightsError(f"{str(exc).rstrip('.')}; if {path.name} is a mobilenets export, put its "
                               f"{sidecar(path).name} back beside it.") from None  # fmt: skip
        return torch_classifier(net, description=f"TFLite {path.name}")
    if (path.parent / MODEL_JSON).is_file():
        net = load_checkpoint(path)
        return torch_classifier(net, net.class_names, f"checkpoint {path}")
    net = guess_architecture(read_state_dict(path))
    return torch_classifier(net, description=f"{net.model_name} from {path.name}")


def model_class_names(model: nn.Module) -> list[str]:
    """The class names a task model carries (training data, or COCO / VOC for the default class counts)."""
    names = getattr(model, "class_names", None)
    if names:
        return list(names)
    n = model.num_classes
    if model.task == "detection" and n == 91:
        return task_classes("coco-91")
    if model.task == "segmentation" and n == 21:
        return task_classes("coco-voc-21")
    return [str(i) for i in range(n)]
