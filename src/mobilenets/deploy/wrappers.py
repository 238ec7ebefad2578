"""The module an export traces: segmentation as its logits, a detector as its decoded boxes and
class probabilities (phone formats: NMS goes in the app), NHWC input; and the checks of what can be exported."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.detection.image_list import ImageList

from mobilenets.deploy.contract import check_output
from mobilenets.runtime.files import MOBILE_FORMATS
from mobilenets.util.errors import ExportError


def carry_description(wrapper: nn.Module, model: nn.Module) -> None:
    """Give a wrapper around ``model`` the attributes an export's metadata reads (name, arguments,
    preprocessing, classes, task)."""
    for name in ("model_name", "model_args", "pretrained_cfg", "num_classes", "class_names", "label_map", "task"):
        setattr(wrapper, name, getattr(model, name, None))


class SegmentationLogits(nn.Module):
    """A segmentation model as one tensor function (``{"out": logits}`` -> logits), for ONNX and int8."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        carry_description(self, model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def exportable(model: nn.Module, format: str, int8: bool = False) -> nn.Module:
    """The module to export: a segmentation model as its logits (every format; the phone formats at a fixed
    size), a detector whole for ONNX (NMS is an ONNX operator) and as its decoded boxes and class
    probabilities for the others (:class:`.detection.DetectionOutputs`: NMS goes in the app); int8 detection
    is for the phone formats only (the ONNX graph holds NMS)."""
    task = getattr(model, "task", "classification")
    if task == "classification" or isinstance(model, (SegmentationLogits, DetectionOutputs)):
        return model
    if task == "segmentation":
        return SegmentationLogits(model)

    if int8 and format not in MOBILE_FORMATS:
        raise ExportError("int8 detection is offered for the phone formats (tflite, pte, coreml), not for "
                          f"{format}; export {format} in fp32.")  # fmt: skip
    return model if format == "onnx" else DetectionOutputs(model.eval())


def check_exportable(model: nn.Module, path: str | os.PathLike, img_size: int | None, format: str) -> tuple[Path, int]:
    """The output path and input size of an export in ``format``, once checked: the output as
    :func:`.contract.check_output` wants it, a classifier, a size of at least 32 (default: the model's own)."""
    path = check_output(path, format)
    size = img_size or getattr(model, "pretrained_cfg", {}).get("input_size", (3, 224, 224))[1]
    if isinstance(model, DetectionOutputs) and size != model.size:
        raise ExportError(f"This detector resizes every image to {model.size} px; export it at that size "
                          f"(--img-size {model.size}) or build it with size={size}.")  # fmt: skip
    if getattr(model, "features_only", False):
        raise ExportError("Export needs a classifier; this model was built with features_only=True.")
    if size < 32:
        raise ExportError(f"--img-size must be at least 32 for export, got {size}.")
    return path, size


class DetectionOutputs(nn.Module):
    """An SSD as one tensor function for the phone formats: a batch of [0, 1] images already resized to the
    detector's ``size`` x ``size`` in, ``B x A x (4 + C)`` out: for each of the A default boxes its decoded
    box (x1, y1, x2, y2 as fractions of the image side, clipped to [0, 1]) and its C class probabilities
    (softmax, class 0 is background). Normalisation happens inside, as in the detector."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        carry_description(self, model)
        self.size = detector_size(model)
        self.selection = {k: getattr(model, k) for k in SELECTION}
        t = model.transform
        self.register_buffer("mean", torch.tensor(t.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(t.image_std).view(1, 3, 1, 1))
        with torch.no_grad():
            x = torch.zeros(1, 3, self.size, self.size)
            maps = list(model.backbone(x).values())
            anchors = model.anchor_generator(ImageList(x, [(self.size, self.size)]), maps)[0]
        self.register_buffer("anchors", anchors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.model.head(list(self.model.backbone((x - self.mean) / self.std).values()))
        codes = head["bbox_regression"]
        anchors = self.anchors.repeat(codes.shape[0], 1)
        boxes = self.model.box_coder.decode_single(codes.reshape(-1, 4), anchors).reshape(codes.shape)
        boxes = (boxes / self.size).clamp(0.0, 1.0)
        return torch.cat([boxes, F.softmax(head["cls_logits"], dim=-1)], dim=-1)


def detector_size(model: nn.Module) -> int:
    """The square size a detector resizes every image to (its ``size``)."""
    return int(model.transform.fixed_size[0])


class NHWCInput(nn.Module):
    """Takes NHWC images, as Android and iOS camera buffers are laid out, and runs ``model`` on NCHW."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2))


SELECTION = ("score_thresh", "nms_thresh", "topk_candidates", "detections_per_img")
