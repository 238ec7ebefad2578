"""Detection and segmentation data, training, evaluation, pictures and ONNX export, on real coco128 photos.

Oracles: COCO's own JSON (for the YOLO reader), pycocotools on the official annotation file (for our mAP),
scikit-learn (for mIoU), the shared README's YOLO -> COCO id table (for matching labels by name), and
ONNX Runtime (for the exports)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import RESUMED_STATE, random_net, same_state, shared_path
from mobilenets import create_model
from mobilenets.cli import main
from mobilenets.data.dense import load_detection_data, load_segmentation_data, read_coco_json
from mobilenets.deploy import mobile
from mobilenets.deploy.detection import detection_diff
from mobilenets.deploy.export import export
from mobilenets.deploy.pt2e import float_outputs, phone_activations, quantize_pt2e
from mobilenets.deploy.wrappers import DetectionOutputs
from mobilenets.evaluate.dense import coco_map, confusion, label_lut, segmentation_scores
from mobilenets.runtime.detection import to_square
from mobilenets.runtime.runners import open_runner
from mobilenets.weights.catalog import task_classes

# the shared README's table: YOLO class i is COCO category id YOLO_TO_COCO[i]
YOLO_TO_COCO = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
                31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56,
                57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86,
                87, 88, 89, 90]  # fmt: skip


def _coco128() -> Path:
    return shared_path("coco128")


def _link_split(src_images: Path, dst: Path, names: list[str]) -> None:
    dst.mkdir(parents=True)
    for n in names:
        os.symlink(src_images / n, dst / n)


def _yolo_folder(root: Path, n_train: int = 16, n_val: int = 8, bad: bool = False) -> Path:
    """A small YOLO dataset (images/ + labels/ per split) of real coco128 photos, by symlinks."""
    coco = _coco128()
    for split, src, n in (("train", "train2017", n_train), ("val", "val2017", n_val)):
        names = sorted(p.name for p in (coco / "images" / src).glob("*.jpg"))[:n]
        _link_split(coco / "images" / src, root / "images" / split, names)
        (root / "labels" / split).mkdir(parents=True)
        for name in names:
            label = coco / "object_detection" / "labels" / src / name.replace(".jpg", ".txt")
            if label.exists():
                os.symlink(label, root / "labels" / split / label.name)
    if bad:
        (root / "images" / "train" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


def _mask_folder(root: Path, n_train: int = 12, n_val: int = 6) -> Path:
    coco = _coco128()
    for split, src, n in (("train", "train2017", n_train), ("val", "val2017", n_val)):
        masks = sorted((coco / "semantic_segmentation" / "masks" / src).glob("*.png"))[:n]
        _link_split(coco / "images" / src, root / "images" / split, [m.stem + ".jpg" for m in masks])
        _link_split(masks[0].parent, root / "masks" / split, [m.name for m in masks])
    return root


def _random_weights(model: torch.nn.Module, seed: int = 0, class_scale: float = 1.0) -> torch.nn.Module:
    """:func:`conftest.random_net`; a detector's class logits times ``class_scale`` (a random SSDLite-V3-Small
    gives every class about 1/91, x8 spreads them as a trained head does): distinct scores, no ties."""
    model = random_net(model, seed, conv_bias=False, check_size=None).eval()
    with torch.no_grad():
        for layers in model.head.classification_head.module_list if class_scale != 1 else ():
            layers[-1].weight.mul_(class_scale)
    return model


def _photos(n: int) -> list[torch.Tensor]:
    folder = _coco128() / "images" / "val2017"
    from torchvision.transforms.functional import pil_to_tensor

    return [pil_to_tensor(Image.open(p).convert("RGB")).float() / 255 for p in sorted(folder.glob("*.jpg"))[:n]]


# --- data --------------------------------------------------------------------------------------------
def test_yolo_yaml_reader_agrees_with_coco_json():
    coco = _coco128()
    yolo = load_detection_data(str(coco / "object_detection" / "config.yaml"))
    assert (len(yolo.train.samples), len(yolo.val.samples)) == (128, 128)
    assert sum(len(s[2]) for s in yolo.train.samples) == 929 and sum(len(s[2]) for s in yolo.val.samples) == 898
    official, cats = read_coco_json(coco / "annotations" / "instances_train2017.json", coco / "images" / "train2017")
    by_path = {p: (b, y) for p, b, y in official.samples}
    for path, boxes, labels in yolo.train.samples:
        ref_boxes, ref_labels = by_path[path]
        # the same objects: YOLO label i + 1 names the COCO category the JSON gives
        assert sorted(yolo.classes[int(y)] for y in labels) == sorted(cats[int(y)] for y in ref_labels)
        if len(boxes):  # every box has its twin; YOLO stores 6 decimals of the image size
            dist = np.abs(boxes[:, None] - ref_boxes[None]).max(-1)
            assert len(boxes) == len(ref_boxes) and dist.min(1).max() < 1e-2 and dist.min(0).max() < 1e-2


def test_labels_are_matched_to_the_model_by_name():
    yolo = load_detection_data(str(_coco128() / "object_detection" / "config.yaml"))
    lut = label_lut(yolo.classes, task_classes("coco-91"))
    assert lut[1 : 1 + 80].tolist() == YOLO_TO_COCO


def test_masks_with_coco_voc_map(tmp_path):
    seg = load_segmentation_data(str(_coco128() / "semantic_segmentation" / "config.yaml"), "coco-voc")
    assert len(seg.train.samples) == len(seg.val.samples) == 100 and len(seg.classes) == 21
    raw = load_segmentation_data(str(_mask_folder(tmp_path)))
    from mobilenets.data.dense import read_mask

    mask = read_mask(raw.val.samples[0][1])
    voc = read_mask(raw.val.samples[0][1], "coco-voc")
    assert ((mask == 1) == (voc == 15)).all()  # COCO person (1) is VOC person (15)
    assert (
        (voc == 0) == ~np.isin(mask, [5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72])
    ).all()


def test_coco_map_equals_pycocotools_on_the_official_file(tmp_path):
    """Our in-memory evaluation against COCOeval on COCO's own JSON (crowd regions removed from both)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = _coco128()
    doc = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    doc["annotations"] = [a for a in doc["annotations"] if not a["iscrowd"]]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(doc))
    split, _ = read_coco_json(path, coco / "images" / "train2017")
    rng = np.random.default_rng(0)
    ids = {im["file_name"]: im["id"] for im in doc["images"]}
    preds, targets, dets = [], [], []
    for p, boxes, labels in split.samples:
        noisy = boxes + rng.normal(0, 6, boxes.shape).astype(np.float32)
        keep = rng.random(len(boxes)) < 0.8
        scores = rng.random(len(boxes)).astype(np.float32)
        preds.append({"boxes": torch.from_numpy(noisy[keep]), "scores": torch.from_numpy(scores[keep]),
                      "labels": torch.from_numpy(labels[keep])})  # fmt: skip
        targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})
        for b, s, y in zip(noisy[keep], scores[keep], labels[keep]):
            dets.append({"image_id": ids[p.name], "category_id": int(y), "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    ours = coco_map(preds, targets)
    assert 0.1 < ours["map"] < 0.9
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-6) and ours["map50"] == pytest.approx(ev.stats[1], abs=1e-6)


def test_miou_equals_scikit_learn():
    from sklearn.metrics import accuracy_score, jaccard_score

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 6, (4, 30, 40), generator=g)
    pred = torch.where(
        torch.rand(target.shape, generator=g) < 0.6, target, torch.randint(0, 6, target.shape, generator=g)
    )
    target[:, :3] = 255  # ignored
    pred[pred == 5] = 4  # class 5 never predicted, still in the truth
    scores = segmentation_scores(confusion(pred, target, 7))  # class 6 in neither: no IoU
    keep = target != 255
    t, p = target[keep].numpy(), pred[keep].numpy()
    assert scores["miou"] == pytest.approx(jaccard_score(t, p, labels=list(range(6)), average="macro"))
    assert scores["pixel_acc"] == pytest.approx(accuracy_score(t, p))


