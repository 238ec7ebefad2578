"""Google's TFLite files in LiteRT (the reference runtime) against our import of them, on the same pixels."""

from __future__ import annotations

import os

import numpy as np
import torch

from mobilenets.data.preprocess import eval_resize_crop, load_rgb, to_tensor
from mobilenets.runtime.classifier import torch_classifier
from mobilenets.runtime.runners import litert_io, litert_runner
from mobilenets.weights.factory import load_tflite


def eval_pixels(paths: list, cfg: dict) -> np.ndarray:
    """uint8 NHWC images after the evaluation resize/crop of ``cfg``: what both runtimes are fed."""
    return np.stack([np.asarray(eval_resize_crop(load_rgb(p), cfg)) for p in paths])


def litert_logits(path: str | os.PathLike, pixels: np.ndarray, builtin: bool = False) -> np.ndarray:
    """LiteRT's float outputs (dequantized, background class included) for uint8 NHWC ``pixels``: float
    files get TF-slim's ``(x - 127.5) / 127.5``, quantized ones the uint8 pixels themselves. ``builtin``:
    LiteRT's own kernels instead of XNNPACK's (both are LiteRT's, and differ in their roundings)."""
    float_input = litert_io(path)[1]["dtype"] == np.float32
    x = (pixels.astype(np.float32) - 127.5) / 127.5 if float_input else pixels
    return litert_runner(path, "fp32" if float_input else "int8", builtin=builtin)(x)


def top1_agreement(ref: np.ndarray, ours: np.ndarray) -> float:
    """The fraction of images whose top-1 in ``ours`` is a top-1 of LiteRT's ``ref``: a quantized file's
    outputs are uint8 probabilities, and where two classes tie at the top either counts."""
    picked = np.take_along_axis(ref, ours.argmax(1)[:, None], 1)[:, 0]
    return float((picked == ref.max(1)).mean())


def compare_with_litert(path: str | os.PathLike, pixels: np.ndarray, labels: np.ndarray,
                        fake_quant: bool = False, ref: np.ndarray | None = None) -> dict[str, float]:  # fmt: skip
    """Top-1/top-5 of LiteRT and of our imported model on the same uint8 NHWC ``pixels``, and their
    per-image top-1 agreement (fractions; :func:`top1_agreement`). ``ref``: LiteRT's outputs if known. Our
    model runs as ``eval`` runs it (:func:`.torch_classifier`: BN folded unless rounding hooks hang on it)."""
    model = load_tflite(path, fake_quant=fake_quant)
    ref = torch.from_numpy(litert_logits(path, pixels) if ref is None else ref)[:, 1:]
    x = torch.stack([to_tensor(p, model.pretrained_cfg) for p in pixels])
    run = torch_classifier(model).run
    ours = torch.cat([run(b) for b in x.split(25)])
    y = torch.from_numpy(np.asarray(labels))

    def top(logits: torch.Tensor, k: int) -> float:
        return (logits.topk(k, 1).indices == y[:, None]).any(1).float().mean().item()

    return {
        "litert_top1": top(ref, 1),
        "ours_top1": top(ours, 1),
        "litert_top5": top(ref, 5),
        "ours_top5": top(ours, 5),
        "agreement": top1_agreement(ref.numpy(), ours.numpy()),
    }
