"""Every set of pretrained weights the project knows, in one typed table: torchvision's, timm's (MobileNetV4
included), Google's TFLite files and the COCO task weights.

Names are ``model.tag`` as in timm: ``model`` is ours (``mobilenet_v3_large``), the tag says whose weights
and what they were trained on (``tv_in1k``, ``tv2_in1k`` for torchvision's second recipe, timm's own tags,
``google_*`` for Google's files). A width other than 1.0 (or a resolution other than the model's native
one) leads the tag: ``mobilenet_v2.w140_ra_in1k``, ``mobilenet_v1.w025_r128_google_uint8_in1k``.

``transforms`` is the evaluation preprocessing the publisher gives; ``None`` means the model's own (the
registry's ``pretrained_cfg``, e.g. MobileNetV4's native 256 px / crop 0.95, which timm's weights share) or,
for Google's files, what the file itself says (its input quantization; :mod:`.tflite`). Metrics are the
publisher's, with their source; timm's card lists none that we could verify offline, so its entries
carry none.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any

from mobilenets.models.registry import IMAGENET_MEAN, IMAGENET_STD
from mobilenets.util.errors import UnknownWeights

TV = "https://download.pytorch.org/models/"
TV_CARD = "torchvision weights metadata ({})"
TFLITE_SUPPORT = "https://github.com/tensorflow/tflite-support/raw/dd3362ea685bb7ab1f7268c81ec567d3b720ae57/"
CORAL = "https://github.com/google-coral/test_data/raw/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
ATU = "https://github.com/weilly0912/ATU_Model_Zoo/raw/16742989779cd175d708afd02c3c748a86494027/"
GOOGLE_CARD = "TF-slim / TFLite hosted models tables"


# The class lists of the COCO task weights, as torchvision's weights metadata names them (index = label).
TASK_CLASSES = {
    "coco-91": ("torchvision.models.detection", "SSDLite320_MobileNet_V3_Large_Weights", "COCO_V1"),
    "coco-voc-21": ("torchvision.models.segmentation", "LRASPP_MobileNet_V3_Large_Weights", "COCO_WITH_VOC_LABELS_V1"),
}


def task_classes(classes: str) -> list[str]:
    """The class names of ``coco-91`` (background first, "N/A" for COCO's unused ids) or ``coco-voc-21``."""
    module, enum, member = TASK_CLASSES[classes]
    return list(getattr(getattr(importlib.import_module(module), enum), member).meta["categories"])


@dataclass(frozen=True)
class Transforms:
    """Evaluation preprocessing: resize to ``size / crop_pct``, centre crop ``size``, normalize."""

    size: int
    crop_pct: float
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class Weights:
    """One set of published weights: where it comes from, what it needs, what it scores."""

    model: str
    tag: str
    source: str  # "torchvision" | "timm" | "google"
    url: str
    license: str
    classes: str  # "imagenet-1k" | "imagenet-1001" (TF: background first) | "coco-91" | "coco-voc-21" | "none"
    transforms: Transforms | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)  # what the weights need (width, BN eps, padding)
    sha256: str | None = None
    file_name: str | None = None  # the cache file name; default: the URL's last part
    default_for: str | None = None  # the release `pretrained="torchvision"` / `"timm"` picks for the model
    hf_repo: str | None = None  # kept in the Hugging Face hub's cache (its repo), not torch.hub's

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def cache_name(self) -> str:
        return self.file_name or self.url.rsplit("/", 1)[-1]

    def pretrained_cfg(self, native: dict[str, Any]) -> dict[str, Any]:
        """The model's ``pretrained_cfg`` with these weights: the publisher's transforms over ``native``."""
        cfg = dict(native)
        if self.transforms is not None:
            t = self.transforms
            cfg.update(input_size=(3, t.size, t.size), crop_pct=t.crop_pct, interpolation=t.interpolation,
                       mean=t.mean, std=t.std)  # fmt: skip
        if self.classes in TASK_CLASSES:
            cfg["categories"] = task_classes(self.classes)
        return {
            **cfg,
            "source": f"{self.source} {self.name}",
            "url": self.url,
            "weights": self.name,
            "license": self.license,
        }


def _tv(model: str, tag: str, file: str, resize: int, top1: float, top5: float, enum: str, **kw: Any) -> Weights:
    return Weights(model, tag, "torchvision", TV + file, "BSD-3-Clause", "imagenet-1k",
                   Transforms(224, 224 / resize), {"top1": top1, "top5": top5}, TV_CARD.format(enum), **kw)  # fmt: skip


def _timm(model: str, tag: str, timm_tag: str, width: float = 1.0, **kw: Any) -> Weights:
    args = {"bn_eps": 1e-5, **({"width_mult": width} if width != 1.0 else {})}
    url = f"https://huggingface.co/timm/{timm_tag}/resolve/main/model.safetensors"
    return Weights(model, tag, "timm", url, "Apache-2.0", "imagenet-1k", model_args=args,
                   file_name=f"{timm_tag}.safetensors", **kw)  # fmt: skip


