"""Prediction into Parquet (`predict SOURCE --output DIR`): sources, rows against `predict`, bad files,
a job killed with SIGKILL and started again, and the same job on a real Ray cluster."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FP32_TOP1, random_net, shared_path
from mobilenets.cli import main
from mobilenets.util.errors import RuntimeUnavailable

pq = pytest.importorskip("pyarrow.parquet")


def _rows(out: Path) -> dict[str, dict]:
    """The rows of every complete part in ``out``, by path (each path once)."""
    rows = [r for part in sorted(out.glob("part-*.parquet")) for r in pq.read_table(part).to_pylist()]
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "an image written twice"
    return by_path


def _bad_files(folder: Path) -> list[Path]:
    """A truncated JPEG, text named .jpg, an empty PNG and a decompression bomb."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (300, 200), (200, 30, 30)).save(folder / "whole.jpg")
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "whole.jpg").unlink()
    (folder / "text.jpg").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 Mpixel, a few KB: refused by PIL
    return sorted(folder.iterdir())


def test_sources_list_folders_globs_and_lists(tmp_path):
    from mobilenets.batch.sources import list_sources
    from mobilenets.util.errors import DataError

    for name in ("a/x.jpg", "a/b/y.png", "z.JPEG"):
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / name, format="PNG")
    (tmp_path / "imgs" / "notes.txt").write_text("x")
    found = list_sources(str(tmp_path / "imgs"))
    assert [Path(p).relative_to(tmp_path / "imgs").as_posix() for p in found] == ["a/b/y.png", "a/x.jpg", "z.JPEG"]
    assert list_sources(str(tmp_path / "imgs" / "**" / "*.png")) == [found[0]]
    (tmp_path / "imgs" / "list.txt").write_text("a/x.jpg\n\nz.JPEG\n")
    assert list_sources(str(tmp_path / "imgs" / "list.txt")) == [found[1], found[2]]
    (tmp_path / "imgs" / "list.csv").write_text("id,path\n1,a/x.jpg\n")
    assert list_sources(str(tmp_path / "imgs" / "list.csv")) == [found[1]]
    import pyarrow as pa

    pq.write_table(pa.table({"path": [found[2]]}), tmp_path / "list.parquet")
    assert list_sources(str(tmp_path / "list.parquet")) == [found[2]]
    for bad, said in [("missing", "does not exist"), ("imgs/a/x.jpg", "is a single file"),
                      ("imgs/*.gif", "names no images")]:  # fmt: skip
        with pytest.raises(DataError, match=said):
            list_sources(str(tmp_path / bad))


def _imagenet_list(tmp_path: Path, n: int) -> tuple[Path, list[Path]]:
    images = sorted((shared_path("imagenet-val-1300") / "images").iterdir())[:n]
    bad = _bad_files(tmp_path / "bad")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, [*images, *bad])) + "\n")
    return listing, images


