"""The ``mobilenets`` command: one entry point with subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .extras import check


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one sentence, exit status 2."""


def cmd_zoo(args: argparse.Namespace) -> None:
    from .zoo import plot, render, task_zoo_rows, weights_rows, zoo_rows

    if args.plot and args.task != "classification":
        raise UserError("--plot draws the classification zoo (top-1 against multiply-adds); leave out --task.")
    if args.plot:
        check("plots", "zoo --plot")
    if args.weights:
        print(render(weights_rows(args.weights), args.format))
        return
    rows = zoo_rows() if args.task == "classification" else task_zoo_rows(args.task)
    print(render(rows, args.format))
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


def add_zoo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    p.add_argument("--task", choices=["classification", "detection", "segmentation"], default="classification",
                   help="detection / segmentation: the published SSDLite and LR-ASPP models")  # fmt: skip
    p.add_argument("--plot", metavar="FILE.png", help="plot published top-1 against multiply-adds")
    p.add_argument("--weights", nargs="?", const="*", metavar="FILTER",
                   help="list the weights catalogue (names as create_model takes them; wildcards)")  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.output)


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default="runs/demo", help="folder for the demo's outputs")


def add_model_source(p: argparse.ArgumentParser, model_option: bool = True) -> None:
    """--weights FILE | --checkpoint DIR | --model NAME [--pretrained SRC]."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--weights",
        metavar="FILE",
        help="our checkpoint, a torchvision/timm state dict, a .tflite or our .onnx export",
    )
    g.add_argument("--checkpoint", metavar="DIR", help="a `mobilenets train` output folder")
    if model_option:
        g.add_argument("--model", metavar="NAME", help="a model name (see `mobilenets zoo`)")
        p.add_argument("--pretrained", metavar="SRC", help="torchvision, timm or a weights file")


def _classifier(args: argparse.Namespace):
    from .inference import load_classifier

    if getattr(args, "pretrained", None) and not getattr(args, "model", None):
        raise UserError("--pretrained goes with --model NAME.")
    clf = load_classifier(
        args.weights, args.checkpoint, getattr(args, "model", None), getattr(args, "pretrained", None)
    )
    if clf.warning:
        print(f"mobilenets {args.command}: warning: {clf.warning}", file=sys.stderr)
    return clf


def cmd_predict(args: argparse.Namespace) -> None:
    import json

    from .evaluate import predict_images

    if args.top_k < 1:
        raise UserError("--top-k must be at least 1.")
    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        raise UserError(f"No such image file: {', '.join(missing)}.")
    clf = _classifier(args)
    if clf.task != "classification":
        from .dense_eval import predict_dense

        results = predict_dense(clf, args.images, args.save, args.score_thresh)
        print(json.dumps(results if len(results) > 1 else results[0]))
        return
    if args.save:
        raise UserError("--save draws boxes or masks; it is for detection and segmentation models.")
    results = predict_images(clf, args.images, args.top_k)
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0]))
        return
    for r in results:
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['prob']:7.2%}  {t['index']:4d}  {t['name']}")


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_source(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON (detection and segmentation always do)")
    p.add_argument(
        "--save", metavar="DIR", help="detection / segmentation: draw the boxes or mask into DIR/<image>.png"
    )
    p.add_argument("--score-thresh", type=float, default=0.3, help="detection: the lowest score shown")


def cmd_eval(args: argparse.Namespace) -> None:
    import json

    from .evaluate import evaluate

    clf = _classifier(args)
    if clf.task != "classification":
        from .dense_eval import evaluate_dense

        result = evaluate_dense(clf, args.data, args.label_map, args.batch_size, args.workers)
        keys = ("map", "map50", "n") if clf.task == "detection" else ("miou", "pixel_acc", "n")
    else:
        if args.label_map:
            raise UserError("--label-map is for segmentation models.")
        result = evaluate(clf, args.data, batch_size=args.batch_size, workers=args.workers)
        keys = ("top1", "top5", "n")
    for path in result["skipped"]:
        print(f"skipped unreadable image: {path}", file=sys.stderr)
    label = {"top1": "top-1", "top5": "top-5", "map": "mAP", "map50": "mAP@.5", "miou": "mIoU",
             "pixel_acc": "pixel accuracy"}  # fmt: skip
    shown = ", ".join(f"{label[k]} {result[k]:.2%}" for k in keys[:2])
    print(f"{clf.description}: {shown} on {result['n']} images ({len(result['skipped'])} skipped)")
    if args.json:
        print(json.dumps({k: result[k] for k in keys}))


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
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", action="store_true",
                   help="end with a JSON line: {top1, top5, n}, {map, map50, n} or {miou, pixel_acc, n}")  # fmt: skip


def cmd_train(args: argparse.Namespace) -> None:
    from .train import TrainConfig, train

    cfg = TrainConfig(
        model=args.model, data=args.data, output=args.output, width_mult=args.width_mult,
        pretrained=args.pretrained, epochs=args.epochs, batch_size=args.batch_size, img_size=args.img_size,
        lr=args.lr, recipe=args.recipe, workers=args.workers, seed=args.seed, amp=args.amp,
        small_input=args.small_input, strict_data=args.strict_data, resume=args.resume,
        channels_last=args.channels_last, clip_grad=args.clip_grad, sync_bn=args.sync_bn, label_map=args.label_map,
    )  # fmt: skip
    result = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"best val {result['best_label']} {result['best']:.2%} after {result['epochs']} epochs; "
              f"outputs in {result['output']}")  # fmt: skip


def _batch_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or an integer, got {text!r}") from None


def add_train(p: argparse.ArgumentParser) -> None:
    from .recipes import RECIPES

    p.add_argument("--model", required=True, metavar="NAME")
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--pretrained", metavar="SRC", help="torchvision, timm, or a weights / .tflite file")
    p.add_argument("--data", required=True, help="train/ + val/ folder, or digits, cifar10, cifar100; detection: "
                   "dataset YAML, YOLO or COCO folder; segmentation: YAML or images/ + masks/ folder")  # fmt: skip
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=_batch_arg, default="auto",
                   help="images per step and process; auto (default): the largest that fits this machine's memory, "
                   "measured by a trial step")  # fmt: skip
    p.add_argument("--img-size", type=int, default=None,
                   help="default: 32 for digits/CIFAR, else the model's (224; SSDLite 320, LR-ASPP 520)")  # fmt: skip
    p.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    p.add_argument(
        "--recipe", choices=list(RECIPES), default=None, help="default: finetune with --pretrained, else short"
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--clip-grad", type=float, default=None, metavar="NORM")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under torchrun")
    p.add_argument("--label-map", choices=["coco-voc"], default=None,
                   help="segmentation: COCO panoptic mask ids to torchvision's 21 VOC classes")  # fmt: skip


def _split_ints(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, got {text!r}.") from None


def cmd_export(args: argparse.Namespace) -> None:
    import json

    from .deploy.export import export, exportable
    from .deploy.mobile import export_mobile
    from .deploy.quantize import export_int8

    if args.weights and args.weights.endswith((".onnx", ".pte", ".mlpackage")):
        raise UserError("--weights is already an export; export from a checkpoint, weights or --model.")
    if args.calib and not args.int8:
        raise UserError("--calib goes with --int8.")
    if args.int8 and not args.calib:
        raise UserError("--int8 needs --calib DIR (images to calibrate on).")
    if args.int8 and args.format in ("torchscript", "pt2"):
        raise UserError(f"--int8 is not offered for {args.format}; use onnx, tflite, pte or coreml.")
    onnx_only = [f for f, on in (("--weight-bits", args.weight_bits != "auto"), ("--qat", args.qat)) if on]
    if onnx_only and (not args.int8 or args.format != "onnx"):
        raise UserError(f"{onnx_only[0]} goes with --int8 --format onnx.")
    if args.channels_last_input and args.format not in ("tflite", "pte", "coreml"):
        raise UserError("--channels-last-input is for the phone formats (tflite, pte, coreml).")
    model = _classifier(args).model
    if model is None:
        raise UserError("--weights is already an export; export from a checkpoint, weights or --model.")
    model = exportable(model, args.format, args.int8)  # a segmentation model's logits; refusals in one sentence
    if args.format in ("tflite", "pte", "coreml"):
        report = export_mobile(model, args.output, args.format, args.img_size, calib=args.calib,
                               calib_size=args.calib_size, channels_last_input=args.channels_last_input)  # fmt: skip
    elif args.int8:
        report = export_int8(model, args.output, args.calib, args.img_size, args.calib_size,
                             args.qat, args.qat_epochs, args.qat_lr, args.weight_bits)  # fmt: skip
    else:
        report = export(model, args.output, args.format, args.img_size)
    print(json.dumps(report))


def add_export(p: argparse.ArgumentParser) -> None:
    add_model_source(p)
    p.add_argument("--format", choices=["onnx", "torchscript", "pt2", "tflite", "pte", "coreml"], default="onnx",
                   help="tflite (LiteRT), pte (ExecuTorch) and coreml are for phones")  # fmt: skip
    p.add_argument("--output", required=True, metavar="PATH")
    p.add_argument("--img-size", type=int, default=None, help="default: the weights' input size")
    p.add_argument("--int8", action="store_true", help="int8 (onnx: QDQ; tflite, pte: PT2E; coreml: weights only)")
    p.add_argument("--channels-last-input", action="store_true", help="phone formats: NHWC input, as camera buffers")
    p.add_argument("--calib", metavar="DIR", help="calibration images (searched recursively)")
    p.add_argument("--calib-size", type=int, default=128, metavar="N")
    p.add_argument("--weight-bits", choices=["auto", "7", "8"], default="auto",
                   help="int8 weight bits: 8 for CPUs with VNNI/AMX/ARM dot-product, 7 for any CPU "
                   "(auto: what this CPU runs exactly)")  # fmt: skip
    p.add_argument("--qat", metavar="DATA", help="quantization-aware fine-tuning on DATA (as train --data takes)")
    p.add_argument("--qat-epochs", type=int, default=1, metavar="N")
    p.add_argument("--qat-lr", type=float, default=1e-3, metavar="LR")


def cmd_env(args: argparse.Namespace) -> None:
    import json

    from .env import environment, render

    info = environment()
    print(render(info))
    if args.json:
        print(json.dumps(info))


def add_env(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="end with one JSON line (cpu, isa, backends, precisions, ...)")


def cmd_bench(args: argparse.Namespace) -> None:
    import csv
    import json
    from dataclasses import asdict

    from .deploy.bench import bench, bench_header, plot_latency, render_rows
    from .models.registry import model_entry
    from .models.tasks import task_backbone, task_of

    for name in args.model:
        task_backbone(name) if task_of(name) != "classification" else model_entry(name)
    if args.threads < 1:
        raise UserError("--threads must be at least 1.")
    if args.plot:
        check("plots", "bench --plot")
    rows = bench(args.model, [b for b in args.backends.split(",") if b], _split_ints(args.batch_sizes, "--batch-sizes"),
                 args.threads, args.img_size, args.repeats, args.calib,
                 tuple(p for p in args.precision.split(",") if p))  # fmt: skip
    print(bench_header(args.threads), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
    else:
        print(render_rows(rows))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
    if args.plot:
        plot_latency(rows, args.plot)


def add_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", nargs="+", default=["mobilenet_v3_large"], metavar="NAME")
    p.add_argument("--backends", default="eager,fused,onnxruntime,openvino")
    p.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, int8 (each where it runs)")
    p.add_argument("--batch-sizes", default="1,32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--calib", metavar="DIR", help="int8 calibration images (default: random inputs; latency only)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", metavar="FILE")
    p.add_argument("--plot", metavar="FILE.png")


def cmd_select(args: argparse.Namespace) -> None:
    from .deploy.bench import bench_header, select

    rows = select(args.budget_ms, args.backend, args.precision, args.threads, args.repeats)
    fits = [r for r in rows if r.fits]
    print(bench_header(args.threads))
    print(
        f"{len(fits)} of {len(rows)} published MobileNets run within {args.budget_ms:g} ms here "
        f"({args.backend} {args.precision}, {args.threads} threads, batch 1):"
    )
    print(f"{'config':<22} {'top-1':>6} {'latency ms':>10} {'MAdds (M)':>9}")
    for r in fits:
        print(f"{r.config:<22} {r.published_top1:>6.1f} {r.median_ms:>10.2f} {r.macs_m:>9g}")
    if not fits:
        r = rows[0]
        print(f"none; the fastest is {r.config} at {r.median_ms:.2f} ms")


def add_select(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-ms", type=float, required=True)
    p.add_argument("--backend", default="onnxruntime", choices=["eager", "fused", "compile", "onnxruntime", "openvino"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "zoo": ("published configurations with our parameter and multiply-add counts", add_zoo, cmd_zoo),
    "train": ("train or fine-tune on images (torchrun for many processes)", add_train, cmd_train),
    "predict": ("top-k classes of images", add_predict, cmd_predict),
    "eval": ("top-1 / top-5 on a folder of images", add_eval, cmd_eval),
    "export": ("export to ONNX, LiteRT, ExecuTorch, Core ML (int8 too), TorchScript or PT2", add_export, cmd_export),
    "bench": ("latency per backend on this device, torchvision as the baseline", add_bench, cmd_bench),
    "select": ("which MobileNets fit a latency budget on this device", add_select, cmd_select),
    "env": ("versions, the CPU and its features, and which backends and precisions work here", add_env, cmd_env),
    "demo": ("the main job, offline: train, evaluate and profile a small model", add_demo, cmd_demo),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilenets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .deploy.export import ExportError
    from .extras import MissingExtra
    from .preprocess import BadImageError, DataError
    from .train import TrainingError
    from .weights.hub import WeightsError

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (
        UserError,
        MissingExtra,
        TrainingError,
        ExportError,
        WeightsError,
        DataError,
        BadImageError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
    ) as exc:
        print(f"mobilenets {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as exc:  # our validation errors are full sentences
        if os.environ.get("MOBILENETS_DEBUG"):
            raise
        print(f"mobilenets {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mobilenets {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