def _gemma(model: str) -> Weights:
    """Gemma 3n's vision encoder, as timm publishes it: the encoder alone (no classifier), Gemma's licence
    (the Gemma Terms of Use, ai.google.dev/gemma/terms),
    TF "SAME" padding (what it was trained with; timm's classifier variant pads symmetrically, ours takes
    the weights' padding)."""
    repo = "timm/mobilenetv5_300m.gemma3n"
    return Weights(model, "gemma3n", "timm", f"https://huggingface.co/{repo}/resolve/main/model.safetensors",
                   "Gemma", "none", Transforms(768, 1.0, "bicubic", (0.0,) * 3, (1.0,) * 3), model_args={"padding": "same"},
                   file_name="mobilenetv5_300m.gemma3n.safetensors", default_for="timm", hf_repo=repo)  # fmt: skip


def _google(model: str, tag: str, url: str, width: float, top1: float, sha256: str, file_name: str) -> Weights:
    args = {"width_mult": width, "padding": "same"}
    return Weights(model, tag, "google", url, "Apache-2.0", "imagenet-1001", None, {"top1": top1}, GOOGLE_CARD,
                   args, sha256, file_name)  # fmt: skip


_BICUBIC = {"interpolation": "bicubic"}
CATALOG: tuple[Weights, ...] = (
    _tv("mobilenet_v2", "tv_in1k", "mobilenet_v2-b0353104.pth", 256, 71.878, 90.286, "MobileNet_V2_Weights.IMAGENET1K_V1"),
    _tv("mobilenet_v2", "tv2_in1k", "mobilenet_v2-7ebf99e0.pth", 232, 72.154, 90.822, "MobileNet_V2_Weights.IMAGENET1K_V2",
        default_for="torchvision"),
    _tv("mobilenet_v3_large", "tv_in1k", "mobilenet_v3_large-8738ca79.pth", 256, 74.042, 91.340,
        "MobileNet_V3_Large_Weights.IMAGENET1K_V1"),
    _tv("mobilenet_v3_large", "tv2_in1k", "mobilenet_v3_large-5c1a4163.pth", 232, 75.274, 92.566,
        "MobileNet_V3_Large_Weights.IMAGENET1K_V2", default_for="torchvision"),
    _tv("mobilenet_v3_small", "tv_in1k", "mobilenet_v3_small-047dcff4.pth", 256, 67.668, 87.402,
        "MobileNet_V3_Small_Weights.IMAGENET1K_V1", default_for="torchvision"),
    Weights("ssdlite320_mobilenet_v3_large", "tv_coco", "torchvision", TV + "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
            "BSD-3-Clause", "coco-91", None, {"box_map": 21.3}, TV_CARD.format("SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"),
            default_for="torchvision"),
    Weights("lraspp_mobilenet_v3_large", "tv_coco_voc", "torchvision", TV + "lraspp_mobilenet_v3_large-d234d4ea.pth",
            "BSD-3-Clause", "coco-voc-21", None, {"miou": 57.9, "pixel_acc": 91.2},
            TV_CARD.format("LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1"), default_for="torchvision"),
    _timm("mobilenet_v1", "ra4_e3600_r224_in1k", "mobilenetv1_100.ra4_e3600_r224_in1k", default_for="timm",
          transforms=Transforms(224, 0.875, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))),
    _timm("mobilenet_v2", "w050_lamb_in1k", "mobilenetv2_050.lamb_in1k", 0.5, default_for="timm",
          transforms=Transforms(224, 0.875, **_BICUBIC)),
    _timm("mobilenet_v2", "ra_in1k", "mobilenetv2_100.ra_in1k", default_for="timm", transforms=Transforms(224, 0.875, **_BICUBIC)),
    _timm("mobilenet_v2", "w140_ra_in1k", "mobilenetv2_140.ra_in1k", 1.4, default_for="timm",
          transforms=Transforms(224, 0.875, **_BICUBIC)),
    _timm("mobilenet_v3_large", "ra_in1k", "mobilenetv3_large_100.ra_in1k", default_for="timm",
          transforms=Transforms(224, 0.875, **_BICUBIC)),
    _timm("mobilenet_v3_small", "w050_lamb_in1k", "mobilenetv3_small_050.lamb_in1k", 0.5, default_for="timm",
          transforms=Transforms(224, 0.875, **_BICUBIC)),
    _timm("mobilenet_v3_small", "w075_lamb_in1k", "mobilenetv3_small_075.lamb_in1k", 0.75, default_for="timm",
          transforms=Transforms(224, 0.875, **_BICUBIC)),
    _timm("mobilenet_v3_small", "lamb_in1k", "mobilenetv3_small_100.lamb_in1k", default_for="timm",
          transforms=Transforms(224, 0.875, **_BICUBIC)),
    _timm("mobilenet_v4_conv_small", "e2400_r224_in1k", "mobilenetv4_conv_small.e2400_r224_in1k", default_for="timm"),
    _timm("mobilenet_v4_conv_medium", "e500_r256_in1k", "mobilenetv4_conv_medium.e500_r256_in1k", default_for="timm"),
    _timm("mobilenet_v4_conv_large", "e600_r384_in1k", "mobilenetv4_conv_large.e600_r384_in1k", default_for="timm"),
    _timm("mobilenet_v4_hybrid_medium", "ix_e550_r256_in1k", "mobilenetv4_hybrid_medium.ix_e550_r256_in1k",
          default_for="timm"),
    _timm("mobilenet_v4_hybrid_large", "ix_e600_r384_in1k", "mobilenetv4_hybrid_large.ix_e600_r384_in1k",
          default_for="timm"),
    _gemma("mobilenet_v5_300m_enc"),
    _gemma("mobilenet_v5_300m"),
    _google("mobilenet_v1", "w025_google_float_in1k",
            TFLITE_SUPPORT + "tensorflow_lite_support/cc/test/testdata/task/vision/mobilenet_v1_0.25_224_1_default_1.tflite",
            0.25, 49.8, "446ec673881cd46371a8726075b714194ada39d144762260cb76d15318597df7",
            "mobilenet_v1_0.25_224_float.tflite"),
    _google("mobilenet_v1", "w025_google_uint8_in1k",
            TFLITE_SUPPORT + "tensorflow_lite_support/cc/test/testdata/task/vision/mobilenet_v1_0.25_224_quant.tflite",
            0.25, 48.2, "e480eb15572f86d3d5f1be6e83e35b3c7d509ab2bcec353707d1f614e14edca2",
            "mobilenet_v1_0.25_224_quant.tflite"),
    _google("mobilenet_v1", "w025_r128_google_uint8_in1k", CORAL + "mobilenet_v1_0.25_128_quant.tflite", 0.25, 39.9,
            "cb273c23ee76374b05b9583177e28aa19744858a7679c56a250e83d0333da785", "mobilenet_v1_0.25_128_quant.tflite"),
    _google("mobilenet_v1", "w050_r160_google_uint8_in1k", CORAL + "mobilenet_v1_0.5_160_quant.tflite", 0.5, 57.7,
            "3cc6d2ca460abd2e0f699a6d0d2550c6b61c6e3b0e27a3616e384ea74cb86f43", "mobilenet_v1_0.5_160_quant.tflite"),
    _google("mobilenet_v1", "w075_r192_google_uint8_in1k", CORAL + "mobilenet_v1_0.75_192_quant.tflite", 0.75, 66.2,
            "41daeb22fdcf947e0e5ec32373aa9df7c31f3ef45dbd0ef7b5940fbce3c20f6a", "mobilenet_v1_0.75_192_quant.tflite"),
    _google("mobilenet_v2", "google_uint8_in1k",
            TFLITE_SUPPORT + "tensorflow_lite_support/metadata/python/tests/testdata/image_classifier/"
            "mobilenet_v2_1.0_224_quant.tflite", 1.0, 70.8,
            "f08d447cde49b4e0446428aa921aff0a14ea589fa9c5817b31f83128e9a43c1d", "mobilenet_v2_1.0_224_quant.tflite"),
    _google("mobilenet_v3_small", "google_uint8_in1k",
            ATU + "Classification/mobilenet_v3/v3-small_224_1.0_uint8.tflite", 1.0, 64.9,
            "da341cf06fa50127a72dcbeb140ee5ee98013630aa044260a4c3d45c43fc89ce", "mobilenet_v3_small_1.0_224_uint8.tflite"),
)  # fmt: skip
BY_NAME = {w.name: w for w in CATALOG}
_FILES = [w.cache_name for w in CATALOG if w.hf_repo is None]
# A release's own file name (``mobilenet_v2_1.0_224_quant.tflite``) where it names one release alone.
BY_FILE = {w.cache_name: w for w in CATALOG if w.hf_repo is None and _FILES.count(w.cache_name) == 1}


