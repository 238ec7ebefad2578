"""Phone formats: LiteRT (.tflite), ExecuTorch (.pte) and Core ML, checked in their own runtimes."""

from __future__ import annotations

import importlib
import json
import platform

import pytest
import torch

from conftest import FP32_TOP1, labelled_by, random_net, shared_path
from mobilenets import create_model, export
from mobilenets.cli import main
from mobilenets.runtime.classifier import load_classifier
from mobilenets.runtime.files import check_installed
from mobilenets.util.errors import ExportError
from mobilenets.util.extras import MissingExtra

pytestmark = pytest.mark.own_process  # the phone runtimes stay out of the test process


def needs(fmt: str) -> None:
    """Skip, with the reason, where a format's converter or runtime is not installed."""
    try:
        check_installed(fmt)
    except MissingExtra as exc:
        pytest.skip(str(exc))


def _scaled(name: str, **kwargs) -> torch.nn.Module:
    """A :func:`conftest.random_net` with its classifier rescaled to logits of about unit size."""
    model = random_net(create_model(name, **kwargs))
    with torch.no_grad():
        scale = model(torch.randn(2, 3, 64, 64)).abs().max()
        model.classifier.weight.div_(scale)
        model.classifier.bias.zero_()
    return model


# V1, V2, V3-Large and V4-Conv-Small are left out: their operators are a subset of V3-Small's (depthwise
# and pointwise convolutions, residual adds, squeeze-excite, hard-swish) and V4-Hybrid-Medium's (the
# universal inverted bottlenecks, attention; its blocks below), but for V1's and V2's ReLU6, which the
# int8 accuracy tests run on real images in both runtimes (V2 in LiteRT, V1 in ExecuTorch); each of
# these exports costs about 10-20 s of the suite's 12 minutes (a whole V4-Hybrid-Medium 17 s).


@pytest.mark.parametrize("fmt", ["tflite", "pte"])
def test_v4_attention_blocks_keep_their_numbers(fmt):
    """V4-Hybrid-Medium's stride-16 blocks (UIB, Mobile MQA with keys and values downsampled, UIB, Mobile
    MQA), random BN statistics and layer scales, in the phone runtime within 1e-4 of their outputs' scale."""
    needs(fmt)
    from mobilenets.deploy.mobile import phone_bytes
    from mobilenets.runtime.runners import open_runner

    model = random_net(create_model("mobilenet_v4_hybrid_medium", width_mult=0.5))
    unit = torch.nn.Sequential(*model.blocks[6:10]).eval()
    x = torch.randn(1, next(unit.parameters()).shape[0], 8, 8)  # the first block's depthwise channels
    with torch.inference_mode():
        ref = unit(x)
    runtime = "litert" if fmt == "tflite" else "executorch"
    got = torch.from_numpy(open_runner(runtime, phone_bytes(unit, fmt, x, None), "fp32")(x.numpy()))
    assert ref.abs().max() > 0.1 and (got.reshape(ref.shape) - ref).abs().max() <= 1e-4 * ref.abs().max()


