"""The arguments of ``mobilenets train``, checked, and the error training stops with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from mobilenets.models.registry import model_entry
from mobilenets.models.tasks import task_backbone, task_of
from mobilenets.train.recipes import RECIPES
from mobilenets.util.errors import TrainingError

AMP = ("none", "bf16", "fp16")


@dataclass
class TrainConfig:
    """The arguments of ``mobilenets train`` (docs: "Train and fine-tune")."""

    model: str
    data: str
    output: str
    width_mult: float = 1.0
    pretrained: str | None = None
    epochs: int = 10
    batch_size: int | str = "auto"  # "auto": the largest that fits this machine's memory (see autobatch)
    img_size: int | None = None
    lr: float | None = None
    recipe: str | None = None
    workers: int = 2
    seed: int = 0
    amp: str = "none"
    small_input: bool = False
    strict_data: bool = False
    resume: bool = False
    channels_last: bool | None = None
    clip_grad: float | None = None
    sync_bn: bool = False
    label_map: str | None = None  # segmentation masks: "coco-voc" (see dense_data)
    extra_model_args: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        task = task_of(self.model)
        if task == "classification":
            model_entry(self.model)
        else:
            task_backbone(self.model)
            if self.small_input:
                raise TrainingError("--small-input is for classification models.")
        if self.label_map is not None and task != "segmentation":
            raise TrainingError("--label-map is for segmentation models (lraspp_...).")
        if self.epochs < 1:
            raise TrainingError(f"--epochs must be >= 1, got {self.epochs}.")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise TrainingError(f"--batch-size must be auto or an integer >= 1, got {self.batch_size!r}.")
        if self.img_size is not None and self.img_size < 16:
            raise TrainingError(f"--img-size must be >= 16, got {self.img_size}.")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainingError(f"--lr must be a positive number, got {self.lr}.")
        if self.recipe is not None and self.recipe not in RECIPES:
            raise TrainingError(f"Unknown recipe {self.recipe!r}; use one of {', '.join(RECIPES)}.")
        if self.recipe == "finetune" and not self.pretrained:
            raise TrainingError("The finetune recipe needs --pretrained (torchvision, timm or a weights file).")
        if self.amp not in AMP:
            raise TrainingError(f"--amp must be one of {', '.join(AMP)}, got {self.amp!r}.")
        if self.amp == "fp16" and not torch.cuda.is_available():
            raise TrainingError("--amp fp16 needs a CUDA GPU; on CPU use --amp bf16.")
        if self.sync_bn and not torch.cuda.is_available():
            raise TrainingError("--sync-bn needs CUDA GPUs (PyTorch's SyncBatchNorm runs on GPU only).")
        if self.workers < 0:
            raise TrainingError(f"--workers must be >= 0, got {self.workers}.")
