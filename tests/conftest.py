"""Shared fixtures: real data under ../shared (tests using it skip when it is absent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is absent (a fresh clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent")
    return path


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics and affine terms, so that a wrong mapping cannot hide behind identity BN."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.6 - 0.3)
    return model.eval()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


OWN_PROCESS = "MOBILENETS_TEST_IN_OWN_PROCESS"


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Tests marked ``own_process`` run in a fresh ``python -m pytest`` of their own.

    The phone runtimes (ExecuTorch and LiteRT with litert-torch's JAX) bring native thread pools and their
    own XNNPACK into the process; loaded into the test process, later unrelated tests ended in a
    segmentation fault on the fresh-clone CI. In a process of its own a crash would be that test's failure."""
    if pyfuncitem.get_closest_marker("own_process") is None or os.environ.get(OWN_PROCESS):
        return None
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", pyfuncitem.nodeid]
    env = {**os.environ, OWN_PROCESS: "1"}
    done = subprocess.run(cmd, cwd=pyfuncitem.config.rootpath, env=env, capture_output=True, text=True)
    out = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"in its own process (exit code {done.returncode}):\n{out[-6000:]}", pytrace=False)
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    if skipped:
        pytest.skip(skipped[0].split(": ", 1)[-1])
    return True
