"""The suite's own machinery: a test run in its own process fails when that process does not end cleanly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CRASH_AT_EXIT = """
    import atexit, os, pytest

    @pytest.mark.own_process
    def test_passes_then_its_process_crashes():
        atexit.register(os._exit, 3)  # after pytest wrote its XML: only the exit code tells
"""
HANGS = """
    import time, pytest

    @pytest.mark.own_process
    def test_hangs():
        time.sleep(60)
"""


@pytest.mark.parametrize(("body", "timeout", "said"), [(CRASH_AT_EXIT, "900", "exit code 3"),
                                                       (HANGS, "2", "timed out after 2 s")])  # fmt: skip
def test_own_process_fails_a_child_that_does_not_end_cleanly(tmp_path: Path, body: str, timeout: str, said: str):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path)
    (tmp_path / "test_child.py").write_text(textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if k != "MOBILENETS_TEST_IN_OWN_PROCESS"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", str(tmp_path)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**env, "MOBILENETS_OWN_PROCESS_TIMEOUT": timeout})  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert said in done.stdout, done.stdout
