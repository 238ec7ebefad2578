"""fuse, export (checked in ONNX Runtime), int8, deploy, bench and select."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

from conftest import FP32_TOP1, SHARED, labelled_by, max_int8_drop, random_net, rel_err, shared_path
from mobilenets import create_model, deploy, export, fuse
from mobilenets.cli import main
from mobilenets.deploy import int8_settings
from mobilenets.deploy.quantize import calibration_batch, export_int8
from mobilenets.runtime import files as exported_files
from mobilenets.runtime.runners import openvino_kernels, openvino_runner
from mobilenets.util.cpu import CpuInfo, cpu_info, default_threads
from mobilenets.util.errors import ExportError, PrecisionError

# OpenVINO's and NNCF's native thread pools stay out of the test process: loaded into it, later tests
# (test_train's subprocess waits) ended in a segmentation fault on an Intel Xeon (AVX-512), 2026-12-02
pytestmark = pytest.mark.own_process

AMX = CpuInfo("Intel Xeon (test)", "x86_64", ("avx2", "fma", "avx512", "avx512_vnni", "amx_int8", "amx_bf16"), "AVX512")
AVX2 = CpuInfo("AMD EPYC (test)", "x86_64", ("avx2", "fma"), "AVX2")


@pytest.fixture(scope="module")
def v3():
    torch.manual_seed(0)
    return random_net(create_model("mobilenet_v3_small"))


@pytest.fixture
def calib_dir(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(8):
        sub = tmp_path / "calib" / ("a" if i % 2 else "b/deeper")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(sub / f"{i}.jpg")
    return tmp_path / "calib"


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large"])
def test_fuse_is_exact(name):
    model = random_net(create_model(name, width_mult=0.5))
    fused = fuse(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        ref = model(x)
        assert rel_err(fused(x), ref) <= 1e-5
        cl = fused.to(memory_format=torch.channels_last)
        assert rel_err(cl(x.contiguous(memory_format=torch.channels_last)), ref) <= 1e-5


def test_onnx_check_is_relative_to_the_logits_scale(tmp_path):
    """A model with large logits (as a trained one has) is exported: the check bounds ONNX Runtime's error
    by 1e-4 of the logits' scale, not by an absolute 1e-4 (which refused such models)."""
    model = random_net(create_model("mobilenet_v3_large", num_classes=10))
    with torch.no_grad():
        model.classifier.weight.mul_(100)
    x = torch.stack([torch.rand(3, 64, 64), torch.randn(3, 64, 64) * 2])
    with torch.inference_mode():
        logits = model(x)
    assert logits.abs().max() > 100 and (logits[0] - logits[1]).abs().max() > 0.1 * logits.abs().max()
    report = export(model, tmp_path / "big.onnx", "onnx", img_size=64)
    assert 0 < report["max_rel_diff"] <= 1e-4


def test_onnx_export_native_ops_dynamic_batch_metadata(v3, tmp_path):
    path = tmp_path / "m.onnx"
    report = export(v3, path, "onnx", img_size=128)
    assert report["max_rel_diff"] <= 1e-4
    proto = onnx.load(path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"HardSwish", "HardSigmoid"} <= ops and "BatchNormalization" not in ops
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["mobilenets"])
    assert meta["pretrained_cfg"]["input_size"] == [3, 128, 128] and len(meta["class_names"]) == 1000
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 128, 128)
    with torch.inference_mode():
        ref = v3(x).numpy()
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - ref).max() <= 1e-4


def test_torchscript_and_pt2(v3, tmp_path):
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        ref = v3(x)
    export(v3, tmp_path / "m.pt", "torchscript", img_size=96)
    assert rel_err(torch.jit.load(tmp_path / "m.pt")(x), ref) <= 1e-5
    export(v3, tmp_path / "m.pt2", "pt2", img_size=96)
    assert rel_err(torch.export.load(tmp_path / "m.pt2").module()(x), ref) <= 1e-5


