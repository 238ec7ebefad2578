"""Optional dependencies: which extra installs each one, and importing them with a one-sentence refusal.

``pip install mobilenets`` is the lean core (models, every weights loader, training, evaluation,
prediction, ``profile``/``zoo`` and the dense heads with their metrics). Runtimes, converters and
pictures live in extras named by what they give; :func:`needs` guards every place the package imports
one, so a missing one is named with the command that installs it instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager

# Top-level package -> the extra that installs it (pyproject.toml's optional-dependencies, same names).
EXTRA_OF = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "nncf": "int8",
    "torchao": "int8",
    "openvino": "openvino",
    "executorch": "mobile",
    "litert_torch": "mobile",
    "ai_edge_litert": "mobile",
    "coremltools": "mobile",
    "matplotlib": "plots",
    "sklearn": "demo",
    "pyarrow": "parquet",
    "ray": "ray",
}


class MissingExtra(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def install_command(*extras: str) -> str:
    """``pip install 'mobilenets[extra]'`` (several extras: ``'mobilenets[a,b]'``)."""
    return f"pip install 'mobilenets[{','.join(dict.fromkeys(extras))}]'"


def has(module: str) -> bool:
    """Whether ``module`` (a dotted name; its top-level package decides) can be imported."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def check(extra: str, purpose: str) -> None:
    """Before work starts: raise :class:`MissingExtra` unless every package of ``extra`` is installed."""
    missing = [p for p, e in EXTRA_OF.items() if e == extra and not has(p)]
    if missing:
        raise MissingExtra(f"{purpose} needs {', '.join(missing)}, not installed here; run {install_command(extra)}.")


# PyTorch's loggers that optional packages set off as they import, with nothing for a user to do: NNCF's
# backend probe imports the C++ extension builder ("No CUDA runtime is found" on CUDA builds without a
# GPU), torchao registers enums as pytree constants (a deprecation notice).
QUIETED_LOGGERS = ("torch.utils.cpp_extension", "torch.utils._pytree")


@contextmanager
def needs(purpose: str) -> Iterator[None]:
    """Around the imports of an optional package: a missing one becomes :class:`MissingExtra`, one sentence
    saying that ``purpose`` needs it and which extra installs it; :data:`QUIETED_LOGGERS` log errors only."""
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRA_OF:
            raise
        raise MissingExtra(
            f"{purpose} needs {top}, not installed here; run {install_command(EXTRA_OF[top])}."
        ) from None
