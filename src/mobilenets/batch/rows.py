"""The per-batch callable of a batch job: image paths in, one output row per image (a pyarrow Table).

:class:`BatchPredictor` loads the model once (per process, per Ray actor) and maps ``{"path": [...]}``
to the rows below; the one-machine job and the Ray job both call it, so their rows are the same. It is
public so that it can go into a user's own Ray Data pipeline::

    ds.map_batches(BatchPredictor, fn_constructor_kwargs={"options": JobOptions(model=...)},
                   batch_size=32, compute=ray.data.ActorPoolStrategy(size=2))

Columns (:data:`.columns.SCHEMA_VERSION` 1, in the file's metadata under ``mobilenets.schema``):

- every task: ``path`` (string), ``error`` (string; null when the image was read and predicted);
- classification: ``labels`` (list<int32>, top-k class indices), ``scores`` (list<float32>, their
  softmax probabilities), ``names`` (list<string>); with ``embed``, ``embedding`` (list<float16> or
  list<float32>: the pooled features before the classifier);
- detection: ``boxes`` (list<list<float32>>: x1, y1, x2, y2 in pixels), ``scores``, ``labels``, ``names``
  (boxes scoring at least ``score_thresh``);
- segmentation: ``mask`` (string: the mask's PNG, one class id per pixel, relative to the output folder),
  ``labels`` and ``names`` (the classes present).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.batch import columns
from mobilenets.util.errors import BadImageError, DataError, PrecisionError, RuntimeUnavailable
from mobilenets.util.extras import needs
from mobilenets.util.memory import release_freed_memory

CALIB_IMAGES = 128  # int8: calibrated on the first images of the job that can be read


@dataclass(frozen=True)
class JobOptions:
    """The model (as ``predict`` names it: ``weights``, ``checkpoint`` or ``model`` + ``pretrained``), where
    it runs and what each row holds. Picklable: it travels to every Ray actor."""

    weights: str | None = None
    checkpoint: str | None = None
    model: str | None = None
    pretrained: str | None = None
    backend: str = "auto"
    precision: str = "fp32"
    top_k: int = 5
    score_thresh: float = 0.3
    embed: str | None = None  # "float16" or "float32": add the pooled features
    calib: tuple[str, ...] = ()  # int8: images to calibrate on
    device: str = "cpu"  # "cuda": a PyTorch model on the actor's GPU (Ray with --num-gpus)


@dataclass(frozen=True)
class Decoder:
    """One image path (or ``scheme://`` URI, read through pyarrow's filesystems) to the model's input:
    a normalized CHW float tensor for a classifier, the uint8 CHW image for a detector or segmenter."""

    task: str
    cfg: dict[str, Any]

    def __call__(self, path: str) -> torch.Tensor:
        from mobilenets.data.preprocess import eval_resize_crop, load_rgb, to_tensor

        img = load_rgb(_open(path))
        if self.task == "classification":
            return to_tensor(eval_resize_crop(img, self.cfg), self.cfg)
        return torch.from_numpy(np.asarray(img)).permute(2, 0, 1).contiguous()

    def safe(self, path: str) -> torch.Tensor | str:
        """The input, or the reason it cannot be read (the row's ``error``)."""
        try:
            return self(path)
        except (BadImageError, OSError) as exc:
            return str(exc)


def _open(path: str) -> str | io.BytesIO:
    if path.startswith("file://"):
        return path[len("file://") :]
    if "://" not in path:
        return path
    with needs("Reading images by URI"):
        from pyarrow import fs
    try:
        filesystem, inner = fs.FileSystem.from_uri(path)
        with filesystem.open_input_stream(inner) as f:
            data = io.BytesIO(f.read())
    except (OSError, ValueError) as exc:
        raise BadImageError(f"{path} cannot be read ({exc})") from None
    data.name = path  # what an error names
    return data


class _WithFeatures(nn.Module):
    """A classifier's logits and pooled features side by side (N x (classes + features))."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        return torch.cat([self.net.classifier(features), features], dim=1)


def _on_gpu(net: nn.Module) -> Any:
    """A PyTorch classifier on this process's GPU as a function of CPU batches (outputs back on the CPU)."""
    if not torch.cuda.is_available():
        raise RuntimeUnavailable("--num-gpus: this Ray actor sees no CUDA GPU (torch.cuda.is_available() is "
                                 "False); give the cluster GPUs or leave out --num-gpus.")  # fmt: skip
    net = net.eval().to("cuda")

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        return net(x.to("cuda", non_blocking=True)).float().cpu()

    return run


class BatchPredictor:
    """Loads the model of ``options`` once; called on ``{"path": [...]}`` (a Ray Data batch) it reads and
    predicts each image and returns the rows as a pyarrow Table. Segmentation masks go to
    ``output/masks/`` (a folder every worker can write: shared storage on a cluster)."""

    def __init__(self, options: JobOptions, output: str | os.PathLike = ".") -> None:
        from mobilenets.runtime.classifier import load_classifier

        self.options, self.output = options, Path(output)
        self.clf = load_classifier(options.weights, options.checkpoint, options.model, options.pretrained)
        self.task, self.names = self.clf.task, self.clf.class_names
        self.decoder = Decoder(self.clf.task, dict(self.clf.cfg))
        self.backend, self.precision, self.run = self._runner(self.clf)
        self.schema = columns.schema(self)

    def _runner(self, clf: Any) -> tuple[str, str, Any]:
        """(backend, precision, function of an NCHW tensor) for the options' backend and precision."""
        from mobilenets.runtime.runners import torch_runner

        opts, net = self.options, clf.model
        exported = net is None
        chosen = (opts.backend, opts.precision) != ("auto", "fp32")
        if chosen and (exported or self.task != "classification" or opts.embed or opts.device == "cuda"):
            raise PrecisionError(
                "--backend and --precision choose how a PyTorch classifier runs on CPUs without --embed; this "
                "model runs as it is (an export in its own runtime, a detector or segmenter in PyTorch, on GPUs "
                "PyTorch fp32)."
            )
        if exported:
            return "file", "as exported", clf.run
        if opts.device == "cuda":
            if self.task != "classification":
                raise PrecisionError("--num-gpus runs classifiers (and --embed); detectors and segmenters run on CPUs.")
            return "cuda", "fp32", _on_gpu(_WithFeatures(net) if opts.embed else net)
        if opts.embed:
            if not hasattr(net, "forward_head"):
                raise DataError("--embed needs a MobileNet of this package (its pooled features).")
            from mobilenets.models.fuse import fuse

            return "fused", "fp32", torch_runner(_WithFeatures(fuse(net)), channels_last=True)
        if self.task != "classification":
            return "eager", "fp32", clf.run
        from mobilenets.deploy.predictor import deploy

        calib = torch.stack(self._calibration()) if opts.precision == "int8" else None
        pred = deploy(net, precision=opts.precision, backend=opts.backend, calib=calib)
        return pred.backend, pred.precision, lambda x: torch.from_numpy(pred.run(np.ascontiguousarray(x.numpy())))

    def _calibration(self) -> list[torch.Tensor]:
        images = [x for x in map(self.decoder.safe, self.options.calib) if not isinstance(x, str)]
        if not images:
            raise DataError("int8 needs images to calibrate on, and none of the job's first images could be read.")
        return images[:CALIB_IMAGES]

    def __call__(self, batch: dict[str, Any]) -> Any:
        paths = [str(p) for p in batch["path"]]
        return self.predict(paths, [self.decoder.safe(p) for p in paths])

    def predict(self, paths: list[str], inputs: list[torch.Tensor | str]) -> Any:
        """The rows for ``paths`` whose ``inputs`` are decoded (or, as a string, why they could not be)."""
        ok = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
        errors = [x if isinstance(x, str) else None for x in inputs]
        good = [inputs[i] for i in ok]
        if self.task == "classification":
            found = columns.classify(self, good)
        elif self.task == "detection":
            found = columns.detections(self, good)
        else:
            found = columns.masks(self, good, [paths[i] for i in ok])
        rows = columns.table(self, paths, errors, ok, found)
        release_freed_memory()  # memory stays bounded over millions of images
        return rows

    def mask_name(self, path: str) -> str:
        """Where the mask of ``path`` goes, relative to the output folder (the same on every run)."""
        return f"masks/{hashlib.sha1(path.encode()).hexdigest()[:20]}.png"
