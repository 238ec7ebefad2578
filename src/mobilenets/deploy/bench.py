"""``mobilenets bench`` and ``mobilenets select``: latency per backend on this device, baseline in the same run."""

from __future__ import annotations

import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mobilenets.deploy.contract import model_metadata
from mobilenets.deploy.detection import detection_onnx
from mobilenets.deploy.mobile import phone_bytes
from mobilenets.deploy.predictor import build_runner
from mobilenets.deploy.wrappers import DetectionOutputs, SegmentationLogits
from mobilenets.evaluate.zoo import PUBLISHED, Published
from mobilenets.models.fuse import fuse
from mobilenets.models.registry import build_model
from mobilenets.models.tasks import build_task_model, task_of
from mobilenets.runtime.detection import phone_detector
from mobilenets.runtime.files import BACKEND_FORMATS
from mobilenets.runtime.precision import BACKENDS, PRECISION_BACKENDS, available, check_precision, install_hint
from mobilenets.runtime.runners import measure_ms, onnx_session, open_runner, torch_runner
from mobilenets.util.cpu import cpu_info, default_threads
from mobilenets.util.errors import ExportError, PrecisionError
from mobilenets.util.extras import needs
from mobilenets.weights.convert import TORCHVISION_FAMILIES

TORCHVISION_TASKS = ("ssdlite320_mobilenet_v3_large", "lraspp_mobilenet_v3_large")
DETECTION_BACKENDS = ("eager", "onnxruntime", "litert", "executorch")  # the whole detector, NMS included


def _detect_batch(model: Any) -> Any:
    """A detector as a batch function: each image of an NCHW batch in turn (torchvision's list input)."""
    run = torch_runner(model, task="detection")
    return lambda x: run([torch.from_numpy(im) for im in x])


def _torchvision_task_runner(name: str) -> Any:
    import torchvision

    if name.startswith("ssdlite"):
        return _detect_batch(torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights_backbone=None))
    run = torch_runner(
        torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights_backbone=None), task="segmentation"
    )
    return lambda x: run(torch.from_numpy(x)).numpy()


def _dense_runners(name: str, pairs: list[tuple[str, str]], threads: int, calib: Any, img_size: int) -> dict:
    """Detection: the whole model (resizing, decoding, NMS) in PyTorch, as our ONNX graph in ONNX Runtime, and
    as the phone file in its runtime with NMS after it (as an app runs it); fp32, [0, 1] images of
    ``img_size``. Segmentation: the per-pixel logits on every backend, as classifiers."""
    model = build_task_model(name).eval()
    if model.task == "segmentation":
        wrapped = SegmentationLogits(model).eval()
        cache: dict[str, bytes] = {}
        return {(b, p): build_runner(wrapped, b, threads, cache, calib, img_size, p) for b, p in pairs}
    runners: dict[tuple[str, str], Any] = {}
    for backend, precision in pairs:
        if backend not in DETECTION_BACKENDS or precision != "fp32":
            continue
        if backend == "eager":
            runners[(backend, precision)] = _detect_batch(model)
        elif backend in ("litert", "executorch"):
            outputs = DetectionOutputs(model).eval()
            x = torch.zeros(1, 3, outputs.size, outputs.size)
            fmt = BACKEND_FORMATS[backend]
            run = open_runner(backend, phone_bytes(fuse(outputs), fmt, x, None), "fp32", threads)
            detect = phone_detector(lambda b, r=run: torch.from_numpy(r(b.numpy())), outputs.size, outputs.selection)
            runners[(backend, precision)] = lambda x, d=detect: d([torch.from_numpy(im) for im in x])
        else:
            session = onnx_session(detection_onnx(model, model_metadata(model))[0], threads)
            runners[(backend, precision)] = lambda x, s=session: [s.run(None, {"image": im}) for im in x]
    return runners


@dataclass
class BenchRow:
    model: str
    backend: str
    precision: str
    batch: int
    median_ms: float
    p90_ms: float
    images_per_s: float
    vs_torchvision_eager: float | None
    published_top1: float | None


def published_top1(model: str, width: float = 1.0, resolution: int = 224, minimalistic: bool = False) -> float | None:
    """The best-sourced published top-1 for a configuration (papers first, then TF-slim)."""
    for pub in PUBLISHED:
        if (pub.model, pub.width_mult, pub.resolution, pub.minimalistic) == (model, width, resolution, minimalistic):
            return pub.top1
    return None


def _stats(times: list[float], batch: int) -> tuple[float, float, float]:
    median = statistics.median(times)
    p90 = float(np.percentile(times, 90))
    return median, p90, batch * 1e3 / median


