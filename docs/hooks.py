"""MkDocs hooks: the command-line reference, written from ``mobilenets``' own argument parser at build time,
so that it cannot drift from the commands."""

from __future__ import annotations

import argparse
import re
from typing import Any

MARKER = "<!-- cli-reference -->"
ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|exc):(?=<code)")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _option_row(action: argparse.Action) -> str:
    flags = ", ".join(f"`{f}`" for f in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.choices is not None:
        value = " \\| ".join(f"`{c}`" for c in action.choices)
    elif action.nargs == 0:
        value = ""
    else:
        value = f"`{action.metavar or action.dest.upper()}`" + (" ..." if action.nargs in ("*", "+") else "")
    default = "" if action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{action.default}`"
    required = " (required)" if action.required and action.option_strings else ""
    return f"| {flags} | {value} | {default} | {_cell(action.help or '')}{required} |"


def cli_reference() -> str:
    """Markdown for every ``mobilenets`` command: what it does, its usage line and a table of its options."""
    from mobilenets.cli.parser import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = []
    for name, command in sub.choices.items():
        rows = [_option_row(a) for a in command._actions if not isinstance(a, argparse._HelpAction)]
        usage = command.format_usage().replace("usage: ", "").strip()
        parts += [f"## `mobilenets {name}`", "", command.description or "", "", "```text", usage, "```", ""]
        parts += ["| option | value | default | what it does |", "|---|---|---|---|", *rows, ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    return markdown.replace(MARKER, cli_reference()) if MARKER in markdown else markdown


def on_page_content(html: str, page: Any, **_: Any) -> str:
    """The docstrings' Sphinx roles (``:func:`x```) shown as the code they name, without the role."""
    return ROLE.sub("", html)
