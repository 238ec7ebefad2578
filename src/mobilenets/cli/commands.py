"""What each ``mobilenets`` command does with its parsed arguments: check them, call the package, print."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mobilenets.cli.checks import existing_file, warn
from mobilenets.util.cpu import default_threads
from mobilenets.util.errors import MobilenetsError
from mobilenets.util.extras import check


class UserError(MobilenetsError):
    """A mistake in the command line or its inputs: printed as one sentence, exit status 2."""


def cmd_zoo(args: argparse.Namespace) -> None:
    from mobilenets.evaluate.zoo import plot, render, task_zoo_rows, weights_rows, zoo_rows

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


def cmd_profile(args: argparse.Namespace) -> None:
    """Counts of ``--model NAME`` at any ``--width-mult`` (built on the meta device unless weights are loaded:
    shapes only), or of the model a checkpoint or weights file holds; multiply-adds at ``--img-size``."""
    import contextlib
    import json

    import torch

    from mobilenets.models.profile import profile
    from mobilenets.weights.factory import create_model

    if args.width_mult is not None and not args.model:
        raise UserError("--width-mult goes with --model NAME; a checkpoint or weights file has its own width.")
    width = {} if args.width_mult is None else {"width_mult": args.width_mult}
    if args.model:
        with contextlib.nullcontext() if args.pretrained else torch.device("meta"):
            model = create_model(args.model, pretrained=args.pretrained, **width)
    else:
        model = _classifier(args, need_classes=False).model
        if model is None:
            raise UserError("--weights is already an export; profile a checkpoint, weights or --model.")
    name = args.model or args.weights or args.checkpoint
    size = args.img_size or model.pretrained_cfg["input_size"][-1]
    counts = profile(model, size)
    row = {"model": name, **width, "input_size": size, "params": counts.params, "params_no_bn": counts.params_no_bn,
           "macs": counts.macs, "fp32_mb": round(counts.size_mb, 2)}  # fmt: skip
    print(json.dumps(row) if args.json else
          f"{name}{f' (width {args.width_mult:g})' if width else ''} at {size}x{size}: {counts.params / 1e6:.2f} M "
          f"parameters ({counts.params_no_bn / 1e6:.2f} M without BN), {counts.macs / 1e6:.1f} M multiply-adds, "
          f"{counts.size_mb:.1f} MB in fp32")  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> None:
    from mobilenets.demo import run_demo

    run_demo(args.output)


def _classifier(args: argparse.Namespace, need_classes: bool = True):
    from mobilenets.runtime.classifier import load_classifier

    if getattr(args, "pretrained", None) and not getattr(args, "model", None):
        raise UserError("--pretrained goes with --model NAME.")
    clf = load_classifier(args.weights, args.checkpoint, getattr(args, "model", None),
                          getattr(args, "pretrained", None), need_classes)  # fmt: skip
    if clf.warning:
        warn(args.command, clf.warning)
    return clf


# predict's options for a job into Parquet (--output), with their defaults
JOB = {"engine": "local", "address": None, "workers": None, "batch_size": 32, "backend": "auto",
       "precision": "fp32", "embed": None, "rows_per_file": 10_000, "num_gpus": 0}  # fmt: skip


def _predict_job(args: argparse.Namespace) -> None:
    """``predict SOURCE --output DIR``: every image of SOURCE into Parquet (:mod:`mobilenets.batch`)."""
    import json

    from mobilenets.batch import JobOptions, predict_to_parquet

    check("parquet", "predict --output")
    if args.engine == "ray":
        check("ray", "predict --engine ray")
    if len(args.images) != 1:
        raise UserError("With --output give one SOURCE: a folder, a glob in quotes or a .txt/.csv/.parquet list.")
    if args.save or args.json:
        raise UserError("--save and --json are for a few images; with --output every row goes to Parquet.")
    if args.engine == "ray" and args.workers == 0:
        raise UserError("--workers: a Ray job needs at least 1 model actor.")
    if args.address and args.engine != "ray":
        raise UserError("--address goes with --engine ray.")
    if args.num_gpus and args.engine != "ray":
        raise UserError("--num-gpus goes with --engine ray (each model actor's GPUs).")
    chosen = ("weights", "checkpoint", "model", "pretrained", "backend", "precision", "top_k", "score_thresh", "embed")
    options = JobOptions(**{k: getattr(args, k) for k in chosen}, device="cuda" if args.num_gpus else "cpu")
    job = {k: getattr(args, k) for k in ("engine", "address", "workers", "batch_size", "rows_per_file", "num_gpus")}
    summary = predict_to_parquet(args.images[0], args.output, options, **job)
    for warning in summary.pop("warnings"):
        warn("predict", warning)
    print(json.dumps(summary))


def cmd_predict(args: argparse.Namespace) -> None:
    import json

    from mobilenets.evaluate.classify import predict_images

    if args.output:
        _predict_job(args)
        return
    given = [k for k, default in JOB.items() if getattr(args, k) != default]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} goes with --output DIR (prediction into Parquet).")
    for image in args.images:  # the checks IMAGE had before it could name a SOURCE for --output
        try:
            existing_file()(image)
        except argparse.ArgumentTypeError as exc:
            hint = ", or --output DIR to predict all of it" if Path(image).is_dir() else ""
            raise UserError(f"IMAGE: {exc}{hint}.") from None
    clf = _classifier(args)
    if clf.task != "classification":
        from mobilenets.evaluate.dense import predict_dense

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


def cmd_eval(args: argparse.Namespace) -> None:
    import json

    from mobilenets.evaluate.classify import evaluate

    clf = _classifier(args)
    if clf.task != "classification":
        from mobilenets.evaluate.dense import evaluate_dense

        result = evaluate_dense(clf, args.data, args.label_map, args.batch_size, args.workers)
        keys = ("map", "map50", "n") if clf.task == "detection" else ("miou", "pixel_acc", "n")
    else:
        if args.label_map:
            raise UserError("--label-map is for segmentation models.")
        result = evaluate(clf, args.data, batch_size=args.batch_size, workers=args.workers)
        keys = ("top1", "top5", "n")
    for path in result["skipped"]:
        print(f"skipped unreadable image: {path}", file=sys.stderr)
    for warning in result["warnings"]:
        warn("eval", warning)
    label = {"top1": "top-1", "top5": "top-5", "map": "mAP", "map50": "mAP@.5", "miou": "mIoU",
             "pixel_acc": "pixel accuracy"}  # fmt: skip
    shown = ", ".join(f"{label[k]} {result[k]:.2%}" for k in keys[:2])
    print(f"{clf.description}: {shown} on {result['n']} images ({len(result['skipped'])} skipped)")
    if args.json:
        print(json.dumps({k: result[k] for k in keys}))


def cmd_train(args: argparse.Namespace) -> None:
    from mobilenets.train.config import TrainConfig
    from mobilenets.train.loop import train

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


def cmd_export(args: argparse.Namespace) -> None:
    import json

    from mobilenets.deploy.accuracy_budget import BUDGET_FORMATS
    from mobilenets.deploy.contract import check_output
    from mobilenets.deploy.export import export
    from mobilenets.deploy.mobile import export_mobile
    from mobilenets.deploy.quantize import export_int8
    from mobilenets.deploy.wrappers import exportable

    int8 = "quantize" if args.command == "quantize" else "--int8"  # how this command line asked for int8
    extra = "mobile" if args.format in ("tflite", "pte", "coreml") else "int8" if args.int8 else "onnx"
    if args.format in ("onnx", "tflite", "pte", "coreml"):
        check(extra, f"{args.command} --format {args.format}" + (" --int8" if int8 == "--int8" and args.int8 else ""))
    check_output(args.output, args.format)
    if args.weights and args.weights.endswith((".onnx", ".pte", ".mlpackage")):
        raise UserError("--weights is already an export; export from a checkpoint, weights or --model.")
    if args.calib and not args.int8:
        raise UserError("--calib goes with --int8.")
    if args.int8 and not args.calib and (args.format == "coreml" or not (args.weights or args.pretrained)):
        raise UserError(f"{int8} needs --calib DIR (images to calibrate on); only a quantized TFLite file keeps "
                        "its own quantization without it (onnx, tflite, pte).")  # fmt: skip
    if args.recalibrate and not (args.int8 and args.calib and args.format in ("onnx", "tflite", "pte")):
        raise UserError(f"--recalibrate goes with {int8} --calib DIR (onnx, tflite, pte).")
    if args.int8 and args.format in ("torchscript", "pt2"):
        raise UserError(f"--int8 is not offered for {args.format}; use onnx, tflite, pte or coreml.")
    if (args.max_drop is None) != (args.val is None):
        raise UserError("--max-drop and --val go together: the budget in points and the images to measure it on.")
    if args.max_drop is not None and args.qat:
        raise UserError("--max-drop is for post-training int8; give --qat or --max-drop, not both.")
    onnx_only = [f for f, on in (("--weight-bits", args.weight_bits != "auto"), ("--qat", args.qat)) if on]
    if onnx_only and (not args.int8 or args.format != "onnx"):
        raise UserError(f"{onnx_only[0]} goes with {int8} --format onnx.")
    if args.max_drop is not None and (not args.int8 or args.format not in BUDGET_FORMATS):
        raise UserError(f"--max-drop goes with {int8} and --format onnx, tflite or pte.")
    if args.channels_last_input and args.format not in ("tflite", "pte", "coreml"):
        raise UserError("--channels-last-input is for the phone formats (tflite, pte, coreml).")
    model = _classifier(args, need_classes=False).model
    if model is None:
        raise UserError("--weights is already an export; export from a checkpoint, weights or --model.")
    model = exportable(model, args.format, args.int8)  # a segmentation model's logits; refusals in one sentence
    budget = {"val": args.val, "max_drop": args.max_drop} if args.val else {}
    if args.format in ("tflite", "pte", "coreml"):
        report = export_mobile(model, args.output, args.format, args.img_size, calib=args.calib,
                               calib_size=args.calib_size, channels_last_input=args.channels_last_input,
                               int8=args.int8, recalibrate=args.recalibrate, **budget)  # fmt: skip
    elif args.int8:
        report = export_int8(model, args.output, args.calib, args.img_size, args.calib_size, args.qat, args.qat_epochs,
                             args.qat_lr, args.weight_bits, recalibrate=args.recalibrate, **budget)  # fmt: skip
    else:
        report = export(model, args.output, args.format, args.img_size)
    print(json.dumps(report))


def cmd_env(args: argparse.Namespace) -> None:
    import json

    from mobilenets.deploy.env import environment, render

    info = environment()
    print(render(info))
    if args.json:
        print(json.dumps(info))


def cmd_bench(args: argparse.Namespace) -> None:
    import csv
    import json
    from dataclasses import asdict

    from mobilenets.deploy.bench import bench, bench_header, plot_latency, render_rows
    from mobilenets.models.registry import model_entry
    from mobilenets.models.tasks import task_backbone, task_of

    for name in args.model:
        task_backbone(name) if task_of(name) != "classification" else model_entry(name)
    if args.plot:
        check("plots", "bench --plot")
    rows = bench(args.model, [b for b in args.backends.split(",") if b], args.batch_sizes,
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


def cmd_select(args: argparse.Namespace) -> None:
    from mobilenets.deploy.bench import bench_header, select, thread_count

    threads = args.threads or default_threads()
    rows = select(args.budget_ms, args.backend, args.precision, threads, args.repeats)
    fits = [r for r in rows if r.fits]
    print(bench_header(threads))
    print(
        f"{len(fits)} of {len(rows)} published MobileNets run within {args.budget_ms:g} ms here "
        f"({args.backend} {args.precision}, {thread_count(threads)}, batch 1):"
    )
    print(f"{'config':<22} {'top-1':>6} {'latency ms':>10} {'MAdds (M)':>9}")
    for r in fits:
        print(f"{r.config:<22} {r.published_top1:>6.1f} {r.median_ms:>10.2f} {r.macs_m:>9g}")
    if not fits:
        r = rows[0]
        print(f"none; the fastest is {r.config} at {r.median_ms:.2f} ms")
