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
    ("export --model mobilenet_v3_small --format onnx --output {t}/m.tflite", "writes a .onnx file; name the output"),
    ("export --model mobilenet_v3_small --output {t}/no/such/m.onnx", "its folder {t}/no/such does not exist"),
    ("export --model mobilenet_v3_small --img-size 8 --output {t}/m.onnx", "--img-size: must be an integer from 32"),
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
    ("predict {t}/file.txt --model mobilenet_v2 --score-thresh 2", "--score-thresh: must be a number at least 0 and at most 1"),
    ("predict {t}/file.txt --weights {t}/file.txt", "--weights: {t}/file.txt is not one of .safetensors"),
    ("predict {t}/file.txt --weights {t}/missing.pt", "--weights: {t}/missing.pt does not exist"),
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
