"""``--batch-size auto``: the largest batch whose training step fits the memory this run can have.

As ultralytics' AutoBatch, from a measurement rather than a guess: one training step (forward, loss,
backward, optimizer step) at small batches, each in a forked child process so that its peak resident memory is its
own (``VmHWM`` above the child's baseline) and nothing it allocates stays in the trainer. Memory grows linearly in
the batch; the fit (:func:`fit`) gives the largest power of two whose step stays within
:data:`BUDGET_FRACTION` of the memory available (``MemAvailable``, or the cgroup limit when lower), at most
:data:`MAX_AUTO_BATCH` and the training set's size per process. A given ``--batch-size N`` is checked
against the same fit and refused in one sentence, before training starts, when its step cannot fit.

Where ``fork`` or ``/proc`` is missing (not Linux) or the device is a GPU, ``auto`` is 32 and nothing is
measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mobilenets.util.errors import TrainingError

MAX_AUTO_BATCH = 64  # the recipes' reference batch; larger batches only add memory on a CPU
FALLBACK = 32
BUDGET_FRACTION = 0.3  # of the available memory, for the step's growth (data workers and eval need the rest)
CLEAR = 1 << 30  # a growth this large is clear of what allocator caches make uncertain at small batches


def available_bytes() -> int | None:
    """Memory this process can still have: ``MemAvailable``, capped by a cgroup v2/v1 limit; ``None`` if unknown."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    avail = next(
        (int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable")), None
    )
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):  # fmt: skip
        try:
            limit, usage = Path(limit_file).read_text().strip(), int(Path(usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60 and avail is not None:
            avail = min(avail, int(limit) - usage)
    return avail


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _own_baseline() -> int:
    """In a forked child: hand the free memory it inherited back to the system (glibc's ``malloc_trim``),
    so that the step cannot reuse it unseen, reset the peak resident memory (``clear_refs``), and return
    the resident memory from which the step's growth counts."""
    import ctypes
    import ctypes.util

    libc = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(libc).malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except (OSError, AttributeError):  # not glibc, or no clear_refs: the peak then starts at the inherited one
        pass
    return _resident_bytes()


def _peak_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM"))


def step_growth(step: Callable[[int], None], batch: int) -> int:
    """Bytes by which one ``step(batch)`` raises resident memory, run in a forked child from its own
    baseline (:func:`_own_baseline`). Measured from the trainer's resident memory instead, the step hid in
    memory earlier work had freed: a test worker that had run other modules chose batch 64 at 2 GiB."""
    import torch

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one thread (OpenMP pools do not survive fork), one step, exit without cleanup
        code = 0
        try:
            os.close(read)
            torch.set_num_threads(1)
            base = _own_baseline()
            step(batch)
            os.write(write, str(max(_peak_bytes() - base, 0)).encode())
        except BaseException:  # noqa: BLE001 - any failure is reported as the exit code
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not said:
        raise RuntimeError(f"the trial training step at batch {batch} failed")
    return int(said)


def fit(step: Callable[[int], None], budget: float, cap: int) -> tuple[float, float]:
    """(fixed, per-image) bytes of a step's growth. Small batches' growth is the least certain (allocator
    caches; MobileNetV2 at 224 px measured 201, 345, 685, 1361, 2584, 4844 MB at batch 2-64, and 0-347 MB
    at batch 2-8 before the child's own baseline), so the batch doubles from 2 until the growth is clear
    of that (:data:`CLEAR`), a quarter of the budget or ``cap``; the slope between the last two batches,
    never below the last one's growth per image."""
    points = [(0, 0)]  # no batch, no growth: a first trial that is already clear gives growth per image
    batch = 2
    while True:
        points.append((batch, step_growth(step, batch)))
        if points[-1][1] >= min(CLEAR, budget / 4) or batch >= cap:
            break
        batch *= 2
    (b1, g1), (b2, g2) = points[-2:]
    per_image = max((g2 - g1) / (b2 - b1), g2 / b2, 1.0)
    return max(g2 - per_image * b2, 0.0), per_image


def choose(step: Callable[[int], None], requested: int | str, n_train: int, processes: int = 1) -> tuple[int, str]:
    """The batch size per process and a line saying how it was chosen; ``ValueError`` (one sentence) for a
    requested batch that cannot fit."""
    avail = available_bytes()
    measurable = avail is not None and hasattr(os, "fork") and Path("/proc/self/statm").exists()
    if not measurable:
        if requested == "auto":
            return FALLBACK, f"batch size {FALLBACK} (auto: memory cannot be measured here)"
        return int(requested), f"batch size {requested}"
    budget = avail * BUDGET_FRACTION / processes
    cap = max(1, min(MAX_AUTO_BATCH, n_train))
    fixed, per_image = fit(step, budget, cap if requested == "auto" else min(int(requested), n_train))
    gib = 1 << 30
    if requested != "auto":
        need = fixed + per_image * min(int(requested), n_train)  # a batch past the data is the whole data
        if need > budget:
            best = largest_fitting(fixed, per_image, budget, 1 << 20)
            raise TrainingError(f"--batch-size {requested} needs about {need / gib:.1f} GiB per step, more than the "
                             f"{budget / gib:.1f} GiB this run can use; use --batch-size {best} or auto.")  # fmt: skip
        return int(requested), f"batch size {requested} (about {need / gib:.1f} GiB per step)"
    batch = largest_fitting(fixed, per_image, budget, cap)
    return batch, (f"batch size {batch} (auto: about {(fixed + per_image * batch) / gib:.1f} GiB per step of "
                   f"{budget / gib:.1f} GiB usable)")  # fmt: skip


def largest_fitting(fixed: float, per_image: float, budget: float, cap: int) -> int:
    """The largest power of two up to ``cap`` (or ``cap`` itself) whose step fits ``budget``; at least 1."""
    batch = 1
    while batch * 2 <= cap and fixed + per_image * batch * 2 <= budget:
        batch *= 2
    if cap > batch and fixed + per_image * cap <= budget and cap < batch * 2:
        batch = cap
    return batch
