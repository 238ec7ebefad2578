"""Giving memory a long job has freed back to the system."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


def release_freed_memory() -> None:
    """Ask glibc to return freed heap memory to the system (``malloc_trim``). Without it a process that
    runs OpenVINO keeps what each batch freed: `predict --output` over 3900 photos grew to 3.3 GiB on this
    project's Xeon, 1.2 GiB with a trim after every batch (2026-12-03)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
