"""The lean core and its extras: every module imports with only the core installed, and every command and
public function that needs a missing extra says so in one sentence that names it.

Extras are hidden in a fresh interpreter by a meta-path finder that cannot see their packages, as an
environment without them would (``pip install mobilenets`` installs none of them)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from mobilenets.util.extras import EXTRA_OF

HIDE = """
import importlib.abc, importlib.machinery, sys
class Hide(importlib.abc.MetaPathFinder):  # PathFinder, blind to the hidden packages: as if not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
sys.meta_path[:] = [Hide() if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def run_hidden(hidden: list[str], code: str) -> dict:
    """Run ``code`` (which prints one JSON line last) with the ``hidden`` top-level packages refused."""
    script = f"HIDDEN = {hidden!r}\n{HIDE}\n{textwrap.dedent(code)}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


CLI = """
import contextlib, io, json, sys
from mobilenets.cli import main
out = {}
for name, argv in COMMANDS.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    out[name] = [code, err.getvalue()]
print(json.dumps(out))
"""


def test_every_module_imports_and_the_core_works_without_any_extra():
    result = run_hidden(
        sorted(EXTRA_OF) + ["timm"],
        """
        import importlib, json, pkgutil, sys
        import mobilenets
        names = [m.name for m in pkgutil.walk_packages(mobilenets.__path__, "mobilenets.") if "__main__" not in m.name]
        for name in names:
            importlib.import_module(name)
        model = mobilenets.create_model("mobilenet_v3_small")
        p = mobilenets.profile(model, 224)
        leaked = sorted({m.split(".")[0] for m in sys.modules} & set(HIDDEN))
        print(json.dumps({"modules": len(names), "params": p.params, "leaked": leaked}))
        """,
    )
    assert result["modules"] >= 20
    assert result["params"] == 2_542_856  # the V3 paper's 2.5M, as torchvision counts
    assert result["leaked"] == []


def test_commands_and_functions_name_the_missing_extra(tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    (tmp_path / "m.onnx").write_bytes(b"not needed: the runtime is missing")
    t = str(tmp_path)
    commands = {
        "onnx": ["export", "--model", "mobilenet_v3_small", "--output", f"{t}/m2.onnx"],
        "onnx eval": ["eval", "--weights", f"{t}/m.onnx", "--data", t],
        "onnx bench": ["bench", "--model", "mobilenet_v3_small", "--backends", "onnxruntime", "--repeats", "1"],
        "int8": ["export", "--model", "mobilenet_v3_small", "--int8", "--calib", str(calib), "--output", f"{t}/q.onnx"],
        "mobile": ["export", "--model", "mobilenet_v3_small", "--format", "tflite", "--output", f"{t}/m.tflite"],
        "plots": ["zoo", "--plot", f"{t}/zoo.png"],
        "demo": ["train", "--model", "mobilenet_v3_small", "--data", "digits", "--output", f"{t}/run"],
        "demo command": ["demo", "--output", f"{t}/demo"],
        "openvino": ["bench", "--model", "mobilenet_v3_small", "--backends", "openvino", "--repeats", "1"],
    }
    hidden = sorted(EXTRA_OF)
    result = run_hidden(hidden, f"COMMANDS = {commands!r}\n{CLI}")
    extra_of = {"onnx eval": "onnx", "onnx bench": "onnx", "demo command": "demo"}
    for name, (code, err) in result.items():
        extra = extra_of.get(name, name)
        assert code == 2, (name, err)
        assert f"'mobilenets[{extra}]'" in err, (name, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)
    assert not any((tmp_path / f).exists() for f in ("m2.onnx", "q.onnx", "m.tflite", "zoo.png", "run", "demo"))


@pytest.mark.parametrize(
    ("extra", "call"),
    [
        ("onnx", "mobilenets.export(model, PATH + '/m.onnx')"),
        ("mobile", "mobilenets.export(model, PATH + '/m.pte', 'pte')"),
        ("onnx", "mobilenets.deploy(model, backend='onnxruntime')"),
    ],
)
def test_public_functions_raise_missing_extra(tmp_path, extra, call):
    result = run_hidden(
        sorted(EXTRA_OF),
        f"""
        import json, mobilenets
        from mobilenets.util.extras import MissingExtra
        model, PATH = mobilenets.create_model("mobilenet_v3_small").eval(), {str(tmp_path)!r}
        try:
            {call}
            print(json.dumps({{"raised": None}}))
        except MissingExtra as exc:
            print(json.dumps({{"raised": str(exc)}}))
        """,
    )
    assert result["raised"] and f"'mobilenets[{extra}]'" in result["raised"], result
