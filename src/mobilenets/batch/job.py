"""Predict over many images into Parquet: on this machine, or as a Ray Data pipeline on a Ray cluster.

Both engines read the same list of images, call the same :class:`.rows.BatchPredictor`, and hand its
row tables to the same :class:`.parts.PartWriter` here in the driver, so their rows are the same and a
killed job, started again with the same command, goes on where the complete parts end.

- ``engine="local"``: a PyTorch DataLoader whose ``workers`` processes read and preprocess images
  while this process runs the model (memory bounded by a few batches in flight and one part of rows).
- ``engine="ray"``: ``ray.data.from_items`` of the paths, ``map_batches(BatchPredictor, compute=
  ActorPoolStrategy(size=workers))`` so each actor loads the model once, streamed back with
  ``iter_batches``; on the cluster at ``address`` (``"auto"``, ``"host:port"``, ``"ray://..."``) or on
  a local Ray started for the job. Masks (segmentation) are written by the actors: on a cluster of
  several machines ``output`` must be shared storage.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mobilenets.batch.parts import PartWriter, done_paths
from mobilenets.batch.rows import CALIB_IMAGES, BatchPredictor, Decoder, JobOptions
from mobilenets.batch.sources import list_sources
from mobilenets.runtime.classifier import load_classifier
from mobilenets.util.errors import DataError, RuntimeUnavailable
from mobilenets.util.extras import needs
from mobilenets.util.net import answers

ENGINES = ("local", "ray")


class _Inputs(Dataset):
    def __init__(self, paths: list[str], decoder: Decoder) -> None:
        self.paths, self.decoder = paths, decoder

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[str, Any]:
        return self.paths[i], self.decoder.safe(self.paths[i])


def _unzip(batch: list[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    return [p for p, _ in batch], [x for _, x in batch]


def _run_local(todo: list[str], bp: BatchPredictor, writer: PartWriter, batch_size: int, workers: int) -> None:
    loader = DataLoader(_Inputs(todo, bp.decoder), batch_size=batch_size, num_workers=workers, collate_fn=_unzip)
    with tqdm(total=len(todo), unit="img", desc="predict", disable=not sys.stderr.isatty()) as bar:
        for paths, inputs in loader:
            writer.add(bp.predict(paths, inputs))
            bar.update(len(paths))


def _check_reachable(address: str | None) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) address that does not answer a TCP connection within
    5 s (Ray itself waits minutes on one); other addresses (``auto``, none) are Ray's to find."""
    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    if not answers(host, int(port)):
        raise RuntimeUnavailable(_no_cluster(address))


def _no_cluster(address: str | None) -> str:
    return (f"No Ray cluster answers at {address}; start one with `ray start --head` (a head with token "
            "authentication also wants RAY_AUTH_MODE=token here), or leave out --address to start one for "
            "the job.")  # fmt: skip


def _run_ray(todo: list[str], options: JobOptions, out: Path, writer: PartWriter, batch_size: int,
             workers: int, address: str | None, num_gpus: float) -> None:  # fmt: skip
    with needs("Prediction on a Ray cluster"):
        import ray

    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError):
        raise RuntimeUnavailable(_no_cluster(address)) from None
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if num_gpus > gpus:  # Ray would wait for them for ever
            raise RuntimeUnavailable(f"--num-gpus {num_gpus:g}: the Ray cluster has {gpus:g} GPUs; start its "
                                     "workers with GPUs (ray start --num-gpus N) or leave out --num-gpus.")  # fmt: skip
        ds = ray.data.from_items([{"path": p} for p in todo])
        ds = ds.map_batches(BatchPredictor, fn_constructor_kwargs={"options": options, "output": str(out)},
                            batch_size=batch_size, batch_format="numpy", num_gpus=num_gpus or None,
                            compute=ray.data.ActorPoolStrategy(size=workers))  # fmt: skip
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            writer.add(table)
    finally:
        ray.shutdown()


def predict_to_parquet(
    source: str,
    output: str | Path,
    options: JobOptions,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    batch_size: int = 32,
    rows_per_file: int = 10_000,
    num_gpus: float = 0,
) -> dict[str, Any]:
    """Predict every image of ``source`` (:func:`.sources.list_sources`) into Parquet parts in the folder
    ``output`` (:mod:`.parts`), skipping images already there. ``workers``: image-reading processes
    (local, default 2) or model actors (Ray, default 1); ``num_gpus``: each Ray actor's GPUs (the options'
    ``device`` then ``cuda``). Returns a summary: images, skipped (already
    done), written, errors (rows with an ``error``), seconds, images_per_s, backend, warnings."""
    if engine not in ENGINES:
        raise DataError(f"Unknown engine {engine!r}; use one of {', '.join(ENGINES)}.")
    out = Path(output).resolve()
    if out.exists() and not out.is_dir():
        raise DataError(f"--output {output} is a file; give a folder for the Parquet parts.")
    paths = list_sources(source)
    options = replace(options, calib=tuple(paths[:CALIB_IMAGES]) if options.precision == "int8" else ())
    if engine == "local":
        bp = BatchPredictor(options, out)
        clf, backend = bp.clf, f"{bp.backend} {bp.precision}"
    else:  # the model read here first: a file that cannot be loaded is refused before Ray starts
        _check_reachable(address)
        clf, backend = load_classifier(options.weights, options.checkpoint, options.model, options.pretrained), None
    summary = {"backend": backend or "chosen by each Ray actor", "warnings": [w for w in [clf.warning] if w]}
    out.mkdir(parents=True, exist_ok=True)  # nothing is written before the source and the model are known good
    done = done_paths(out)
    todo = [p for p in paths if p not in done]
    writer = PartWriter(out, rows_per_file)
    start = time.perf_counter()
    if engine == "local":
        _run_local(todo, bp, writer, batch_size, 2 if workers is None else workers)
    elif todo:
        _run_ray(todo, options, out, writer, batch_size, workers or 1, address, num_gpus)
    writer.flush()
    seconds = time.perf_counter() - start
    return {"images": len(paths), "skipped": len(paths) - len(todo), "written": writer.written,
            "errors": writer.errors, "seconds": round(seconds, 2),
            "images_per_s": round(writer.written / seconds, 1) if seconds else 0.0, **summary}  # fmt: skip
