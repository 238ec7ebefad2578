"""Run a TFLite file in Google's LiteRT interpreter (the reference runtime) on preprocessed images."""

from __future__ import annotations

import os

import numpy as np

from ..extras import needs


def litert_logits(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Float outputs (dequantized, background class included) of LiteRT for uint8 NHWC ``images``.

    Float models get TF-slim's ``(x - 127.5) / 127.5``; quantized models take the uint8 pixels.
    Requires ``ai-edge-litert`` (a dev dependency).
    """
    with needs("Running Google's .tflite file in LiteRT"):
        from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=2)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero = out["quantization"]
    results = []
    for img in images:
        x = img[None]
        x = (x.astype(np.float32) - 127.5) / 127.5 if inp["dtype"] == np.float32 else x.astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])[0].astype(np.float32)
        results.append((y - zero) * scale if scale else y)
    return np.stack(results)


def eval_pixels(paths: list, cfg: dict) -> np.ndarray:
    """uint8 NHWC images after the evaluation resize/crop of ``cfg``: what both runtimes are fed."""
    from ..preprocess import eval_resize_crop, load_rgb

    return np.stack([np.asarray(eval_resize_crop(load_rgb(p), cfg)) for p in paths])


def compare_with_litert(path: str | os.PathLike, pixels: np.ndarray, labels: np.ndarray,
                        fake_quant: bool = False) -> dict[str, float]:  # fmt: skip
    """Top-1/top-5 of LiteRT and of our imported model on the same uint8 NHWC ``pixels``, and their
    per-image top-1 agreement (fractions)."""
    import torch

    from ..preprocess import to_tensor
    from .tflite import load_tflite

    model = load_tflite(path, fake_quant=fake_quant)
    ref = torch.from_numpy(litert_logits(path, pixels))[:, 1:]
    x = torch.stack([to_tensor(p, model.pretrained_cfg) for p in pixels])
    with torch.inference_mode():
        ours = torch.cat([model(b) for b in x.split(100)])
    y = torch.from_numpy(np.asarray(labels))

    def top(logits: torch.Tensor, k: int) -> float:
        return (logits.topk(k, 1).indices == y[:, None]).any(1).float().mean().item()

    return {
        "litert_top1": top(ref, 1),
        "ours_top1": top(ours, 1),
        "litert_top5": top(ref, 5),
        "ours_top5": top(ours, 5),
        "agreement": (ref.argmax(1) == ours.argmax(1)).float().mean().item(),
    }
