"""The ``mobilenets`` command: parse the arguments, dispatch to the command, and turn a user's mistake
into one sentence on stderr (exit status 2)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from mobilenets.cli.commands import UserError
from mobilenets.cli.parser import build_parser
from mobilenets.data.preprocess import BadImageError, DataError
from mobilenets.deploy.contract import ExportError
from mobilenets.train.config import TrainingError
from mobilenets.util.extras import MissingExtra
from mobilenets.weights.hub import WeightsError


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (2: a mistake in the arguments or inputs, said in one line)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a refused argument (2), already printed
        return int(exc.code or 0)
    try:
        args.run(args)
    except (
        UserError,
        MissingExtra,
        TrainingError,
        ExportError,
        WeightsError,
        DataError,
        BadImageError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
    ) as exc:
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
