"""Quantization-aware fine-tuning with NNCF, for when post-training int8 loses too much accuracy.

The model is fused (BN folded, as in the int8 export), NNCF inserts fake quantizers with the same
settings as post-training quantization (:func:`.int8_settings.nncf_options`) and initialises their ranges on
up to 32 of the calibration images (training learns them: on the demo's model all its 120 gave the same
top-1 within an image, 5 s slower), then weights and ranges are fine-tuned on labelled images (SGD,
cosine schedule). PyTorch's ONNX exporter writes the fake quantizers as QuantizeLinear/DequantizeLinear pairs:
the same kind of QDQ model as post-training quantization, run by ONNX Runtime and OpenVINO alike.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.utils.data import DataLoader

from mobilenets.data.images import ImageDataset, build_transforms, load_train_data
from mobilenets.deploy.contract import relative_diff, sized_cfg
from mobilenets.deploy.int8_settings import import_nncf, nncf_options, shrink_weights, stem_nodes
from mobilenets.deploy.onnx import onnx_bytes
from mobilenets.models.fuse import fuse
from mobilenets.runtime.runners import onnx_session
from mobilenets.util.errors import ExportError
from mobilenets.util.extras import needs

QAT_INIT_IMAGES = 32


def _stem_node(model: nn.Module) -> str:
    """NNCF's name for the first convolution (the one reading the image)."""
    name = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    return f"{name.replace('.', '/')}/conv2d/0"


def qat_finetune(
    model: nn.Module,
    data: str,
    calib: torch.Tensor,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 32,
    workers: int = 2,
    bits: int = 7,
) -> nn.Module:
    """``model`` with NNCF fake quantizers, fine-tuned for ``epochs`` on the training split of ``data``
    (a folder with ``train/`` class subfolders, ``digits`` or ``cifar10``/``cifar100``, as ``mobilenets
    train --data`` takes) after range initialisation on ``calib`` (N x 3 x H x W). Returns it in eval mode;
    export it with :func:`qat_onnx`."""
    nncf = import_nncf("Quantization-aware fine-tuning")
    # NNCF compiles its CPU fake-quantize kernels on first use (about a minute on 2 cores; it falls back
    # to plain PyTorch without a compiler): wait for it rather than fail after NNCF's default 60 s.
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")
    if epochs < 1 or lr <= 0:
        raise ExportError(f"Quantization-aware training needs epochs >= 1 and lr > 0, got {epochs} and {lr}.")
    train = load_train_data(data, option="--qat")
    if len(train.train.classes) != model.num_classes:
        raise ExportError(f"--qat data {data} has {len(train.train.classes)} classes but the model has "
                          f"{model.num_classes}; fine-tune on the data the model was trained for.")  # fmt: skip
    size = calib.shape[-1]
    cfg = sized_cfg(model, size)
    images = ImageDataset(train.train, build_transforms(cfg, train.small, "none", True, train.flip))
    drop_last = len(images) > batch_size
    loader = DataLoader(images, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=drop_last)
    fused = fuse(model)
    dataset = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    subset = min(len(calib), QAT_INIT_IMAGES)
    quantized = nncf.quantize(fused, dataset, **nncf_options([_stem_node(fused)], subset, bits, graph=False))
    optimizer = torch.optim.SGD(quantized.parameters(), lr=lr, momentum=0.9)
    steps = epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    quantized.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.cross_entropy(quantized(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return quantized.eval()


def qat_onnx(quantized: nn.Module, x: torch.Tensor) -> bytes:
    """The QDQ ONNX model of a :func:`qat_finetune` result, weights stored compactly."""
    nncf = import_nncf("Quantization-aware fine-tuning")
    with needs("Quantization-aware fine-tuning"):
        import onnx

    plain = nncf.strip(quantized, do_copy=True, example_input=x)
    model = onnx.load_from_string(onnx_bytes(plain, x))
    shrink_weights(model, keep=set(stem_nodes(model)))
    return model.SerializeToString()


def qat_check(onnx_bytes: bytes, quantized: nn.Module, x: torch.Tensor) -> float:
    """Relative max |diff| between ONNX Runtime and the fake-quantized model on ``x``."""
    got = onnx_session(onnx_bytes).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = quantized(x).numpy()
    return relative_diff(got, ref)
