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

from mobilenets.deploy.onnx import OPSET, add_metadata
from mobilenets.deploy.wrappers import DetectionOutputs, detector_size
from mobilenets.runtime.detection import phone_detector, select_detections, to_square
from mobilenets.runtime.runners import onnx_session
from mobilenets.util.errors import ExportError
from mobilenets.util.extras import needs


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
        pass

    images = check_images(detector_size(model))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = os.path.join(tmp, "model.onnx")
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            torch.onnx.export(WholeDetector(model.eval()).eval(), (images[0],), out, dynamo=False, opset_version=OPSET,
                              input_names=["image"], output_names=["boxes", "scores", "labels"],
                              dynamic_axes={"image": {1: "height", 2: "width"}})  # fmt: skip
        data = add_metadata(Path(out).read_bytes(), meta)
    session = onnx_session(data)
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
