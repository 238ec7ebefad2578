"""Training and fine-tuning, from one CPU to many GPUs (``torchrun`` + PyTorch DDP).

Outputs in ``output``: ``last.pt`` (full resume state, ``torch.load(weights_only=True)``-safe),
``best.safetensors`` + ``model.json`` (architecture, classes, preprocessing, metrics),
``metrics.csv`` (one row per epoch) and ``curves.png``. Every file is written atomically, so a kill at
any moment loses at most the epoch in progress, and ``resume=True`` then reproduces the uninterrupted
run bit for bit (CPU, same seed).
"""

from __future__ import annotations

import csv
import io
import math
import os
import pickle
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from mobilenets.train import autobatch
from mobilenets.train.config import TrainConfig
from mobilenets.train.dist import Dist, all_reduce, setup_distributed
from mobilenets.train.recipes import RECIPES, Recipe
from mobilenets.train.tasks import train_task
from mobilenets.util.errors import DataError, TrainingError
from mobilenets.util.extras import has
from mobilenets.util.files import (
    atomic_save_safetensors,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    load_tensors_only,
)
from mobilenets.weights.factory import BEST, MODEL_JSON


# --- state -----------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every RNG the run draws from, as tensors and plain values (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                       "has_gauss": has_gauss, "gauss": gauss}}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def read_resume_state(path: Path) -> dict[str, Any]:
    """``last.pt`` without running any code from it; a refusal is one sentence."""
    try:
        return load_tensors_only(path)
    except pickle.UnpicklingError as exc:
        raise TrainingError(f"Refusing to resume from {path}: unpickling it would run code "
                            f"({str(exc).splitlines()[0][:120]}).") from None  # fmt: skip
    except (RuntimeError, EOFError, OSError) as exc:
        raise TrainingError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                            "remove it to start afresh.") from None  # fmt: skip