@pytest.mark.parametrize("fmt", ["tflite", "pte"])
def test_fp32_parity_in_the_phone_runtime(fmt, tmp_path):
    """The export's own check (1e-4 of the logits' scale) and an independent run of the written file; the
    LiteRT file takes NHWC input (``channels_last_input``, for camera buffers), which its runner feeds."""
    needs(fmt)
    model = _scaled("mobilenet_v3_small", width_mult=0.5)
    path, nhwc = tmp_path / f"m.{fmt}", fmt == "tflite"
    report = export(model, path, fmt, img_size=64, channels_last_input=nhwc)
    assert report["max_rel_diff"] <= 1e-4 and report["precision"] == "fp32"
    meta = json.loads((tmp_path / f"m.{fmt}.json").read_text())
    assert meta["model"] == "mobilenet_v3_small" and meta["pretrained_cfg"]["input_size"] == [3, 64, 64]
    if nhwc:
        from ai_edge_litert.interpreter import Interpreter

        assert list(Interpreter(str(path)).get_input_details()[0]["shape"]) == [1, 64, 64, 3]
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
    got = load_classifier(str(path)).run(x)
    assert ref.abs().max() > 0.1 and (got - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_gelu_tanh_keeps_its_numbers_in_executorch():
    """MobileNetV5's unit (conv, RMS norm, GELU's tanh form) in ExecuTorch within 1e-5 of its scale: XNNPACK's
    own tanh-form GELU was 3.8e-5 off per layer (1.4e-4 on this unit; the 300M encoder ended 6.4e-4 off,
    now 3.8e-6: benchmarks/RESULTS.md)."""
    needs("pte")
    from mobilenets.deploy.mobile import phone_bytes
    from mobilenets.models.layers import RMSNorm2d
    from mobilenets.runtime.runners import open_runner

    torch.manual_seed(0)
    unit = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1), RMSNorm2d(64), torch.nn.GELU(approximate="tanh"))
    x = torch.randn(1, 64, 16, 16) * 3
    with torch.inference_mode():
        ref = unit.eval()(x)
    got = torch.from_numpy(open_runner("executorch", phone_bytes(unit, "pte", x, None), "fp32")(x.numpy()))
    assert (got.reshape(ref.shape) - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_export_refusals(tmp_path, monkeypatch, capsys):
    """Mistakes, and a file whose runtime departs from PyTorch, get one sentence and leave nothing behind."""
    needs("tflite")
    model = _scaled("mobilenet_v1", width_mult=0.25)  # the fewest operations to convert
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(ExportError, match="features_only"):
        export(create_model("mobilenet_v2", features_only=True), bad / "f.tflite", "tflite")
    with pytest.raises(ExportError, match="does not exist or is not writable"):
        export(model, bad / "missing" / "m.pte", "pte")
    with pytest.raises(ExportError, match="does not exist"):
        export(model, bad / "m.pte", "pte", int8=True, calib=bad / "no-such-folder")
    with pytest.raises(ExportError, match="budget .* is for int8 ONNX, LiteRT and ExecuTorch files"):
        export(model, bad / "m.tflite", "tflite", val=bad, max_drop=1)  # a budget without int8
    monkeypatch.setattr(
        importlib.import_module("mobilenets.deploy.contract"), "RTOL", 0.0
    )  # a runtime that departs from PyTorch: refused
    with pytest.raises(ExportError, match="nothing was written"):
        export(model, bad / "m.tflite", "tflite", img_size=64)
    assert list(bad.iterdir()) == []
    assert main(["export", "--model", "mobilenet_v2", "--format", "onnx", "--channels-last-input",
                 "--output", str(bad / "m.onnx")]) == 2  # fmt: skip
    assert "phone formats" in capsys.readouterr().err


def test_coreml_spec_metadata_and_weight_int8(tmp_path, capsys):
    """Core ML as far as Linux allows: the spec's input/output names and shapes, the metadata, int8
    weights about 4x smaller; asking it to predict here is one sentence."""
    needs("coreml")
    import coremltools as ct

    model = _scaled("mobilenet_v3_small")
    fp32, int8 = tmp_path / "m.mlpackage", tmp_path / "q.mlpackage"
    export(model, fp32, "coreml", img_size=96)
    calib = torch.randn(4, 3, 96, 96)
    report = export(model, int8, "coreml", img_size=96, int8=True, calib=calib)
    spec = ct.models.MLModel(str(fp32), skip_model_load=True).get_spec()
    (inp,), (out,) = spec.description.input, spec.description.output
    assert inp.name == "input" and list(inp.type.multiArrayType.shape) == [1, 3, 96, 96]
    assert out.name == "logits"
    meta = json.loads(spec.description.metadata.userDefined["mobilenets"])
    assert meta["model"] == "mobilenet_v3_small" and len(meta["class_names"]) == 1000
    size = sum(f.stat().st_size for f in fp32.rglob("*") if f.is_file())
    assert size > 4 * 2.4e6 and 3.0 < size / report["bytes"] < 4.5  # fp32 weights; int8 ones
    if platform.system() != "Darwin":
        from PIL import Image

        Image.new("RGB", (120, 100), (90, 140, 30)).save(tmp_path / "photo.jpg")
        capsys.readouterr()  # what importing coremltools above logged
        assert main(["predict", str(tmp_path / "photo.jpg"), "--weights", str(fp32)]) == 2
        assert main(["eval", "--weights", str(fp32), "--data", "digits"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and all("predictions need macOS" in line for line in err)


# (format, Google's file, --calib folder, most top-1 points int8 with default flags may lose)
PHONE_INT8 = [
    # Google's quantization carried (the photos go unused): measured 0.08 in LiteRT and ExecuTorch
    ("tflite", "mobilenet_v2_1.0_224_quant", ("coco128", "images"), 0.5),
    # float-trained, calibrated: measured 0.62 (2.77 with the classifier in int8; LiteRT 0.08, and 3.15)
    ("pte", "mobilenet_v1_0.25_224_float", ("hymenoptera", "train"), 1.0),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "name", "calib", "max_drop"), PHONE_INT8, ids=[c[0] for c in PHONE_INT8])
def test_int8_accuracy_on_real_images(fmt, name, calib, max_drop, tmp_path, capsys):
    """Google's MobileNetV2 in LiteRT and its float-trained V1 0.25 in ExecuTorch, int8 with the default
    flags and a folder of photos as --calib (COCO's for V2, which keeps its file's own quantization and
    leaves them unused; ants and bees for V1): top-1 on the 1300 real images within ``max_drop`` points of
    the same model in fp32 (conftest's FP32_TOP1, which test_tflite pins); V1's classifier kept float.
    Export and evaluation run as a user runs them, as ``mobilenets`` commands (in this module's process of
    its own, which keeps the runtimes' native threads out of the test process)."""
    needs(fmt)
    weights = shared_path("weights", f"{name}.tflite")
    data = shared_path("imagenet-val-1300")
    path = tmp_path / f"q.{fmt}"

    def run(*args: str) -> dict:
        capsys.readouterr()
        assert main(list(args)) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    calib = shared_path(*calib)
    run("export", "--weights", str(weights), "--format", fmt, "--int8", "--calib", str(calib), "--output", str(path))
    int8 = run("eval", "--weights", str(path), "--data", str(data), "--json")
    assert int8["n"] == 1300 and 100 * (FP32_TOP1[name] - int8["top1"]) <= max_drop, int8
    meta = json.loads((tmp_path / f"q.{fmt}.json").read_text())
    carried = meta["int8"].get("source") == str(weights)  # Google's uint8 file keeps its own quantization
    assert meta["precision"] == "int8" and carried == ("quant" in name)
    assert carried or meta["int8"]["kept_float"] == ["classifier"]
    if "float" in name:  # Google's V2 file is uint8 already; V1 0.25's classifier (1 MB) stays float
        assert weights.stat().st_size / path.stat().st_size > 1.35


@pytest.mark.slow
def test_phone_int8_accuracy_budget_keeps_layers_float_or_refuses(tmp_path, monkeypatch, capsys):
    """The accuracy budget of the phone files on Google's float V1 0.25, with 50 real images labelled by
    its fp32 answers (32 COCO photos to calibrate): a budget that keeping every ranked layer float
    cannot meet (here: none ranked) is refused in one sentence, through ``deploy(backend="litert")``,
    saying what int8 lost; ``export --format tflite --int8 --max-drop --val`` with a budget one image
    tighter keeps the layers ranked most sensitive float until it is met, which LiteRT running the
    written file confirms, and its metadata lists them."""
    needs("tflite")
    from mobilenets import deploy, load_tflite
    from mobilenets.deploy import mobile
    from mobilenets.deploy.quantize import calibration_batch
    from mobilenets.runtime.runners import litert_runner

    weights, calib = shared_path("weights", "mobilenet_v1_0.25_224_float.tflite"), shared_path("coco128", "images")
    model = load_tflite(weights).eval()
    val, out = tmp_path / "val", tmp_path / "q.tflite"
    x, labels = labelled_by(model, val)
    with monkeypatch.context() as patch, pytest.raises(ExportError) as refused:
        patch.setattr(mobile, "rank_layers", lambda *args: [])
        deploy(model, precision="int8", backend="litert", calib=calibration_batch(calib, model.pretrained_cfg, 32),
               val=val, max_drop=0)  # fmt: skip
    message = str(refused.value)
    assert message.endswith("more than --max-drop 0; allow a larger drop. Nothing was written.")
    lost = float(message.split("int8 loses ")[1].split(" points")[0])
    assert lost >= 4  # int8 changes a few of fp32's answers
    capsys.readouterr()
    line = ["export", "--weights", str(weights), "--format", "tflite", "--int8", "--calib", str(calib),
            "--calib-size", "32", "--val", str(val), "--max-drop", str(lost - 2), "--output", str(out)]  # fmt: skip
    assert main(line) == 0
    budget = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["budget"]
    assert budget["val_images"] == 50 and budget["val_top1_fp32"] == 1.0 and budget["ptq_drop"] == lost
    assert budget["drop"] <= lost - 2 and budget["kept_float"][0] == "classifier" and len(budget["kept_float"]) > 1
    assert json.loads((tmp_path / "q.tflite.json").read_text())["int8"]["kept_float"] == budget["kept_float"]
    run = litert_runner(str(out), "int8")  # the file as written, in LiteRT
    answers = [int(run(image[None].numpy()).argmax()) for image in x]
    assert 100 - 2 * sum(a == b for a, b in zip(answers, labels)) == budget["drop"]


def test_a_layer_restored_to_float_in_the_int8_graph_computes_as_in_the_file():
    """The ranking's simulation (:func:`.phone_budget.restored`) on the PT2E int8 graph of conv, ReLU, conv
    (its roundings as fake-quantize ops, :func:`.phone_budget.fake_quantized`):
    with both convolutions put back to float (unrounded weights and inputs, their own biases, which bias
    correction had changed), what is left is the one rounding their file keeps, the ReLU's output."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    from mobilenets.deploy.phone_budget import fake_quantized, restored
    from mobilenets.deploy.pt2e import quantize_pt2e

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1)).eval()
    calib = torch.randn(8, 3, 12, 12)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantized = fake_quantized(quantize_pt2e(net, calib[:2], quantizer, calib, fold=False, any_batch=True))
    both = restored(restored(quantized, "0", net[0]), "2", net[2])
    (rounding,) = next(n for n in both.graph.nodes if n.name == "relu").users
    scale, zero, low, high = rounding.args[1:5]
    with torch.no_grad():
        hidden = torch.fake_quantize_per_tensor_affine(net[1](net[0](calib)), scale, zero, low, high)
        want, got, int8 = net[2](hidden), both(calib), quantized(calib)
    assert (int8 - want).abs().max() > 1e-2 and (got - want).abs().max() < 1e-5


def test_bias_correction_takes_off_the_weight_rounding_shift():
    """``correct_bias``: with int8-rounded weights, a convolution's mean output per channel on the
    calibration images is the float one again (it was off by the rounding's shift before)."""
    from mobilenets.deploy.pt2e import _weight_error, correct_bias

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1)
    torch.nn.init.uniform_(conv.weight, -1, 1)
    calib = torch.rand(32, 8, 12, 12) * 4  # inputs with a large mean, as after a ReLU
    fixed = correct_bias(torch.nn.Sequential(conv), calib)[0]

    def int8_mean(layer):
        q = torch.nn.functional.conv2d(calib, layer.weight + _weight_error(layer.weight), layer.bias, padding=1)
        return q.mean(dim=(0, 2, 3))

    with torch.no_grad():
        want = conv(calib).mean(dim=(0, 2, 3))
        before, after = (int8_mean(conv) - want).abs().max(), (int8_mean(fixed) - want).abs().max()
    assert before > 1e-3 and after < 1e-5 * want.abs().max() + 1e-6


def test_deploy_and_bench_phone_backends(capsys):
    """``deploy(backend="litert" | "executorch")`` runs the phone runtimes here, with the same outputs as
    PyTorch (fp32), and ``bench --backends litert`` times one (ExecuTorch's is the same runner path)."""
    needs("tflite")
    needs("pte")
    from mobilenets import deploy

    model = _scaled("mobilenet_v1", width_mult=0.25)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
    for backend in ("litert", "executorch"):  # V1: the fewest operations to convert
        pred = deploy(model, backend=backend, img_size=64)
        assert (pred.backend, pred.precision) == (backend, "fp32")
        assert (pred(x) - ref).abs().max() <= 1e-4 * ref.abs().max()
    args = ["bench", "--model", "mobilenet_v1", "--backends", "litert", "--batch-sizes", "1",
            "--img-size", "64", "--repeats", "3", "--json"]  # fmt: skip
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in rows] == ["litert"] and rows[0]["median_ms"] > 0  # torchvision has no V1
