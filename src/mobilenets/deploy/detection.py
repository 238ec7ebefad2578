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
from torchvision.models.detection._utils import _topk_min
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms

from ..extras import needs
from .export import OPSET, ExportError, _add_metadata, carry_description

SELECTION = ("score_thresh", "nms_thresh", "topk_candidates", "detections_per_img")


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


class ClassNMS(torch.autograd.Function):
    """NMS within each class of ``C x K`` candidates (``boxes`` C x K x 4, ``scores`` C x K), scores above
    ``score_thresh`` only: ``N x 3`` rows (class, 0, candidate), as ONNX's ``NonMaxSuppression`` gives them
    with the classes as its batch. Exported as that operator: one NMS per class, where torchvision's traced
    ``batched_nms`` runs one NMS over every class's boxes at once (27,000 boxes for a 91-class SSD: 212 ms
    per image in ONNX Runtime here, against 87 ms for the whole detector in PyTorch)."""

    @staticmethod
    def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, iou: float, score_thresh: float) -> torch.Tensor:
        k = scores.shape[1]
        above = torch.nonzero(scores.flatten() > score_thresh).flatten()
        kept = above[batched_nms(boxes.reshape(-1, 4)[above], scores.flatten()[above], above // k, iou)]
        return torch.stack([kept // k, torch.zeros_like(kept), kept % k], 1)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, iou: float, score_thresh: float) -> Any:
        def const(v: Any, dtype: torch.dtype) -> Any:
            return g.op("Constant", value_t=torch.tensor([v], dtype=dtype))

        per_class = g.op("Unsqueeze", scores, const(1, torch.int64))  # C x 1 x K: classes as the batch
        max_out = g.op("Gather", g.op("Shape", scores), const(1, torch.int64))
        return g.op(
            "NonMaxSuppression", boxes, per_class, max_out, const(iou, torch.float), const(score_thresh, torch.float)
        )


def select_detections(out: torch.Tensor, image_size: Any, score_thresh: float, nms_thresh: float,
                      topk_candidates: int, detections_per_img: int) -> dict[str, torch.Tensor]:  # fmt: skip
    """torchvision's SSD detections from one image's :class:`DetectionOutputs` (``A x (4 + C)``): for every
    class but the background, its best ``topk_candidates`` boxes above ``score_thresh``; NMS per class at
    ``nms_thresh``; the best ``detections_per_img`` overall; boxes in pixels of ``image_size`` (H, W: ints
    or a tensor). Traces to ONNX with any image size."""
    fractions, probs = out[:, :4], out[:, 5:].T
    scores, index = probs.topk(_topk_min(probs, topk_candidates, 1), dim=1)  # (C - 1) x K
    candidates = fractions[index]
    kept = ClassNMS.apply(candidates, scores, nms_thresh, score_thresh)
    label, box = kept[:, 0], kept[:, 2]
    score, best = scores[label, box].topk(_topk_min(kept, detections_per_img, 0))
    h, w = image_size
    scale = torch.stack([torch.as_tensor(v) for v in (w, h, w, h)]).to(out.dtype)
    return {"boxes": candidates[label[best], box[best]] * scale, "scores": score, "labels": label[best] + 1}


def to_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """One 3 x H x W image as the detector resizes it: a ``1 x 3 x size x size`` batch (bilinear)."""
    return F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)


def phone_detector(run: Any, size: int, selection: dict[str, Any]) -> Any:
    """A detector over a phone file's batch function ``run`` (``1 x 3 x size x size`` -> ``1 x A x (4 + C)``):
    [0, 1] images of any size in (resized as the detector resizes them), torchvision's detections out."""

    def detect(images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        found = []
        for image in images:
            x = to_square(image.float(), size)
            found.append(select_detections(run(x)[0], tuple(image.shape[-2:]), **selection))
        return found

    return detect


def detection_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest distance (max |coordinate diff|) from a detection in ``a`` to the nearest one of the same
    label in ``b``; ``inf`` if their counts differ. Order-free. Boxes of equal score may be kept either way
    by NMS, so a barely trained detector, whose scores tie often, can show large distances with the same
    count and scores (one trained for an epoch: 135 distinct scores among 300 detections, 16 px)."""
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


def check_int8_detector(run: Any, outputs: DetectionOutputs, runtime: str) -> dict[str, float]:
    """An int8 phone file's outputs against the fp32 detector's on two images: finite and in range (boxes
    in [0, 1], each box's class probabilities summing to about 1), else refused; the mean absolute
    differences of its box coordinates and probabilities are reported (int8 keeps neither exactly)."""
    x = torch.cat([to_square(image, outputs.size) for image in check_images(outputs.size)])
    with torch.inference_mode():
        ref = outputs(x)
    got = run(x)
    boxes, probs = got[..., :4], got[..., 4:]
    if got.shape != ref.shape or not bool(got.isfinite().all()) or boxes.min() < -0.01 or boxes.max() > 1.01 \
            or (probs.sum(-1) - 1).abs().max() > 0.1:  # fmt: skip
        raise ExportError(f"{runtime}'s int8 detector gives outputs out of range (boxes outside [0, 1] or "
                          "probabilities not summing to 1); nothing was written.")  # fmt: skip
    return {"mean_box_diff": float((boxes - ref[..., :4]).abs().mean()),
            "mean_prob_diff": float((probs - ref[..., 4:]).abs().mean())}  # fmt: skip


class WholeDetector(nn.Module):
    """A detector as one ONNX-traceable function of one [0, 1] image (3 x H x W, any size): resized to its
    size, :class:`DetectionOutputs`, :func:`select_detections`; ``boxes`` (pixels), ``scores``, ``labels``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.outputs = DetectionOutputs(model)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = to_square(image, self.outputs.size)
        found = select_detections(self.outputs(x)[0], torch._shape_as_tensor(image)[1:], **self.outputs.selection)
        return found["boxes"], found["scores"], found["labels"]


def detection_onnx(model: nn.Module, meta: dict[str, Any]) -> tuple[bytes, float]:
    """The detector as one ONNX graph (:class:`WholeDetector`: resizing, decoding and NMS), checked in ONNX
    Runtime on two image sizes against the detector itself."""
    with needs("Checking a detector's ONNX file"):
        import onnxruntime as ort

    images = check_images(detector_size(model))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = os.path.join(tmp, "model.onnx")
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            torch.onnx.export(WholeDetector(model.eval()).eval(), (images[0],), out, dynamo=False, opset_version=OPSET,
                              input_names=["image"], output_names=["boxes", "scores", "labels"],
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
