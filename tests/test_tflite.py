"""Google's TFLite MobileNets: import, errors, and agreement with the LiteRT interpreter on real images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import FP32_TOP1, max_int8_drop, shared_path
from mobilenets import create_model, deploy
from mobilenets.cli import main
from mobilenets.data.preprocess import eval_resize_crop, load_rgb, to_tensor
from mobilenets.util.errors import WeightsError
from mobilenets.weights.factory import load_tflite
from mobilenets.weights.tflite import Graph, Op, Tensor, recognise


def test_not_a_tflite_file(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"this is not a flatbuffer at all")
    with pytest.raises(WeightsError, match="is not a TFLite model"):
        load_tflite(path)
    with pytest.raises(WeightsError, match="does not exist"):
        load_tflite(tmp_path / "missing.tflite")


def test_truncated_file(tmp_path):
    src = shared_path("weights", "mobilenet_v1_0.25_224_float.tflite")
    path = tmp_path / "cut.tflite"
    path.write_bytes(src.read_bytes()[:4096])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_tflite(path)


def test_unknown_graph_says_what_was_found():
    tensors = [
        Tensor("in", (1, 8, 8, 3), "float32", None, None, None, 0),
        Tensor("w", (5, 3, 3, 3), "float32", np.zeros((5, 3, 3, 3), np.float32), None, None, 0),
    ]
    graph = Graph(tensors, [Op("CONV_2D", [0, 1], [0]), Op("SOFTMAX", [0], [0])], [0], [0])
    with pytest.raises(WeightsError, match=r"1 convolutions .*\(5, 3, 3, 3\).*CONV_2D, SOFTMAX"):
        recognise(graph)


def test_dequantization_per_channel():
    q = np.array([[0, 10], [20, 30]], np.uint8)
    t = Tensor("w", (2, 2), "uint8", q, np.array([0.5, 2.0], np.float32), np.array([10, 0], np.float32), 0)
    graph = Graph([t], [], [], [])
    np.testing.assert_allclose(graph.value(0), [[-5, 0], [40, 60]])


@pytest.fixture(scope="module")
def imagenet():
    root = shared_path("imagenet-val-1300")
    with (root / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    return root, rows, {}


def _pixels_and_litert(imagenet, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 1300 images as both runtimes are fed them, LiteRT's outputs on them (each once per module),
    and the labels."""
    pytest.importorskip("ai_edge_litert")
    from mobilenets.evaluate.litert import eval_pixels, litert_logits

    root, rows, cache = imagenet
    path = shared_path("weights", f"{name}.tflite")
    cfg = load_tflite(path).pretrained_cfg
    size = cfg["input_size"][1]
    if size not in cache:
        cache[size] = eval_pixels([root / "images" / r["file"] for r in rows], cfg)
    if name not in cache:
        cache[name] = litert_logits(path, cache[size])
    return cache[size], cache[name], np.array([int(r["label"]) for r in rows])


def _compare(imagenet, name: str, fake_quant: bool) -> tuple[float, float, float]:
    """(LiteRT top-1, our top-1, per-image agreement) on all 1300 images."""
    from mobilenets.evaluate.litert import compare_with_litert

    pixels, ref, labels = _pixels_and_litert(imagenet, name)
    r = compare_with_litert(shared_path("weights", f"{name}.tflite"), pixels, labels, fake_quant, ref)
    return r["litert_top1"], r["ours_top1"], r["agreement"]


# Google's V1 0.25 (224 px), 0.5 (160 px) and 0.75 (192 px) uint8 files take the code path of the 0.25
# one at 128 px (measured once in benchmarks/RESULTS.md, agreement 98.9%); left out, they cost about 10 s
# each of the suite's 12 minutes.
LITERT_CASES = [  # file, fake_quant, max top-1 difference, min per-image agreement
    ("mobilenet_v1_0.25_224_float", False, 0.005, 0.99),
    ("mobilenet_v2_1.0_224_quant", False, 0.01, 0.95),
    ("mobilenet_v1_0.25_128_quant", True, 0.01, 0.97),
    ("mobilenet_v3_small_1.0_224_uint8", True, 0.015, 0.90),
]
# V3-Small with its squeeze-excite gate rounded as Google's file computes it: agreement 91.46% (91.38%
# before), top-1 74.46% against LiteRT's 75.62%; LiteRT's own built-in kernels give 75.08% on that file.