def test_rows_equal_predict_and_bad_files_get_an_error(tmp_path, capsys):
    """Google's float V1 0.25 over 24 ImageNet photos and 4 broken files: each photo's top-5 as `predict`
    gives it, each broken file a row with an error and no prediction; the rows' metadata and types as the
    README says; int8 agrees on most top-1; options that need --output are refused without it."""
    weights = str(shared_path("weights", "mobilenet_v1_0.25_224_float.tflite"))
    listing, images = _imagenet_list(tmp_path, 24)
    out = tmp_path / "out"
    argv = ["predict", str(listing), "--weights", weights, "--output", str(out), "--rows-per-file", "10",
            "--batch-size", "8", "--workers", "1"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["images"], summary["written"], summary["errors"], summary["skipped"]) == (28, 28, 4, 0)
    if not torch.cuda.is_available():  # a Ray actor given GPUs on a machine without: one sentence
        from mobilenets.batch import BatchPredictor, JobOptions

        with pytest.raises(RuntimeUnavailable, match="sees no CUDA GPU"):
            BatchPredictor(JobOptions(weights=weights, device="cuda"), out)
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 3 and not list(out.glob(".*"))
    meta = pq.read_schema(parts[0]).metadata
    assert meta[b"mobilenets.schema"] == b"1" and meta[b"mobilenets.task"] == b"classification"
    rows = _rows(out)
    for name in ("truncated.jpg", "text.jpg", "empty.png", "bomb.png"):
        row = rows[str(tmp_path / "bad" / name)]
        assert row["error"] and name in row["error"] and row["labels"] is None, row
    assert main(["predict", *map(str, images), "--weights", weights, "--json"]) == 0
    for ref in json.loads(capsys.readouterr().out):
        row = rows[ref["image"]]
        assert row["error"] is None and row["labels"] == [t["index"] for t in ref["top"]]
        assert np.allclose(row["scores"], [t["prob"] for t in ref["top"]], atol=1e-4)
        assert row["names"] == [t["name"] for t in ref["top"]]
    # int8 (calibrated on the job's own first images) in ONNX Runtime: the same top-1 on most photos
    argv = ["predict", str(listing), "--weights", weights, "--precision", "int8", "--backend", "onnxruntime"]
    assert main([*argv, "--output", str(tmp_path / "int8")]) == 0
    int8 = _rows(tmp_path / "int8")
    assert pq.read_schema(next((tmp_path / "int8").glob("part-*"))).metadata[b"mobilenets.precision"] == b"int8"
    assert sum(int8[str(p)]["labels"][0] == rows[str(p)]["labels"][0] for p in images) >= 20
    (tmp_path / "broken.onnx").write_bytes(b"not a model")  # refused before the output folder is made
    assert main(["predict", str(listing), "--weights", str(tmp_path / "broken.onnx"), "--output", str(out / "x")]) == 2
    assert "broken.onnx is not a loadable ONNX model" in capsys.readouterr().err and not (out / "x").exists()
    assert main(["predict", str(images[0]), "--weights", weights, "--engine", "ray"]) == 2
    assert "--engine goes with --output DIR" in capsys.readouterr().err
    if importlib.util.find_spec("ray"):  # an address where no cluster answers: refused in seconds, not minutes
        argv = ["predict", str(listing), "--weights", weights, "--output", str(tmp_path / "r"), "--engine", "ray"]
        assert main([*argv, "--address", "127.0.0.1:1"]) == 2 and not (tmp_path / "r").exists()
        assert "No Ray cluster answers at 127.0.0.1:1" in capsys.readouterr().err


