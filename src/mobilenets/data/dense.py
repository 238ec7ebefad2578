"""Detection and segmentation data: YOLO folders or dataset YAMLs, COCO JSON, image + PNG mask folders.

Label spaces (0 is always background, as in torchvision's detection and segmentation models):
- YOLO: class ``i`` of the labels becomes label ``i + 1``; the names come from the YAML (``names``).
- COCO JSON: the category ids themselves (COCO's own 1..90, so COCO-trained weights fit), ``N/A`` for ids
  that no category uses.
- Masks: the pixel values are the labels, 255 is ignored; names from the YAML (``names`` or ``classes``).
  ``label_map="coco-voc"`` turns COCO panoptic ids into the 21 VOC classes of torchvision's LR-ASPP
  (``COCO_WITH_VOC_LABELS``), every other id into background.

Layouts that ``--data`` may name (``<split>`` is ``train``/``train2017``, ``val``/``val2017``/``test``...):
- a dataset YAML with ``train:`` and ``val:`` entries (image folders, or ``{images, masks}`` for masks),
  resolved against its ``path:`` and the YAML's own folder and its parents;
- a folder with ``images/<split>`` and ``labels/<split>`` (YOLO txt) or ``annotations/instances_<split>.json``
  (COCO), or ``images/<split>`` and ``masks/<split>`` (segmentation).
YOLO labels of ``.../images/<split>/x.jpg`` are found where Ultralytics looks (``.../labels/<split>/x.txt``)
or in ``labels/<split>`` beside the YAML. Unreadable images are left out and listed, as in classification.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from mobilenets.data.images import _check_images
from mobilenets.data.preprocess import list_images, load_rgb
from mobilenets.util.errors import DataError
from mobilenets.weights.catalog import task_classes

TRAIN_SPLITS = ("train", "train2017")
VAL_SPLITS = ("val", "val2017", "valid", "test", "test2017")
IGNORE = 255  # mask value left out of the loss and the metrics
# torchvision's COCO_WITH_VOC_LABELS: VOC class k is COCO (panoptic) category id COCO_TO_VOC[k]
COCO_TO_VOC = [0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72]
LABEL_MAPS = ("coco-voc",)


@dataclass
class DenseSplit:
    """Images with their targets: ``(path, boxes xyxy in pixels (N, 4), labels (N,))`` for detection,
    ``(path, mask path)`` for segmentation."""

    samples: list[tuple[Any, ...]]
    bad: list[str] = field(default_factory=list)


@dataclass
class DenseData:
    task: str
    train: DenseSplit
    val: DenseSplit
    classes: list[str]  # index = label; classes[0] is the background
    label_map: str | None = None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path} is not a readable YAML file ({type(exc).__name__}).") from None
    if not isinstance(doc, dict) or "train" not in doc or "val" not in doc:
        raise DataError(f"{path} needs 'train:' and 'val:' entries naming the image folders.")
    return doc


def _names(doc: dict[str, Any]) -> dict[int, str]:
    names = doc.get("names", doc.get("classes")) or {}
    return {int(k): str(v) for k, v in (names.items() if isinstance(names, dict) else enumerate(names))}


def _resolve(entry: str, yaml_path: Path, doc: dict[str, Any]) -> Path:
    """``entry`` against the YAML's ``path:`` (relative to the YAML) and then the YAML's folder and parents."""
    bases = [yaml_path.parent / str(doc.get("path", "."))] + list(yaml_path.parents)
    for base in bases:
        if (base / entry).is_dir():
            return Path(os.path.normpath(base / entry))  # tidied, links kept as the user named them
    raise DataError(f"{yaml_path}: the folder {entry!r} is not under {bases[0]} or the YAML's parent folders.")


def _split_dir(parent: Path, names: tuple[str, ...]) -> Path | None:
    return next((parent / n for n in names if (parent / n).is_dir()), None)


def _detection_classes(names: dict[int, str], offset: int, size: int) -> list[str]:
    """Label -> name for labels ``0..size-1``: background first, ``N/A`` where no class has the label."""
    return ["__background__"] + [names.get(i - offset, "N/A") for i in range(1, size)]


# --- detection ---------------------------------------------------------------------------------------
def read_yolo_boxes(label_file: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO txt (``class cx cy w h`` normalized; polygons of YOLO-seg give their bounding box) as
    pixel xyxy boxes and labels ``class + 1``."""
    boxes, labels = [], []
    if label_file.is_file():
        for n, line in enumerate(label_file.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                cls, values = int(parts[0]), [float(v) for v in parts[1:]]
            except ValueError:
                raise DataError(f"{label_file}:{n} is not 'class cx cy w h'.") from None
            if len(values) == 4:
                cx, cy, w, h = values
                x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            elif len(values) >= 6 and len(values) % 2 == 0:
                xs, ys = values[0::2], values[1::2]
                x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
            else:
                raise DataError(f"{label_file}:{n} has {len(values)} numbers after the class; expected 4.")
            if cls < 0:
                raise DataError(f"{label_file}:{n} has class {cls}; YOLO class ids start at 0.")
            if not (-0.01 <= x0 < x1 <= 1.01 and -0.01 <= y0 < y1 <= 1.01):
                raise DataError(f"{label_file}:{n} has a box outside the image or of no size ({line.strip()}); "
                                "YOLO boxes are centre, width and height as fractions of the image.")  # fmt: skip
            x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in (x0, y0, x1, y1))
            boxes.append([x0 * width, y0 * height, x1 * width, y1 * height])
            labels.append(cls + 1)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as img:
            return img.size
    except OSError:
        return None


