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


def he_random(model: torch.nn.Module, seed: int = 0, conv_bias: bool = True) -> torch.nn.Module:
    """He fan-in convolution weights (a depthwise kernel's fan-in is k*k), small random conv biases
    (``conv_bias=False`` keeps them) and random BN statistics: the output moves with the input, so that
    parity checks carry a signal (the default init's fan-out scale leaves logits nearly constant)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None and conv_bias:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return randomize_bn(model, seed)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


OWN_PROCESS = "MOBILENETS_TEST_IN_OWN_PROCESS"


_MODULE_RESULTS: dict[str, dict[str, tuple[str, str]]] = {}  # module path -> test name -> (outcome, message)


def _run_module_alone(item: pytest.Function) -> dict[str, tuple[str, str]]:
    """Run every selected ``own_process`` test of ``item``'s module in one fresh ``python -m pytest``
    (one interpreter start and import per module, not per test); each test's outcome from its JUnit XML."""
    import tempfile
    import xml.etree.ElementTree as ET

    module = str(item.path)
    ids = [i.nodeid for i in item.session.items if str(i.path) == module and i.get_closest_marker("own_process")]
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "results.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *ids]
        done = subprocess.run(cmd, cwd=item.config.rootpath, env={**os.environ, OWN_PROCESS: "1"},
                              capture_output=True, text=True)  # fmt: skip
        tail = (done.stdout + done.stderr)[-6000:]
        results = {i.split("::", 1)[1]: ("failed", f"no result (exit code {done.returncode}):\n{tail}") for i in ids}
        if xml.is_file():
            for case in ET.parse(xml).getroot().iter("testcase"):
                outcome = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
                if outcome is None:
                    results[case.get("name")] = ("passed", "")
                else:
                    kind = "skipped" if outcome.tag == "skipped" else "failed"
                    results[case.get("name")] = (kind, outcome.get("message", "") + "\n" + (outcome.text or ""))
    return results


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Tests marked ``own_process`` run outside the test process: the first one of a module runs all of
    that module's (selected) ``own_process`` tests in a fresh ``python -m pytest``, and each reports its own
    outcome from there (so the first one's duration holds the module's).

    The phone runtimes (ExecuTorch and LiteRT with litert-torch's JAX) and OpenVINO bring native thread
    pools and their own XNNPACK into the process; loaded into the test process, later unrelated tests ended
    in a segmentation fault on the fresh-clone CI. In a process of its own a crash fails that module's tests."""
    if pyfuncitem.get_closest_marker("own_process") is None or os.environ.get(OWN_PROCESS):
        return None
    module = str(pyfuncitem.path)
    if module not in _MODULE_RESULTS:
        _MODULE_RESULTS[module] = _run_module_alone(pyfuncitem)
    outcome, message = _MODULE_RESULTS[module][pyfuncitem.nodeid.split("::", 1)[1]]
    if outcome == "failed":
        pytest.fail(f"in its own process: {message[-6000:]}", pytrace=False)
    if outcome == "skipped":
        pytest.skip(message.strip().splitlines()[0] if message.strip() else "skipped in its own process")
    return True
