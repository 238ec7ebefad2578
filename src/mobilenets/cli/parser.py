"""The ``mobilenets`` command line: every subcommand's arguments, and the parser."""

from __future__ import annotations

import argparse
import glob
from collections.abc import Callable
from pathlib import Path

from mobilenets.cli.checks import (
    Parser,
    existing_file,
    existing_folder,
    existing_path,
    integer,
    integers,
    number,
    output_file,
    output_folder,
)
from mobilenets.cli.commands import (
    JOB,
    cmd_bench,
    cmd_demo,
    cmd_env,
    cmd_eval,
    cmd_export,
    cmd_predict,
    cmd_profile,
    cmd_select,
    cmd_train,
    cmd_zoo,
)
from mobilenets.runtime.files import EXPORT_FORMATS, INT8_FORMATS
from mobilenets.runtime.precision import BACKENDS
from mobilenets.train.recipes import RECIPES

# What --weights reads: our checkpoints and state dicts, Google's .tflite, and our exports.
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".tflite", ".onnx", ".pte")


def add_zoo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    p.add_argument("--task", choices=["classification", "detection", "segmentation"], default="classification",
                   help="detection / segmentation: the published SSDLite and LR-ASPP models")  # fmt: skip
    p.add_argument(
        "--plot", metavar="FILE.png", type=output_file(".png"), help="plot published top-1 against multiply-adds"
    )
    p.add_argument("--weights", nargs="?", const="*", metavar="FILTER",
                   help="list the weights catalogue (names as create_model takes them; wildcards)")  # fmt: skip


def add_profile(p: argparse.ArgumentParser) -> None:
    add_model_source(p)
    p.add_argument("--width-mult", type=number(0, 4, low_open=True), default=None, metavar="ALPHA",
                   help="--model: width multiplier (default: the model's)")  # fmt: skip
    p.add_argument("--img-size", type=integer(32, 4096), default=None, help="default: the model's input size")
    p.add_argument("--json", action="store_true", help="one JSON line")


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default="runs/demo", type=output_folder, help="folder for the demo's outputs")


