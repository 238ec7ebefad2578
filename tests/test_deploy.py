"""fuse, export (checked in ONNX Runtime), int8, deploy, bench and select."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from conftest import randomize_bn, shared_path
from mobilenets import create_model, deploy, export, fuse
from mobilenets.cli import main
from mobilenets.deploy.export import ExportError
from mobilenets.deploy.quantize import export_int8


@pytest.fixture(scope="module")
def v3():
    torch.manual_seed(0)
    return randomize_bn(create_model("mobilenet_v3_small"))


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
    model = randomize_bn(create_model(name, width_mult=0.5))
    fused = fuse(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        ref = model(x)
        assert (fused(x) - ref).abs().max() <= 1e-5
        cl = fused.to(memory_format=torch.channels_last)
        assert (cl(x.contiguous(memory_format=torch.channels_last)) - ref).abs().max() <= 1e-5


def test_onnx_export_native_ops_dynamic_batch_metadata(v3, tmp_path):
    path = tmp_path / "m.onnx"
    report = export(v3, path, "onnx", img_size=128)
    assert report["max_abs_diff_onnxruntime"] <= 1e-4
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
    assert (torch.jit.load(tmp_path / "m.pt")(x) - ref).abs().max() <= 1e-5
    export(v3, tmp_path / "m.pt2", "pt2", img_size=96)
    assert (torch.export.load(tmp_path / "m.pt2").module()(x) - ref).abs().max() <= 1e-5


def test_export_mistakes_write_nothing(v3, tmp_path, calib_dir):
    with pytest.raises(ExportError, match="features_only"):
        export(create_model("mobilenet_v2", features_only=True), tmp_path / "f.onnx")
    with pytest.raises(ExportError, match="not a writable folder"):
        export(v3, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ExportError, match="Unknown export format"):
        export(v3, tmp_path / "m.tflite", "tflite")
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
    path = tmp_path / "q.onnx"
    report = export_int8(v3, path, calib_dir, img_size=96)
    assert report["fp32_bytes"] / report["bytes"] > 3.0 and report["calibration_images"] == 8  # SE weights fp16
    x = np.random.default_rng(1).standard_normal((2, 3, 96, 96), dtype=np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    ov = pytest.importorskip("openvino")
    compiled = ov.Core().compile_model(str(path), "CPU")
    assert np.abs(compiled({0: x})[compiled.output(0)] - got).max() < 0.05 * np.abs(got).max() + 1e-3


def test_deploy_fp32_and_int8(v3, calib_dir):
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        ref = v3(x)
    pred = deploy(v3, img_size=96)
    assert pred.backend in pred.timings_ms and len(pred.timings_ms) >= 2
    assert (pred(x) - ref).abs().max() <= 1e-4
    assert np.abs(pred(x.numpy()) - ref.numpy()).max() <= 1e-4
    with pytest.raises(ValueError, match=r"takes N x 3 x 96 x 96 inputs"):
        pred(torch.randn(1, 3, 64, 64))
    q = deploy(v3, precision="int8", calib=calib_dir, img_size=96)
    assert q.backend == "int8" and q(x).shape == (2, 1000)
    with pytest.raises(ValueError, match="precision"):
        deploy(v3, precision="fp16")


def test_int8_accuracy_on_real_images(tmp_path):
    """Google's MobileNetV2 (TFLite), int8 calibrated on ants/bees: top-1 drop <= 1 point on 1300 images."""
    weights = shared_path("weights", "mobilenet_v2_1.0_224_quant.tflite")
    data = shared_path("imagenet-val-1300")
    calib = shared_path("hymenoptera", "train")
    assert main(["export", "--weights", str(weights), "--output", str(tmp_path / "f.onnx")]) == 0
    assert main(["export", "--weights", str(weights), "--int8", "--calib", str(calib), "--calib-size", "256",
                 "--output", str(tmp_path / "q.onnx")]) == 0  # fmt: skip
    results = {}
    for name in ("f", "q"):
        from mobilenets.evaluate import evaluate
        from mobilenets.inference import load_classifier

        results[name] = evaluate(load_classifier(str(tmp_path / f"{name}.onnx")), data)
    assert results["f"]["n"] == 1300
    assert results["f"]["top1"] - results["q"]["top1"] <= 0.01, results
    assert (tmp_path / "f.onnx").stat().st_size / (tmp_path / "q.onnx").stat().st_size > 3.3


def test_int8_squeeze_excite_model_agrees_with_fp32(tmp_path):
    """Google's MobileNetV3-Small (TFLite): its int8 export names the same class as the fp32 export on
    real images in ONNX Runtime (the squeeze-excite layers stay fp32, their weights stored as fp16)."""
    from mobilenets.evaluate import list_images
    from mobilenets.preprocess import preprocess
    from mobilenets.weights.tflite import load_tflite

    model = load_tflite(shared_path("weights", "mobilenet_v3_small_1.0_224_uint8.tflite"))
    images = list_images(shared_path("imagenet-val-1300", "images"))[::13]
    x = torch.stack([preprocess(p, model.pretrained_cfg) for p in images]).numpy()
    calib = shared_path("hymenoptera", "train")
    fp32, int8 = tmp_path / "f.onnx", tmp_path / "q.onnx"
    export(model, fp32, "onnx")
    export_int8(model, int8, calib, calib_size=64)
    assert fp32.stat().st_size / int8.stat().st_size > 3.0
    pred = {p: ort.InferenceSession(str(p)).run(None, {"input": x})[0].argmax(1) for p in (fp32, int8)}
    assert len(x) == 100 and (pred[fp32] == pred[int8]).mean() >= 0.9


def test_bench_command(capsys, tmp_path):
    args = ["--model", "mobilenet_v3_small", "--backends", "fused,onnxruntime", "--batch-sizes", "1",
            "--img-size", "96", "--repeats", "3", "--json", "--plot", str(tmp_path / "b.png")]  # fmt: skip
    assert main(["bench", *args]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in rows] == ["torchvision eager", "fused", "onnxruntime"]
    assert rows[0]["vs_torchvision_eager"] == 1.0 and all(r["median_ms"] > 0 for r in rows)
    assert (tmp_path / "b.png").exists()
    assert main(["bench", "--backends", "tensorrt"]) == 2
    assert "Unknown backend" in capsys.readouterr().err


def test_select_orders_by_published_top1(monkeypatch):
    from mobilenets.deploy import bench
    from mobilenets.zoo import PUBLISHED

    small = [p for p in PUBLISHED if p.resolution == 96 and p.model == "mobilenet_v2"][:3]
    monkeypatch.setattr(bench, "_grid", lambda: small)
    rows = bench.select(1e6, backend="fused", repeats=2)
    assert [r.published_top1 for r in rows] == sorted((p.top1 for p in small), reverse=True)
    none = bench.select(1e-6, backend="fused", repeats=2)
    assert not any(r.fits for r in none)