# --- training, evaluation, pictures ------------------------------------------------------------------
DET_ARGS = ["--model", "ssdlite_mobilenet_v3_small", "--img-size", "128", "--batch-size", "8", "--workers", "0"]


def test_detection_trains_resumes_evaluates_and_draws(tmp_path, capsys, monkeypatch):
    data = _yolo_folder(tmp_path / "yolo", bad=True)
    args = ["train", *DET_ARGS, "--data", str(data), "--seed", "1"]
    ref, part = tmp_path / "ref", tmp_path / "part"
    assert main([*args, "--epochs", "2", "--output", str(ref)]) == 0
    err = capsys.readouterr().err
    assert "skipped unreadable image" in err and "broken.jpg" in err and "val mAP" in err
    meta = json.loads((ref / "model.json").read_text())
    assert meta["skipped_images"][0].endswith("broken.jpg") and meta["class_names"][0] == "__background__"
    assert (ref / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss,val_map,val_map50")
    # a run interrupted after its first epoch's checkpoint, resumed, equals the uninterrupted one bit for bit
    import mobilenets.train.loop as training

    save = training.atomic_torch_save

    def save_then_interrupt(*a, **k):
        save(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "atomic_torch_save", save_then_interrupt)
    assert main([*args, "--epochs", "2", "--output", str(part)]) == 130
    monkeypatch.setattr(training, "atomic_torch_save", save)
    epochs_run, train_epoch = [], training._train_epoch
    monkeypatch.setattr(training, "_train_epoch", lambda run, e: epochs_run.append(e) or train_epoch(run, e))
    assert main([*args, "--epochs", "2", "--output", str(part), "--resume"]) == 0
    assert epochs_run == [1]  # only the epoch left
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (ref, part))
    assert a["optimizer"]["state"] and all(same_state(a[k], b[k]) for k in RESUMED_STATE)
    capsys.readouterr()
    # eval --json on the checkpoint gives the validation mAP that training recorded
    assert main(["eval", "--checkpoint", str(ref), "--data", str(data), "--json", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == {"map", "map50", "n"} and result["n"] == 8
    best = meta["metrics"]
    assert result["map"] == pytest.approx(best["val_map"], abs=5e-3)
    photo = sorted((data / "images" / "val").iterdir())[0]
    assert main(["predict", str(photo), "--checkpoint", str(ref), "--save", str(tmp_path / "pics"),
                 "--score-thresh", "0"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["detections"] and Image.open(out["saved"]).size == Image.open(photo).size


def test_segmentation_trains_on_mask_folders_evaluates_and_draws(tmp_path, capsys):
    data = _mask_folder(tmp_path / "masks")
    out = tmp_path / "seg"
    assert main(["train", "--model", "lraspp_mobilenet_v3_small", "--data", str(data), "--label-map", "coco-voc",
                 "--img-size", "96", "--batch-size", "6", "--epochs", "1", "--workers", "0",
                 "--output", str(out)]) == 0  # fmt: skip
    meta = json.loads((out / "model.json").read_text())
    assert meta["label_map"] == "coco-voc" and len(meta["class_names"]) == 21
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--data", str(data), "--json", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == {"miou", "pixel_acc", "n"} and result["n"] == 6
    assert result["miou"] == pytest.approx(meta["metrics"]["val_miou"], abs=1e-4)
    photo = sorted((data / "images" / "val").iterdir())[0]
    assert main(["predict", str(photo), "--checkpoint", str(out), "--save", str(tmp_path / "pics")]) == 0
    picture = json.loads(capsys.readouterr().out)
    assert sum(c["fraction"] for c in picture["classes"]) == pytest.approx(1, abs=1e-3)
    assert Image.open(picture["saved"]).size == Image.open(photo).size


# --- export ------------------------------------------------------------------------------------------
def test_detection_onnx_gives_pytorchs_boxes_on_real_photos(tmp_path):
    import onnxruntime as ort

    counts = []
    for name, kwargs, scale in (
        ("ssdlite_mobilenet_v3_large", {}, 1),
        ("ssdlite_mobilenet_v3_small", {"score_thresh": 0.4}, 8),
    ):
        model = _random_weights(create_model(name, **kwargs), class_scale=scale)
        report = export(model, tmp_path / "ssd.onnx")
        session = ort.InferenceSession(str(tmp_path / "ssd.onnx"), providers=["CPUExecutionProvider"])
        for photo in _photos(3):  # their own sizes: the graph resizes as the model does
            with torch.inference_mode():
                ref = model([photo])[0]
            got = dict(zip(("boxes", "scores", "labels"),
                           map(torch.from_numpy, session.run(None, {"image": photo.numpy()}))))  # fmt: skip
            # the same count, every box within 1e-4 of the image size (0.064 px at 640; float32 numerics of a
            # random deep net reach ~0.01 px)
            assert len(got["boxes"]) == len(ref["boxes"]) > 0
            assert detection_diff(got, ref) < 1e-4 * max(photo.shape)
            counts.append(len(got["boxes"]))
        assert report["max_box_diff_onnxruntime"] < 1e-4 * 320
    assert max(counts) == 300 and min(counts) < 30  # the detections_per_img cap, and counts below it


def test_segmentation_onnx_any_size_and_int8(tmp_path, capsys):
    import onnxruntime as ort

    from mobilenets.data.dense import segmentation_transforms

    for padding in ("symmetric", "same"):  # TF "SAME" (Google's backbones): its padding follows the size
        model = _random_weights(create_model("lraspp_mobilenet_v3_small", padding=padding))
        export(model, tmp_path / "seg.onnx")
        session = ort.InferenceSession(str(tmp_path / "seg.onnx"), providers=["CPUExecutionProvider"])
        for photo, side in zip(_photos(2), (200, 201)):
            x = segmentation_transforms(model.pretrained_cfg, side, False)(photo)[None]
            with torch.inference_mode():
                ref = model(x)["out"]
            got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
            assert got.shape == ref.shape and (got - ref).abs().max() <= 1e-4 * ref.abs().max()
    assert main(["export", "--model", "ssdlite_mobilenet_v2", "--int8", "--calib", str(tmp_path),
                 "--output", str(tmp_path / "x.onnx")]) == 2  # fmt: skip
    assert "int8 detection is offered for the phone formats" in capsys.readouterr().err


def test_task_mistakes_are_one_sentence(tmp_path, capsys):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "val").mkdir(parents=True)
    cases = [
        (["train", "--model", "ssdlite_mobilenet_v9", "--data", str(tmp_path), "--output", str(tmp_path / "o")],
         "mobilenet_v9"),
        (["train", *DET_ARGS, "--data", str(tmp_path), "--output", str(tmp_path / "o"), "--label-map", "coco-voc"],
         "--label-map is for segmentation"),
        (["train", *DET_ARGS, "--data", str(tmp_path), "--output", str(tmp_path / "o")], "No YOLO labels"),
        (["train", "--model", "lraspp_mobilenet_v2", "--data", str(tmp_path), "--output", str(tmp_path / "o")],
         "does not exist"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_bench_reports_detection_and_segmentation(capsys):
    args = ["bench", "--model", "ssdlite320_mobilenet_v3_large", "lraspp_mobilenet_v3_small", "--backends",
            "eager,onnxruntime", "--batch-sizes", "1", "--img-size", "128", "--repeats", "2", "--json"]  # fmt: skip
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["backend"]) for r in rows] == [
        ("ssdlite320_mobilenet_v3_large", "torchvision eager"), ("ssdlite320_mobilenet_v3_large", "eager"),
        ("ssdlite320_mobilenet_v3_large", "onnxruntime"), ("lraspp_mobilenet_v3_small", "eager"),
        ("lraspp_mobilenet_v3_small", "onnxruntime")]  # fmt: skip
    assert all(r["median_ms"] > 0 for r in rows) and rows[0]["vs_torchvision_eager"] == 1.0


@pytest.mark.own_process  # LiteRT stays out of the test process (see conftest.py)
def test_segmentation_phone_file_runs_at_its_fixed_size(tmp_path):
    from torch.nn.functional import interpolate

    from mobilenets.data.dense import segmentation_transforms
    from mobilenets.runtime.classifier import load_classifier

    model = _random_weights(create_model("lraspp_mobilenet_v3_small"))
    report = export(model, tmp_path / "seg.tflite", "tflite", img_size=128)
    assert report["runtime_check"] == "LiteRT" and report["max_rel_diff"] < 1e-4
    x = segmentation_transforms(model.pretrained_cfg, 160, False)(_photos(1)[0])[None]
    with torch.inference_mode():  # what an app does: the file's 128 x 128 in, the logits back to the photo's shape
        ref = interpolate(model(interpolate(x, size=(128, 128), mode="bilinear"))["out"], x.shape[-2:], mode="bilinear")
    got = load_classifier(weights=str(tmp_path / "seg.tflite")).run(x)
    assert got.shape == ref.shape == (1, 21, *x.shape[-2:]) and x.shape[-2] != x.shape[-1]
    assert (got - ref).abs().max() <= 1e-4 * ref.abs().max()


@pytest.mark.own_process  # LiteRT and ExecuTorch stay out of the test process (see conftest.py)
def test_detection_phone_files_give_pytorchs_boxes_on_real_photos(tmp_path, capsys):
    import coremltools as ct

    from mobilenets.runtime.classifier import load_classifier

    model = _random_weights(create_model("ssdlite_mobilenet_v3_small", size=160))
    for fmt in ("tflite", "pte"):
        report = export(model, tmp_path / f"ssd.{fmt}", fmt)
        assert report["img_size"] == 160 and report["max_box_diff"] < 1e-4 * 160
        detect = load_classifier(weights=str(tmp_path / f"ssd.{fmt}")).run  # NMS outside the file
        for photo in _photos(3):  # their own sizes, resized to 160 x 160 as the detector resizes them
            with torch.inference_mode():
                ref = model([photo])[0]
            got = detect([photo])[0]
            assert len(got["boxes"]) == len(ref["boxes"]) > 0
            assert detection_diff(got, ref) < 1e-4 * max(photo.shape)
            assert torch.allclose(got["scores"].sort().values, ref["scores"].sort().values, atol=1e-4)
    data = _yolo_folder(tmp_path / "yolo", n_train=1, n_val=4)
    capsys.readouterr()
    assert (
        main(["eval", "--weights", str(tmp_path / "ssd.tflite"), "--data", str(data), "--json", "--workers", "0"]) == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == {"map", "map50", "n"} and result["n"] == 4
    # int8 (calibrated on real photos, resized whole to 160 x 160 in [0, 1] as the file takes them): close to
    # the fp32 detector's boxes and probabilities, and it evaluates like any phone file
    report = export(model, tmp_path / "ssd8.tflite", "tflite", int8=True, calib=data / "images")
    assert report["precision"] == "int8" and report["mean_box_diff"] < 0.02
    # its class probabilities depart from fp32's by well under what tells one photo from another (measured:
    # 0.46 of it); a file whose outputs ignored the photo would be at 1 or more
    x = torch.cat([to_square(photo, 160) for photo in _photos(3)])
    with torch.inference_mode():
        ref = DetectionOutputs(model).eval()(x)[..., 4:]
    got = torch.from_numpy(open_runner("litert", tmp_path / "ssd8.tflite", "int8")(x.numpy()))[..., 4:]
    assert (got - ref).abs().mean() < 0.7 * (ref - ref.roll(1, 0)).abs().mean()
    # ExecuTorch's quantizer, as its file computes (in PyTorch: lowering takes 40 s more): the outputs' own
    # operations float, as phone_bytes keeps them; quantized, the probabilities shared the boxes' 1/256 grid
    # (4 distinct values, 5.8x the photo-to-photo difference)
    outputs = phone_activations(DetectionOutputs(model).eval())
    int8 = quantize_pt2e(outputs, x[:2], mobile._quantizer("pte"), x, keep=float_outputs(outputs), any_batch=True)
    with torch.inference_mode():
        got = int8(x)[..., 4:]
    assert len(got.unique()) > 1000 and (got - ref).abs().mean() < 0.7 * (ref - ref.roll(1, 0)).abs().mean()
    argv = ["eval", "--weights", str(tmp_path / "ssd8.tflite"), "--data", str(data), "--json", "--workers", "0"]
    assert main(argv) == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 4
    export(model, tmp_path / "ssd.mlpackage", "coreml")  # Core ML: the same outputs, inspected (no predictions here)
    (out,) = ct.models.MLModel(str(tmp_path / "ssd.mlpackage"), skip_model_load=True).get_spec().description.output
    assert out.name == "detections" and list(out.type.multiArrayType.shape)[2] == 4 + 91
    with pytest.raises(ValueError, match="resizes every image to 160 px"):
        export(model, tmp_path / "big.tflite", "tflite", img_size=320)


def test_detection_under_torchrun_two_cpu_processes(tmp_path):
    import subprocess
    import sys

    data = _yolo_folder(tmp_path / "yolo", n_train=16, n_val=4)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29519", "-m",
           "mobilenets", "train", *DET_ARGS, "--data", str(data), "--output", str(out), "--epochs", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("best val mAP") == 1 and proc.stderr.count("epoch 1/1:") == 1
    meta = json.loads((out / "model.json").read_text())
    assert 0 <= meta["metrics"]["val_map"] <= 1
    assert not any(k.startswith("module.") for k in torch.load(out / "last.pt", weights_only=True)["model"])


def test_masks_of_another_size_are_skipped_and_rgb_masks_refused(tmp_path):
    data = _mask_folder(tmp_path / "masks", n_train=3, n_val=2)
    first = sorted((data / "masks" / "train").iterdir())[0]
    first.unlink()
    Image.new("L", (7, 5)).save(first)  # a mask that belongs to no photo of this size
    seg = load_segmentation_data(str(data))
    assert seg.train.bad == [str(first)] and len(seg.train.samples) == 2
    Image.new("RGB", (7, 5)).save(first)
    with pytest.raises(ValueError, match="has mode RGB; masks hold one class index per pixel"):
        load_segmentation_data(str(data))
