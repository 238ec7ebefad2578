"""Detectors for runtimes: ONNX whole (NMS is an ONNX operator), the phone formats without NMS.

LiteRT, ExecuTorch and Core ML have no NMS operator, so a phone export is the detector up to its decoded
boxes (:class:`DetectionOutputs`), and the app keeps boxes as :func:`select_detections` does (torchvision's
SSD rules: per-class score threshold and top-k, per-class NMS, the best ``detections_per_img``).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms

from .export import OPSET, ExportError, _add_metadata

SELECTION = ("score_thresh", "nms_thresh", "topk_candidates", "detections_per_img")


class DetectionOutputs(nn.Module):
    """An SSD as one tensor function for the phone formats: a batch of [0, 1] images already resized to the
    detector's ``size`` x ``size`` in, ``B x A x (4 + C)`` out: for each of the A default boxes its decoded
    box (x1, y1, x2, y2 as fractions of the image side, clipped to [0, 1]) and its C class probabilities
    (softmax, class 0 is background). Normalisation happens inside, as in the detector."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for name in ("model_name", "model_args", "pretrained_cfg", "num_classes", "class_names", "label_map", "task"):
            setattr(self, name, getattr(model, name, None))
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


def select_detections(out: torch.Tensor, image_size: tuple[int, int], score_thresh: float, nms_thresh: float,
                      topk_candidates: int, detections_per_img: int) -> dict[str, torch.Tensor]:  # fmt: skip
    """torchvision's detections from one image's :class:`DetectionOutputs` (``A x (4 + C)``): for every
    class but the background, the boxes above ``score_thresh``, at most ``topk_candidates`` of them; NMS
    per class at ``nms_thresh``; the best ``detections_per_img``; boxes in pixels of ``image_size`` (H, W)."""
    fractions, probs = out[:, :4], out[:, 4:]
    boxes, scores, labels = [], [], []
    for label in range(1, probs.shape[1]):
        score = probs[:, label]
        keep = torch.nonzero(score > score_thresh).flatten()
        score, best = score[keep].topk(min(topk_candidates, len(keep)))
        boxes.append(fractions[keep[best]])
        scores.append(score)
        labels.append(torch.full_like(best, label))
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
    h, w = image_size
    return {"boxes": boxes[keep] * boxes.new_tensor([w, h, w, h]), "scores": scores[keep], "labels": labels[keep]}


def phone_detector(run: Any, size: int, selection: dict[str, Any]) -> Any:
    """A detector over a phone file's batch function ``run`` (``1 x 3 x size x size`` -> ``1 x A x (4 + C)``):
    [0, 1] images of any size in (resized as the detector resizes them), torchvision's detections out."""

    def detect(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        found = []
        for image in images:
            x = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", align_corners=False)
            found.append(select_detections(run(x)[0], tuple(image.shape[-2:]), **selection))
        return found

    return detect


def detection_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest distance (max |coordinate diff|) from a detection in ``a`` to the nearest one of the same
    label in ``b``; ``inf`` if their counts differ. Order-free: ties in score may be listed either way."""
    if len(a["boxes"]) != len(b["boxes"]):
        return float("inf")
    if len(a["boxes"]) == 0:
        return 0.0
    dist = (a["boxes"][:, None].double() - b["boxes"][None].double()).abs().amax(-1)
    dist[a["labels"][:, None] != b["labels"][None]] = float("inf")
    return float(dist.min(1).values.max())


def same_detections(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], atol: float = 1e-4) -> bool:
    """The same number of detections with the same scores (boxes of equal score may be kept or dropped
    either way by NMS, so the boxes are compared by :func:`detection_diff`)."""
    return len(got["scores"]) == len(ref["scores"]) and torch.allclose(
        got["scores"].sort().values, ref["scores"].sort().values, atol=atol
    )


def check_images(size: int) -> list[torch.Tensor]:
    """Two [0, 1] images to check a detector export on: square, and 4:3."""
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(3, size, size, generator=gen), torch.rand(3, size * 3 // 4, size, generator=gen)]


def check_phone_detector(run: Any, outputs: DetectionOutputs, runtime: str) -> float:
    """The largest box difference (pixels) between a phone file's detections (``run``: its NCHW batch
    function, NMS outside by :func:`select_detections`) and the detector's own, on two image sizes;
    raises if they differ in number or scores."""
    detect = phone_detector(run, outputs.size, outputs.selection)
    worst = 0.0
    for image in check_images(outputs.size):
        with torch.inference_mode():
            ref = outputs.model([image])[0]
        got = detect([image])[0]
        if not same_detections(got, ref):
            raise ExportError(f"{runtime}'s detections differ from PyTorch's in number or scores; nothing was written.")
        worst = max(worst, detection_diff(got, ref))
    return worst


def detection_onnx(model: nn.Module, meta: dict[str, Any]) -> tuple[bytes, float]:
    """SSD with its resizing, decoding and NMS as one ONNX graph: a [0, 1] image (3 x H x W, any size) in,
    ``boxes`` (N x 4, pixels), ``scores``, ``labels`` out; checked in ONNX Runtime on two image sizes."""
    import onnxruntime as ort

    images = check_images(detector_size(model))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = os.path.join(tmp, "model.onnx")
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            torch.onnx.export(model, ([images[0]],), out, dynamo=False, opset_version=OPSET, input_names=["image"],
                              output_names=["boxes", "scores", "labels"],
                              dynamic_axes={"image": {1: "height", 2: "width"}})  # fmt: skip
        data = _add_metadata(Path(out).read_bytes(), meta)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst = 0.0
    for image in images:
        with torch.inference_mode():
            ref = model([image])[0]
        got = dict(
            zip(("boxes", "scores", "labels"), map(torch.from_numpy, session.run(None, {"image": image.numpy()})))
        )
        if not same_detections(got, ref):
            raise ExportError("ONNX Runtime's detections differ from PyTorch's in number or scores; not written.")
        worst = max(worst, detection_diff(got, ref))
    return data, worst
