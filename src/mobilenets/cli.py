"""The ``mobilenets`` command: one entry point with subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one sentence, exit status 2."""


def cmd_zoo(args: argparse.Namespace) -> None:
    from .zoo import plot, render, zoo_rows

    rows = zoo_rows()
    print(render(rows, args.format))
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


def add_zoo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    p.add_argument("--plot", metavar="FILE.png", help="plot published top-1 against multiply-adds")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.output)


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default="runs/demo", help="folder for the demo's outputs")


COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]
] = {
    "zoo": ("published configurations with our parameter and multiply-add counts", add_zoo, cmd_zoo),
    "demo": ("the main job, offline: train, evaluate and profile a small model", add_demo, cmd_demo),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilenets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .weights.hub import WeightsError

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (UserError, WeightsError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"mobilenets {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:  # our validation errors are full sentences
        if os.environ.get("MOBILENETS_DEBUG"):
            raise
        print(f"mobilenets {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mobilenets {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
