"""Bad input on the command line: refused before any work, in one line naming the flag and the fix."""

from __future__ import annotations

import pytest

from mobilenets.cli import main


@pytest.fixture
def place(tmp_path):
    """A folder, a file and a missing path to misuse."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("not a model")
    (tmp_path / "images").mkdir()
    return tmp_path


BAD = [  # (command line with {t} for the folder above, what the one line must say)
    ("export --model mobilenet_v3_small --output {t}/folder", "is a folder; name the file"),
    ("export --model mobilenet_v3_small --int8 --calib {t}/images --calib-size 0 --output {t}/q.onnx",
     "--calib-size: must be an integer at least 1, got 0"),
    ("export --model mobilenet_v3_small --int8 --calib {t}/images --calib-size -5 --output {t}/q.onnx",
     "--calib-size: must be an integer at least 1, got -5"),
    ("export --model mobilenet_v3_small --int8 --calib {t}/missing --output {t}/q.onnx", "--calib: {t}/missing does not exist"),
    ("export --model mobilenet_v3_small --int8 --output {t}/q.onnx", "--int8 needs --calib DIR (images to calibrate on)"),
    ("export --model mobilenet_v3_small --format coreml --int8 --calib {t}/images --recalibrate --output {t}/q.mlpackage",
     "--recalibrate goes with --int8 --calib DIR (onnx, tflite, pte)"),
    ("export --model mobilenet_v3_small --format onnx --output {t}/m.tflite", "writes a .onnx file; name the output"),
    ("export --model mobilenet_v3_small --output {t}/no/such/m.onnx", "its folder {t}/no/such does not exist"),
    ("export --model mobilenet_v3_small --img-size 8 --output {t}/m.onnx", "--img-size: must be an integer from 32"),
    ("export --model mobilenet_v3_small --int8 --calib {t}/images --max-drop 0.3 --output {t}/q.onnx",
     "--max-drop and --val go together"),
    ("export --model mobilenet_v3_small --int8 --calib {t}/images --max-drop -1 --val {t}/images --output {t}/q.onnx",
     "--max-drop: must be a number at least 0 and at most 100"),
    ("export --model mobilenet_v3_small --format coreml --int8 --calib {t}/images --max-drop 1 --val {t}/images "
     "--output {t}/q.mlpackage", "--max-drop goes with --int8 and --format onnx, tflite or pte"),
    ("export --model mobilenet_v3_small --int8 --calib {t}/images --max-drop 1 --val {t}/images --qat digits "
     "--output {t}/q.onnx", "give --qat or --max-drop, not both"),
    ("quantize --model mobilenet_v3_small --output {t}/q.onnx", "quantize needs --calib DIR (images to calibrate on)"),
    ("quantize --model mobilenet_v3_small --format torchscript --output {t}/q.pt", "--format: invalid choice: 'torchscript'"),
    ("quantize --model mobilenet_v3_small --format coreml --calib {t}/images --max-drop 1 --val {t}/images "
     "--output {t}/q.mlpackage", "--max-drop goes with quantize and --format onnx, tflite or pte"),
    ("profile --model mobilenet_v2 --width-mult 0", "--width-mult: must be a number above 0"),
    ("profile --checkpoint {t}/folder --width-mult 0.5", "--width-mult goes with --model NAME"),
    ("zoo --plot {t}/folder", "--plot: {t}/folder is a folder"),
    ("zoo --plot {t}/zoo.jpg", "--plot: {t}/zoo.jpg must end in .png"),
    ("train --model mobilenet_v2 --data digits --output {t}/file.txt", "--output: {t}/file.txt is a file; give a folder"),
    ("train --model mobilenet_v2 --data digits --output {t}/r --epochs 0", "--epochs: must be an integer at least 1"),
    ("train --model mobilenet_v2 --data digits --output {t}/r --lr -1", "--lr: must be a number above 0"),
    ("train --model mobilenet_v2 --data digits --output {t}/r --lr nan", "--lr: must be a number above 0"),
    ("train --model mobilenet_v2 --data digits --output {t}/r --width-mult 0", "--width-mult: must be a number above 0"),
    ("train --model mobilenet_v2 --data digits --output {t}/r --workers -1", "--workers: must be an integer at least 0"),
    ("train --model mobilenet_v2 --data digits --output {t}/r --batch-size 0", "--batch-size: must be auto or an integer at least 1"),
    ("train --model mobilenet_v2 --data digits --output {t}/r --img-size 4", "--img-size: must be an integer from 16"),
    ("predict {t}/missing.jpg --model mobilenet_v2", "IMAGE: {t}/missing.jpg does not exist"),
    ("predict {t}/folder --model mobilenet_v2", "IMAGE: {t}/folder is a folder; give a file"),
    ("predict {t}/file.txt --model mobilenet_v2 --top-k 0", "--top-k: must be an integer at least 1"),
    ("predict {t}/file.txt --model mobilenet_v5_300m_enc", "has no classes (an encoder, or num_classes=0)"),
    ("predict {t}/file.txt --model mobilenet_v2 --score-thresh 2", "--score-thresh: must be a number at least 0 and at most 1"),
    ("predict {t}/file.txt --weights {t}/file.txt", "--weights: {t}/file.txt is not one of .safetensors"),
    ("predict {t}/file.txt --weights {t}/missing.pt", "--weights: {t}/missing.pt does not exist"),
    ("predict {t}/images {t}/folder --model mobilenet_v2 --output {t}/out", "With --output give one SOURCE"),
    ("predict {t}/images --model mobilenet_v2 --engine ray", "--engine goes with --output DIR"),
    ("predict {t}/images --model mobilenet_v2 --output {t}/file.txt", "--output: {t}/file.txt is a file"),
    ("predict {t}/missing --model mobilenet_v2 --output {t}/out", "IMAGE: {t}/missing does not exist"),
    ("predict {t}/images --model mobilenet_v2 --output {t}/out --address auto", "--address goes with --engine ray"),
    ("predict {t}/images --model mobilenet_v2 --output {t}/out --num-gpus 1", "--num-gpus goes with --engine ray"),
    ("predict {t}/images --model mobilenet_v2 --num-gpus 1", "--num-gpus goes with --output DIR"),
    ("predict {t}/images --model mobilenet_v2 --output {t}/out --save {t}/pics", "--save and --json are for a few"),
    ("predict {t}/images --model mobilenet_v2 --output {t}/out --rows-per-file 0", "--rows-per-file: must be an integer at least 1"),
    ("predict {t}/images --model mobilenet_v2 --output {t}/out --engine ray --workers 0", "a Ray job needs at least 1 model actor"),
    ("predict {t}/images --model mobilenet_v2 --output {t}/out", "SOURCE {t}/images names no images"),
    ("eval --checkpoint {t}/missing --data digits", "--checkpoint: {t}/missing does not exist"),
    ("eval --model mobilenet_v2 --data digits --batch-size 0", "--batch-size: must be an integer at least 1"),
    ("bench --threads 0", "--threads: must be an integer from 1 to 256"),
    ("bench --batch-sizes 1,x", "--batch-sizes: must be an integer, got 'x'"),
    ("bench --repeats 0", "--repeats: must be an integer at least 1"),
    ("bench --csv {t}/folder", "--csv: {t}/folder is a folder"),
    ("select --budget-ms -1", "--budget-ms: must be a number above 0"),
    ("demo --output {t}/file.txt", "--output: {t}/file.txt is a file; give a folder"),
]  # fmt: skip


@pytest.mark.parametrize(("line", "said"), BAD, ids=[b[0].split(" --")[0] + " " + b[1][:30] for b in BAD])
def test_bad_input_is_one_line_and_nothing_is_written(place, capsys, line, said):
    before = sorted(p.name for p in place.rglob("*"))
    assert main(line.format(t=place).split()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "usage:" not in err, err
    assert said.format(t=place) in err, err
    assert sorted(p.name for p in place.rglob("*")) == before


def test_broken_exports_are_named(place, capsys):
    """A phone file whose JSON says nothing, and a .tflite that is neither Google's nor ours with its JSON."""
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(place / "photo.png")
    (place / "m.tflite").write_bytes(b"TFL3" + bytes(60))
    (place / "m.tflite.json").write_text("{}")
    assert main(["predict", str(place / "photo.png"), "--weights", str(place / "m.tflite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "m.tflite.json is not a mobilenets export's description (no format" in err
    (place / "m.tflite.json").unlink()
    assert main(["predict", str(place / "photo.png"), "--weights", str(place / "m.tflite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "put its m.tflite.json back beside it" in err, err


def test_random_weights_are_said_once(place, capsys):
    """A model named without --pretrained predicts, and says once that its answer means nothing."""
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(place / "photo.png")
    assert main(["predict", str(place / "photo.png"), "--model", "mobilenet_v3_small", "--json"]) == 0
    err = capsys.readouterr().err
    assert err.count("has random weights (no --pretrained)") == 1 and "Traceback" not in err


def _yolo(root, label_line: str, names: str | None = "[cat, dog]"):
    """A one-image YOLO dataset (train and val) whose label file holds ``label_line``."""
    from PIL import Image

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (64, 48), (90, 140, 30)).save(root / "images" / split / "a.jpg")
        (root / "labels" / split / "a.txt").write_text(label_line + "\n")
    (root / "d.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\n"
                                 + (f"names: {names}\n" if names else ""))  # fmt: skip
    return root / "d.yaml"


@pytest.mark.parametrize(
    ("label", "names", "said"),
    [
        ("5 0.5 0.5 0.2 0.2", "[cat, dog]", "a.jpg use class 5, which d.yaml's names: (2 classes) lacks"),
        ("-1 0.5 0.5 0.2 0.2", "[cat, dog]", "a.txt:1 has class -1; YOLO class ids start at 0"),
        ("0 1.5 0.5 0.2 0.2", "[cat, dog]", "a.txt:1 has a box outside the image or of no size"),
        ("0 0.5 0.5 0 0.2", "[cat, dog]", "a.txt:1 has a box outside the image or of no size"),
        ("0 0.5 0.5 0.2 0.2", None, "d.yaml has no names: list"),
    ],
)
def test_broken_detection_labels_stop_training_before_it_starts(tmp_path, capsys, label, names, said):
    data = _yolo(tmp_path / "yolo", label, names)
    out = tmp_path / "run"
    assert main(["train", "--model", "ssdlite_mobilenet_v3_small", "--data", str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err, err
    assert not out.exists()


def test_data_a_model_cannot_learn_or_output_is_refused(tmp_path, capsys):
    """One class to train on; labels.csv labels outside the model's classes."""
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / "one" / split / "cat").mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(tmp_path / "one" / split / "cat" / "a.png")
    argv = ["train", "--model", "mobilenet_v3_small", "--data", str(tmp_path / "one"), "--output", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "has 1 class folder(s); a classifier needs at least 2" in capsys.readouterr().err
    (tmp_path / "csv" / "images").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(tmp_path / "csv" / "images" / "a.png")
    for label in ("5000", "-1", "cat"):
        (tmp_path / "csv" / "labels.csv").write_text(f"file,label\na.png,{label}\n")
        assert main(["eval", "--model", "mobilenet_v3_small", "--data", str(tmp_path / "csv")]) == 2
        err = capsys.readouterr().err
        assert f"labels.csv:2 has label {label if label != 'cat' else repr(label)}" in err.splitlines()[-1], err
    (tmp_path / "w.pt").write_bytes(b"\x00\x01 random bytes, not a checkpoint")
    assert main(["predict", str(tmp_path / "csv" / "images" / "a.png"), "--weights", str(tmp_path / "w.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is neither a PyTorch checkpoint nor a safetensors file" in err, err


def _api_calls(t):
    """The command-line inputs above through the Python API: (call, the exception type it must raise)."""
    import mobilenets
    from mobilenets.train.config import TrainConfig
    from mobilenets.train.loop import train
    from mobilenets.util import errors

    net = mobilenets.create_model("mobilenet_v3_small")
    run = {"model": "mobilenet_v2", "data": "digits", "output": str(t / "r")}
    return [
        (lambda: mobilenets.export(net, t / "folder"), errors.ExportError),
        (lambda: mobilenets.export(net, t / "m.tflite", format="onnx"), errors.ExportError),
        (lambda: mobilenets.export(net, t / "q.onnx", int8=True, calib=t / "images", calib_size=0), errors.ExportError),
        (lambda: mobilenets.export(net, t / "q.onnx", int8=True, calib=t / "missing"), errors.ExportError),
        (lambda: mobilenets.export(net, t / "no" / "such" / "m.onnx"), errors.ExportError),
        (lambda: mobilenets.export(net, t / "m.onnx", img_size=8), errors.ExportError),
        (lambda: mobilenets.export(net, t / "m.onnx", format="onnxx"), errors.ExportError),
        (lambda: mobilenets.create_model("mobilenet_v9"), errors.ModelError),
        (lambda: mobilenets.create_model("mobilenet_v2", width_mult=0), errors.ModelError),
        (lambda: mobilenets.create_model("mobilenet_v2", pretrained="no_such_weights"), errors.WeightsError),
        (lambda: mobilenets.get_weights("mobilenet_v2.no_such_tag"), errors.UnknownWeights),
        (lambda: mobilenets.load_checkpoint(t / "file.txt"), errors.WeightsError),
        (lambda: mobilenets.load_checkpoint(t / "missing.pt"), errors.WeightsError),
        (lambda: mobilenets.load_tflite(t / "file.txt"), errors.WeightsError),
        (lambda: mobilenets.profile(net, input_size=4), errors.ModelError),
        (lambda: mobilenets.deploy(net, precision="int4"), errors.PrecisionError),
        (lambda: mobilenets.deploy(net, backend="tpu"), errors.PrecisionError),
        (lambda: train(TrainConfig(**run, epochs=0)), errors.TrainingError),
        (lambda: train(TrainConfig(**run, lr=-1)), errors.TrainingError),
        (lambda: train(TrainConfig(**{**run, "output": str(t / "file.txt")})), errors.TrainingError),
        (lambda: train(TrainConfig(**{**run, "data": str(t / "missing")})), errors.DataError),
    ]


def test_bad_input_through_the_api_raises_one_type_per_kind(place):
    """Each kind of bad input raises its own ``MobilenetsError`` (a ``ValueError``) with a sentence, and
    writes nothing: no library internals (``IsADirectoryError``, ``TypeError``, ``KeyError``)."""
    from mobilenets.util.errors import MobilenetsError

    before = sorted(p.name for p in place.rglob("*"))
    for call, kind in _api_calls(place):
        with pytest.raises(kind) as caught:
            call()
        assert isinstance(caught.value, MobilenetsError) and isinstance(caught.value, ValueError)
        message = str(caught.value)
        assert message[-1] in ".?" and "\n" not in message and "Traceback" not in message, message
    assert sorted(p.name for p in place.rglob("*")) == before


def test_mask_ids_past_the_names_stop_training_before_it_starts(tmp_path, capsys):
    """A segmentation mask with a class the YAML's names lack: one sentence naming the mask, exit 2, no run
    folder (it used to fail inside the loss, "Target 5 is out of bounds")."""
    import numpy as np
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
        Image.new("RGB", (48, 40), (90, 140, 30)).save(tmp_path / "images" / split / "a.jpg")
        mask = np.zeros((40, 48), np.uint8)
        mask[5:20, 5:20] = 5 if split == "val" else 1
        mask[0, :] = 255  # ignored pixels are no class
        Image.fromarray(mask, "L").save(tmp_path / "masks" / split / "a.png")
    (tmp_path / "seg.yaml").write_text(
        "train: {images: images/train, masks: masks/train}\nval: {images: images/val, masks: masks/val}\n"
        "names: [background, cat]\n"
    )
    out = tmp_path / "run"
    argv = ["train", "--model", "lraspp_mobilenet_v3_small", "--data", str(tmp_path / "seg.yaml"), "--output", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.png has class 5, which seg.yaml's names: (2 classes) lacks" in err, err
    assert not out.exists()


def test_meaningless_evaluations_are_said_once(tmp_path, capsys):
    """Valid input whose score means little: images of one class, and class folders matched to the model's
    classes by order alone, say so once on stderr (and in the result's ``warnings``)."""
    from PIL import Image

    from mobilenets import create_model
    from mobilenets.evaluate.classify import evaluate
    from mobilenets.runtime.classifier import torch_classifier

    (tmp_path / "one" / "images").mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (40, 40), (60 * i, 90, 30)).save(tmp_path / "one" / "images" / f"{i}.png")
    (tmp_path / "one" / "labels.csv").write_text("file,label\n0.png,7\n1.png,7\n")
    argv = ["eval", "--model", "mobilenet_v3_small", "--data", str(tmp_path / "one"), "--workers", "0"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("all 2 images are of one class") == 1 and err.count("has random weights") == 1, err
    for name in ("x", "y"):
        (tmp_path / "pair" / name).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(tmp_path / "pair" / name / "a.png")
    clf = torch_classifier(create_model("mobilenet_v3_small", num_classes=2).eval(), ["cat", "dog"])
    warnings = evaluate(clf, tmp_path / "pair", workers=0)["warnings"]
    assert len(warnings) == 1 and "(x, y, ...) are not the model's (cat, dog, ...)" in warnings[0], warnings
    clf = torch_classifier(create_model("mobilenet_v3_small", num_classes=2).eval())  # no names: order is all
    assert evaluate(clf, tmp_path / "pair", workers=0)["warnings"] == []
