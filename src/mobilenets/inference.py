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

from .classes import imagenet_names
from .extras import needs
from .weights.hub import WeightsError, detect_source, read_state_dict

MODEL_JSON = "model.json"
BEST = "best.safetensors"


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


def _names_for(num_classes: int, names: list[str] | None = None) -> list[str]:
    if names:
        return list(names)
    if num_classes == 1000:
        return imagenet_names()
    if num_classes == 1001:
        return ["background", *imagenet_names()]
    return [str(i) for i in range(num_classes)]


def torch_classifier(model: nn.Module, names: list[str] | None = None, description: str = "") -> Classifier:
    task = getattr(model, "task", "classification")
    if task != "classification":
        from .dense_eval import model_class_names, torch_runner

        return Classifier(torch_runner(model, task), dict(model.pretrained_cfg), model_class_names(model),
                          description or model.model_name, model, task=task,
                          label_map=getattr(model, "label_map", None))  # fmt: skip
    model.eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return Classifier(run, dict(model.pretrained_cfg), _names_for(model.num_classes, names),
                      description or getattr(model, "model_name", "model"), model)  # fmt: skip


def read_model_json(folder: Path) -> dict[str, Any]:
    path = folder / MODEL_JSON
    if not path.is_file():
        raise WeightsError(f"{folder} has no {MODEL_JSON}; is it a `mobilenets train` output folder?")
    return json.loads(path.read_text())


def load_checkpoint(path: str | Path) -> nn.Module:
    """Our training output: a folder (``best.safetensors`` + ``model.json``) or a weights file in one."""
    from .models.registry import build_model
    from .models.tasks import build_task_model, task_of

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


def _guess_architecture(state: dict[str, torch.Tensor]) -> nn.Module:
    """Our model for a bare torchvision/timm/ours state dict, found by trying each configuration."""
    from .models.registry import build_model
    from .weights.convert import convert_for
    from .weights.tflite import CANDIDATES

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


def onnx_classifier(path: Path) -> Classifier:
    with needs("Running an ONNX file"):
        import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{path} is not a loadable ONNX model ({type(exc).__name__}).") from None
    meta = session.get_modelmeta().custom_metadata_map
    if "mobilenets" not in meta:
        raise WeightsError(f"{path} has no mobilenets metadata (preprocessing, classes); export it "
                           "with `mobilenets export`.")  # fmt: skip
    info = json.loads(meta["mobilenets"])
    name = session.get_inputs()[0].name
    from .deploy.int8_settings import saturation_warning
    from .models.tasks import task_of

    task = task_of(info.get("model") or "")

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: np.ascontiguousarray(x.numpy())})[0])

    def detect(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        outputs = (session.run(None, {name: np.ascontiguousarray(im.numpy())}) for im in images)
        return [{k: torch.from_numpy(v) for k, v in zip(("boxes", "scores", "labels"), out)} for out in outputs]

    return Classifier(detect if task == "detection" else run, info["pretrained_cfg"], info["class_names"],
                      f"ONNX {path.name}", warning=saturation_warning(info), task=task,
                      label_map=info.get("label_map"))  # fmt: skip


def mobile_classifier(path: Path) -> Classifier:
    """Our LiteRT / ExecuTorch / Core ML export, run in its own runtime with the preprocessing and classes
    that travel with it (``NAME.json`` beside ``.tflite`` / ``.pte`` files, inside Core ML packages)."""
    from .deploy import mobile

    if path.suffix == ".mlpackage":
        run, runtime = mobile.coreml_runner(path), "Core ML"  # refuses first where it cannot predict
        import coremltools as ct

        info = json.loads(ct.models.MLModel(str(path), skip_model_load=True).user_defined_metadata["mobilenets"])
    else:
        info = mobile.read_sidecar(path)
        if info is None:
            raise WeightsError(f"{path} has no {mobile.sidecar(path).name} beside it (classes, preprocessing); "
                               "export it with `mobilenets export --format " + path.suffix[1:] + "`.")  # fmt: skip
        mobile.check_installed(info["format"])
        run, runtime = mobile.phone_runner(str(path), info["format"]), mobile.RUNTIMES[info["format"]]
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
        from .deploy.detection import phone_detector

        chosen = phone_detector(batch, size, info["selection"])
    return Classifier(chosen, info["pretrained_cfg"], info["class_names"],
                      f"{runtime} {path.name} ({info['precision']})", task=task,
                      label_map=info.get("label_map"))  # fmt: skip


def load_classifier(
    weights: str | None = None,
    checkpoint: str | None = None,
    model: str | None = None,
    pretrained: str | None = None,
) -> Classifier:
    """The model a command names with ``--weights FILE``, ``--checkpoint DIR`` or ``--model NAME
    [--pretrained SRC]`` (exactly one of the three)."""
    from . import create_model

    given = [x for x in (weights, checkpoint, model) if x]
    if len(given) != 1:
        raise WeightsError("Name the model once: --weights FILE, --checkpoint DIR or --model NAME.")
    if checkpoint:
        net = load_checkpoint(checkpoint)
        return torch_classifier(net, net.class_names, f"checkpoint {checkpoint}")
    if model:
        net = create_model(model, pretrained=pretrained)
        return torch_classifier(net, description=f"{model} ({pretrained or 'untrained'})")
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
        from .weights.tflite import load_tflite

        net = load_tflite(path)
        return torch_classifier(net, description=f"TFLite {path.name}")
    if (path.parent / MODEL_JSON).is_file():
        net = load_checkpoint(path)
        return torch_classifier(net, net.class_names, f"checkpoint {path}")
    net = _guess_architecture(read_state_dict(path))
    return torch_classifier(net, description=f"{net.model_name} from {path.name}")