def _yolo_split(images: Path, label_dirs: list[Path]) -> DenseSplit:
    label_dir = next((d for d in label_dirs if d.is_dir()), None)
    if label_dir is None:
        raise DataError(f"No YOLO labels for {images}: looked in {', '.join(str(d) for d in label_dirs)}.")
    paths = list_images(images)
    bad = set(_check_images(paths))
    samples = []
    for path in paths:
        size = None if str(path) in bad else _image_size(path)
        if size is None:
            bad.add(str(path))
            continue
        samples.append((path, *read_yolo_boxes(label_dir / f"{path.stem}.txt", *size)))
    return DenseSplit(samples, sorted(bad))


def _check_class_ids(splits: list[DenseSplit], names: dict[int, str], yaml_path: Path) -> None:
    """Every label's class among the YAML's ``names`` (before training starts, not in its first epoch)."""
    for split in splits:
        for image, _, labels in split.samples:
            unknown = sorted({int(y) - 1 for y in labels} - set(names))
            if unknown:
                raise DataError(f"The labels of {image.name} use class {unknown[0]}, which {yaml_path.name}'s "
                                f"names: ({len(names)} classes) lacks; add it there or fix the label.")  # fmt: skip


def _yolo_label_dirs(images: Path, extra: Path | None = None) -> list[Path]:
    parts = list(images.parts)
    dirs = []
    if "images" in parts:  # Ultralytics: the last 'images' in the path becomes 'labels'
        i = len(parts) - 1 - parts[::-1].index("images")
        dirs.append(Path(*parts[:i], "labels", *parts[i + 1 :]))
    if extra is not None:
        dirs.append(extra / "labels" / images.name)
    return dirs