def test_export_mistakes_write_nothing(v3, tmp_path, calib_dir):
    with pytest.raises(ExportError, match="features_only"):
        export(create_model("mobilenet_v2", features_only=True), tmp_path / "f.onnx")
    with pytest.raises(ExportError, match="does not exist or is not writable"):
        export(v3, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ExportError, match="Unknown export format"):
        export(v3, tmp_path / "m.engine", "tensorrt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="holds no images"):
        export_int8(v3, tmp_path / "q.onnx", tmp_path / "empty")
    with pytest.raises(ExportError, match="Calibration inputs are"):
        export_int8(v3, tmp_path / "q.onnx", torch.randn(2, 3, 64, 64), img_size=96)
    with pytest.raises(ExportError, match="has 10 classes but the model has 1000"):
        export_int8(v3, tmp_path / "q.onnx", torch.randn(2, 3, 96, 96), img_size=96, qat="digits")
    with pytest.raises(ExportError, match="epochs >= 1"):
        export_int8(v3, tmp_path / "q.onnx", torch.randn(2, 3, 96, 96), img_size=96, qat="digits", qat_epochs=0)
    args = ["export", "--model", "mobilenet_v3_small", "--qat", "digits", "--output", str(tmp_path / "q.onnx")]
    assert main(args) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "empty"]


