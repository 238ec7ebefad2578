"""A batch's model outputs as the columns of :mod:`.rows` (see there for the schema); ``bp`` is the
:class:`.rows.BatchPredictor` that made them."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from mobilenets.util.extras import needs
from mobilenets.util.files import atomic_write_bytes

SCHEMA_VERSION = "1"


def classify(bp: Any, inputs: list[torch.Tensor]) -> dict[str, list[Any]]:
    """Top-k ``labels``, ``scores`` and ``names`` (and the ``embedding``) of a classifier's images."""
    if not inputs:
        return {k: [] for k in ("labels", "scores", "names", *(["embedding"] if bp.options.embed else []))}
    out = bp.run(torch.stack(inputs)).float()
    n = len(bp.names)
    values, indices = out[:, :n].softmax(dim=1).topk(min(bp.options.top_k, n))
    cols = {"labels": indices.tolist(), "scores": values.tolist(),
            "names": [[bp.names[i] for i in row] for row in indices.tolist()]}  # fmt: skip
    if bp.options.embed:
        cols["embedding"] = list(out[:, n:].numpy().astype(bp.options.embed))
    return cols


def detections(bp: Any, images: list[torch.Tensor]) -> dict[str, list[Any]]:
    """A detector's ``boxes`` (pixels), ``scores``, ``labels`` and ``names`` per image."""
    from mobilenets.evaluate.dense import detect

    found = detect(bp.clf, images, bp.options.score_thresh) if images else []
    return {"boxes": [d["boxes"].tolist() for d in found], "scores": [d["scores"].tolist() for d in found],
            "labels": [d["labels"].tolist() for d in found],
            "names": [[bp.names[int(c)] for c in d["labels"]] for d in found]}  # fmt: skip


def masks(bp: Any, images: list[torch.Tensor], paths: list[str]) -> dict[str, list[Any]]:
    """A segmenter's masks, each written as a PNG of class ids (``mask``), and the classes present."""
    from PIL import Image

    from mobilenets.evaluate.dense import segment

    cols: dict[str, list[Any]] = {"mask": [], "labels": [], "names": []}
    for img, path in zip(images, paths):
        mask = segment(bp.clf, img)
        png = io.BytesIO()
        Image.fromarray(mask.numpy().astype(np.uint8), "L").save(png, format="PNG")
        name = bp.mask_name(path)
        (bp.output / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(bp.output / name, png.getvalue())
        present = mask.unique().tolist()
        cols["mask"].append(name)
        cols["labels"].append(present)
        cols["names"].append([bp.names[c] for c in present])
    return cols


def schema(bp: Any) -> Any:
    """The rows' Arrow schema for ``bp``'s task, with what made them in its metadata."""
    with needs("Writing predictions to Parquet"):
        import pyarrow as pa

    names, ints, floats = pa.list_(pa.string()), pa.list_(pa.int32()), pa.list_(pa.float32())
    fields = [("path", pa.string()), ("error", pa.string())]
    if bp.task == "classification":
        fields += [("labels", ints), ("scores", floats), ("names", names)]
        if bp.options.embed:
            fields.append(("embedding", pa.list_(pa.float16() if bp.options.embed == "float16" else pa.float32())))
    elif bp.task == "detection":
        fields += [("boxes", pa.list_(floats)), ("scores", floats), ("labels", ints), ("names", names)]
    else:
        fields += [("mask", pa.string()), ("labels", ints), ("names", names)]
    meta = {"schema": SCHEMA_VERSION, "task": bp.task, "model": bp.clf.description,
            "backend": bp.backend, "precision": bp.precision}  # fmt: skip
    return pa.schema(fields, metadata={f"mobilenets.{k}": v for k, v in meta.items()})


def table(bp: Any, paths: list[str], errors: list[str | None], ok: list[int],
          found: dict[str, list[Any]]) -> Any:  # fmt: skip
    """The batch's rows: ``found`` (the columns of the images ``ok``) spread over all of ``paths``, null
    where an image had an ``error``."""
    import pyarrow as pa

    cols: dict[str, list[Any]] = {"path": paths, "error": errors}
    for name, values in found.items():
        full: list[Any] = [None] * len(paths)
        for i, value in zip(ok, values):
            full[i] = value
        cols[name] = full
    return pa.Table.from_pydict(cols, schema=bp.schema)
