"""What differs between training a classifier, a detector and a segmenter: the data, the model, the
batches, the loss and the validation metrics. :func:`mobilenets.train.loop.train` runs the same loop for all.

Decisions for detection and segmentation (torchvision's references where our papers are silent):
- ``--pretrained SRC`` loads ImageNet weights into the backbone (``pretrained_backbone``); the heads start
  from their own initialisation. ``--img-size`` is SSD's square input (default 320) or the segmentation
  crop and evaluation size (default 520).
- The recipe's optimizer, schedule and BN freezing apply; its dropout, label smoothing, mixing and BN
  momentum do not (the heads have their own).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mobilenets.data.dense import (
    IGNORE,
    DetectionDataset,
    SegmentationDataset,
    detection_collate,
    detection_transforms,
    segmentation_transforms,
)
from mobilenets.data.images import ImageDataset, build_transforms, load_train_data
from mobilenets.evaluate.classify import topk_hits
from mobilenets.evaluate.dense import load_dense_data, run_detection, run_segmentation
from mobilenets.models.registry import build_model
from mobilenets.models.tasks import task_of
from mobilenets.runtime.runners import torch_runner
from mobilenets.train.config import TrainConfig
from mobilenets.train.dist import Dist, all_reduce
from mobilenets.train.recipes import Recipe
from mobilenets.weights.factory import create_model

Batch = Any


class TrainTask:
    """The classification task; subclasses change what differs."""

    metrics = ("val_top1", "val_top5")  # the first picks the best epoch
    labels = ("top-1", "top-5")

    def __init__(self, cfg: TrainConfig, recipe: Recipe) -> None:
        self.cfg, self.recipe = cfg, recipe
        self.classes: list[str] = []
        self.bad: list[str] = []
        self.collate: Any = None
        self.label_map: str | None = None

    def load(self) -> None:

        self.data = load_train_data(self.cfg.data)
        self.classes, self.bad = self.data.train.classes, self.data.train.bad + self.data.val.bad
        self.mix = self.mixer()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)

    def build(self) -> nn.Module:

        cfg, recipe = self.cfg, self.recipe
        kwargs: dict[str, Any] = dict(cfg.extra_model_args)
        kwargs.setdefault("bn_momentum", recipe.bn_momentum)
        if recipe.dropout is not None:
            kwargs.setdefault("dropout", recipe.dropout)
        if recipe.drop_path:
            kwargs.setdefault("drop_path_rate", recipe.drop_path)
        if cfg.width_mult != 1.0:
            kwargs["width_mult"] = cfg.width_mult
        if cfg.small_input:
            kwargs["small_input"] = True
        num_classes = len(self.classes)
        if cfg.pretrained:
            model = create_model(cfg.model, pretrained=cfg.pretrained, **kwargs)
            model.reset_classifier(num_classes)
            args = {**model.model_args, **kwargs}
            args.pop("model_name", None)
        else:
            args = {**kwargs, "num_classes": num_classes}
            model = build_model(cfg.model, **args)
        args["num_classes"] = num_classes
        model.model_args = args
        size = self.cfg.img_size or (32 if self.data.small else model.pretrained_cfg["input_size"][1])
        pcfg = {**model.pretrained_cfg, "input_size": (3, size, size)}
        if self.data.small:
            pcfg.update(crop_pct=1.0, resize_mode="tf-slim", interpolation="bilinear")
        model.pretrained_cfg = pcfg
        return model

    def head(self, model: nn.Module) -> list[nn.Module]:
        """The freshly initialised part (full learning rate when fine-tuning)."""
        return [model.classifier]

    def datasets(self, pcfg: dict[str, Any]) -> tuple[Dataset, Dataset]:

        data, recipe = self.data, self.recipe
        train = build_transforms(pcfg, data.small, recipe.augment, True, data.flip, recipe.randaug_magnitude,
                                 recipe.pad_crop)  # fmt: skip
        val = build_transforms(pcfg, data.small, recipe.augment, False)
        return ImageDataset(data.train, train), ImageDataset(data.val, val)

    def val_loader(self, ds: Dataset, batch_size: int, d: Dist) -> DataLoader:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(ds, d.world, d.rank, shuffle=False) if d.world > 1 else None
        return DataLoader(ds, batch_size, sampler=sampler, num_workers=self.cfg.workers)

    def mixer(self) -> Any:
        """MixUp / CutMix as the recipe asks (``None``: no mixing)."""
        recipe = self.recipe
        if not (recipe.mixup or recipe.cutmix):
            return None
        from torchvision.transforms import v2

        n = len(self.classes)
        pairs = ((v2.MixUp(alpha=recipe.mixup, num_classes=n), recipe.mixup),
                 (v2.CutMix(alpha=recipe.cutmix, num_classes=n), recipe.cutmix))  # fmt: skip
        return v2.RandomChoice([m for m, a in pairs if a])

    def loss(self, net: nn.Module, batch: Batch, d: Dist, channels_last: bool, amp: Any) -> tuple[torch.Tensor, int]:
        x, y = batch
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        target = y
        if self.mix is not None:
            x, target = self.mix(x, y)
        with amp():
            return self.criterion(net(x).float(), target), len(y)

    def evaluate(self, model: nn.Module, loader: DataLoader, d: Dist, channels_last: bool, amp: Any) -> list[float]:
        """The ``metrics`` on the validation data, reduced over all processes."""
        run = torch_runner(model, channels_last=channels_last, amp=amp)
        top1 = top5 = n = 0.0
        for x, y in loader:
            hit1, hit5 = topk_hits(run(x), y.to(d.device))
            top1, top5, n = top1 + hit1, top5 + hit5, n + len(y)
        top1, top5, n = all_reduce([top1, top5, n], d)
        return [top1 / max(n, 1), top5 / max(n, 1)]


class DenseTask(TrainTask):
    """Detection and segmentation: torchvision's model interfaces, evaluated in the main process."""

    def load(self) -> None:
        self.data = load_dense_data(self.task, self.cfg.data, self.cfg.label_map)
        self.classes, self.bad, self.label_map = (
            self.data.classes,
            self.data.train.bad + self.data.val.bad,
            self.data.label_map,
        )

    def build(self) -> nn.Module:

        cfg = self.cfg
        kwargs: dict[str, Any] = {**cfg.extra_model_args, "num_classes": len(self.classes)}
        if cfg.width_mult != 1.0:
            kwargs["width_mult"] = cfg.width_mult
        if cfg.pretrained:
            kwargs["pretrained_backbone"] = cfg.pretrained
        return create_model(cfg.model, **self.size_args(), **kwargs)

    def size_args(self) -> dict[str, Any]:
        return {}

    def head(self, model: nn.Module) -> list[nn.Module]:
        extra = getattr(model.backbone, "extra", None)  # SSD's extra layers are new too
        return [m for name, m in model.named_children() if name != "backbone"] + ([extra] if extra else [])

    def evaluate(self, model: nn.Module, loader: DataLoader, d: Dist, channels_last: bool, amp: Any) -> list[float]:

        scores = (
            self.scores(torch_runner(model, task=self.task, channels_last=channels_last, amp=amp), loader)
            if d.main
            else {}
        )
        return all_reduce([scores.get(m.removeprefix("val_"), 0.0) for m in self.metrics], d)

    def val_loader(self, ds: Dataset, batch_size: int, d: Dist) -> DataLoader:
        return DataLoader(ds, batch_size if self.collate else 1, num_workers=self.cfg.workers, collate_fn=self.collate)


