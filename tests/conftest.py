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


# fp32 top-1 of Google's float-weight imports on the 1300 images of imagenet-val-1300 (PyTorch; LiteRT
# agrees on every image for V1, on 98.6% for V2): pinned by test_tflite, the reference of int8 drops.
FP32_TOP1 = {"mobilenet_v1_0.25_224_float": 0.6554, "mobilenet_v2_1.0_224_quant": 0.8000}


def max_int8_drop() -> float:
    """The most top-1 (points, on the 1300 images) default int8 of Google's V2 and V3-Small may lose: 0.5
    where int8 dot products accumulate in 32 bits (VNNI, AMX); 1.0 on AVX2 alone, whose 7-bit weights cost
    Google's V2 about 0.7 point more (measured in exact arithmetic, benchmarks/RESULTS.md "int8 by default")."""
    from mobilenets.util.cpu import cpu_info

    return 0.5 if cpu_info().int8_dot else 1.0


def labelled_by(model: torch.nn.Module, folder: Path, step: int = 26) -> tuple[list[torch.Tensor], list[int]]:
    """Every ``step``-th of the real ImageNet images written to ``folder`` (``images/`` and a
    ``labels.csv``, as ``eval --data`` takes) labelled with ``model``'s own fp32 answers: a validation set
    on which fp32 scores 100%, so any answer int8 changes is a drop. Returns the inputs and the labels."""
    from mobilenets.data.preprocess import list_images, preprocess

    (folder / "images").mkdir(parents=True)
    rows, inputs, labels = [], [], []
    for path in list_images(shared_path("imagenet-val-1300", "images"))[::step]:
        (folder / "images" / path.name).write_bytes(path.read_bytes())
        inputs.append(preprocess(path, model.pretrained_cfg))
        with torch.no_grad():
            labels.append(int(model(inputs[-1][None]).argmax()))
        rows.append(f"{path.name},{labels[-1]}")
    (folder / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    return inputs, labels


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics and affine terms, so that a wrong mapping cannot hide behind identity BN. Means
    and shifts stay within +-0.1: larger ones add up, layer after layer, to a constant that drowns the
    input's part of the logits (a timm MobileNetV1 with shifts of +-0.3 moved by 6% between two inputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_((torch.rand(m.num_features, generator=g) - 0.5) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_((torch.rand(m.num_features, generator=g) - 0.5) * 0.12)
    return model.eval()


def _first_output(out: object) -> torch.Tensor:
    """A model's output as one tensor: segmentation's ``out``, the last of a list of feature maps."""
    if isinstance(out, dict):
        return out["out"]
    return out[-1] if isinstance(out, (list, tuple)) else out


def random_net(model: torch.nn.Module, seed: int = 0, conv_bias: bool = True, check_size: int | None = 64
               ) -> torch.nn.Module:  # fmt: skip
    """The one random test net: He fan-in convolution and linear weights (a depthwise kernel's fan-in is
    k*k; the default init's fan-out scale leaves logits nearly constant), small random biases
    (``conv_bias=False`` keeps them), random BN statistics and layer scales in [0.1, 0.3] (not 1e-5, so that
    attention counts; at up to 1 a V4 hybrid's logits reach 5e5 and timm's own fp32 departs from its fp64
    by half of that: no check means anything there). Guarded: between two ``check_size`` inputs of
    different statistics (as two photos differ in brightness and contrast) the output moves by more than a
    tenth of its scale, so a parity check on it carries a signal (``None``: unchecked, for detectors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None and conv_bias:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(getattr(m, "gamma", None), torch.nn.Parameter):  # ours and timm's layer scales
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) * 0.2 + 0.1)
    model = randomize_bn(model, seed)
    if check_size:
        shape = (3, check_size, check_size)
        x = torch.stack([torch.rand(shape, generator=g), torch.randn(shape, generator=g) * 2])
        with torch.no_grad():
            out = _first_output(model(x))
        assert (out[0] - out[1]).abs().max() > 0.1 * out.abs().max(), "a random net whose output ignores its input"
    return model


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Max |got - ref| over the scale of ``ref`` (its max |value|)."""
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def same_state(a: object, b: object) -> bool:
    """Bitwise equality of two checkpoint values (tensors, dicts, lists, numbers)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return a == b


# What a resumed run restores from last.pt (and must end with as the run that was never interrupted).
RESUMED_STATE = ("model", "optimizer", "scheduler", "scaler", "ema", "rng", "epoch", "best")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


OWN_PROCESS = "MOBILENETS_TEST_IN_OWN_PROCESS"


_MODULE_RESULTS: dict[str, dict[str, tuple[str, str]]] = {}  # module path -> test name -> (outcome, message)
_SECONDS: dict[str, float] = {}  # "module path::test" -> seconds of its call, setup and teardown in the child
_CHILD_SECONDS: dict[str, float] = {}  # the same by "module file::test", as reported (the summary's)


# Seconds for one module's own-process tests (the slowest, test_mobile, took 190-220 s on a fresh clone here).
OWN_PROCESS_TIMEOUT = int(os.environ.get("MOBILENETS_OWN_PROCESS_TIMEOUT", "900"))


def _run_module_alone(item: pytest.Function) -> dict[str, tuple[str, str]]:
    """Run every selected ``own_process`` test of ``item``'s module in one fresh ``python -m pytest``
    (one interpreter start and import per module, not per test); each test's outcome from its JUnit XML.
    A child that does not end cleanly (killed, crashed at exit, timed out) fails every test that had no
    failure of its own, with the exit code and the end of its output."""
    import tempfile
    import xml.etree.ElementTree as ET

    module = str(item.path)
    ids = [i.nodeid for i in item.session.items if str(i.path) == module and i.get_closest_marker("own_process")]
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "results.xml"
        workers = ["-n", "0"] if item.config.pluginmanager.has_plugin("xdist") else []  # the child runs them itself
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, f"--junitxml={xml}", *ids]
        try:
            done = subprocess.run(cmd, cwd=item.config.rootpath, env={**os.environ, OWN_PROCESS: "1"},
                                  capture_output=True, text=True, timeout=OWN_PROCESS_TIMEOUT)  # fmt: skip
            code, tail = done.returncode, (done.stdout + done.stderr)[-6000:]
        except subprocess.TimeoutExpired as exc:
            code, tail = f"none: timed out after {OWN_PROCESS_TIMEOUT} s", str(exc.stdout or "")[-6000:]
        results = {i.split("::", 1)[1]: ("failed", f"no result (exit code {code}):\n{tail}") for i in ids}
        if xml.is_file():
            for case in ET.parse(xml).getroot().iter("testcase"):
                _SECONDS[f"{module}::{case.get('name')}"] = float(case.get("time", 0))
                outcome = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
                if outcome is None:
                    results[case.get("name")] = ("passed", "")
                else:
                    kind = "skipped" if outcome.tag == "skipped" else "failed"
                    results[case.get("name")] = (kind, outcome.get("message", "") + "\n" + (outcome.text or ""))
    if code not in (0, 1) or (code == 1 and "failed" not in {kind for kind, _ in results.values()}):
        results = {name: (kind, msg) if kind == "failed" else ("failed", f"the process ended with exit code "
                          f"{code} after this test:\n{tail}") for name, (kind, msg) in results.items()}  # fmt: skip
    return results


def pytest_configure(config: pytest.Config) -> None:
    """With test workers (pytest-xdist's ``-n``, two in ``pyproject.toml``), each worker and the processes it
    starts get an equal share of the cores (``OMP_NUM_THREADS``, which PyTorch and every runtime's default
    thread count follow: :func:`mobilenets.util.cpu.default_threads`): two processes with a pool per core
    each slowed each other 10-100x on these 2-core machines."""
    workers = getattr(config.option, "numprocesses", None)
    if workers and not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with own-process tests first: the longest, handed out first, so the two workers end together."""
    heavy = {item.path for item in items if item.get_closest_marker("own_process")}
    items.sort(key=lambda item: item.path not in heavy)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collects the child's seconds of each own-process test (from a test worker, through its report)."""
    seconds = dict(report.user_properties).get("own_process_seconds")
    if report.when == "call" and seconds is not None:
        path, name = report.nodeid.split("::", 1)
        _CHILD_SECONDS[f"{Path(path).name}::{name}"] = seconds


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The slowest tests run in their own process (``--durations`` bills a module's to its first test)."""
    if _CHILD_SECONDS:
        terminalreporter.section("slowest own-process tests (seconds in the child)")
        for name, seconds in sorted(_CHILD_SECONDS.items(), key=lambda kv: -kv[1])[:20]:
            terminalreporter.write_line(f"{seconds:8.2f}s {name}")


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
    pyfuncitem.user_properties.append(("own_process_seconds", _SECONDS.get(f"{module}::{pyfuncitem.name}", 0.0)))
    if outcome == "failed":
        pytest.fail(f"in its own process: {message[-6000:]}", pytrace=False)
    if outcome == "skipped":
        pytest.skip(message.strip().splitlines()[0] if message.strip() else "skipped in its own process")
    return True
