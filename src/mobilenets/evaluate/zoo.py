"""Every published MobileNet configuration, with its source, beside our own count.

Each row names the source table it comes from; ``params_convention`` says how that source counted
parameters (the V1 tables and the V3 paper include BN's scale and shift, TF-slim's V2 table counts the
frozen graph, where BN is folded away). Counts are for 1000 classes; sources with 1001 differ by one
classifier row, well inside their rounding.

Left out because no model reproduces them (their neighbours in the same table do): TF-slim's V1 0.75
rows (317/233/162/104M, 2.6% below the paper's own 325M at 224 and our count), its V1 0.25@192
(34M; 41M x (192/224)^2 is 30M), and its V3-Small figures (66M, 2.9M; minimalistic 65M), which
disagree with the V3 paper's Table 3 (56M, 2.5M), with torchvision and with timm.

MobileNetV4 (Qin et al. 2024, Table 5): our models follow the authors' own TF Model Garden spec block
for block, and equal timm's (3,774,024 / 9,715,512 / 32,590,864 / 11,074,648 / 37,764,624 parameters).
The paper's figures for the M and L models sit about 5% below that spec (9.2 vs 9.72M, 10.5 vs 11.07M,
31 vs 32.59M, 35.9 vs 37.76M parameters; 5.9 vs 6.38G and 7.2 vs 7.71G multiply-adds for the L models),
and no subset of the spec (BN, layer scale, attention, head) accounts for it; Conv-S matches. Those rows
carry a ``gap`` note instead of being held to the published rounding.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import io
import json
from dataclasses import asdict, dataclass

import torch

from mobilenets.models.profile import profile
from mobilenets.models.registry import build_model
from mobilenets.models.tasks import build_task_model, task_of
from mobilenets.util.errors import MobilenetsError, WeightsError
from mobilenets.util.extras import needs
from mobilenets.weights.catalog import CATALOG

V1_PAPER = "MobileNetV1 paper (Howard et al. 2017), Table {}"
V2_PAPER = "MobileNetV2 paper (Sandler et al. 2018), Table 4"
V3_PAPER = "MobileNetV3 paper (Howard et al. 2019), Table 3"
SLIM_V1 = "TF-slim mobilenet_v1.md"
SLIM_V2 = "TF-slim mobilenet/README.md (V2 checkpoints)"
SLIM_V3 = "TF-slim mobilenet/README.md (V3 checkpoints)"
V4_PAPER = "MobileNetV4 paper (Qin et al. 2024), Table 5"
V4_GAP = "paper ~5% below its authors' reference spec (which we and timm follow)"
V5_TIMM = "timm mobilenetv5.py (Gemma 3n's encoder; no paper, no top-1)"
_V5_PARAMS = {"mobilenet_v5_300m_enc": 294.126912, "mobilenet_v5_300m": 296.175912, "mobilenet_v5_base": 82.647976}


@dataclass(frozen=True)
class Published:
    """One published configuration and its figures as printed (millions; top-1 in percent)."""

    model: str
    width_mult: float
    resolution: int
    top1: float | None  # None: no published accuracy (MobileNetV5)
    macs_m: float | None  # None: no published count
    params_m: float
    source: str
    minimalistic: bool = False
    params_with_bn: bool = True
    gap: str | None = None  # why our count may differ from the printed figure by more than its rounding
    macs_unit_m: float | None = None  # the printed figure's rounding, where it was printed in another unit

    @property
    def label(self) -> str:
        name = self.model.replace("mobilenet_", "").replace("_", "-")
        return f"{name}{'-min' if self.minimalistic else ''} {self.width_mult:g}@{self.resolution}"


def _slim_v1() -> list[Published]:
    table = {  # width: (params, {resolution: (macs, top1)}), float checkpoints
        1.0: (4.24, {224: (569, 70.9), 192: (418, 70.0), 160: (291, 68.0), 128: (186, 65.2)}),
        0.5: (1.34, {224: (150, 63.3), 192: (110, 61.7), 160: (77, 59.1), 128: (49, 56.3)}),
        0.25: (0.47, {224: (41, 49.8), 160: (21, 45.5), 128: (14, 41.5)}),
    }
    return [
        Published("mobilenet_v1", w, r, top1, macs, params, SLIM_V1)
        for w, (params, grid) in table.items()
        for r, (macs, top1) in grid.items()
    ]


def _slim_v2() -> list[Published]:
    table = {
        1.4: (6.06, {224: (582, 75.0)}),
        1.3: (5.34, {224: (509, 74.4)}),
        1.0: (3.47, {224: (300, 71.8), 192: (221, 70.7), 160: (154, 68.8), 128: (99, 65.3), 96: (56, 60.3)}),
        0.75: (2.61, {224: (209, 69.8), 192: (153, 68.7), 160: (107, 66.4), 128: (69, 63.2), 96: (39, 58.8)}),
        0.5: (1.95, {224: (97, 65.4), 192: (71, 63.9), 160: (50, 61.0), 128: (32, 57.7), 96: (18, 51.2)}),
        0.35: (1.66, {224: (59, 60.3), 192: (43, 58.2), 160: (30, 55.7), 128: (20, 50.8), 96: (11, 45.5)}),
    }
    return [
        Published("mobilenet_v2", w, r, top1, macs, params, SLIM_V2, params_with_bn=False)
        for w, (params, grid) in table.items()
        for r, (macs, top1) in grid.items()
    ]


PUBLISHED: tuple[Published, ...] = (
    Published("mobilenet_v1", 1.0, 224, 70.6, 569, 4.2, V1_PAPER.format(6)),
    Published("mobilenet_v1", 0.75, 224, 68.4, 325, 2.6, V1_PAPER.format(6)),
    Published("mobilenet_v1", 0.5, 224, 63.7, 149, 1.3, V1_PAPER.format(6)),
    Published("mobilenet_v1", 0.25, 224, 50.6, 41, 0.5, V1_PAPER.format(6)),
    Published("mobilenet_v1", 1.0, 192, 69.1, 418, 4.2, V1_PAPER.format(7)),
    Published("mobilenet_v1", 1.0, 160, 67.2, 290, 4.2, V1_PAPER.format(7)),
    Published("mobilenet_v1", 1.0, 128, 64.4, 186, 4.2, V1_PAPER.format(7)),
    Published("mobilenet_v1", 0.5, 160, 60.2, 76, 1.32, V1_PAPER.format(9), params_with_bn=False),
    *_slim_v1(),
    Published("mobilenet_v2", 1.0, 224, 72.0, 300, 3.4, V2_PAPER, params_with_bn=False),
    *_slim_v2(),
    Published("mobilenet_v3_large", 1.0, 224, 75.2, 217, 5.4, SLIM_V3),
    Published("mobilenet_v3_large", 0.75, 224, 73.3, 155, 4.0, V3_PAPER),
    Published("mobilenet_v3_small", 1.0, 224, 67.4, 56, 2.5, V3_PAPER),
    Published("mobilenet_v3_small", 0.75, 224, 65.4, 44, 2.0, V3_PAPER),
    Published("mobilenet_v3_large", 1.0, 224, 72.3, 209, 3.9, SLIM_V3, minimalistic=True),
    Published("mobilenet_v4_conv_small", 1.0, 224, 73.8, 200, 3.8, V4_PAPER, macs_unit_m=100),  # "0.2G"
    Published("mobilenet_v4_conv_medium", 1.0, 256, 79.9, 1000, 9.2, V4_PAPER, gap=V4_GAP),
    Published("mobilenet_v4_conv_large", 1.0, 384, 82.9, 5900, 31, V4_PAPER, gap=V4_GAP),
    Published("mobilenet_v4_hybrid_medium", 1.0, 256, 80.7, 1200, 10.5, V4_PAPER, gap=V4_GAP),
    Published("mobilenet_v4_hybrid_large", 1.0, 384, 83.4, 7200, 35.9, V4_PAPER, gap=V4_GAP),
    *[
        Published(name, 1.0, size, None, None, params, V5_TIMM)
        for name, params in _V5_PARAMS.items()
        for size in (256, 768)
    ],
)


TV_WEIGHTS = "torchvision {} (weights metadata)"


@dataclass(frozen=True)
class PublishedTask:
    """A published detection or segmentation model: its score as printed, counts in millions.

    Only configurations we build exactly are listed: torchvision's two (its weights' metadata gives
    parameters, multiply-adds and score). The V2 and V3 papers' SSDLite / LR-ASPP tables are not here
    (no verified copy of them was available; none is guessed), and the TF Object Detection API's
    released SSDLite checkpoints use another configuration (``ssdlite_mobilenet_v2_coco.config``: 300 px,
    sigmoid scores, TF's anchor generator), so their mAP does not describe our models."""

    model: str
    resolution: int
    metric: str
    score: float
    macs_m: float
    params_m: float
    source: str


PUBLISHED_TASKS: tuple[PublishedTask, ...] = (
    PublishedTask("ssdlite320_mobilenet_v3_large", 320, "box mAP, COCO val2017", 21.3, 583, 3.44006,
                  TV_WEIGHTS.format("SSDLite320_MobileNet_V3_Large_Weights.COCO_V1")),
    PublishedTask("lraspp_mobilenet_v3_large", 520, "mIoU, COCO val2017 in VOC's 21 classes", 57.9, 2086, 3.221538,
                  TV_WEIGHTS.format("LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1")),
)  # fmt: skip


@dataclass(frozen=True)
class TaskZooRow:
    """A published detection or segmentation model with our counts (millions) beside it."""

    model: str
    resolution: int
    metric: str
    score: float
    macs_m: float
    our_macs_m: float
    params_m: float
    our_params_m: float
    source: str


def task_zoo_rows(task: str) -> list[TaskZooRow]:
    """The published rows of ``task`` (``detection`` or ``segmentation``) with our counts."""
    rows = []
    for pub in PUBLISHED_TASKS:
        if task_of(pub.model) != task:
            continue
        prof = profile(build_task_model(pub.model).eval(), pub.resolution)
        ours = {"our_macs_m": round(prof.macs / 1e6, 2), "our_params_m": round(prof.params / 1e6, 6)}
        rows.append(TaskZooRow(**asdict(pub), **ours))
    return rows


@dataclass(frozen=True)
class ZooRow:
    """A published configuration with our counts (millions) beside it."""

    config: str
    model: str
    width_mult: float
    resolution: int
    top1: float | None
    macs_m: float | None
    our_macs_m: float
    params_m: float
    our_params_m: float
    source: str
    gap: str | None = None
    macs_unit_m: float | None = None


def zoo_rows() -> list[ZooRow]:
    """Count every published configuration with our models (same convention as its source); counted
    once per process, on models built on the meta device (shapes only: under a second here)."""
    return list(_counted_rows())


@functools.cache
def _counted_rows() -> tuple[ZooRow, ...]:
    rows, cache = [], {}
    for pub in PUBLISHED:
        key = (pub.model, pub.width_mult, pub.minimalistic)
        if key not in cache:
            kwargs = {"minimalistic": True} if pub.minimalistic else {}
            with torch.device("meta"):
                cache[key] = build_model(pub.model, width_mult=pub.width_mult, **kwargs).eval()
        prof = profile(cache[key], pub.resolution)
        params = prof.params if pub.params_with_bn else prof.params_no_bn
        rows.append(
            ZooRow(
                pub.label,
                pub.model,
                pub.width_mult,
                pub.resolution,
                pub.top1,
                pub.macs_m,
                round(prof.macs / 1e6, 2),
                pub.params_m,
                round(params / 1e6, 3),
                pub.source,
                pub.gap,
                pub.macs_unit_m,
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class WeightsRow:
    """A weights catalogue entry as ``zoo --weights`` lists it."""

    name: str
    source: str
    classes: str
    metrics: str
    license: str
    default_for: str
    url: str


def weights_rows(filter: str = "*") -> list[WeightsRow]:
    """The catalogue entries whose names match ``filter`` (shell wildcards)."""
    rows = [WeightsRow(w.name, w.source, w.classes, " ".join(f"{k} {v:g}" for k, v in w.metrics.items()), w.license,
                       w.default_for or "", w.url) for w in CATALOG if fnmatch.fnmatch(w.name, filter)]  # fmt: skip
    if not rows:
        raise WeightsError(f"No weights match {filter!r}; `mobilenets zoo --weights` lists them all.")
    return rows


def render(rows: list[ZooRow] | list[TaskZooRow] | list[WeightsRow], fmt: str = "table") -> str:
    """Rows as ``table`` (aligned text), ``csv``, ``json`` or ``markdown``."""
    if fmt not in ("table", "csv", "json", "markdown"):
        raise MobilenetsError(f"Unknown format {fmt!r}; use table, csv, json or markdown.")
    dicts = [asdict(r) for r in rows]
    if fmt == "json":
        return json.dumps(dicts, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(dicts[0]))
        writer.writeheader()
        writer.writerows(dicts)
        return out.getvalue()
    if rows and isinstance(rows[0], WeightsRow):
        header = [f.replace("_", " ") for f in dicts[0]]
        body = [[str(v) for v in d.values()] for d in dicts]
    elif rows and isinstance(rows[0], TaskZooRow):
        header = ["model", "size", "published score", "MAdds (M) published", "ours", "params (M) published", "ours",
                  "source"]  # fmt: skip
        body = [[r.model, str(r.resolution), f"{r.score:g} ({r.metric})", f"{r.macs_m:g}", f"{r.our_macs_m:.1f}",
                 str(r.params_m), f"{r.our_params_m:.6f}", r.source] for r in rows]  # fmt: skip
    else:
        header = ["config", "top-1", "MAdds (M) published", "ours", "params (M) published", "ours", "source"]
        body = [[r.config, "-" if r.top1 is None else f"{r.top1:.1f}", "-" if r.macs_m is None else f"{r.macs_m:g}",
                 f"{r.our_macs_m:.1f}", f"{r.params_m:g}", f"{r.our_params_m:.2f}", r.source + (" *" if r.gap else "")]
                for r in rows]  # fmt: skip
    footer = [f"* {note}" for note in sorted({getattr(r, "gap", None) for r in rows} - {None})]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body] + ["", *footer])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    table = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *body]]
    return "\n".join(table + footer)


def plot(rows: list[ZooRow], path: str) -> None:
    """Published top-1 against our multiply-adds per family: the papers' trade-off figure."""
    with needs("zoo --plot"):
        import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    rows = [r for r in rows if r.top1 is not None]
    for family in sorted({r.config.split(" ")[0] for r in rows}):
        pts = sorted((r.our_macs_m, r.top1) for r in rows if r.config.split(" ")[0] == family)
        ax.plot(*zip(*pts), "o", label=family, alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("multiply-adds (millions, log scale)")
    ax.set_ylabel("published ImageNet top-1 (%)")
    ax.set_title("MobileNets: accuracy vs multiply-adds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
