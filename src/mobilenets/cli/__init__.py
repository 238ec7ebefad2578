"""The ``mobilenets`` command: parse the arguments, dispatch to the command, and turn a user's mistake
into one sentence on stderr (exit status 2)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from mobilenets.cli.parser import build_parser
from mobilenets.util.errors import MobilenetsError
from mobilenets.util.extras import MissingExtra


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (2: a mistake in the arguments or inputs, said in one line)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a refused argument (2), already printed
        return int(exc.code or 0)
    try:
        args.run(args)
    except (MobilenetsError, MissingExtra, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
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
