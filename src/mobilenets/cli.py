"""The ``mobilenets`` command: one entry point with subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one sentence, exit status 2."""


def cmd_zoo(args: argparse.Namespace) -> None:
    from .zoo import plot, render, zoo_rows

    rows = zoo_rows()
    print(render(rows, args.format))
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


def add_zoo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    p.add_argument("--plot", metavar="FILE.png", help="plot published top-1 against multiply-adds")


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
    return load_classifier(
        args.weights, args.checkpoint, getattr(args, "model", None), getattr(args, "pretrained", None)
    )


def cmd_predict(args: argparse.Namespace) -> None:
    import json

    from .evaluate import predict_images

    if args.top_k < 1:
        raise UserError("--top-k must be at least 1.")
    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        raise UserError(f"No such image file: {', '.join(missing)}.")
    results = predict_images(_classifier(args), args.images, args.top_k)
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
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_eval(args: argparse.Namespace) -> None:
    import json

    from .evaluate import evaluate

    clf = _classifier(args)
    result = evaluate(clf, args.data, batch_size=args.batch_size, workers=args.workers)
    for path in result["skipped"]:
        print(f"skipped unreadable image: {path}", file=sys.stderr)
    print(
        f"{clf.description}: top-1 {result['top1']:.2%}, top-5 {result['top5']:.2%} "
        f"on {result['n']} images ({len(result['skipped'])} skipped)"
    )
    if args.json:
        print(json.dumps({k: result[k] for k in ("top1", "top5", "n")}))


def add_eval(p: argparse.ArgumentParser) -> None:
    add_model_source(p)
    p.add_argument(
        "--data",
        required=True,
        metavar="D",
        help="class subfolders (D/val or D/test if present) or labels.csv + images/",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", action="store_true", help="end with a JSON line {top1, top5, n}")


def cmd_train(args: argparse.Namespace) -> None:
    from .train import TrainConfig, train

    cfg = TrainConfig(
        model=args.model, data=args.data, output=args.output, width_mult=args.width_mult,
        pretrained=args.pretrained, epochs=args.epochs, batch_size=args.batch_size, img_size=args.img_size,
        lr=args.lr, recipe=args.recipe, workers=args.workers, seed=args.seed, amp=args.amp,
        small_input=args.small_input, strict_data=args.strict_data, resume=args.resume,
        channels_last=args.channels_last, clip_grad=args.clip_grad, sync_bn=args.sync_bn,
    )  # fmt: skip
    result = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        print(f"best val top-1 {result['best_top1']:.2%} after {result['epochs']} epochs; "
              f"outputs in {result['output']}")  # fmt: skip


def add_train(p: argparse.ArgumentParser) -> None:
    from .recipes import RECIPES

    p.add_argument("--model", required=True, metavar="NAME")
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--pretrained", metavar="SRC", help="torchvision, timm, or a weights / .tflite file")
    p.add_argument("--data", required=True, help="train/ + val/ folder, or digits, cifar10, cifar100")
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--img-size", type=int, default=None, help="default: 32 for digits/CIFAR, else 224")
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


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]] = {
    "zoo": ("published configurations with our parameter and multiply-add counts", add_zoo, cmd_zoo),
    "train": ("train or fine-tune on images (torchrun for many processes)", add_train, cmd_train),
    "predict": ("top-k classes of images", add_predict, cmd_predict),
    "eval": ("top-1 / top-5 on a folder of images", add_eval, cmd_eval),
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
    from .evaluate import DataError
    from .preprocess import BadImageError
    from .train import TrainingError
    from .weights.hub import WeightsError

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (
        UserError,
        TrainingError,
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
