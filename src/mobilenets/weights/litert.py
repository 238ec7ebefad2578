"""Run a TFLite file in Google's LiteRT interpreter (the reference runtime) on preprocessed images."""

from __future__ import annotations

import os

import numpy as np


def litert_logits(path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Float outputs (dequantized, background class included) of LiteRT for uint8 NHWC ``images``.

    Float models get TF-slim's ``(x - 127.5) / 127.5``; quantized models take the uint8 pixels.
    Requires ``ai-edge-litert`` (a dev dependency).
    """
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