def test_killed_job_continues_without_losing_or_repeating_an_image(tmp_path):
    """SIGKILL in the middle of a job, then the same command: every image exactly once, rows equal to an
    uninterrupted run's, no temporary file left as a result; the embedding column as float16."""
    weights = str(shared_path("weights", "mobilenet_v1_0.25_224_float.tflite"))
    listing, _ = _imagenet_list(tmp_path, 60)
    cmd = [sys.executable, "-m", "mobilenets", "predict", str(listing), "--weights", weights, "--embed",
           "--rows-per-file", "8", "--batch-size", "4", "--workers", "1", "--output"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([*cmd, str(tmp_path / "part")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(list((tmp_path / "part").glob("part-*.parquet"))) < 2 and job.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert job.poll() is None, job.stderr.read().decode()
    job.send_signal(signal.SIGKILL)
    job.wait()
    before = _rows(tmp_path / "part")
    assert 16 <= len(before) < 64
    again = subprocess.run([*cmd, str(tmp_path / "part")], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["skipped"] == len(before)
    assert main([*cmd[3:], str(tmp_path / "whole")]) == 0  # the uninterrupted run, here
    resumed, ref = _rows(tmp_path / "part"), _rows(tmp_path / "whole")
    assert resumed.keys() == ref.keys() and len(ref) == 64 and not list((tmp_path / "part").glob(".*"))
    for path, row in ref.items():
        assert resumed[path]["labels"] == row["labels"]
        if row["error"] is None:
            assert len(row["embedding"]) == 256 and np.allclose(resumed[path]["embedding"], row["embedding"], atol=1e-2)
    field = pq.read_schema(next((tmp_path / "whole").glob("part-*.parquet"))).field("embedding")
    assert str(field.type) == "list<element: halffloat>"


def _checkpoint(folder: Path, name: str, **options: int) -> Path:
    """A random detector or segmenter (He init, random BN; a detector's class logits spread x8 as in
    test_dense) saved as a training output folder."""
    from safetensors.torch import save_file

    from mobilenets import create_model
    from mobilenets.runtime.classifier import model_class_names

    model = random_net(create_model(name, num_classes=4, **options), conv_bias=False, check_size=None)
    with torch.no_grad():
        for layers in model.head.classification_head.module_list if "ssd" in name else ():
            layers[-1].weight.mul_(8)
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "best.safetensors")
    meta = {"model": name, "model_args": model.model_args, "pretrained_cfg": model.pretrained_cfg,
            "class_names": model_class_names(model)}  # fmt: skip
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_segmenter_rows_point_to_its_masks(tmp_path, capsys):
    """A segmenter's row names a PNG of class ids beside the table: the classes present are those `predict`
    finds in the same photo, and the mask has the photo's size; a file:// URI reads as its path."""
    photos = sorted((shared_path("coco128", "images", "val2017")).iterdir())[:3]
    model = ["--checkpoint", str(_checkpoint(tmp_path / "seg", "lraspp_mobilenet_v3_small"))]
    (tmp_path / "list.txt").write_text(f"{photos[0]}\n{photos[1]}\nfile://{photos[2]}\n")
    assert main(["predict", str(tmp_path / "list.txt"), *model, "--output", str(tmp_path / "out")]) == 0
    rows = _rows(tmp_path / "out")
    capsys.readouterr()
    assert main(["predict", *map(str, photos), *model, "--json"]) == 0
    for photo, ref in zip(photos, json.loads(capsys.readouterr().out)):
        row = rows[str(photo) if photo != photos[2] else f"file://{photo}"]
        mask = np.asarray(Image.open(tmp_path / "out" / row["mask"]))
        assert mask.shape == Image.open(photo).size[::-1] and row["error"] is None
        assert row["labels"] == [c["label"] for c in ref["classes"]] == sorted(np.unique(mask).tolist())
        assert len(row["labels"]) > 1  # a mask that carries a signal


@pytest.fixture
def ray_head(monkeypatch):
    """A real Ray head (`ray start --head`) in its own temporary folder, stopped at the end; its address.
    Token authentication off for the head and this driver alike: Ray turns it on for a head when a token
    exists (~/.ray/auth_token, which any local ``ray.init()`` writes), but a driver given a host:port
    sends no token."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # socket paths must stay short
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--port", "0", "--num-cpus", "2",
         "--temp-dir", str(temp), "--include-dashboard", "false", "--disable-usage-stats",
         "--object-store-memory", "300000000", "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    ready = temp / "ray_current_cluster"
    deadline = time.time() + 90
    while not ready.is_file() and head.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    try:
        assert ready.is_file(), head.stderr.read().decode() if head.poll() is not None else "ray start timed out"
        yield ready.read_text().strip()
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _boxes_within(a: dict, b: dict, thresh: float = 0.3) -> bool:
    """Each box of row ``a`` not within 1e-3 of the score threshold is in row ``b``: same class, score within
    1e-3, corners within half a pixel (one thread against two reorders float sums, not detections)."""
    return all(
        any(lb == la and abs(sb - sa) < 1e-3 and np.abs(np.subtract(bb, ba)).max() < 0.5
            for bb, sb, lb in zip(b["boxes"], b["scores"], b["labels"]))
        for ba, sa, la in zip(a["boxes"], a["scores"], a["labels"]) if sa > thresh + 1e-3
    )  # fmt: skip


@pytest.mark.own_process
@pytest.mark.slow
def test_ray_cluster_rows_equal_this_machines(ray_head, tmp_path, capsys):
    """The 1300 ImageNet photos (Google's float V1 0.25 in ONNX Runtime; two Ray actors) and coco128's 128
    val photos (a detector, default score threshold; one actor) on a real Ray head: the same rows as the
    one-machine job, image for image; the rows' top-1 against the labels is the model's measured one.
    GPUs asked of a cluster without any are refused (Ray would wait for them for ever)."""
    weights = str(shared_path("weights", "mobilenet_v1_0.25_224_float.tflite"))
    data = shared_path("imagenet-val-1300")
    detector = _checkpoint(tmp_path / "ssd", "ssdlite_mobilenet_v3_small", size=160)
    jobs = [(str(data / "images"), ["--weights", weights, "--backend", "onnxruntime", "--workers", "2"]),
            (str(shared_path("coco128", "images", "val2017")), ["--checkpoint", str(detector)])]  # fmt: skip
    for n, (source, model) in enumerate(jobs):
        for engine in ("local", "ray"):
            extra = ["--engine", "ray", "--address", ray_head] if engine == "ray" else []
            assert main(["predict", source, *model, "--output", str(tmp_path / f"{engine}{n}"), *extra]) == 0
        local, ray = _rows(tmp_path / f"local{n}"), _rows(tmp_path / f"ray{n}")
        assert local.keys() == ray.keys() and len(local) == (1300, 128)[n]
        if n == 0:
            for path, row in local.items():
                assert ray[path]["labels"] == row["labels"], path
                assert np.allclose(ray[path]["scores"], row["scores"], atol=1e-4), path
        else:
            assert sum(len(r["labels"]) for r in local.values()) > 128  # boxes to compare
            assert all(_boxes_within(r, ray[p]) and _boxes_within(ray[p], r) for p, r in local.items())
    labels = dict(line.split(",") for line in (data / "labels.csv").read_text().splitlines()[1:])
    hits = [row["labels"][0] == int(labels[Path(p).name]) for p, row in _rows(tmp_path / "local0").items()]
    assert abs(np.mean(hits) - FP32_TOP1["mobilenet_v1_0.25_224_float"]) <= 2 / 1300
    gpus = ["--engine", "ray", "--address", ray_head, "--num-gpus", "1"]
    capsys.readouterr()
    assert main(["predict", jobs[0][0], "--weights", weights, "--output", str(tmp_path / "gpu"), *gpus]) != 0
    assert "the Ray cluster has 0 GPUs" in capsys.readouterr().err
    assert not list((tmp_path / "gpu").glob("part-*"))


def test_a_part_cut_short_is_never_a_result(tmp_path, monkeypatch):
    """A write that dies before its rename leaves no part-*.parquet, and a half-written temporary file that
    a killed job left is removed on the next start, which reads only the complete parts."""
    import pyarrow as pa

    from mobilenets.batch import parts
    from mobilenets.util import files

    writer = parts.PartWriter(tmp_path, rows_per_file=2)
    writer.add(pa.table({"path": ["a", "b"], "error": pa.array([None, "bad"], pa.string())}))  # one complete part
    (complete,) = tmp_path.glob("part-*.parquet")
    left = tmp_path / f".{complete.stem[:-1]}1.parquet.k3x9.tmp"  # as a SIGKILL during a write leaves it
    left.write_bytes(complete.read_bytes()[:100])

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(files.os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            writer.add(pa.table({"path": ["c", "d"], "error": pa.array([None, None], pa.string())}))
    assert list(tmp_path.glob("part-*.parquet")) == [complete]
    assert parts.done_paths(tmp_path) == {"a", "b"} and sorted(tmp_path.iterdir()) == [complete]
