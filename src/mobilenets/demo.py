"""``mobilenets demo``: the main job, offline."""

from __future__ import annotations

from .zoo import render, zoo_rows


def run_demo(output: str) -> None:
    """Print the zoo table (the training demo replaces this once training lands)."""
    print(render(zoo_rows()))
