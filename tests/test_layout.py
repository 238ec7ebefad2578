"""The package's layout by stage, checked by import-linter against the contracts in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")


def _lint(src: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([LINT, str(config), "--no-cache"], capture_output=True, text=True, env=env,
                          cwd=src, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def linter() -> None:
    if LINT is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")


def test_the_package_keeps_its_import_contracts(linter: None) -> None:
    result = _lint(ROOT / "src", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("models/registry.py", "from mobilenets.weights import catalog  # noqa", "stages import downwards only"),
        ("weights/tflite.py", "from mobilenets import create_model  # noqa", "nothing inside imports the package root"),
        ("deploy/contract.py", "from mobilenets.deploy import export  # noqa", "no import circles"),
    ],
)
def test_a_wrong_import_breaks_a_contract(linter: None, tmp_path: Path, module: str, line: str, broken: str) -> None:
    """Each contract can fail: an import up a stage, one of the package root, one closing a circle."""
    shutil.copytree(ROOT / "src" / "mobilenets", tmp_path / "mobilenets", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "mobilenets" / module
    text = path.read_text()
    head, sep, rest = text.partition("\nfrom __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + rest)
    result = _lint(tmp_path, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert f"{broken} BROKEN" in result.stdout, result.stdout