def read_coco_json(path: Path, images: Path) -> tuple[DenseSplit, dict[int, str]]:
    """A COCO instances JSON: non-crowd boxes (xywh -> xyxy) with their category ids; images without
    annotations are kept (background only)."""
    try:
        doc = json.loads(path.read_text())
        cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        files = {int(im["id"]): im["file_name"] for im in doc["images"]}
        anns = doc["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a COCO instances JSON ({type(exc).__name__}: {exc}).") from None
    per_image: dict[int, list[dict[str, Any]]] = {i: [] for i in files}
    for a in anns:
        if not a.get("iscrowd", 0) and a["image_id"] in per_image:
            per_image[a["image_id"]].append(a)
    paths = [images / files[i] for i in sorted(files)]
    missing = [str(p) for p in paths if not p.is_file()]
    bad = set(_check_images([p for p in paths if p.is_file()])) | set(missing)
    samples = []
    for image_id in sorted(files):
        p = images / files[image_id]
        if str(p) in bad:
            continue
        xywh = np.asarray([a["bbox"] for a in per_image[image_id]], np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        labels = np.asarray([a["category_id"] for a in per_image[image_id]], np.int64)
        samples.append((p, boxes, labels))
    return DenseSplit(samples, sorted(bad)), cats


def load_detection_data(data: str) -> DenseData:
    """See the module docstring for what ``data`` may be."""
    path = Path(data)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        doc = _read_yaml(path)
        train, val = (_resolve(str(doc[k]), path, doc) for k in ("train", "val"))
        splits = [_yolo_split(d, _yolo_label_dirs(d, path.parent)) for d in (train, val)]
        names = _names(doc)
        if not names:
            raise DataError(f"{path} has no names: list; give one class name per label id (names: [cat, dog]).")
        _check_class_ids(splits, names, path)
        return DenseData("detection", *splits, _detection_classes(names, 1, max(names, default=-1) + 2))
    if not path.is_dir():
        raise DataError(f"--data {data} is neither a dataset YAML nor a folder.")
    found = [_split_dir(path / "images", s) for s in (TRAIN_SPLITS, VAL_SPLITS)]
    if None in found:
        raise DataError(f"{path} needs images/train and images/val (or train2017/val2017) folders, or give "
                        "a dataset YAML.")  # fmt: skip
    jsons = [path / "annotations" / f"instances_{d.name}.json" for d in found]
    if all(j.is_file() for j in jsons):
        (train, cats), (val, _) = (read_coco_json(j, d) for j, d in zip(jsons, found))
        return DenseData("detection", train, val, _detection_classes(cats, 0, max(cats) + 1))
    splits = [_yolo_split(d, _yolo_label_dirs(d)) for d in found]
    labels = [int(y) for s in splits for *_, ys in s.samples for y in ys]
    return DenseData("detection", *splits, _detection_classes({}, 1, max(labels, default=0) + 1))


# --- segmentation ------------------------------------------------------------------------------------
def _mask_split(images: Path, masks: Path) -> DenseSplit:
    """Images that have a mask of the same stem (``.png``); images without one are not training data."""
    if not masks.is_dir():
        raise DataError(f"The mask folder {masks} does not exist.")
    pairs = [(p, masks / f"{p.stem}.png") for p in list_images(images)]
    pairs = [(p, m) for p, m in pairs if m.is_file()]
    if not pairs:
        raise DataError(f"No image in {images} has a mask of the same name in {masks}.")
    bad = set(_check_images([p for p, _ in pairs] + [m for _, m in pairs]))
    for image, mask in pairs:  # from the headers: sizes and modes
        if str(image) in bad or str(mask) in bad:
            continue
        with Image.open(image) as img, Image.open(mask) as m:
            if m.mode not in ("L", "P", "I", "I;16"):
                raise DataError(f"{mask} has mode {m.mode}; masks hold one class index per pixel "
                                "(single-channel or palette PNGs).")  # fmt: skip
            if img.size != m.size:
                bad.add(str(mask))  # a mask of another image: skipped and listed
    return DenseSplit([(p, m) for p, m in pairs if str(p) not in bad and str(m) not in bad], sorted(bad))


def load_segmentation_data(data: str, label_map: str | None = None) -> DenseData:
    """See the module docstring for what ``data`` may be."""
    if label_map is not None and label_map not in LABEL_MAPS:
        raise DataError(f"Unknown label map {label_map!r}; use one of {', '.join(LABEL_MAPS)}.")
    path = Path(data)
    names: dict[int, str] = {}
    if path.suffix in (".yaml", ".yml") and path.is_file():
        doc = _read_yaml(path)
        if not all(isinstance(doc[k], dict) and {"images", "masks"} <= set(doc[k]) for k in ("train", "val")):
            raise DataError(f"{path}: 'train:' and 'val:' each need 'images:' and 'masks:' folders.")
        pairs = [(_resolve(str(doc[k]["images"]), path, doc), _resolve(str(doc[k]["masks"]), path, doc))
                 for k in ("train", "val")]  # fmt: skip
        names = _names(doc)
    elif path.is_dir():
        images = [_split_dir(path / "images", s) for s in (TRAIN_SPLITS, VAL_SPLITS)]
        if None in images:
            raise DataError(f"{path} needs images/<split> and masks/<split> for train and val, or a dataset YAML.")
        pairs = [(d, path / "masks" / d.name) for d in images]
    else:
        raise DataError(f"--data {data} is neither a dataset YAML nor a folder.")
    train, val = (_mask_split(*p) for p in pairs)
    if label_map == "coco-voc":
        classes = task_classes("coco-voc-21")
    elif names:
        classes = [names.get(i, str(i)) for i in range(max(set(names) - {IGNORE}) + 1)]
        _check_mask_ids([train, val], classes, path)
    else:  # the classes are the ids the masks use, training and validation alike
        samples = train.samples + val.samples
        top = max(int(np.max(v[v != IGNORE], initial=0)) for v in (read_mask(m) for _, m in samples))
        classes = [str(i) for i in range(top + 1)]
    return DenseData("segmentation", train, val, classes, label_map)


def _check_mask_ids(splits: list[DenseSplit], classes: list[str], yaml_path: Path) -> None:
    """Refuse, before any work, a mask pixel whose class is past the YAML's names (255 is "ignore")."""
    for split in splits:
        for _, mask in split.samples:
            labels = read_mask(mask)
            top = int(np.max(labels[labels != IGNORE], initial=0))
            if top >= len(classes):
                raise DataError(f"{mask} has class {top}, which {yaml_path.name}'s names: ({len(classes)} classes) "
                                "lacks; fix the mask, name the class, or mark its pixels 255 (ignored).")  # fmt: skip


def read_mask(path: Path, label_map: str | None = None) -> np.ndarray:
    """A single-channel mask as uint8 labels (``label_map`` applied)."""
    mask = np.asarray(Image.open(path))
    if mask.ndim != 2:
        raise DataError(f"{path} is not a single-channel mask (shape {mask.shape}).")
    if label_map == "coco-voc":
        lut = np.zeros(256, np.uint8)
        lut[COCO_TO_VOC[1:]] = np.arange(1, len(COCO_TO_VOC), dtype=np.uint8)
        lut[IGNORE] = IGNORE
        mask = lut[mask]
    return mask.astype(np.uint8)


# --- datasets and transforms -------------------------------------------------------------------------
class DetectionDataset(Dataset):
    """``(image [0, 1] CHW, {"boxes", "labels"})`` through a torchvision.transforms.v2 pipeline."""

    def __init__(self, split: DenseSplit, transform: Any) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        path, boxes, labels = self.split.samples[i]
        img = tv_tensors.Image(v2.functional.pil_to_tensor(load_rgb(path)))
        target = {"boxes": tv_tensors.BoundingBoxes(torch.from_numpy(boxes), format="XYXY",
                                                    canvas_size=tuple(img.shape[-2:])),
                  "labels": torch.from_numpy(labels)}  # fmt: skip
        img, target = self.transform(img, target)
        return img.as_subclass(torch.Tensor), {k: v.as_subclass(torch.Tensor) for k, v in target.items()}


class SegmentationDataset(Dataset):
    """``(normalized image CHW, mask HW int64)`` through a torchvision.transforms.v2 pipeline."""

    def __init__(self, split: DenseSplit, transform: Any, label_map: str | None = None) -> None:
        self.split, self.transform, self.label_map = split, transform, label_map

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, mask_path = self.split.samples[i]
        img = tv_tensors.Image(v2.functional.pil_to_tensor(load_rgb(path)))
        mask = tv_tensors.Mask(torch.from_numpy(read_mask(mask_path, self.label_map)))
        img, mask = self.transform(img, mask)
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


def detection_transforms(train: bool) -> v2.Compose:
    """torchvision's SSDLite reference augmentation (IoU crop + flip) for training; the SSD model resizes
    and normalizes itself."""
    ops: list[Any] = [v2.RandomIoUCrop(), v2.RandomHorizontalFlip()] if train else []
    return v2.Compose([*ops, v2.ToDtype(torch.float32, scale=True), v2.SanitizeBoundingBoxes()])


def segmentation_transforms(cfg: dict[str, Any], size: int, train: bool) -> v2.Compose:
    """torchvision's segmentation reference: train on random 0.5-2x rescales (of ``size`` on the shorter
    side), ``size`` crops and flips; evaluate with the shorter side resized to ``size``."""
    norm = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg["mean"], cfg["std"])]
    if not train:
        return v2.Compose([v2.Resize(size, antialias=True), *norm])
    return v2.Compose([v2.RandomResize(size // 2, size * 2, antialias=True),
                       v2.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Mask: IGNORE, "others": 0}),
                       v2.RandomHorizontalFlip(), *norm])  # fmt: skip


def detection_collate(batch: list[Any]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = zip(*batch)
    return list(images), list(targets)
