"""Keep converters' and runtimes' chatter (Python's and native libraries' fd 2) off the terminal."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings


@contextlib.contextmanager
def quiet():
    """The converters' and runtimes' progress output, logs and warnings (Python's and their native
    libraries', written straight to file descriptor 2) kept off the user's terminal."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
