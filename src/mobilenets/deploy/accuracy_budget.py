"""int8 within an accuracy budget: ``export --int8 --max-drop POINTS --val DIR``.

Post-training quantization (:mod:`.quantize`) first; when its top-1 on the validation images ``DIR``
(what ``eval --data`` takes) falls more than ``max_drop`` points below the fp32 model's, NNCF's
``quantize_with_accuracy_control`` ranks the quantized layers by how much each costs and keeps the
worst in float, one at a time, until the drop is within the budget. The layers kept float are listed in
the file's metadata (``int8.kept_float``) and the report; a budget that cannot be met is refused in one
sentence and nothing is written.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenets.data.preprocess import preprocess
from mobilenets.deploy.int8_settings import as_written, import_nncf, nncf_options, stem_nodes, weight_bits
from mobilenets.evaluate.classify import find_eval_set
from mobilenets.runtime.runners import onnx_session
from mobilenets.util.errors import ExportError
from mobilenets.util.extras import needs


def check_max_drop(max_drop: Any) -> None:
    """Refuse a budget that is not a number of points from 0 to 100."""
    if not isinstance(max_drop, int | float) or not 0 <= max_drop <= 100:
        raise ExportError(f"The accuracy budget (max_drop) must be a number of points from 0 to 100, got {max_drop!r}.")


BUDGET_FORMATS = ("onnx", "tflite", "pte")  # the int8 files an accuracy budget is measured for


def check_budget_format(int8: bool, format: str) -> None:
    """Refuse an accuracy budget for a file that is not int8 ONNX, LiteRT or ExecuTorch."""
    if not (int8 and format in BUDGET_FORMATS):
        raise ExportError("An accuracy budget (val=, max_drop=) is for int8 ONNX, LiteRT and ExecuTorch files: "
                          "pass int8=True and format='onnx', 'tflite' or 'pte'.")  # fmt: skip


def validation_set(data: str | Path, cfg: dict[str, Any], class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of ``data`` (as ``eval --data`` takes it), preprocessed as ``cfg`` says."""
    samples = find_eval_set(data, class_names).samples
    if not samples:
        raise ExportError(f"--val {data} holds no labelled images.")
    x = torch.stack([preprocess(path, cfg) for path, _ in samples]).numpy()
    return x, np.array([label for _, label in samples])


def top1_hits(model: Any, items: Any) -> tuple[float, list[float]]:
    """Top-1 of an ONNX model (proto or bytes) in ONNX Runtime over ``(image, label)`` items, and per item."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = onnx_session(data)
    hits = [float(session.run(None, {"input": x[None]})[0].argmax(1)[0] == y) for x, y in items]
    return float(np.mean(hits)), hits


def float_layers(model: Any) -> set[str]:
    """Names of the convolutions and matrix products that read a float (not dequantized) activation."""
    made_by = {out: node.op_type for node in model.graph.node for out in node.output}
    return {n.name for n in model.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and made_by.get(n.input[0]) != "DequantizeLinear"}  # fmt: skip


def quantize_within(
    fp32: bytes,
    quantized: Any,
    calib: np.ndarray,
    val: tuple[np.ndarray, np.ndarray],
    max_drop: float,
    bits: int | str = "auto",
) -> tuple[Any, dict[str, Any]]:
    """``quantized`` (the post-training int8 proto of ``fp32``, weights shrunk) if it loses at most
    ``max_drop`` points of top-1 on ``val``, else NNCF's accuracy-controlled one; with what was measured
    and kept float. Every candidate is measured as it will be written (:func:`.int8_settings.as_written`,
    the layers kept float in fp32): ONNX Runtime's integer kernels answer a few near-ties differently."""
    nncf = import_nncf("int8 ONNX export")
    with needs("int8 ONNX export"):
        import onnx

    items = list(zip(*val, strict=True))
    reference, _ = top1_hits(fp32, items)
    drop = 100 * (reference - top1_hits(quantized, items)[0])
    report = {"val_images": len(items), "val_top1_fp32": reference, "max_drop": max_drop, "ptq_drop": drop}
    if drop <= max_drop:
        return quantized, report | {"drop": drop, "kept_float": []}
    model = onnx.load_from_string(fp32)
    stem, plain = set(stem_nodes(model)), float_layers(quantized)

    def written_form(candidate: Any) -> tuple[Any, list[str]]:
        written, kept = onnx.ModelProto(), sorted(float_layers(candidate) - plain)
        written.CopyFrom(candidate)
        as_written(written, keep=stem | set(kept))
        return written, kept

    options = nncf_options(sorted(stem), len(calib), weight_bits(bits))
    options["advanced_quantization_parameters"] = options.pop("advanced_parameters")
    with redirect_stdout(io.StringIO()):
        out = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset([calib[i : i + 1] for i in range(len(calib))], lambda x: {"input": x}),
            nncf.Dataset(items), lambda m, data: top1_hits(written_form(m)[0], data), max_drop=max_drop / 100,
            drop_type=nncf.DropType.ABSOLUTE, **options)  # fmt: skip
    out, kept = written_form(out)
    drop = 100 * (reference - top1_hits(out, items)[0])
    if drop > max_drop + 1e-9:
        raise ExportError(f"int8 loses {drop:.2f} points of top-1 on the {len(items)} --val images even with "
                          f"{len(kept)} layers kept float, more than --max-drop {max_drop:g}; allow a larger "
                          "drop or fine-tune with --qat DATA. Nothing was written.")  # fmt: skip
    return out, report | {"drop": drop, "kept_float": kept}