def add_model_source(p: argparse.ArgumentParser, model_option: bool = True) -> None:
    """--weights FILE | --checkpoint DIR | --model NAME [--pretrained SRC]."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--weights",
        metavar="FILE",
        type=existing_file(*WEIGHT_SUFFIXES, folders=(".mlpackage",)),
        help="our checkpoint, a torchvision/timm state dict, a .tflite or our .onnx export",
    )
    g.add_argument("--checkpoint", metavar="DIR", type=existing_path, help="a `mobilenets train` output folder")
    if model_option:
        g.add_argument("--model", metavar="NAME", help="a model name (see `mobilenets zoo`)")
        p.add_argument("--pretrained", metavar="SRC", help="torchvision, timm or a weights file")


def image_source(text: str) -> str:
    """An image file, or (for --output) a folder, a glob pattern or a list of paths: something that exists
    or a pattern."""
    if not Path(text).exists() and not glob.has_magic(text):
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return text


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", type=image_source,
                   help="image files; with --output one SOURCE: folder, glob, .txt/.csv/.parquet list")  # fmt: skip
    add_model_source(p)
    p.add_argument("--top-k", type=integer(1), default=5)
    p.add_argument("--json", action="store_true", help="print JSON (detection and segmentation always do)")
    p.add_argument(
        "--save", metavar="DIR", help="detection / segmentation: draw the boxes or mask into DIR/<image>.png"
    )
    p.add_argument("--score-thresh", type=number(0, 1), default=0.3, help="detection: the lowest score shown")
    job = p.add_argument_group('prediction into Parquet (docs: "Prediction at scale")')
    job.add_argument("--output", metavar="DIR", type=output_folder, help="write one row per image of SOURCE here")
    job.add_argument("--engine", choices=["local", "ray"], default=JOB["engine"], help="this machine, or a Ray cluster")
    job.add_argument("--address", metavar="ADDR", help="Ray cluster: auto, host:port or ray://host:port")
    job.add_argument("--workers", type=integer(0), help="image-reading processes (local, 2) or model actors (ray, 1)")
    job.add_argument("--num-gpus", type=number(0, 64), default=JOB["num_gpus"], metavar="G",
                     help="ray: GPUs per model actor (PyTorch on CUDA; 0.5 shares a GPU by two)")  # fmt: skip
    job.add_argument("--batch-size", type=integer(1), default=JOB["batch_size"])
    job.add_argument("--backend", choices=["auto", *BACKENDS], default=JOB["backend"],
                     help="how a PyTorch classifier runs (auto: the fastest here)")  # fmt: skip
    job.add_argument("--precision", choices=["fp32", "bf16", "int8"], default=JOB["precision"])
    job.add_argument("--embed", nargs="?", const="float16", choices=["float16", "float32"],
                     help="add the pooled features before the classifier (default float16)")  # fmt: skip
    job.add_argument("--rows-per-file", type=integer(1), default=JOB["rows_per_file"])


def add_eval(p: argparse.ArgumentParser) -> None:
    add_model_source(p)
    p.add_argument(
        "--data",
        required=True,
        metavar="D",
        help="class subfolders (D/val or D/test if present) or labels.csv + images/; detection and "
        "segmentation: the validation split of what train --data takes",
    )
    p.add_argument("--label-map", choices=["coco-voc"], default=None,
                   help="segmentation: COCO panoptic ids to the 21 VOC classes (default: as trained)")  # fmt: skip
    p.add_argument("--batch-size", type=integer(1), default=32)
    p.add_argument("--workers", type=integer(0), default=2)
    p.add_argument("--json", action="store_true",
                   help="end with a JSON line: {top1, top5, n}, {map, map50, n} or {miou, pixel_acc, n}")  # fmt: skip


def _batch_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return integer(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be auto or an integer at least 1, got {text!r}") from None


def add_train(p: argparse.ArgumentParser) -> None:

    p.add_argument("--model", required=True, metavar="NAME")
    p.add_argument("--width-mult", type=number(0, 4, low_open=True), default=1.0)
    p.add_argument("--pretrained", metavar="SRC", help="torchvision, timm, or a weights / .tflite file")
    p.add_argument("--data", required=True, help="train/ + val/ folder, or digits, cifar10, cifar100; detection: "
                   "dataset YAML, YOLO or COCO folder; segmentation: YAML or images/ + masks/ folder")  # fmt: skip
    p.add_argument("--output", required=True, metavar="DIR", type=output_folder)
    p.add_argument("--epochs", type=integer(1), default=10)
    p.add_argument("--batch-size", type=_batch_arg, default="auto",
                   help="images per step and process; auto (default): the largest that fits this machine's memory, "
                   "measured by a trial step")  # fmt: skip
    p.add_argument("--img-size", type=integer(16, 4096), default=None,
                   help="default: 32 for digits/CIFAR, else the model's (224; SSDLite 320, LR-ASPP 520)")  # fmt: skip
    p.add_argument("--lr", type=number(0, 10, low_open=True), default=None, help="default: the recipe's")
    p.add_argument(
        "--recipe", choices=list(RECIPES), default=None, help="default: finetune with --pretrained, else short"
    )
    p.add_argument("--workers", type=integer(0), default=2)
    p.add_argument("--seed", type=integer(0), default=0)
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--small-input", action="store_true", help="stem and first downsampling at stride 1")
    p.add_argument("--strict-data", action="store_true", help="refuse to start if any image is unreadable")
    p.add_argument("--resume", action="store_true", help="continue from DIR/last.pt")
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last memory format (default: on; faster on CPU and GPU)",
    )
    p.add_argument("--clip-grad", type=number(0, low_open=True), default=None, metavar="NORM")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun")
    p.add_argument("--label-map", choices=["coco-voc"], default=None,
                   help="segmentation: COCO panoptic mask ids to torchvision's 21 VOC classes")  # fmt: skip


def add_export(p: argparse.ArgumentParser, quantize: bool = False) -> None:
    """``export``'s arguments; ``quantize``'s are the same with ``--int8`` implied and the int8 formats only."""
    add_model_source(p)
    p.add_argument("--format", choices=INT8_FORMATS if quantize else EXPORT_FORMATS, default="onnx",
                   help="tflite (LiteRT), pte (ExecuTorch) and coreml are for phones")  # fmt: skip
    p.add_argument("--output", required=True, metavar="PATH", type=output_file())
    p.add_argument("--img-size", type=integer(32, 4096), default=None, help="default: the weights' input size")
    if quantize:
        p.set_defaults(int8=True)
    else:
        p.add_argument("--int8", action="store_true", help="int8 (onnx: QDQ; tflite, pte: PT2E; coreml: weights only)")
    p.add_argument("--channels-last-input", action="store_true", help="phone formats: NHWC input, as camera buffers")
    p.add_argument("--calib", metavar="DIR", type=existing_folder, help="calibration images (searched recursively)")
    p.add_argument("--calib-size", type=integer(1), default=128, metavar="N")
    p.add_argument("--recalibrate", action="store_true",
                   help="int8 of a quantized TFLite: calibrate on --calib, not its own quantization")  # fmt: skip
    p.add_argument("--weight-bits", choices=["auto", "7", "8"], default="auto",
                   help="int8 weight bits: 8 for CPUs with VNNI/AMX/ARM dot-product, 7 for any CPU "
                   "(auto: what this CPU runs exactly)")  # fmt: skip
    p.add_argument(
        "--max-drop",
        type=number(0, 100),
        default=None,
        metavar="POINTS",
        help="int8 onnx, tflite, pte: keep the most sensitive layers float until top-1 on --val is within POINTS",
    )
    p.add_argument("--val", metavar="DIR", help="labelled images for --max-drop (as eval --data takes)")
    p.add_argument("--qat", metavar="DATA", help="quantization-aware fine-tuning on DATA (as train --data takes)")
    p.add_argument("--qat-epochs", type=integer(1), default=1, metavar="N")
    p.add_argument("--qat-lr", type=number(0, 10, low_open=True), default=1e-3, metavar="LR")


def add_quantize(p: argparse.ArgumentParser) -> None:
    add_export(p, quantize=True)


def add_env(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="end with one JSON line (cpu, isa, backends, precisions, ...)")


def add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", nargs="+", default=["mobilenet_v3_large"], metavar="NAME")
    p.add_argument("--backends", default="eager,fused,onnxruntime,openvino")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, int8 (each where it runs)")
    p.add_argument("--batch-sizes", type=integers(1), default=[1, 32])
    p.add_argument("--threads", type=integer(1, 256), help="default: 2, or fewer where OMP_NUM_THREADS says so")
    p.add_argument("--img-size", type=integer(32, 4096), default=224)
    p.add_argument("--repeats", type=integer(1), default=20)
    p.add_argument(
        "--calib",
        metavar="DIR",
        type=existing_folder,
        help="int8 calibration images (default: random inputs; latency only)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", metavar="FILE", type=output_file(".csv"))
    p.add_argument("--plot", metavar="FILE.png", type=output_file(".png"))


def add_select(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-ms", type=number(0, low_open=True), required=True)
    p.add_argument("--backend", default="onnxruntime", choices=["eager", "fused", "compile", "onnxruntime", "openvino"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    p.add_argument("--threads", type=integer(1, 256), help="default: 2, or fewer where OMP_NUM_THREADS says so")
    p.add_argument("--repeats", type=integer(1), default=10)


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "zoo": ("published configurations with our parameter and multiply-add counts", add_zoo, cmd_zoo),
    "profile": ("parameters, multiply-adds and size of any model, width and input size", add_profile, cmd_profile),
    "train": ("train or fine-tune on images (torchrun for many processes)", add_train, cmd_train),
    "predict": ("top-k classes of images", add_predict, cmd_predict),
    "eval": ("top-1 / top-5 on a folder of images", add_eval, cmd_eval),
    "export": ("export to ONNX, LiteRT, ExecuTorch, Core ML (int8 too), TorchScript or PT2", add_export, cmd_export),
    "quantize": (
        "int8 file: what export --int8 writes (calibrated, or a quantized TFLite's own quantization)",
        add_quantize,
        cmd_export,
    ),
    "bench": ("latency per backend on this device, torchvision as the baseline", add_bench, cmd_bench),
    "select": ("which MobileNets fit a latency budget on this device", add_select, cmd_select),
    "env": ("versions, the CPU and its features, and which backends and precisions work here", add_env, cmd_env),
    "demo": ("the main job, offline: train, evaluate and profile a small model", add_demo, cmd_demo),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mobilenets", description="MobileNetV1 to V5: choose, train, evaluate, quantize, export and deploy."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(run=run)
    return parser