class DetectionTask(DenseTask):
    task = "detection"
    metrics = ("val_map", "val_map50")
    labels = ("mAP", "mAP@.5")

    def size_args(self) -> dict[str, Any]:
        return {"size": self.cfg.img_size} if self.cfg.img_size else {}

    def datasets(self, pcfg: dict[str, Any]) -> tuple[Dataset, Dataset]:
        self.collate = detection_collate
        return (DetectionDataset(self.data.train, detection_transforms(True)),
                DetectionDataset(self.data.val, detection_transforms(False)))  # fmt: skip

    def loss(self, net: nn.Module, batch: Batch, d: Dist, channels_last: bool, amp: Any) -> tuple[torch.Tensor, int]:
        images, targets = batch
        images = [im.to(d.device, non_blocking=True) for im in images]
        targets = [{k: v.to(d.device, non_blocking=True) for k, v in t.items()} for t in targets]
        with amp():
            losses = net(images, targets)
        return sum(v.float() for v in losses.values()), len(images)

    def scores(self, run: Any, loader: DataLoader) -> dict[str, float]:
        return run_detection(run, loader)


class SegmentationTask(DenseTask):
    task = "segmentation"
    metrics = ("val_miou", "val_pixel_acc")
    labels = ("mIoU", "pixel accuracy")

    def build(self) -> nn.Module:
        model = super().build()
        size = self.cfg.img_size or model.pretrained_cfg["resize"]
        model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, size, size), "resize": size}
        return model

    def datasets(self, pcfg: dict[str, Any]) -> tuple[Dataset, Dataset]:
        size, data = pcfg["resize"], self.data
        return (SegmentationDataset(data.train, segmentation_transforms(pcfg, size, True), data.label_map),
                SegmentationDataset(data.val, segmentation_transforms(pcfg, size, False), data.label_map))  # fmt: skip

    def loss(self, net: nn.Module, batch: Batch, d: Dist, channels_last: bool, amp: Any) -> tuple[torch.Tensor, int]:
        x, y = (t.to(d.device, non_blocking=True) for t in batch)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        with amp():
            out = net(x)["out"]
        return F.cross_entropy(out.float(), y, ignore_index=IGNORE), len(y)

    def scores(self, run: Any, loader: DataLoader) -> dict[str, float]:
        return run_segmentation(run, loader, len(self.classes))


def train_task(cfg: TrainConfig, recipe: Recipe) -> TrainTask:
    kind = {"classification": TrainTask, "detection": DetectionTask, "segmentation": SegmentationTask}
    return kind[task_of(cfg.model)](cfg, recipe)
