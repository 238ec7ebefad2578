"""Detection and segmentation metrics, evaluation and pictures.

- Detection: COCO mAP@[.5:.95] and mAP@.5 by pycocotools' ``COCOeval`` (box areas from the boxes).
- Segmentation: mean IoU over the classes that occur in the ground truth or the predictions (classes that
  are in neither have no IoU; torchvision's reference would print NaN), and pixel accuracy; label 255 is
  left out. Predictions are scored at the evaluation resolution (shorter side ``resize``), as torchvision's
  reference scores them.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mobilenets.data.dense import (
    IGNORE,
    DenseData,
    DetectionDataset,
    SegmentationDataset,
    detection_collate,
    detection_transforms,
    load_detection_data,
    load_segmentation_data,
    segmentation_transforms,
)
from mobilenets.data.preprocess import load_rgb
from mobilenets.evaluate.classify import order_warning
from mobilenets.runtime.classifier import Classifier
from mobilenets.util.errors import DataError


def coco_map(predictions: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """``{"map", "map50"}`` of ``predictions`` (boxes xyxy, scores, labels) against ``targets`` (boxes,
    labels), image by image, through pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(boxes: torch.Tensor) -> list[list[float]]:
        b = boxes.double().reshape(-1, 4)
        return torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()

    anns, dets = [], []
    for image_id, (p, t) in enumerate(zip(predictions, targets)):
        for box, label in zip(xywh(t["boxes"]), t["labels"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": label, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
        for box, score, label in zip(xywh(p["boxes"]), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": image_id, "category_id": label, "bbox": box, "score": score})
    if not anns:
        raise DataError("The evaluation images have no boxes; mAP needs ground truth.")
    gt = COCO()
    labels = {a["category_id"] for a in anns} | {d["category_id"] for d in dets}
    gt.dataset = {"images": [{"id": i} for i in range(len(targets))], "annotations": anns,
                  "categories": [{"id": c} for c in sorted(labels)]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not dets:
            return {"map": 0.0, "map50": 0.0}
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": max(0.0, float(ev.stats[0])), "map50": max(0.0, float(ev.stats[1]))}


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``num_classes`` x ``num_classes`` counts (rows: truth), pixels labelled ``IGNORE`` left out."""
    keep = target != IGNORE
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_scores(conf: torch.Tensor) -> dict[str, float]:
    conf = conf.double()
    tp, union = conf.diag(), conf.sum(0) + conf.sum(1) - conf.diag()
    present = union > 0
    return {"miou": float((tp[present] / union[present]).mean()) if present.any() else 0.0,
            "pixel_acc": float(tp.sum() / conf.sum().clamp(min=1))}  # fmt: skip


Runner = Callable[[Any], Any]


def run_detection(run: Runner, loader: DataLoader, label_lut: torch.Tensor | None = None) -> dict[str, float]:
    """mAP of ``run`` (a list of [0, 1] images -> torchvision detections) over ``loader``; ``label_lut``
    maps the data's labels into the model's."""
    predictions, targets = [], []
    for images, batch_targets in tqdm(loader, desc="eval", unit="batch", disable=not sys.stderr.isatty()):
        predictions += [{k: v.cpu() for k, v in p.items()} for p in run(images)]
        targets += [{**t, "labels": label_lut[t["labels"]] if label_lut is not None else t["labels"]}
                    for t in batch_targets]  # fmt: skip
    return coco_map(predictions, targets)


def run_segmentation(run: Runner, loader: DataLoader, num_classes: int,
                     label_lut: torch.Tensor | None = None) -> dict[str, float]:  # fmt: skip
    """mIoU and pixel accuracy of ``run`` (normalized NCHW batch -> logits NCHW) over ``loader``."""
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for x, y in tqdm(loader, desc="eval", unit="batch", disable=not sys.stderr.isatty()):
        pred = run(x).argmax(1).cpu()
        y = label_lut[y] if label_lut is not None else y
        conf += confusion(pred, y, num_classes)
    return segmentation_scores(conf)


def _named_in(data_classes: list[str], model_classes: list[str]) -> bool:
    """Whether the model has a class of each name in the data (``N/A``: COCO's unused ids)."""
    return {c for c in data_classes if c != "N/A"} <= set(model_classes)


def label_lut(data_classes: list[str], model_classes: list[str]) -> torch.Tensor | None:
    """Data label -> model label, by class name (``None``: the same labels). Same rule as classification:
    names when the model knows all of the data's names, else the index when the counts agree."""
    if data_classes == model_classes:
        return None
    if _named_in(data_classes, model_classes):
        lut = [model_classes.index(c) if c != "N/A" else 0 for c in data_classes]
        return torch.tensor(lut + [IGNORE] * (256 - len(lut)) if len(lut) < 256 else lut)
    if len(data_classes) == len(model_classes):
        return None
    raise DataError(f"The data's {len(data_classes)} classes ({', '.join(data_classes[:4])}...) do not match the "
                    f"model's {len(model_classes)} ({', '.join(model_classes[:4])}...); evaluate on data "
                    "with the model's classes.")  # fmt: skip


def load_dense_data(task: str, data: str, label_map: str | None = None) -> DenseData:
    if task == "detection":
        if label_map:
            raise DataError("--label-map is for segmentation masks.")
        return load_detection_data(data)
    return load_segmentation_data(data, label_map)


def eval_loader(task: str, data: DenseData, cfg: dict[str, Any], batch_size: int, workers: int) -> DataLoader:
    """The validation split as the model's evaluation sees it (segmentation: one image per batch, as the
    images keep their aspect ratios)."""
    if task == "detection":
        ds = DetectionDataset(data.val, detection_transforms(False))
        return DataLoader(ds, batch_size, num_workers=workers, collate_fn=detection_collate)
    ds = SegmentationDataset(data.val, segmentation_transforms(cfg, cfg["resize"], False), data.label_map)
    return DataLoader(ds, 1, num_workers=workers)


def evaluate_dense(clf: Classifier, data: str, label_map: str | None = None, batch_size: int = 8,
                   workers: int = 2) -> dict[str, Any]:  # fmt: skip
    """``{"map", "map50", "n"}`` or ``{"miou", "pixel_acc", "n"}`` of a loaded detection or segmentation
    model on the validation split of ``data``, the data's labels matched to the model's class names."""
    dense = load_dense_data(clf.task, data, label_map or clf.label_map)
    loader = eval_loader(clf.task, dense, clf.cfg, batch_size, workers)
    lut = label_lut(dense.classes, clf.class_names)
    if clf.task == "detection":
        scores = run_detection(clf.run, loader, lut)
    else:
        scores = run_segmentation(clf.run, loader, len(clf.class_names), lut)
    by_order = dense.classes != clf.class_names and not _named_in(dense.classes, clf.class_names)
    warnings = order_warning(data, dense.classes, clf.class_names) if by_order else []
    return {**scores, "n": len(dense.val.samples), "skipped": dense.val.bad, "warnings": warnings}


# --- pictures ----------------------------------------------------------------------------------------
def detect(clf: Classifier, images: list[torch.Tensor], score_thresh: float) -> list[dict[str, torch.Tensor]]:
    """A detector's ``boxes`` (pixels), ``scores`` and ``labels`` above ``score_thresh`` for each uint8 CHW image."""
    found = clf.run([img.float() / 255 for img in images])
    return [{k: det[k][det["scores"] >= score_thresh] for k in ("boxes", "scores", "labels")} for det in found]


def segment(clf: Classifier, img: torch.Tensor) -> torch.Tensor:
    """A segmenter's class per pixel (H x W, the image's own size) for a uint8 CHW image."""
    x = segmentation_transforms(clf.cfg, clf.cfg["resize"], False)(img)[None]
    logits = torch.nn.functional.interpolate(clf.run(x), size=img.shape[-2:], mode="bilinear")
    return logits.argmax(1)[0]


def predict_dense(clf: Classifier, paths: list[str], save: str | None = None, score_thresh: float = 0.3
                  ) -> list[dict[str, Any]]:  # fmt: skip
    """Detections above ``score_thresh`` (boxes in pixels) or the classes present in the mask, per image;
    with ``save``, the boxes or the mask drawn over each photo as ``save/<name>.png``."""
    from torchvision.transforms import v2
    from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

    names = clf.class_names
    out_dir = Path(save) if save else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in paths:
        img = v2.functional.pil_to_tensor(load_rgb(path))
        if clf.task == "detection":
            boxes, scores, labels = detect(clf, [img], score_thresh)[0].values()
            results.append({"image": str(path), "detections": [
                {"label": int(c), "name": names[int(c)], "score": round(float(s), 4),
                 "box": [round(float(v), 1) for v in b]} for b, s, c in zip(boxes, scores, labels)]})  # fmt: skip
            captions = [f"{names[int(c)]} {s:.2f}" for c, s in zip(labels, scores)]
            picture = draw_bounding_boxes(img, boxes, captions, width=3) if len(boxes) else img
        else:
            mask = segment(clf, img)
            present, counts = mask.unique(return_counts=True)
            results.append({"image": str(path), "classes": [
                {"label": int(c), "name": names[int(c)], "fraction": round(float(n) / mask.numel(), 4)}
                for c, n in zip(present, counts)]})  # fmt: skip
            shown = [int(c) for c in present if c != 0]
            picture = (draw_segmentation_masks(img, mask[None] == torch.tensor(shown)[:, None, None], alpha=0.5)
                       if shown else img)  # fmt: skip
        if out_dir is not None:
            target = out_dir / f"{Path(path).stem}.png"
            v2.functional.to_pil_image(picture).save(target)
            results[-1]["saved"] = str(target)
    return results
