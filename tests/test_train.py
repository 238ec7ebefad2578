"""Training: outputs, bad data, exact resume after SIGKILL, refusals, DDP with 2 CPU processes."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import RESUMED_STATE, same_state, shared_path
from mobilenets.cli import main
from mobilenets.train.config import TrainConfig
from mobilenets.train.loop import train
from mobilenets.train.recipes import RECIPES
from mobilenets.util.errors import TrainingError

TINY = ["--model", "mobilenet_v3_small", "--width-mult", "0.5", "--img-size", "32", "--batch-size", "8",
        "--workers", "0"]  # fmt: skip


def _image_folder(root: Path, per_class: int = 10, bad: bool = False) -> Path:
    """Two real-looking classes (red-ish and blue-ish noisy squares) in train/ and val/."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(("blue", "red")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                arr = rng.integers(0, 90, (40, 40, 3), dtype=np.uint8)
                arr[..., 2 - 2 * c] += 150
                Image.fromarray(arr).save(folder / f"{i}.png")
    if bad:
        (root / "train" / "red" / "empty.jpg").write_bytes(b"")
        (root / "train" / "red" / "text.png").write_text("not an image")
        good = (root / "train" / "blue" / "0.png").read_bytes()
        (root / "train" / "blue" / "cut.png").write_bytes(good[: len(good) // 2])
    return root


def _run(*args: str) -> int:
    return main(["train", *TINY, *args])


def test_outputs_and_bad_images(tmp_path, capsys):
    data, out = _image_folder(tmp_path / "data", bad=True), tmp_path / "out"
    assert _run("--data", str(data), "--output", str(out), "--epochs", "2") == 0
    err = capsys.readouterr().err
    assert "skipped 3 unreadable image(s)" in err and "empty.jpg" in err and "cut.png" in err
    state = torch.load(out / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "ema", "scaler", "rng", "epoch"} <= set(state)
    assert state["epoch"] == 1
    meta = json.loads((out / "model.json").read_text())
    assert meta["class_names"] == ["blue", "red"] and meta["model"] == "mobilenet_v3_small"
    assert meta["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert set(load_file(out / "best.safetensors")) == set(state["model"])
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,val_top1,val_top5,lr,images_per_s" and len(lines) == 3
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", "--checkpoint", str(out), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 20
    assert main(["predict", str(data / "val" / "red" / "0.png"), "--checkpoint", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top"][0]["name"] in ("blue", "red")


def test_strict_data_and_folder_mistakes(tmp_path, capsys):
    data = _image_folder(tmp_path / "data", per_class=2, bad=True)
    assert _run("--data", str(data), "--output", str(tmp_path / "o"), "--strict-data") == 2
    err = capsys.readouterr().err
    assert "--strict-data: 3 unreadable image(s)" in err and "empty.jpg" in err
    assert not (tmp_path / "o" / "last.pt").exists()
    (data / "val" / "green").mkdir()
    assert _run("--data", str(data), "--output", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "green" in err
    (data / "val" / "green" / "1.png").write_bytes((data / "val" / "red" / "0.png").read_bytes())
    assert _run("--data", str(data), "--output", str(tmp_path / "o")) == 2
    assert "extra ['green']" in capsys.readouterr().err
    assert _run("--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o")) == 2
    assert "neither a folder nor one of digits" in capsys.readouterr().err


def test_odd_images_are_converted(tmp_path):
    from mobilenets.data.preprocess import load_rgb

    Image.new("CMYK", (5, 5), (0, 255, 0, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGBA", (5, 5), (255, 0, 0, 0)).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(tmp_path / "grey16.png")
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "one.png")
    for name in ("cmyk.jpg", "rgba.png", "grey16.png", "one.png"):
        assert load_rgb(tmp_path / name).mode == "RGB"
    assert load_rgb(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 255, 255)  # transparent on white


def test_folders_of_tiny_images_get_cifar_augmentation(tmp_path):
    """40-px images (the folder above) train with pad-crop-flip; photos keep random resized crops,
    which at 32 px would keep as little as 8% of a CIFAR image."""
    from torchvision.transforms import v2

    from mobilenets.data.images import build_transforms, load_train_data

    tiny = load_train_data(str(_image_folder(tmp_path / "tiny", per_class=2)))
    photos = load_train_data(str(shared_path("hymenoptera")))
    assert tiny.small and not photos.small
    ops = build_transforms({"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3}, tiny.small,
                           "none", True).transforms  # fmt: skip
    assert any(isinstance(op, v2.RandomCrop) for op in ops) and not any(
        isinstance(op, v2.RandomResizedCrop) for op in ops
    )


def test_resume_after_sigkill_is_bitwise_identical(tmp_path, monkeypatch):
    """A run killed inside an epoch and resumed trains only the epochs left, and ends with the state of
    the run that was never killed: weights, RMSProp's buffers, the step schedule, the EMA, the RNGs."""
    import mobilenets.train.loop as loop

    data = _image_folder(tmp_path / "data", per_class=12)
    args = [*TINY, "--data", str(data), "--epochs", "4", "--seed", "3", "--recipe", "paper-v3"]
    ref = tmp_path / "ref"
    assert main(["train", *args, "--output", str(ref)]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mobilenets", "train", *args, "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere inside epoch 2 (or its save)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(out / "last.pt", weights_only=True)["epoch"] + 1
    assert done < 4
    epochs_run = []
    train_epoch = loop._train_epoch
    monkeypatch.setattr(loop, "_train_epoch", lambda run, epoch: epochs_run.append(epoch) or train_epoch(run, epoch))
    assert main(["train", *args, "--output", str(out), "--resume"]) == 0
    assert epochs_run == list(range(done, 4))  # the next epoch on, not from the start
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (ref, out))
    assert a["ema"] is not None and a["optimizer"]["state"]  # the recipe keeps an EMA and RMSProp buffers
    assert all(same_state(a[k], b[k]) for k in RESUMED_STATE), [k for k in RESUMED_STATE if not same_state(a[k], b[k])]
    assert (ref / "metrics.csv").read_text().splitlines()[-1].split(",")[:4] == \
        (out / "metrics.csv").read_text().splitlines()[-1].split(",")[:4]  # fmt: skip


def test_resume_refuses_other_architecture_and_pickles(tmp_path, capsys):
    data = _image_folder(tmp_path / "data", per_class=2)
    out = tmp_path / "out"
    assert _run("--data", str(data), "--output", str(out), "--epochs", "1") == 0
    assert main(["train", "--model", "mobilenet_v2", "--img-size", "32", "--workers", "0", "--data", str(data),
                 "--output", str(out), "--resume"]) == 2  # fmt: skip
    assert "holds a mobilenet_v3_small" in capsys.readouterr().err

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with (out / "last.pt").open("wb") as f:
        pickle.dump({"model": Evil()}, f)
    assert _run("--data", str(data), "--output", str(out), "--resume") == 2
    assert "Refusing to resume" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    data = _image_folder(tmp_path / "data", per_class=8)
    out = tmp_path / "out"
    calls, forward = [0], torch.nn.CrossEntropyLoss.forward

    def diverging(self, logits, target):  # fine for epoch 1 (2 steps), NaN from epoch 2 on
        calls[0] += 1
        loss = forward(self, logits, target)
        return loss * float("nan") if calls[0] > 2 else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", diverging)
    cfg = TrainConfig(model="mobilenet_v3_small", data=str(data), output=str(out), epochs=3, batch_size=8,
                      img_size=32, workers=0)  # fmt: skip
    with pytest.raises(TrainingError, match="The loss became nan at epoch 2.*last good checkpoint"):
        train(cfg)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 0


def test_recipes_follow_their_sources():
    v2 = RECIPES["paper-v1v2"]
    assert (v2.optimizer, v2.lr, v2.weight_decay, v2.gamma) == ("rmsprop", 0.045, 4e-5, 0.98)
    assert v2.lr_factor(10 * 100, 100, 50) == pytest.approx(0.98**10)
    v3 = RECIPES["paper-v3"]
    assert v3.scaled_lr(4096) == 0.1 and v3.scaled_lr(1024) == 0.025 and v3.ema_decay == 0.9999
    assert v3.lr_factor(6 * 10, 10, 30) == pytest.approx(0.99**2)
    v4 = RECIPES["paper-v4"]  # TF Model Garden imagenet_mobilenetv4_conv_medium_tpu.yaml
    assert (v4.optimizer, v4.scaled_lr(4096), v4.weight_decay, v4.drop_path, v4.randaug_magnitude) == \
        ("adamw", 0.004, 0.1, 0.075, 15)  # fmt: skip
    assert v4.lr_factor(5 * 312 - 1, 312, 500) == pytest.approx(1.0, abs=1e-3)  # 1560 warm-up steps at 4096
    short = RECIPES["short"]
    assert short.lr_factor(0, 10, 10) < 0.2 and short.lr_factor(99, 10, 10) < 0.01


def test_cifar_in_its_own_format(tmp_path, monkeypatch):
    """CIFAR-10 read from files written in CIFAR's python format; offline, the error says what to fetch."""
    from mobilenets.data.images import load_train_data

    monkeypatch.setenv("MOBILENETS_DATA", str(tmp_path))
    import torchvision.datasets as tvd

    def offline(*_a, **_k):
        raise OSError("no network")

    monkeypatch.setattr(tvd.CIFAR10, "download", offline)
    with pytest.raises(ValueError, match="could not be downloaded.*cifar-10-python.tar.gz"):
        load_train_data("cifar10")
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (base / name).open("wb") as f:
            pickle.dump({b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}, f)
    with (base / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"automobile", *[b"x"] * 7, b"truck"]}, f)
    data = load_train_data("cifar10")
    assert len(data.train.samples) == 20 and len(data.val.samples) == 4
    assert data.train.classes[9] == "truck" and data.train.samples[3][1] == 9
    assert data.train.samples[0][0].shape == (32, 32, 3)


KEEP_EACH_RANK = """
import os, sys, torch
import mobilenets.train.loop as loop
from mobilenets.cli import main

train = loop.train


def train_and_keep_weights(cfg):  # each rank's parameters after training, to compare across ranks
    result = train(cfg)
    params = {k: v.detach().clone() for k, v in result["model"].named_parameters()}
    torch.save(params, os.path.join(cfg.output, f"rank{os.environ['RANK']}.pt"))
    return result


loop.train = train_and_keep_weights
sys.exit(main(sys.argv[1:]))
"""


def test_torchrun_ddp_two_cpu_processes(tmp_path):
    """Two ranks on different halves of the data end with the same weights: gradients are averaged over
    the ranks (without DDP each rank would train its own copy on its own half)."""
    data = _image_folder(tmp_path / "data", per_class=8)
    out = tmp_path / "ddp"
    script = tmp_path / "keep_each_rank.py"
    script.write_text(KEEP_EACH_RANK)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           str(script), "train", *TINY, "--data", str(data), "--output", str(out), "--epochs", "2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("best val top-1") == 1  # only rank 0 prints the summary
    assert proc.stderr.count("epoch 2/2:") == 1
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    state = torch.load(out / "last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state["model"])
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and len(ranks[0]) > 50
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])


def test_bad_arguments_are_one_sentence(tmp_path, capsys):
    for args, message in ((["--epochs", "0"], "--epochs: must be an integer at least 1"),
                          (["--amp", "fp16"], "needs a CUDA GPU"),
                          (["--sync-bn"], "needs CUDA GPUs"),
                          (["--recipe", "finetune"], "needs --pretrained")):  # fmt: skip
        if ("fp16" in args or "--sync-bn" in args) and torch.cuda.is_available():
            continue
        assert _run("--data", "digits", "--output", str(tmp_path / "o"), *args) == 2
        assert message in capsys.readouterr().err


def test_training_api_learns_real_digits(tmp_path):
    result = train(TrainConfig(model="mobilenet_v3_small", data="digits", output=str(tmp_path), epochs=3,
                               img_size=32, workers=0))  # fmt: skip
    assert result["best"] > 0.5  # 10 classes: chance is 0.1


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrainingError, match="Cannot write to --output"):
        train(TrainConfig(model="mobilenet_v3_small", data="digits", output=str(blocker / "sub")))


@pytest.mark.own_process  # the demo quantizes through NNCF / OpenVINO (see test_deploy.py)
def test_demo_is_the_main_job(tmp_path, capsys):
    """The README's main job: trains, evaluates, exports and quantizes offline; prints the summary."""
    assert main(["demo", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for stage in ("eager fp32", "fused eager", "onnx fp32", "onnx int8", "onnx int8 QAT"):
        assert stage in out
    accuracies = [float(line.split()[-5].rstrip("%")) for line in out.splitlines()
                  if line.startswith(("eager", "fused", "onnx"))]  # fmt: skip
    assert min(accuracies) > 80  # digits: chance is 10%
    assert max(accuracies[:3]) - min(accuracies[:3]) <= 0.6  # eager, fused, ONNX fp32: one model (2 of 360 images)
    for name in ("best.safetensors", "model.json", "curves.png", "zoo.png", "model.onnx", "model.int8.onnx",
                 "model.qat.onnx"):  # fmt: skip
        assert (tmp_path / name).is_file()
