"""What travels with an exported file and how to read it: the phone formats' sidecar JSON, ONNX
metadata, each format's runtime, and the warning an int8 file carries on CPUs it was not made for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mobilenets.util.cpu import cpu_info
from mobilenets.util.extras import check

MOBILE_FORMATS = ("tflite", "pte", "coreml")
EXPORT_FORMATS = ("onnx", "torchscript", "pt2", *MOBILE_FORMATS)
INT8_FORMATS = ("onnx", *MOBILE_FORMATS)  # what export --int8 and quantize write
# The file name each export format writes (the first one is what a refusal suggests).
SUFFIXES = {"onnx": (".onnx",), "torchscript": (".pt", ".pth"), "pt2": (".pt2",), "tflite": (".tflite",),
            "pte": (".pte",), "coreml": (".mlpackage",)}  # fmt: skip


def check_installed(fmt: str) -> None:
    """One sentence naming the extra when a format's converter or runtime is missing."""
    check("mobile", f"--format {fmt}")


def output_name(meta: dict[str, Any]) -> str:
    """The output's name in a Core ML model: ``detections`` for a detector (boxes and probabilities),
    ``logits`` for the others."""
    return "detections" if meta.get("task") == "detection" else "logits"


def sidecar(path: Path) -> Path:
    """The JSON file that carries a ``.tflite`` / ``.pte`` export's classes and preprocessing: the file's
    name plus ``.json`` (``m.tflite.json``), so that a ``.tflite`` and a ``.pte`` of one stem, or a
    training folder's ``model.json``, never share one."""
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    side = sidecar(path)
    return json.loads(side.read_text()) if side.is_file() else None


RUNTIMES = {"tflite": "LiteRT", "pte": "ExecuTorch"}  # each phone format's runtime here
FORMAT_RUNTIMES = {"tflite": "litert", "pte": "executorch", "coreml": "coreml"}  # format -> runner key


BACKEND_FORMATS = {"litert": "tflite", "executorch": "pte"}  # ``bench`` backend -> phone format


def read_metadata(proto: Any) -> dict[str, Any]:
    """The ``mobilenets`` metadata entry of an ONNX model proto (empty if it has none)."""
    entry = {p.key: p.value for p in proto.metadata_props}.get("mobilenets")
    return json.loads(entry) if entry else {}


def saturation_warning(meta: dict[str, Any]) -> str | None:
    """One sentence when an int8 file's weights saturate on this CPU, else None."""
    if meta.get("int8", {}).get("weight_bits") == 8 and not cpu_info().int8_dot:
        return ("This int8 file has full 8-bit weights, made for CPUs with VNNI/AMX; this "
                f"{cpu_info().model} saturates them and loses accuracy: re-export with --weight-bits 7.")  # fmt: skip
    return None