def test_int8_runs_in_onnxruntime_and_openvino(v3, tmp_path, calib_dir):
    """The int8 file compiles and runs in both runtimes on this CPU (OpenVINO with its f32 hint: its bf16
    default on AMX machines cannot compile QDQ models), records the weight bits chosen for this CPU, and is
    the same file when made twice. With 8-bit weights (VNNI/AMX) the activations are symmetric and
    OpenVINO runs every convolution in int8 but the stem and squeeze-excite ones NNCF leaves fp32 (with
    zero points, as before, 27 more of them ran in fp32)."""
    path = tmp_path / "q.onnx"
    report = export_int8(v3, path, calib_dir, img_size=96)
    export_int8(v3, tmp_path / "again.onnx", calib_dir, img_size=96)
    assert path.read_bytes() == (tmp_path / "again.onnx").read_bytes()  # calibration is deterministic
    assert report["fp32_bytes"] / report["bytes"] > 3.0 and report["calibration_images"] == 8  # SE weights fp16
    bits = 8 if cpu_info().int8_dot else 7
    assert report["weight_bits"] == bits
    proto = onnx.load(path)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["mobilenets"])
    assert meta["int8"]["weight_bits"] == bits and len(meta["class_names"]) == 1000
    int8 = [numpy_helper.to_array(t) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    dense = [w for w in int8 if w.ndim == 2 or (w.ndim == 4 and w.shape[1] > 1)]  # depthwise ones never saturate
    assert len(dense) > 10 and max(int(np.abs(w).max()) for w in dense) in ((64,) if bits == 7 else (127, 128))
    x = np.random.default_rng(1).standard_normal((2, 3, 96, 96), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in proto.graph.node}
    values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    zeros = [values[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]  # activations only
    assert len(zeros) > 20 and any(z.dtype == np.uint8 for z in zeros)
    assert (bits == 7) == any(z.any() for z in zeros)  # zero points only with 7-bit weights (AVX2)
    pytest.importorskip("openvino")
    ov_out = openvino_runner(path.read_bytes(), "int8")(x)
    assert np.abs(ov_out - got).max() < 0.05 * np.abs(got).max() + 1e-3
    convs = [(kernel, name) for op, kernel, name in openvino_kernels(path.read_bytes(), x[:1]) if "Convolution" in op]
    fp32 = [name for kernel, name in convs if "f32" in kernel]
    assert len(convs) > 40 and len(fp32) >= 19  # the stem and 9 squeeze-excite blocks' two at least
    if bits == 8:
        assert all("/se/" in name or "/stem/" in name for name in fp32), fp32


def test_weight_bits_follow_the_cpu(monkeypatch):
    """8-bit weights where int8 dot products accumulate in 32 bits (VNNI, AMX), 7-bit where AVX2 saturates;
    an 8-bit file on an AVX2 CPU is warned about in one sentence."""
    for module in (int8_settings, exported_files):
        monkeypatch.setattr(module, "cpu_info", lambda: AMX)
    assert int8_settings.weight_bits() == 8 and int8_settings.int8_metadata(8)["made_on"].startswith("Intel Xeon")
    assert exported_files.saturation_warning({"int8": {"weight_bits": 8}}) is None
    for module in (int8_settings, exported_files):
        monkeypatch.setattr(module, "cpu_info", lambda: AVX2)
    assert int8_settings.weight_bits() == 7 and int8_settings.weight_bits("8") == 8
    assert "re-export with --weight-bits 7" in exported_files.saturation_warning({"int8": {"weight_bits": 8}})
    assert exported_files.saturation_warning({"int8": {"weight_bits": 7}}) is None
    with pytest.raises(ExportError, match="weight bits must be auto, 7 or 8"):
        int8_settings.weight_bits(4)


AVX2_KERNELS = """
import sys, numpy as np
from mobilenets.runtime.runners import openvino_kernels, openvino_runner
for path in sys.argv[1:]:
    data, x = open(path, "rb").read(), np.load(path + ".in.npy")
    kernels = {kernel for op, kernel, _ in openvino_kernels(data, x[:1]) if "Convolution" in op}
    assert all("avx2" in k for k in kernels), kernels
    np.save(path + ".out.npy", openvino_runner(data, "int8")(x))
"""


def _quantized_op(op: str, grids: list, out: tuple[float, int], shape: tuple) -> onnx.ModelProto:
    """uint8 inputs ``a``, ``b``, ... of ``shape`` -> DequantizeLinear on ``grids`` -> ``op`` ->
    QuantizeLinear on ``out`` -> uint8 ``y``: one operation as PyTorch's exporter writes it in a carried
    file."""
    from onnx import TensorProto, helper

    names, nodes, inits = "ab"[: len(grids)], [], []
    for name, (scale, zero) in zip(names, grids):
        inits += [
            numpy_helper.from_array(np.float32(scale), f"{name}.s"),
            numpy_helper.from_array(np.uint8(zero), f"{name}.z"),
        ]
        nodes.append(helper.make_node("DequantizeLinear", [name, f"{name}.s", f"{name}.z"], [f"{name}.f"]))
    inits += [numpy_helper.from_array(np.float32(out[0]), "y.s"), numpy_helper.from_array(np.uint8(out[1]), "y.z")]
    nodes += [helper.make_node(op, [f"{n}.f" for n in names], ["y.f"])]
    nodes += [helper.make_node("QuantizeLinear", ["y.f", "y.s", "y.z"], ["y"])]
    io = [helper.make_tensor_value_info(n, TensorProto.UINT8, shape) for n in names]
    graph = helper.make_graph(nodes, op, io, [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_litert_arithmetic_in_onnx_runtimes():
    """A carried file's hard-swish, residual sums and average pooling, rewritten to compute as LiteRT
    (:mod:`mobilenets.deploy.carried_graph`), give LiteRT's values for every uint8 input in ONNX Runtime
    and OpenVINO (the tables are checked against LiteRT itself in test_tflite); the float path they
    replace differs from them on some inputs of each of these grids."""
    import openvino as ov

    from mobilenets.deploy.carried_graph import as_litert_computes
    from mobilenets.deploy.litert_kernels import add_table, hard_swish_table

    u8 = np.arange(256, dtype=np.uint8)
    pairs = [p.reshape(-1) for p in np.meshgrid(u8, u8, indexing="ij")]
    pooled = np.random.default_rng(0).integers(0, 256, (4, 256, 14, 14), dtype=np.uint8)
    pooled[0, 0] = np.repeat([1, 0], 7)[:, None]  # a sum of 98 over 196: the mean ties at 1/2
    odd = np.random.default_rng(1).integers(0, 256, (4, 256, 7, 21), dtype=np.uint8)  # 147: no ties, half is 73
    grids = (
        [(0.33663276, 131), (0.06024338, 2)],
        [(0.47078258, 98), (0.05068462, 8)],
        [(0.2, 120), (0.35, 130), (0.4, 125)],
    )
    cases = [  # (op, input grids, output grid, inputs, what LiteRT gives, how the rewrite computes it)
        ("HardSwish", grids[0][:1], grids[0][1], [u8], hard_swish_table(*grids[0][0], *grids[0][1]), "Where"),
        ("HardSwish", grids[1][:1], grids[1][1], [u8], hard_swish_table(*grids[1][0], *grids[1][1]), "Gather"),
        ("Add", grids[2][:2], grids[2][2], pairs, add_table(*grids[2]).reshape(-1), "Gather"),
        ("GlobalAveragePool", [(0.1, 2)], (0.1, 2), [pooled], None, "ReduceSum"),
        ("GlobalAveragePool", [(0.1, 2)], (0.1, 2), [odd], None, "ReduceSum"),
    ]
    for op, ins, out, xs, expected, kind in cases:
        model = _quantized_op(op, ins, out, xs[0].shape)
        feeds = dict(zip("ab", xs))
        if expected is None:
            count = xs[0].shape[2] * xs[0].shape[3]
            expected = (xs[0].sum((2, 3), keepdims=True, dtype=np.int64) + count // 2) // count
        as_float = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
        assert np.array_equal(as_float, expected) == (xs[0] is odd), op  # the float path rounds otherwise
        assert as_litert_computes(model)[op] == 1 and kind in {n.op_type for n in model.graph.node}
        got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
        compiled = ov.Core().compile_model(ov.Core().read_model(model.SerializeToString(), b""), "CPU")
        assert np.array_equal(got, expected) and np.array_equal(compiled(feeds)["y"], expected), (op, kind)


@pytest.mark.skipif(not cpu_info().has("avx2"), reason="AVX2's int8 kernels need an x86 CPU with AVX2")
def test_int8_files_in_avx2_kernels(v3, tmp_path, calib_dir):
    """What AVX2-only CPUs run, on any x86 CPU: OpenVINO with oneDNN told ``ONEDNN_MAX_CPU_ISA=AVX2``.
    The premise of ``--weight-bits auto``: its AVX2 int8 kernels compute a 7-bit file as exact integer
    arithmetic does and saturate an 8-bit one (Google's V2 recalibrated: -0.69 against -3.77 points,
    benchmarks/RESULTS.md). And a file carrying Google's quantization (V1 0.25, when ../shared is there)
    runs there too: its classifier's uint8 weights, as a fully connected layer, did not compile."""
    pytest.importorskip("openvino")
    x = np.random.default_rng(1).standard_normal((4, 3, 96, 96), dtype=np.float32)
    files = {bits: tmp_path / f"w{bits}.onnx" for bits in (7, 8)}
    for bits, path in files.items():
        export_int8(v3, path, calib_dir, img_size=96, bits=bits)
        np.save(f"{path}.in.npy", x)
    google = SHARED / "weights" / "mobilenet_v1_0.25_224_quant.tflite"
    if google.exists():
        from mobilenets.weights.factory import load_tflite

        files["carried"] = tmp_path / "carried.onnx"
        assert "quantization" in export_int8(load_tflite(google), files["carried"])
        np.save(f"{files['carried']}.in.npy", np.random.default_rng(2).standard_normal((4, 3, 224, 224), np.float32))
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    child = subprocess.run([sys.executable, "-c", AVX2_KERNELS, *map(str, files.values())], env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    err = {}
    for key, path in files.items():
        exact = _outputs(path, np.load(f"{path}.in.npy"), exact=True)
        err[key] = np.abs(np.load(f"{path}.out.npy") - exact).max() / np.abs(exact).max()
    assert err[7] < 0.02 and err[8] > 2 * err[7], err  # 0.013 and 0.048; full-range 7-bit weights: 0.037
    assert err.get("carried", 0) < 0.05, err


@pytest.mark.slow
def test_int8_accuracy_budget_keeps_layers_float_or_refuses(tmp_path, monkeypatch):
    """``--max-drop --val DIR`` on Google's float V1 0.25, with 50 real images labelled by its fp32
    predictions: plain int8 (32 COCO photos to calibrate) changes some answers, so with a budget one
    image tighter layers are kept float until it is met, and the file lists them; a budget NNCF does not
    meet is refused (here through ``deploy(val=, max_drop=)``, which takes the same path)."""
    import nncf

    from mobilenets.weights.factory import load_tflite

    model = load_tflite(shared_path("weights", "mobilenet_v1_0.25_224_float.tflite")).eval()
    calib = shared_path("coco128", "images")
    val = tmp_path / "val"
    x, labels = labelled_by(model, val)
    lost = export_int8(model, tmp_path / "q.onnx", calib, calib_size=32, val=val, max_drop=100)["budget"]["drop"]
    assert lost >= 4  # plain int8 changes a few of fp32's answers (each 2 points)
    report = export_int8(model, tmp_path / "q.onnx", calib, calib_size=32, val=val, max_drop=lost - 2)
    budget = report["budget"]  # one image tighter than plain int8: layers kept float
    assert budget["val_images"] == 50 and budget["val_top1_fp32"] == 1.0 and budget["ptq_drop"] == lost
    assert budget["drop"] <= lost - 2 and budget["kept_float"]
    meta = json.loads({p.key: p.value for p in onnx.load(tmp_path / "q.onnx").metadata_props}["mobilenets"])
    assert meta["int8"]["kept_float"] == budget["kept_float"]
    session = ort.InferenceSession(str(tmp_path / "q.onnx"))  # the file as written, one image at a time
    answers = [int(session.run(None, {"input": image[None].numpy()})[0].argmax()) for image in x]
    assert 100 - 2 * sum(a == b for a, b in zip(answers, labels)) == pytest.approx(budget["drop"])
    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", lambda model, *a, **k: nncf.quantize(model, a[0]))
    with pytest.raises(ExportError, match="more than --max-drop 0; allow a larger drop"):  # deploy() shares it
        deploy(model, precision="int8", backend="onnxruntime", calib=calibration_batch(calib, model.pretrained_cfg, 32),
               val=val, max_drop=0.0)  # fmt: skip
    with pytest.raises(ExportError, match="must be a number of points from 0 to 100"):
        export_int8(model, tmp_path / "r.onnx", calib, val=val, max_drop=-1)


def test_deploy_fp32_and_int8(v3, calib_dir):
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        ref = v3(x)
    pred = deploy(v3, img_size=96)
    assert pred.precision == "fp32" and pred.backend in pred.timings_ms and len(pred.timings_ms) >= 2
    assert rel_err(pred(x), ref) <= 1e-4  # fp32 on every backend: bf16 would be ~1e-2 off
    assert rel_err(torch.from_numpy(pred(x.numpy())), ref) <= 1e-4
    assert repr(pred).startswith(f"Predictor(backend={pred.backend!r}, precision='fp32', input=3x96x96")
    assert len(repr(pred)) < 200 and cpu_info().model in repr(pred)
    with pytest.raises(ValueError, match=r"takes N x 3 x 96 x 96 inputs"):
        pred(torch.randn(1, 3, 64, 64))
    q = deploy(v3, precision="int8", calib=calib_dir, img_size=96)  # int8, or a faster higher precision
    assert {"onnxruntime int8", "openvino int8", "fused"} <= set(q.timings_ms)
    assert min(q.timings_ms, key=q.timings_ms.get).split()[0] == q.backend
    # never below int8; bf16 is a higher precision this CPU may keep (native bf16: AMX, AVX512-BF16)
    kept = ("int8", "bf16", "fp32") if cpu_info().native_bf16 else ("int8", "fp32")
    assert any(k.endswith(" bf16") for k in q.timings_ms) == cpu_info().native_bf16
    assert q.precision in kept and q(x).shape == (2, 1000)
    forced = deploy(v3, precision="int8", backend="openvino", calib=calib_dir, img_size=96)
    assert (forced.backend, forced.precision, list(forced.timings_ms)) == ("openvino", "int8", ["openvino int8"])
    assert json.loads(onnx.load_from_string(forced.onnx).metadata_props[0].value)["int8"]["weight_bits"] in (7, 8)
    with pytest.raises(ValueError, match="precision"):
        deploy(v3, precision="fp16")
    with pytest.raises(PrecisionError, match="does not run int8"):
        deploy(v3, precision="int8", backend="fused")
    (calib_dir / "labels.csv").write_text("file,label\n" + "".join(f"a/{i}.jpg,0\n" for i in (1, 3, 5, 7)))
    budgeted = deploy(v3, precision="int8", backend="onnxruntime", calib=calib_dir, img_size=96,
                      val=calib_dir, max_drop=100)  # fmt: skip
    assert budgeted.budget["val_images"] == 4 and budgeted.budget["kept_float"] == []
    with pytest.raises(ExportError, match="goes with precision='int8'"):
        deploy(v3, val=calib_dir)


def test_bf16_is_native_or_refused(v3):
    """bf16 only where the CPU computes it natively; there it stays close to fp32, elsewhere one sentence
    names the missing feature. Below the public API, OpenVINO's own choice differs per CPU: on AVX2 it
    falls back to f32 silently (caught on the compiled model), on AVX-512 without BF16 it emulates bf16."""
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        ref = v3(x)
    if not cpu_info().native_bf16:
        with pytest.raises(PrecisionError, match=r"bf16 needs a CPU with native bf16 \(AMX or AVX512-BF16"):
            deploy(v3, precision="bf16", img_size=96)
        pytest.importorskip("openvino")
        from mobilenets.deploy.onnx import onnx_bytes

        onnx = onnx_bytes(v3, x[:1])
        if cpu_info().has("avx512"):  # OpenVINO emulates bf16 with AVX-512 conversions: kept, and bf16 for real
            got = openvino_runner(onnx, "bf16")(x[:1].numpy())
            assert 1e-5 < abs(got - ref[:1].numpy()).max() <= 0.1 * ref.abs().max()
        else:  # AVX2: OpenVINO falls back to f32 without a word; caught on the compiled model
            with pytest.raises(PrecisionError, match="OpenVINO compiled the model in f32, not bf16"):
                openvino_runner(onnx, "bf16")
        return
    assert deploy(v3, precision="bf16", img_size=96).precision in ("bf16", "fp32")  # never lower than asked
    for backend in ("fused", "openvino"):
        pred = deploy(v3, precision="bf16", backend=backend, img_size=96)
        assert (pred.backend, pred.precision) == (backend, "bf16")
        assert 1e-5 < (pred(x) - ref).abs().max() <= 0.1 * ref.abs().max()  # bf16 for real, and close


def _outputs(path, x: np.ndarray, exact: bool = False) -> np.ndarray:
    """An ONNX file's outputs in ONNX Runtime, 50 inputs a call; ``exact`` turns off its graph
    optimizations, so QDQ models compute in exact integer-valued arithmetic (no int8 kernels): what CPUs
    with VNNI/AMX compute."""
    opts = ort.SessionOptions()
    if exact:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i : i + 50]})[0] for i in range(0, len(x), 50)])


def _top1(path, x: np.ndarray, y: np.ndarray, exact: bool = False) -> float:
    """Top-1 of an ONNX file in ONNX Runtime (``exact``: see :func:`_outputs`)."""
    return float((_outputs(path, x, exact).argmax(1) == y).mean())


MAX_DROP = max_int8_drop()


@pytest.fixture(scope="module")
def imagenet_224() -> dict:
    """The 1300 photos preprocessed once as Google's 224 px files want them (tf-slim crop, [-1, 1])."""
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small_1.0_224_uint8", "mobilenet_v1_0.25_224_float"])
def test_int8_accuracy_on_real_images(tmp_path, name, imagenet_224):
    """Google's V3-Small and float V1 0.25 (TFLite), int8 with the default flags and COCO photos (not
    ImageNet-like) as --calib: top-1 drop within MAX_DROP (the float-trained V1: 1.5) on 1300 images in ONNX
    Runtime's int8 kernels (V3-Small in OpenVINO's too). V3-Small keeps Google's own quantization (the
    calibration images go unused; Google's V2 does too, and test_tflite measures its drop in ONNX Runtime);
    V1 is calibrated, with the weight bits chosen for this CPU, and on AVX2 CPUs the 8-bit setting made for
    VNNI/AMX is checked too, in the exact arithmetic those CPUs compute."""
    from mobilenets.evaluate.classify import _Images, find_eval_set
    from mobilenets.runtime.classifier import load_classifier

    weights = shared_path("weights", f"{name}.tflite")
    data = shared_path("imagenet-val-1300")
    calib = shared_path("coco128", "images")
    assert main(["export", "--weights", str(weights), "--output", str(tmp_path / "f.onnx")]) == 0
    other = [] if cpu_info().int8_dot else ["8"]
    for bits in ["auto", *other]:
        more = [] if bits == "auto" else ["--weight-bits", bits]
        assert main(["export", "--weights", str(weights), "--int8", "--calib", str(calib), *more,
                     "--output", str(tmp_path / f"q{bits}.onnx")]) == 0  # fmt: skip
    clf = load_classifier(str(tmp_path / "f.onnx"))
    key = json.dumps(clf.cfg, sort_keys=True)
    if key not in imagenet_224:
        images = _Images(find_eval_set(data, clf.class_names).samples, clf.cfg)
        x = torch.stack([images[i][0] for i in range(len(images))]).numpy()
        imagenet_224[key] = x, np.array([label for _, label in images.samples])
    x, y = imagenet_224[key]
    fp32 = FP32_TOP1[name] if name in FP32_TOP1 else _top1(tmp_path / "f.onnx", x, y)  # V1's: test_tflite pins it
    assert len(y) == 1300 and fp32 > 0.6
    proto = onnx.load(tmp_path / "qauto.onnx")
    carried = "quantization" in json.loads(proto.metadata_props[0].value)["int8"]
    assert carried == ("float" not in name)
    if not carried:  # each ReLU6 output on all of [0, 6] (NNCF's histograms cut some at 3.3-4.5)
        made_by = {out: node.op_type for node in proto.graph.node for out in node.output}
        grids = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        relu6 = [
            grids[n.input[1]]
            for n in proto.graph.node
            if n.op_type == "QuantizeLinear" and made_by.get(n.input[0]) == "Clip"
        ]
        assert len(relu6) == 27 and all(np.allclose(scale, 6 / 255) for scale in relu6)
    assert 100 * (fp32 - _top1(tmp_path / "qauto.onnx", x, y)) <= (MAX_DROP if carried else 1.5)
    if "v3" in name and importlib.util.find_spec("openvino"):  # the same file in OpenVINO (squeeze-excite fp32)
        run = openvino_runner((tmp_path / "qauto.onnx").read_bytes(), "int8")
        pred = np.concatenate([run(x[i : i + 50]).argmax(1) for i in range(0, len(x), 50)])
        assert 100 * (fp32 - float((pred == y).mean())) <= MAX_DROP
    for bits in other:
        assert 100 * (fp32 - _top1(tmp_path / f"q{bits}.onnx", x, y, exact=True)) <= 1.0
    assert (tmp_path / "f.onnx").stat().st_size / (tmp_path / "qauto.onnx").stat().st_size > 2.9  # V1 0.25: 2.96


def test_bench_command(capsys, tmp_path):
    args = ["--model", "mobilenet_v3_small", "--backends", "fused,onnxruntime", "--batch-sizes", "1",
            "--img-size", "96", "--repeats", "3", "--json", "--plot", str(tmp_path / "b.png")]  # fmt: skip
    assert main(["bench", *args, "--precision", "fp32,int8"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [(r["backend"], r["precision"]) for r in rows] == [
        ("torchvision eager", "fp32"), ("fused", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]  # fmt: skip
    assert rows[0]["vs_torchvision_eager"] == 1.0 and all(r["median_ms"] > 0 for r in rows)
    assert f"# CPU: {cpu_info().model}" in out.err and ", ".join(cpu_info().isa) in out.err
    assert (tmp_path / "b.png").exists()
    assert main(["bench", "--backends", "tensorrt"]) == 2
    assert "Unknown backend" in capsys.readouterr().err
    if not cpu_info().native_bf16:
        assert main(["bench", "--precision", "bf16"]) == 2
        assert capsys.readouterr().err.count("\n") == 1  # one sentence naming the missing feature


def test_env_reports_this_cpu(capsys):
    """``mobilenets env --json``: the CPU's features as the kernel reports them, and what runs here."""
    assert main(["env", "--json"]) == 0
    out = capsys.readouterr().out
    info = json.loads(out.strip().splitlines()[-1])
    assert {"cpu", "isa", "backends", "precisions"} <= set(info) and info["cpu"] in out
    assert info["versions"]["torch"] in torch.__version__
    assert (
        {"onnxruntime", "openvino", "litert", "executorch"}
        >= set(info["precisions"]["int8"]["backends"])
        >= {"onnxruntime"}
    )
    assert bool(info["precisions"]["bf16"]["backends"]) == cpu_info().native_bf16
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags to compare with (not Linux x86)")
    assert ("avx2" in info["isa"]) == ("avx2" in flags)
    assert ("avx512_vnni" in info["isa"]) == ("avx512_vnni" in flags)
    assert ("amx_bf16" in info["isa"]) == ("amx_bf16" in flags)


def test_runtimes_take_their_threads_from_one_setting(tmp_path):
    """Unless told, ONNX Runtime gets ``default_threads()``: 2, or 1 where PyTorch is held to 1 (as each of
    the test suite's two workers is, by ``OMP_NUM_THREADS``); a count given is kept."""
    from mobilenets.runtime.runners import onnx_session

    data = export(create_model("mobilenet_v1", width_mult=0.25), tmp_path / "m.onnx", img_size=64)["path"]
    before = torch.get_num_threads()
    try:
        for held in (1, 2):
            torch.set_num_threads(held)
            assert default_threads() == min(2, held)
            assert onnx_session(data).get_session_options().intra_op_num_threads == held
        assert onnx_session(data, 3).get_session_options().intra_op_num_threads == 3
    finally:
        torch.set_num_threads(before)


def test_select_orders_by_published_top1(monkeypatch, capsys):
    from mobilenets.deploy import bench
    from mobilenets.evaluate.zoo import PUBLISHED

    small = [p for p in PUBLISHED if p.resolution == 96 and p.model == "mobilenet_v2"][:3]
    monkeypatch.setattr(bench, "_grid", lambda: small)
    rows = bench.select(1e6, backend="fused", repeats=2)
    assert [r.published_top1 for r in rows] == sorted((p.top1 for p in small), reverse=True)
    none = bench.select(1e-6, backend="fused", repeats=2)
    assert not any(r.fits for r in none)
    capsys.readouterr()
    assert main(["select", "--budget-ms", "1e6", "--backend", "fused", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert f"3 of 3 published MobileNets run within 1e+06 ms here (fused fp32, {default_threads()} thread" in out