def bench_pairs(backends: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """The (backend, precision) pairs to measure: each backend at each precision it computes. Refuses
    unknown or missing backends and precisions this CPU cannot keep, in one sentence."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise PrecisionError(f"Unknown backend(s) {', '.join(unknown)}; use {', '.join(BACKENDS)}.")
    missing = [b for b in backends if not available(b)]
    if missing:
        raise PrecisionError(f"Backend(s) {', '.join(missing)} not installed: {install_hint(missing)}.")
    for precision in precisions:
        check_precision(precision)
    pairs = [(b, p) for p in precisions for b in backends if b in PRECISION_BACKENDS[p]]
    if not pairs:
        raise PrecisionError(f"None of the backends {', '.join(backends)} runs {', '.join(precisions)}.")
    return pairs


def thread_count(threads: int) -> str:
    """``"1 thread"``, ``"2 threads"``."""
    return f"{threads} thread{'s' if threads != 1 else ''}"


def bench_header(threads: int | None = None) -> str:
    """The machine a benchmark ran on, for the top of its table."""
    cpu, count = cpu_info(), thread_count(threads or default_threads())
    return f"# CPU: {cpu.summary}; torch kernels {cpu.torch_kernels}; torch {torch.__version__}; {count}"


def bench(models: list[str], backends: list[str], batch_sizes: list[int], threads: int | None = None,
          img_size: int = 224, repeats: int = 20, calib: Any = None,
          precisions: tuple[str, ...] = ("fp32",)) -> list[BenchRow]:  # fmt: skip
    """Median / p90 latency and images/s per (model, backend, precision, batch), torchvision's eager fp32
    model measured in the same run as the baseline (``vs_torchvision_eager`` = our latency / its latency).
    Backends that do not compute a precision are left out of its rows."""
    pairs = bench_pairs(backends, list(precisions))
    if any(b < 1 for b in batch_sizes):
        raise ExportError("--batch-sizes must be positive integers.")
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    rows: list[BenchRow] = []
    calib = calib if calib is not None else torch.randn(16, 3, img_size, img_size)
    for name in models:
        if task_of(name) != "classification":
            runners = _dense_runners(name, pairs, threads, calib, img_size)
        else:
            model = build_model(name).eval()
            cache: dict[str, bytes] = {}
            runners = {(b, p): build_runner(model, b, threads, cache, calib, img_size, p) for b, p in pairs}
        if name in TORCHVISION_FAMILIES:
            import torchvision

            ref = getattr(torchvision.models, name)().eval()
            runners = {("torchvision eager", "fp32"): torch_runner(ref), **runners}
        elif name in TORCHVISION_TASKS:
            runners = {("torchvision eager", "fp32"): _torchvision_task_runner(name), **runners}
        for batch in batch_sizes:
            x = np.random.default_rng(0).standard_normal((batch, 3, img_size, img_size), dtype=np.float32)
            if task_of(name) == "detection":  # images in [0, 1]
                x = np.random.default_rng(0).random((batch, 3, img_size, img_size), dtype=np.float32)
            base = None
            for (backend, precision), run in runners.items():
                median, p90, ips = _stats(measure_ms(run, x, repeats), batch)
                if backend == "torchvision eager":
                    base = median
                rows.append(BenchRow(name, backend, precision, batch, round(median, 3), round(p90, 3), round(ips, 1),
                                     round(median / base, 3) if base else None, published_top1(name)))  # fmt: skip
    return rows


def render_rows(rows: list[Any]) -> str:
    dicts = [asdict(r) for r in rows]
    keys = list(dicts[0])
    body = [[("" if d[k] is None else str(d[k])) for k in keys] for d in dicts]
    widths = [max(len(x) for x in col) for col in zip(keys, *body)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip() for line in [keys, *body])


def plot_latency(rows: list[BenchRow], path: str) -> None:
    """Latency (batch 1) against published top-1: the papers' trade-off, on this device."""
    with needs("bench --plot"):
        import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for backend, precision in sorted({(r.backend, r.precision) for r in rows}):
        pts = [(r.median_ms, r.published_top1, r.model) for r in rows
               if (r.backend, r.precision) == (backend, precision) and r.batch == min(x.batch for x in rows)
               and r.published_top1]  # fmt: skip
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", label=f"{backend} {precision}")
            for ms, top1, model in pts:
                ax.annotate(model.replace("mobilenet_", ""), (ms, top1), fontsize=7)
    ax.set(xlabel="latency (ms, this device)", ylabel="published ImageNet top-1 (%)", xscale="log",
           title="MobileNets: accuracy vs latency")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class SelectRow:
    config: str
    published_top1: float
    median_ms: float
    macs_m: float
    fits: bool


def _grid() -> list[Published]:
    seen, grid = set(), []
    for pub in PUBLISHED:
        key = (pub.model, pub.width_mult, pub.resolution, pub.minimalistic)
        if key not in seen:
            seen.add(key)
            grid.append(pub)
    return grid


def select(budget_ms: float, backend: str = "onnxruntime", precision: str = "fp32", threads: int | None = None,
           repeats: int = 10) -> list[SelectRow]:  # fmt: skip
    """Measure every published configuration here; those within ``budget_ms`` (batch 1) first, best
    published top-1 first, then the rest by latency."""
    if not budget_ms > 0:
        raise ExportError(f"--budget-ms must be positive, got {budget_ms}.")
    bench_pairs([backend], [precision])
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    rows = []
    for pub in tqdm(_grid(), desc="measuring", disable=not sys.stderr.isatty()):
        kwargs = {"minimalistic": True} if pub.minimalistic else {}
        model = build_model(pub.model, width_mult=pub.width_mult, **kwargs).eval()
        size = pub.resolution
        run = build_runner(model, backend, threads, {}, torch.randn(8, 3, size, size), size, precision)
        x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
        median = statistics.median(measure_ms(run, x, repeats))
        rows.append(SelectRow(pub.label, pub.top1, round(median, 3), pub.macs_m, median <= budget_ms))
    fits = sorted((r for r in rows if r.fits), key=lambda r: -r.published_top1)
    rest = sorted((r for r in rows if not r.fits), key=lambda r: r.median_ms)
    return fits + rest
