"""What every export promises: the formats, the one error, the metadata each file carries, and the
one parity check against PyTorch (relative to the outputs' scale)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mobilenets.runtime.classifier import model_class_names, names_for
from mobilenets.runtime.files import EXPORT_FORMATS, SUFFIXES
from mobilenets.util.errors import ExportError


def check_output(path: str | os.PathLike, format: str) -> Path:
    """The output of an export in ``format``, refused before any work when it is a folder (other than a
    Core ML package being replaced), names another format, or has no writable folder."""
    if format not in EXPORT_FORMATS:
        raise ExportError(f"Unknown export format {format!r}; use one of {', '.join(EXPORT_FORMATS)}.")
    path, suffixes = Path(path), SUFFIXES[format]
    if path.is_dir() and path.suffix != ".mlpackage":
        raise ExportError(f"{path} is a folder; name the file to write, e.g. {path / 'model'}{suffixes[0]}.")
    if path.suffix.lower() not in suffixes:
        raise ExportError(f"The {format} format writes a {suffixes[0]} file; name the output "
                          f"{path.with_suffix(suffixes[0])}.")  # fmt: skip
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ExportError(f"Cannot write {path}: its folder {path.parent} does not exist or is not writable.")
    return path


def sized_cfg(model: nn.Module, size: int) -> dict[str, Any]:
    """``model.pretrained_cfg`` for ``size`` x ``size`` inputs: what an export at that size preprocesses with."""
    return {**getattr(model, "pretrained_cfg", {}), "input_size": (3, size, size)}


def model_metadata(model: nn.Module, class_names: list[str] | None = None, size: int | None = None) -> dict[str, Any]:
    """What travels inside an export: architecture, preprocessing (for ``size`` x ``size`` inputs when given)
    and class names."""
    if getattr(model, "task", "classification") != "classification":
        names = class_names or model_class_names(model)
    else:
        names = names_for(getattr(model, "num_classes", 0), class_names or getattr(model, "class_names", None))
    meta = {
        "model": getattr(model, "model_name", None),
        "task": getattr(model, "task", "classification"),
        "model_args": getattr(model, "model_args", {}),
        "pretrained_cfg": sized_cfg(model, size) if size else getattr(model, "pretrained_cfg", {}),
        "class_names": names,
        "label_map": getattr(model, "label_map", None),
    }
    if hasattr(model, "selection"):  # a detector without its NMS: what the app does after it
        meta["outputs"] = "A x (4 + C): box x1, y1, x2, y2 as fractions of the side, then C class probabilities"
        meta["selection"] = model.selection
    return meta


RTOL = 1e-4  # an export's outputs may differ from PyTorch's by this fraction of their scale (max |output|)


def relative_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """Max |got - ref| over the scale of ``ref`` (its max |value|): the error a runtime adds, whatever the
    size of the logits (PyTorch fp32 against fp64 is about 1e-6 of it)."""
    return float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-12))


def check_parity(runtime: str, got: np.ndarray, ref: np.ndarray, int8: bool = False) -> float:
    """The one export check, for every format: finite outputs and, in fp32, within :data:`RTOL` of the
    outputs' scale of PyTorch's; raises :class:`ExportError` (nothing is written) otherwise."""
    rel = relative_diff(got, ref)
    if not np.isfinite(got).all() or (not int8 and rel > RTOL):
        raise ExportError(f"{runtime}'s outputs differ from PyTorch's by {rel:.1e} of their scale "
                          f"(> {RTOL}); nothing was written.")  # fmt: skip
    return rel