# --- the run ---------------------------------------------------------------------------------------
def _param_groups(model: nn.Module, head_modules: list[nn.Module], recipe: Recipe, lr: float) -> list[dict[str, Any]]:
    """No weight decay on BN and biases; all but ``head_modules`` at ``backbone_lr_mult`` when fine-tuning."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    head = {id(p) for m in head_modules for p in m.parameters()}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((p.ndim <= 1, id(p) in head), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if no_wd else recipe.weight_decay,
             "lr": lr * (1.0 if is_head else recipe.backbone_lr_mult)}
            for (no_wd, is_head), ps in sorted(groups.items())]  # fmt: skip


def _optimizer(params: list[dict[str, Any]], recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    if recipe.optimizer == "rmsprop":  # TF's RMSProp: decay 0.9, momentum 0.9, eps inside the sqrt ~ 1e-3
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, momentum=recipe.momentum, eps=1e-3)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, nesterov=True)
    return torch.optim.AdamW(params, lr=lr)


def _plot_curves(rows: list[dict[str, Any]], metrics: dict[str, str], path: Path) -> None:
    """Loss and the validation ``metrics`` (column -> label) per epoch; left out without the ``plots`` extra."""
    if not has("matplotlib"):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [r["train_loss"] for r in rows], "o-")
    a.set(xlabel="epoch", ylabel="train loss", title="loss")
    for (column, label), style in zip(metrics.items(), ("o-", "s--")):
        b.plot(epochs, [r[column] for r in rows], style, label=label)
    b.set(xlabel="epoch", ylabel="validation", title=", ".join(metrics.values()), ylim=(0, 1))
    b.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _write_metrics(rows: list[dict[str, Any]], path: Path) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, out.getvalue().encode())


def _log(d: Dist, message: str) -> None:
    if d.main:
        print(message, file=sys.stderr, flush=True)


def _resolve_recipe(cfg: TrainConfig) -> Recipe:
    if cfg.recipe:
        return RECIPES[cfg.recipe]
    return RECIPES["finetune" if cfg.pretrained else "short"]


def _report_bad(bad: list[str], cfg: TrainConfig, d: Dist) -> list[str]:
    if bad and cfg.strict_data:
        raise DataError(f"--strict-data: {len(bad)} unreadable image(s): {', '.join(bad[:10])}"
                        f"{' ...' if len(bad) > 10 else ''}; remove or replace them.")  # fmt: skip
    for path in bad:
        _log(d, f"skipped unreadable image: {path}")
    if bad:
        _log(d, f"skipped {len(bad)} unreadable image(s)")
    return bad


@dataclass
class Run:
    """Everything one training run holds between its set-up, its epochs and its checkpoints."""

    cfg: TrainConfig
    d: Dist
    recipe: Recipe
    task: Any
    out: Path
    model: nn.Module
    net: nn.Module
    train_ds: Any
    val_loader: Any
    sampler: Any
    batch_size: int
    steps_per_epoch: int
    drop_last: bool
    lr: float
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    ema: Any
    amp_ctx: Any
    channels_last: bool
    bad: list[str]
    start: int = 0
    best: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def arch(self) -> dict[str, Any]:
        return {"model": self.cfg.model, "model_args": self.model.model_args}


def _prepare_output(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise TrainingError(f"Cannot write to --output {out} ({exc.strerror}); choose another folder.") from None


def _trial_step(task: Any, model: nn.Module, train_ds: Any, recipe: Recipe, channels_last: bool) -> Any:
    """One training step at a given batch (for :mod:`.autobatch`, which runs it in a forked child)."""

    def step(batch: int) -> None:
        loader = DataLoader(train_ds, batch, shuffle=True, num_workers=0, collate_fn=task.collate)
        optimizer = _optimizer(_param_groups(model, task.head(model), recipe, 1e-6), recipe, 1e-6)
        model.train()
        loss, _ = task.loss(model, next(iter(loader)), Dist(), channels_last, nullcontext)
        loss.backward()
        optimizer.step()

    return step


def _batch_size(cfg: TrainConfig, run_state: dict[str, Any] | None, step: Any, n_train: int, d: Dist) -> int:
    """``--batch-size`` (a number, checked to fit) or ``auto`` (:mod:`.autobatch`); a resumed run keeps its own."""
    if run_state is not None and cfg.batch_size == "auto" and "batch_size" in run_state:
        return int(run_state["batch_size"])
    if d.device.type != "cpu":  # GPU memory is not measured here
        return autobatch.FALLBACK if cfg.batch_size == "auto" else int(cfg.batch_size)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", d.world))
    try:
        batch, how = autobatch.choose(step, cfg.batch_size, math.ceil(n_train / d.world), local_world)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    if d.world > 1:  # every process the same batch: the smallest choice
        t = torch.tensor([batch], device=d.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        batch = int(t.item())
    _log(d, how)
    return batch


def _setup(cfg: TrainConfig) -> Run:
    """Data, model and batch size first (nothing is written for a run that cannot start), then the output,
    loaders, optimizer, schedule, EMA and AMP."""
    cfg.validate()
    d = setup_distributed()
    recipe = _resolve_recipe(cfg)
    out = Path(cfg.output)
    seed_everything(cfg.seed + d.rank)
    task = train_task(cfg, recipe)
    task.load()
    bad = _report_bad(task.bad, cfg, d)
    model = task.build()
    channels_last = True if cfg.channels_last is None else cfg.channels_last
    model.to(d.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and d.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_ds, val_ds = task.datasets(model.pretrained_cfg)
    state = read_resume_state(out / "last.pt") if cfg.resume and (out / "last.pt").is_file() else None
    batch = _batch_size(cfg, state, _trial_step(task, model, train_ds, recipe, channels_last), len(train_ds), d)
    if d.main:
        _prepare_output(out)
    sampler = DistributedSampler(train_ds, d.world, d.rank, shuffle=True, seed=cfg.seed) if d.world > 1 else None
    per_rank = math.ceil(len(train_ds) / d.world)
    drop_last = per_rank > batch  # no ragged last batch (BN), unless the data is one batch
    steps_per_epoch = per_rank // batch if drop_last else 1
    lr = cfg.lr or recipe.scaled_lr(batch * d.world)
    optimizer = _optimizer(_param_groups(model, task.head(model), recipe, lr), recipe, lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: recipe.lr_factor(step, steps_per_epoch, cfg.epochs)
    )
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True)
           if recipe.ema_decay else None)  # fmt: skip
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    amp_ctx = (lambda: torch.autocast(d.device.type, dtype=dtype)) if dtype else nullcontext
    net = nn.parallel.DistributedDataParallel(model) if d.world > 1 else model
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")
    val_loader = task.val_loader(val_ds, batch, d)
    run = Run(cfg=cfg, d=d, recipe=recipe, task=task, out=out, model=model, net=net, train_ds=train_ds,
              val_loader=val_loader, sampler=sampler, batch_size=batch, steps_per_epoch=steps_per_epoch,
              drop_last=drop_last, lr=lr, optimizer=optimizer, scheduler=scheduler, scaler=scaler, ema=ema,
              amp_ctx=amp_ctx, channels_last=channels_last, bad=bad)  # fmt: skip
    _resume(run, state)
    return run


def _resume(run: Run, state: dict[str, Any] | None) -> None:
    """Restore model, optimizer, schedule, scaler, EMA, RNGs and history from ``last.pt``."""
    last = run.out / "last.pt"
    if state is None:
        if run.cfg.resume:
            _log(run.d, f"--resume: no {last} yet, starting from scratch")
        return
    if state.get("arch") != run.arch:
        raise TrainingError(f"{last} holds a {state.get('arch', {}).get('model')} "
                            f"({state.get('arch', {}).get('model_args')}), but this run trains {run.cfg.model} "
                            f"({run.model.model_args}); use the same options or another --output.")  # fmt: skip
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    set_rng_state(state["rng"])
    run.best = state.get("best", state.get("best_top1"))  # "best_top1": runs of earlier versions
    run.start, run.history = state["epoch"] + 1, state["history"]
    _log(run.d, f"resumed from {last} after epoch {state['epoch'] + 1}")


def _train_epoch(run: Run, epoch: int) -> tuple[float, int, float]:
    """One pass over the training data: (summed loss, images, seconds) over every process."""
    cfg, d, model = run.cfg, run.d, run.model
    run.net.train()
    if run.recipe.freeze_bn:  # the backbone's; new heads learn their statistics
        head_bn = {id(m) for h in run.task.head(model) for m in h.modules()}
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in head_bn:
                m.eval()
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    loader = DataLoader(run.train_ds, run.batch_size, sampler=run.sampler or RandomSampler(run.train_ds, generator=gen),
                        num_workers=cfg.workers, generator=gen, drop_last=run.drop_last,
                        persistent_workers=False, collate_fn=run.task.collate)  # fmt: skip
    t0, seen, loss_sum, steps = time.perf_counter(), 0, 0.0, 0
    bar = tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
               disable=not (sys.stderr.isatty() and d.main), leave=False)  # fmt: skip
    for batch in loader:
        loss, n = run.task.loss(run.net, batch, d, run.channels_last, run.amp_ctx)
        if not torch.isfinite(loss):
            raise TrainingError(f"The loss became {loss.item()} at epoch {epoch + 1}, step {steps + 1}; "
                                f"stopped, the last good checkpoint is kept in {run.out}. Lower --lr "
                                f"(now {run.lr:g}) or use --amp none.")  # fmt: skip
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if cfg.clip_grad:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(model)
        steps, seen, loss_sum = steps + 1, seen + n, loss_sum + loss.item() * n
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", img_s=f"{seen * d.world / (time.perf_counter() - t0):.0f}")
        bar.update()
        if steps >= run.steps_per_epoch:
            break
    bar.close()
    elapsed = time.perf_counter() - t0
    loss_sum, seen = all_reduce([loss_sum, seen], d)
    return loss_sum, int(seen), elapsed


def _save(run: Run, epoch: int, scores: dict[str, float], eval_model: nn.Module) -> None:
    """The best weights with ``model.json`` when ``scores`` beat the best so far; metrics, curves, ``last.pt``."""
    task, first = run.task, run.task.metrics[0]
    if scores[first] > run.best:
        run.best = scores[first]
        atomic_save_safetensors(eval_model.state_dict(), run.out / BEST)
        meta = {**run.arch, "class_names": task.classes, "pretrained_cfg": run.model.pretrained_cfg,
                "metrics": {**scores, "epoch": epoch + 1}, "data": run.cfg.data, "label_map": task.label_map,
                "recipe": asdict(run.recipe), "skipped_images": run.bad, "batch_size": run.batch_size}  # fmt: skip
        atomic_write_json(meta, run.out / MODEL_JSON)
    _write_metrics(run.history, run.out / "metrics.csv")
    _plot_curves(run.history, dict(zip(task.metrics, task.labels)), run.out / "curves.png")
    atomic_torch_save({
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None, "rng": rng_state(), "epoch": epoch,
        "best": run.best, "history": run.history, "arch": run.arch, "batch_size": run.batch_size,
    }, run.out / "last.pt")  # fmt: skip


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run ``cfg``; returns the summary (the best epoch's first metric, epochs, paths). See the module
    docstring."""
    run = _setup(cfg)
    d, task = run.d, run.task
    first, second = task.metrics
    for epoch in range(run.start, cfg.epochs):
        loss_sum, seen, elapsed = _train_epoch(run, epoch)
        eval_model = run.ema.module if run.ema is not None else run.model
        scores = dict(zip(task.metrics, task.evaluate(eval_model, run.val_loader, d, run.channels_last, run.amp_ctx)))
        row = {"epoch": epoch + 1, "train_loss": round(loss_sum / max(seen, 1), 6),
               **{k: round(v, 6) for k, v in scores.items()}, "lr": run.optimizer.param_groups[-1]["lr"],
               "images_per_s": round(seen / elapsed, 1)}  # fmt: skip
        run.history.append(row)
        _log(d, f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f}, val {task.labels[0]} "
                f"{scores[first]:.2%}, {task.labels[1]} {scores[second]:.2%}, "
                f"{row['images_per_s']:.0f} images/s")  # fmt: skip
        if d.main:
            _save(run, epoch, scores, eval_model)
    if d.world > 1:
        dist.barrier()
    return {"best": run.best, "metric": first, "best_label": task.labels[0], "epochs": cfg.epochs,
            "output": str(run.out), "history": run.history, "skipped": run.bad, "model": run.model,
            "recipe": run.recipe.name, "batch_size": run.batch_size}  # fmt: skip
