"""Make the site's pictures with the project's own commands on real data: ``docs/images/*.png``.

    python docs/make_pictures.py [--shared ../shared/data] [--only zoo bench train detection segmentation]

- ``zoo.png``: ``mobilenets zoo --plot`` (published top-1 against multiply-adds).
- ``bench.png``: ``mobilenets bench --plot`` for three classifiers, eager PyTorch and ONNX Runtime.
- ``train_curves.png``: the ``curves.png`` that ``mobilenets train`` writes (V3-Small on digits).
- ``detections.png`` and ``mask.png``: ``mobilenets predict --save`` on a coco128 photo, by an SSDLite-V2
  and an LR-ASPP-V2 fine-tuned from Google's ImageNet weights on coco128's 128 training photos, boxes
  scored 0.035 and up (the detector's best scores on this photo, about 0.04, are the person in it).
  Minutes of CPU: the boxes and masks of such a short run are rough, and the page says so.

Each command runs as a user runs it (``python -m mobilenets ...``); the script stops at the first that
fails. Takes about 25 minutes on 2 cores, most of it the two fine-tunings.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
IMAGES = DOCS / "images"
PICTURES = ["zoo", "bench", "train", "detection", "segmentation"]
PHOTO = "000000000139.jpg"  # a coco128 val2017 photo: a living room with people, chairs, a TV


def mobilenets(*args: str) -> None:
    print("$ mobilenets", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "mobilenets", *args], check=True)


def _fine_tuned(runs: Path, model: str, data: Path, tflite: str, epochs: int, *extra: str) -> Path:
    """A ``mobilenets train`` run from Google's ImageNet weights; its output folder."""
    out = runs / model
    mobilenets("train", "--model", model, "--data", str(data), "--pretrained", tflite, *extra,
               "--epochs", str(epochs), "--seed", "0", "--output", str(out))  # fmt: skip
    return out


def _saved(photo: Path, checkpoint: Path, name: str, *extra: str) -> None:
    """``mobilenets predict --save`` of ``photo``, kept as ``docs/images/<name>``."""
    out = checkpoint / "saved"
    mobilenets("predict", str(photo), "--checkpoint", str(checkpoint), *extra, "--save", str(out))
    shutil.copy(next(out.glob("*.png")), IMAGES / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DOCS.parents[1] / "shared" / "data")
    parser.add_argument("--epochs-det", type=int, default=12)
    parser.add_argument("--epochs-seg", type=int, default=12)
    parser.add_argument("--only", nargs="+", choices=PICTURES, default=PICTURES, help="make only these")
    args = parser.parse_args()
    IMAGES.mkdir(exist_ok=True)
    coco, tflite = args.shared / "coco128", str(args.shared / "weights" / "mobilenet_v2_1.0_224_quant.tflite")
    photo = next((coco / "images").rglob(PHOTO))
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        if "zoo" in args.only:
            mobilenets("zoo", "--plot", str(IMAGES / "zoo.png"))
        if "bench" in args.only:
            mobilenets("bench", "--model", "mobilenet_v3_small", "mobilenet_v2", "mobilenet_v3_large",
                       "--backends", "eager,onnxruntime", "--plot", str(IMAGES / "bench.png"))  # fmt: skip
        if "train" in args.only:
            mobilenets("train", "--model", "mobilenet_v3_small", "--data", "digits", "--img-size", "32",
                       "--epochs", "8", "--seed", "0", "--output", str(runs / "digits"))  # fmt: skip
            shutil.copy(runs / "digits" / "curves.png", IMAGES / "train_curves.png")
        if "detection" in args.only:
            ssd = _fine_tuned(runs, "ssdlite_mobilenet_v2", coco / "object_detection" / "config.yaml", tflite,
                              args.epochs_det)  # fmt: skip
            _saved(photo, ssd, "detections.png", "--score-thresh", "0.035")
        if "segmentation" in args.only:
            seg = _fine_tuned(runs, "lraspp_mobilenet_v2", coco / "semantic_segmentation" / "config.yaml", tflite,
                              args.epochs_seg, "--label-map", "coco-voc", "--img-size", "256")  # fmt: skip
            _saved(photo, seg, "mask.png")
    print("wrote", ", ".join(sorted(p.name for p in IMAGES.glob("*.png"))))


if __name__ == "__main__":
    main()
