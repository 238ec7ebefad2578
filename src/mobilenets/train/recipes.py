"""Training recipes as named presets, each with its source."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Optimizer, schedule, regularisation and augmentation of one training recipe.

    ``lr`` is for a batch of ``lr_batch`` images and scales linearly with the batch size (``lr_batch``
    0: no scaling). Schedules: ``exp`` (x``gamma`` per epoch), ``step`` (x``gamma`` every
    ``step_epochs``), ``cosine``; all after ``warmup_epochs`` of linear warm-up.
    """

    name: str
    source: str
    optimizer: str
    lr: float
    lr_batch: int
    weight_decay: float
    schedule: str
    gamma: float = 1.0
    step_epochs: float = 1.0
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    label_smoothing: float = 0.0
    ema_decay: float | None = None
    bn_momentum: float = 0.1
    dropout: float | None = None
    augment: str = "none"
    randaug_magnitude: int = 9
    pad_crop: bool = True  # tiny images (CIFAR-like): random pad-and-crop
    drop_path: float = 0.0  # stochastic depth at the last block (linear in depth)
    mixup: float = 0.0
    cutmix: float = 0.0
    backbone_lr_mult: float = 1.0
    freeze_bn: bool = False  # keep BN statistics fixed (pretrained weights, e.g. TFLite's folded BN)

    def scaled_lr(self, batch_size: int) -> float:
        return self.lr * batch_size / self.lr_batch if self.lr_batch else self.lr

    def lr_factor(self, step: int, steps_per_epoch: int, epochs: int) -> float:
        """Multiplier of the base learning rate at optimizer step ``step``."""
        total = max(1, epochs * steps_per_epoch)
        warmup = min(self.warmup_epochs * steps_per_epoch, 0.2 * total)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        epoch = step / steps_per_epoch
        if self.schedule == "exp":
            return self.gamma ** math.floor(epoch)
        if self.schedule == "step":
            return self.gamma ** math.floor(epoch / self.step_epochs)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("paper-v1v2", "MobileNetV1 paper sec. 4 and TF-slim's MobileNetV2 README (batch 96 per GPU)",
               "rmsprop", 0.045, 96, 4e-5, "exp", gamma=0.98, label_smoothing=0.1, ema_decay=0.9999),
        Recipe("paper-v3", "MobileNetV3 paper sec. 6.1: RMSProp 0.9/0.9, lr 0.1 at batch 4096, decay 0.01 "
               "(x0.99) every 3 epochs, wd 1e-5, dropout 0.2, EMA 0.9999, BN momentum 0.01 (TF 0.99)",
               "rmsprop", 0.1, 4096, 1e-5, "step", gamma=0.99, step_epochs=3,
               ema_decay=0.9999, bn_momentum=0.01, dropout=0.2),
        Recipe("paper-v4", "MobileNetV4 paper sec. 6 with the TF Model Garden config "
               "imagenet_mobilenetv4_conv_medium_tpu.yaml (the authors' training of Conv-M, 79.9%): AdamW "
               "lr 0.004 at batch 4096, wd 0.1, 1560 warm-up steps (5 epochs at 4096), cosine, label smoothing "
               "0.1, dropout 0.2, stochastic depth 0.075, RandAugment m15, BN momentum 0.003 (TF 0.997), "
               "500 epochs. timm's MNv4 weights used similar AdamW/cosine recipes (R. Wightman's hparams gist)",
               "adamw", 0.004, 4096, 0.1, "cosine", warmup_epochs=5, label_smoothing=0.1, bn_momentum=0.003,
               dropout=0.2, augment="randaug", randaug_magnitude=15, drop_path=0.075),
        Recipe("short", "modern short-budget recipe (timm/torchvision style): AdamW, cosine, warm-up, "
               "label smoothing; BN momentum 0.1 so that short runs evaluate well; tiny images flipped but not "
               "cropped: a few epochs underfit, and on 1000 CIFAR-10 images per class (V3-Small, 5 epochs, "
               "32 px) crops cost 1.9 points (59.2% -> 61.0%) and random resized crops 11 (49.7%)",
               "adamw", 3e-3, 0, 0.05, "cosine", warmup_epochs=1, label_smoothing=0.1, pad_crop=False),
        Recipe("finetune", "fine-tuning a pretrained backbone with a new head: AdamW, backbone at 0.1x lr, "
               "cosine with warm-up, BN statistics frozen (small fine-tuning sets estimate them badly, and "
               "Google's TFLite weights carry BN folded into the convolutions)",
               "adamw", 1e-3, 0, 1e-4, "cosine", warmup_epochs=1, label_smoothing=0.1,
               backbone_lr_mult=0.1, freeze_bn=True),
    )
}  # fmt: skip