def list_pretrained(filter: str = "*") -> list[str]:
    """The ``model.tag`` names of every known set of weights matching ``filter`` (shell wildcards), as timm's."""
    return sorted(n for n in BY_NAME if fnmatch.fnmatch(n, filter))


def get_weights(name: str) -> Weights:
    """The catalogue entry called ``name``; :class:`UnknownWeights` naming the close ones otherwise."""
    if name in BY_NAME:
        return BY_NAME[name]
    model = name.split(".")[0]
    close = difflib.get_close_matches(name, BY_NAME, n=3) or list_pretrained(f"{model}.*")
    hint = (
        f"; did you mean {', '.join(close)}?"
        if close
        else "; see mobilenets.list_pretrained() or `mobilenets zoo --weights`."
    )
    raise UnknownWeights(f"No weights called {name!r}{hint}")


def release(model: str, source: str, width_mult: float = 1.0) -> Weights:
    """The weights ``pretrained=source`` ("torchvision" / "timm") means for ``model`` at ``width_mult``."""
    for w in CATALOG:
        if w.model == model and w.default_for == source and w.model_args.get("width_mult", 1.0) == width_mult:
            return w
    have = ", ".join(f"{w.model} width_mult={w.model_args.get('width_mult', 1.0):g}"
                     for w in CATALOG if w.default_for == source)  # fmt: skip
    raise UnknownWeights(f"{source} publishes no weights for {model} width_mult={width_mult:g}; it has {have}.")
