"""The command line's validation layer: every flag's range and every path's kind, checked while the
arguments are parsed, before any command starts work (no epoch, conversion or download begins on input
that will fail). A refusal is one line, ``mobilenets COMMAND: error: argument --FLAG: WHAT; FIX``, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): the flag, the problem and the fix."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: type, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {name}, got {text!r}") from None


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer in ``[low, high]``."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(low: float, high: float | None = None, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def parse(text: str) -> float:
        value = _number(float, text)
        too_low = value <= low if low_open else value < low
        if value != value or too_low or (high is not None and value > high) or value in (float("inf"), -float("inf")):
            side = f"above {low:g}" if low_open else f"at least {low:g}"
            bound = f"{side} and at most {high:g}" if high is not None else side
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def integers(low: int) -> Callable[[str], list[int]]:
    """Comma-separated integers, each at least ``low``."""
    one = integer(low)

    def parse(text: str) -> list[int]:
        values = [one(x) for x in text.split(",") if x.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"takes comma-separated integers, got {text!r}")
        return values

    parse.__name__ = "integers"
    return parse


def existing_file(*suffixes: str, folders: tuple[str, ...] = ()) -> Callable[[str], str]:
    """A file that exists (one of ``suffixes`` if given); or a folder with one of the ``folders`` suffixes
    (a Core ML ``.mlpackage``)."""

    def parse(text: str) -> str:
        path = Path(text)
        if folders and path.suffix in folders and path.is_dir():
            return text
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file")
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"{text} does not exist")
        if suffixes and path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{text} is not one of {', '.join(suffixes)}")
        if not os.access(path, os.R_OK):
            raise argparse.ArgumentTypeError(f"{text} cannot be read (permissions)")
        return text

    parse.__name__ = "file"
    return parse


def existing_folder(text: str) -> str:
    """A folder that exists."""
    path = Path(text)
    if path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return text


def existing_path(text: str) -> str:
    """A file or folder that exists."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return text


def _writable_parent(path: Path, text: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: its folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: its folder {parent} is not writable")


def output_file(*suffixes: str) -> Callable[[str], str]:
    """A file to write: not an existing folder, in a writable folder, named with one of ``suffixes``."""

    def parse(text: str) -> str:
        path = Path(text)
        if path.is_dir() and path.suffix != ".mlpackage":
            raise argparse.ArgumentTypeError(f"{text} is a folder; name the file to write, e.g. {path / 'model'}"
                                             f"{suffixes[0] if suffixes else ''}")  # fmt: skip
        if suffixes and path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{text} must end in {' or '.join(suffixes)}")
        _writable_parent(path, text)
        return text

    parse.__name__ = "output file"
    return parse


def output_folder(text: str) -> str:
    """A folder to write into: an existing writable folder, or a new one in a writable folder."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder to write into")
    if path.is_dir():
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write into {text} (permissions)")
        return text
    ancestor = next((p for p in path.absolute().parents if p.exists()), Path("/"))
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot create {text}: {ancestor} is not a writable folder")
    return text


def warn(command: str, message: str) -> None:
    """A result that is valid but may mislead: said once, on stderr."""
    print(f"mobilenets {command}: warning: {message}", file=sys.stderr)
