"""A detector's selection of boxes after the network (torchvision's SSD rules), where the runtime
has no NMS operator: the phone files' outputs become torchvision's detections here."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torchvision.models.detection._utils import _topk_min
from torchvision.ops import batched_nms


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