@pytest.mark.own_process  # LiteRT's interpreter stays out of the test process (see conftest.py)
def test_matches_litert_on_real_images(imagenet):
    """Each of Google's files, imported into PyTorch, against LiteRT on the 1300 real images; the float
    imports' top-1 is conftest's FP32_TOP1 (the reference the int8 tests measure their drop from)."""
    failed = []
    for name, fake_quant, max_diff, min_agree in LITERT_CASES:
        ref_top1, top1, agree = _compare(imagenet, name, fake_quant=fake_quant)
        pinned = abs(top1 - FP32_TOP1.get(name, top1)) <= 1 / 1300  # one image: rounding on another CPU
        if not (abs(top1 - ref_top1) <= max_diff and agree >= min_agree and pinned):
            failed.append((name, ref_top1, top1, agree))
    assert not failed, failed


@pytest.mark.own_process  # LiteRT's interpreter stays out of the test process (see conftest.py)
def test_int8_onnx_keeps_googles_quantization(imagenet, tmp_path):
    """``export --int8`` (and ``quantize``, to the byte) of Google's uint8 MobileNetV2 without --calib: the
    file holds Google's own uint8 weights, and ONNX Runtime agrees with LiteRT running Google's file on at
    least 99% of the 1300 images (top-1 per image; recalibrating gave 94.5%); its top-1 is within the int8
    drop the issue allows of the float import's (FP32_TOP1: measured 0.08 point; `--calib` changes nothing
    here, test_mobile checks)."""
    pytest.importorskip("nncf")
    import onnx
    from onnx import numpy_helper

    from mobilenets.data.preprocess import to_tensor
    from mobilenets.evaluate.litert import top1_agreement
    from mobilenets.runtime.runners import onnx_session
    from mobilenets.weights.tflite import read_graph

    name = "mobilenet_v2_1.0_224_quant"
    src, out = shared_path("weights", f"{name}.tflite"), tmp_path / "v2.onnx"
    line = ["export", "--weights", str(src), "--format", "onnx", "--int8", "--output", str(out)]
    assert main([*line, "--weight-bits", "7"]) == 2 and not out.exists()  # that would recalibrate: --calib
    assert main(line) == 0
    again = tmp_path / "quantized.onnx"  # `quantize` is `export --int8`, to the byte
    assert main(["quantize", "--weights", str(src), "--output", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    graph = read_graph(src)
    google = [graph.tensors[op.inputs[1]].data for op in graph.ops if op.kind.endswith("CONV_2D")]
    google = {w[int(len(w) == 1001) :].tobytes() for w in google}  # the classifier without the background class
    ours = [numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer if t.data_type == onnx.TensorProto.UINT8]
    kernels = [w for w in ours if w.ndim == 4]  # the classifier too, a 1x1 convolution as in Google's file
    assert len(kernels) == 53 and all(w.transpose(0, 2, 3, 1).tobytes() in google or
                                      w.transpose(1, 2, 3, 0).tobytes() in google for w in kernels)  # fmt: skip
    assert json.loads(onnx.load(out).metadata_props[0].value)["int8"]["source"] == str(src)

    pixels, ref, labels = _pixels_and_litert(imagenet, name)
    cfg = load_tflite(src).pretrained_cfg
    session = onnx_session(out.read_bytes())
    x = torch.stack([to_tensor(p, cfg) for p in pixels]).numpy()
    logits = np.concatenate([session.run(None, {"input": x[i : i + 50]})[0] for i in range(0, len(x), 50)])
    assert top1_agreement(ref[:, 1:], logits) >= 0.99
    top1 = float((logits.argmax(1) == labels).mean())
    assert abs(top1 - (ref[:, 1:].argmax(1) == labels).mean()) <= 0.005
    assert 100 * (FP32_TOP1[name] - top1) <= max_int8_drop()
    predictor = deploy(load_tflite(src), precision="int8", backend="onnxruntime")  # no calib: carried too
    np.testing.assert_allclose(predictor(x[:8]), logits[:8], atol=1e-5)


@pytest.mark.own_process
def test_int8_onnx_computes_as_litert(imagenet, tmp_path):
    """The carried ONNX file of Google's uint8 MobileNetV3-Small computes hard-swish, residual sums and
    average pooling as LiteRT does (:mod:`mobilenets.deploy.carried_graph`): ONNX Runtime agrees with
    LiteRT running Google's file on every one of the 1300 images (91.46% with PyTorch's float
    rounding of those ops; the issue asked 95%)."""
    pytest.importorskip("nncf")
    from mobilenets.evaluate.litert import top1_agreement
    from mobilenets.runtime.runners import onnxruntime_runner

    name = "mobilenet_v3_small_1.0_224_uint8"
    src, out = shared_path("weights", f"{name}.tflite"), tmp_path / "v3s.onnx"
    assert main(["export", "--weights", str(src), "--format", "onnx", "--int8", "--output", str(out)]) == 0
    pixels, ref, labels = _pixels_and_litert(imagenet, name)
    cfg = load_tflite(src).pretrained_cfg
    x = torch.stack([to_tensor(p, cfg) for p in pixels]).numpy()
    run = onnxruntime_runner(out.read_bytes(), "int8")
    logits = np.concatenate([run(x[i : i + 100]) for i in range(0, len(x), 100)])
    assert top1_agreement(ref[:, 1:], logits) >= 0.99
    assert abs((logits.argmax(1) == labels).mean() - (ref[:, 1:].argmax(1) == labels).mean()) <= 2 / 1300


@pytest.mark.own_process
def test_litert_kernel_tables(imagenet):
    """:mod:`mobilenets.deploy.litert_kernels` against LiteRT's own intermediate tensors on Google's files
    (three images, LiteRT's default run): every HARD_SWISH and ADD output is its table's entry for the
    op's inputs (the squeeze-excite gate's ``x + 3`` too), every AVERAGE_POOL_2D output the integer
    mean rounded half up."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    from mobilenets.deploy.litert_kernels import add_table, hard_swish_table

    checked = {"HARD_SWISH": 0, "ADD": 0, "AVERAGE_POOL_2D": 0}
    for name in ("mobilenet_v3_small_1.0_224_uint8", "mobilenet_v2_1.0_224_quant"):
        pixels = _pixels_and_litert(imagenet, name)[0][:3]
        interpreter = Interpreter(str(shared_path("weights", f"{name}.tflite")), experimental_preserve_all_tensors=True)
        interpreter.allocate_tensors()
        grids = {t["index"]: t["quantization"] for t in interpreter.get_tensor_details()}
        ops = [o for o in interpreter._get_ops_details() if o["op_name"] in checked]
        for image in pixels:
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
            interpreter.invoke()
            for op in ops:
                x = [interpreter.get_tensor(i) for i in op["inputs"]]
                y, out = interpreter.get_tensor(op["outputs"][0]), grids[op["outputs"][0]]
                if op["op_name"] == "HARD_SWISH":
                    expected = hard_swish_table(*grids[op["inputs"][0]], *out)[x[0]]
                elif op["op_name"] == "ADD":
                    expected = add_table(grids[op["inputs"][0]], grids[op["inputs"][1]], out)[x[0], x[1]]
                else:
                    count = x[0].shape[1] * x[0].shape[2]
                    expected = (x[0].sum((1, 2), keepdims=True, dtype=np.int64) + count // 2) // count
                assert np.array_equal(y, expected), (name, op["op_name"], op["index"])
                checked[op["op_name"]] += 1
    assert checked == {"HARD_SWISH": 57, "ADD": 75, "AVERAGE_POOL_2D": 36}, checked


@pytest.mark.own_process
def test_litert_int8_keeps_googles_quantization(imagenet, tmp_path, capsys):
    """``export --format tflite --int8`` of Google's uint8 MobileNetV3-Small without --calib runs on the
    file's own scales and zero points, in integers throughout (hard-swish, squeeze-excite, residual sums),
    and agrees with LiteRT running Google's file about as well as LiteRT's own two kernel sets agree with
    each other on that file (XNNPACK's and the built-in ones: 90.8% on the 1300 images; the test takes the
    first 650)."""
    pytest.importorskip("litert_torch")
    from mobilenets.evaluate.litert import litert_logits, top1_agreement
    from mobilenets.runtime.runners import litert_io, litert_runner

    name = "mobilenet_v3_small_1.0_224_uint8"
    src, out = shared_path("weights", f"{name}.tflite"), tmp_path / "v3s.tflite"
    line = ["export", "--weights", str(src), "--format", "tflite", "--int8", "--output", str(out)]
    assert main([*line, "--recalibrate"]) == 2 and not out.exists()  # recalibrating needs --calib
    assert main(line) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["quantization"] == "carried from the TFLite file"
    assert json.loads(out.with_suffix(".tflite.json").read_text())["int8"]["source"] == str(src)
    interpreter = litert_io(out.read_bytes())[0]
    floats = [d["name"] for d in interpreter.get_tensor_details() if d["dtype"] == np.float32]
    assert {o["op_name"] for o in interpreter._get_ops_details()} >= {"HARD_SWISH", "MUL", "ADD"}
    assert len(floats) <= 2, floats  # the float input and output only: no op left in float

    pixels, ref, labels = (a[:650] for a in _pixels_and_litert(imagenet, name))  # half: 12 s of the suite
    floor = top1_agreement(ref, litert_logits(src, pixels, builtin=True))
    cfg = load_tflite(src).pretrained_cfg
    ours = litert_runner(out.read_bytes(), "int8")(torch.stack([to_tensor(p, cfg) for p in pixels]).numpy())
    assert top1_agreement(ref[:, 1:], ours) >= floor - 0.015, floor
    assert abs((ours.argmax(1) == labels).mean() - (ref[:, 1:].argmax(1) == labels).mean()) <= 0.015


def test_same_padding_is_what_the_weights_need(imagenet):
    path = shared_path("weights", "mobilenet_v1_0.25_224_float.tflite")
    same = load_tflite(path)
    sym = create_model("mobilenet_v1", width_mult=0.25, padding="symmetric").eval()
    sym.load_state_dict(same.state_dict())
    root, rows, _ = imagenet
    x = torch.stack(
        [
            to_tensor(
                eval_resize_crop(load_rgb(root / "images" / r["file"]), same.pretrained_cfg),
                same.pretrained_cfg,
            )
            for r in rows[:200]
        ]
    )
    y = torch.tensor([int(r["label"]) for r in rows[:200]])
    with torch.inference_mode():
        acc_same = (same(x).argmax(1) == y).float().mean()
        acc_sym = (sym(x).argmax(1) == y).float().mean()
    assert acc_same - acc_sym > 0.1


def test_model_metadata_and_background(tmp_path):
    path = shared_path("weights", "mobilenet_v2_1.0_224_quant.tflite")
    model = create_model("mobilenet_v2", pretrained=str(path))
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)
    assert model.pretrained_cfg["crop_pct"] == 0.875 and model.num_classes == 1000
    assert load_tflite(path, keep_background=True).num_classes == 1001
    with pytest.raises(WeightsError, match="holds a mobilenet_v2"):
        create_model("mobilenet_v3_small", pretrained=str(path))


def test_carried_quantization_fits_only_the_files_weights(tmp_path):
    """A model imported from a quantized file carries the file's quantization only while it holds the file's
    weights (also rounded in PyTorch, ``fake_quant=True``): once fine-tuned (one weight moved here, or a new
    classifier) its int8 export calibrates on the images given or, without any, is refused in one sentence."""
    import mobilenets
    from mobilenets.deploy.quantize import int8_source
    from mobilenets.util.errors import ExportError

    path = shared_path("weights", "mobilenet_v1_0.25_224_quant.tflite")
    model = load_tflite(path)
    assert int8_source(model, None, 224) is model.tflite_quantization
    rounded = load_tflite(path, fake_quant=True)
    assert int8_source(rounded, None, 224) is rounded.tflite_quantization
    with torch.no_grad():
        model.blocks[3].pw[0].weight[5, 7] += 1e-4
    with pytest.raises(ExportError, match="weights have changed since they were read from .* no longer fits"):
        mobilenets.export(model, tmp_path / "ft.onnx", int8=True)
    assert not (tmp_path / "ft.onnx").exists()
    calib = torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    assert int8_source(model, calib, 224).shape == (4, 3, 224, 224)
    rounded.reset_classifier(10)
    with pytest.raises(ExportError, match="no longer fits"):
        int8_source(rounded, None, 224)


def test_predict_and_eval_commands(imagenet, capsys, tmp_path):
    root, rows, _ = imagenet
    weights = str(shared_path("weights", "mobilenet_v2_1.0_224_quant.tflite"))
    # the first image of the set: a canoe (class 472)
    row = rows[0]
    assert main(["predict", str(root / "images" / row["file"]), "--weights", weights, "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert top[0]["index"] == int(row["label"]) and top[0]["name"] == "canoe"
    sub = tmp_path / "subset"
    (sub / "images").mkdir(parents=True)
    with (sub / "labels.csv").open("w") as f:
        f.write("file,label\n")
        for r in rows[:40]:
            (sub / "images" / r["file"]).symlink_to(root / "images" / r["file"])
            f.write(f"{r['file']},{r['label']}\n")
    assert main(["eval", "--weights", weights, "--data", str(sub), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 40 and 0.5 < result["top1"] <= result["top5"] <= 1
