"""The 1000 ImageNet-1k classes (wnid and name) in the standard sorted-wnid order, keyed by index.

Two names repeat ("crane", "maillot"), so classes are identified by index or wnid, never by name.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files


@cache
def imagenet_classes() -> tuple[tuple[str, str], ...]:
    """``(wnid, name)`` for class 0..999."""
    data = json.loads(files("mobilenets.weights").joinpath("imagenet_classes.json").read_text())
    return tuple((wnid, name) for wnid, name in data)


def imagenet_names() -> list[str]:
    return [name for _, name in imagenet_classes()]


def imagenet_wnids() -> list[str]:
    return [wnid for wnid, _ in imagenet_classes()]
