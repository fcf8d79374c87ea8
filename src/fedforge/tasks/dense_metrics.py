"""Metrics of dense tasks: COCO mAP for boxes, confusion-matrix IoU for masks.

`coco_map` follows pycocotools' bbox evaluation (area range "all", 100 detections per image
and class, no crowd boxes): per image and class, detections in descending score order each
take the unmatched ground truth of highest IoU at or above the threshold; per class, the
precision envelope is read at 101 recall points; AP@[.5:.95] averages 10 IoU thresholds and
the classes that have ground truth. It is the evaluator when torchmetrics is absent, and the
tests hold it to pycocotools. With the `detection` extra (torchmetrics + pycocotools or
faster-coco-eval), `backend: torchmetrics` uses torchmetrics' MeanAveragePrecision instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from fedforge.data.targets import IGNORE
from fedforge.errors import ConfigError

IOU_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))
RECALL_POINTS = np.linspace(0, 1, 101)
MAX_DETECTIONS = 100


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` [D, 4] with every box in `b` [G, 4] (x1 y1 x2 y2, areas w*h as COCO)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, np.finfo(np.float64).tiny)


def _match(ious: np.ndarray, threshold: float) -> np.ndarray:
    """Which detections (rows, in score order) are true positives at `threshold` (greedy, as COCO).

    Only rows that reach the threshold with some ground truth can match; the rest are false
    positives without a loop."""
    tp = np.zeros(ious.shape[0], dtype=bool)
    if ious.size == 0:
        return tp
    bar = min(threshold, 1 - 1e-10)
    taken = np.zeros(ious.shape[1], dtype=bool)
    for d in np.flatnonzero((ious >= bar).any(1)):
        row = np.where(taken, -1.0, ious[d])
        best = int(row.argmax())
        if row[best] >= bar:
            taken[best] = True
            tp[d] = True
    return tp


def _average_precision(scores: np.ndarray, tp: np.ndarray, positives: int) -> float:
    """Area under the 101-point interpolated precision-recall curve of one class."""
    order = np.argsort(-scores, kind="mergesort")
    hits = tp[order].astype(np.float64)
    tps, fps = np.cumsum(hits), np.cumsum(1 - hits)
    recall = tps / positives
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope: best precision at >= this recall
    where = np.searchsorted(recall, RECALL_POINTS, side="left")
    valid = where < len(precision)
    sampled = np.zeros_like(RECALL_POINTS)
    sampled[valid] = precision[where[valid]]
    return float(sampled.mean())


def coco_map(
    predictions: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]], num_classes: int
) -> dict[str, float]:
    """`map` (AP@[.5:.95]), `map50`, `map75` and `ap50_class_K` for classes 1..num_classes-1 with ground truth."""
    found: dict[tuple[int, float], list[tuple[np.ndarray, np.ndarray]]] = {}
    positives = np.zeros(num_classes, dtype=np.int64)
    for pred, target in zip(predictions, targets, strict=True):
        gt_boxes, gt_labels = target["boxes"].cpu().double().numpy(), target["labels"].cpu().numpy()
        boxes, labels = pred["boxes"].cpu().double().numpy(), pred["labels"].cpu().numpy()
        scores = pred["scores"].cpu().double().numpy()
        positives += np.bincount(gt_labels, minlength=num_classes)[:num_classes]
        for c in set(gt_labels.tolist()) | set(labels.tolist()):
            mine = np.flatnonzero(labels == c)
            mine = mine[np.argsort(-scores[mine], kind="mergesort")][:MAX_DETECTIONS]
            gts = gt_boxes[gt_labels == c]
            ious = _box_iou(boxes[mine], gts) if len(mine) and len(gts) else np.zeros((len(mine), len(gts)))
            for t in IOU_THRESHOLDS:
                found.setdefault((c, t), []).append((scores[mine], _match(ious, t)))
    result: dict[str, float] = {}
    aps: dict[float, list[float]] = {t: [] for t in IOU_THRESHOLDS}
    for c in range(1, num_classes):
        if positives[c] == 0:
            continue  # no ground truth: COCO leaves the class out of the mean
        for t in IOU_THRESHOLDS:
            pairs = found.get((c, t), [])
            scores = np.concatenate([s for s, _ in pairs]) if pairs else np.zeros(0)
            tp = np.concatenate([m for _, m in pairs]) if pairs else np.zeros(0, dtype=bool)
            aps[t].append(_average_precision(scores, tp, int(positives[c])) if len(scores) else 0.0)
        result[f"ap50_class_{c}"] = aps[IOU_THRESHOLDS[0]][-1]
    if not aps[IOU_THRESHOLDS[0]]:
        return {"map": float("nan"), "map50": float("nan"), "map75": float("nan")}
    mean = {t: sum(v) / len(v) for t, v in aps.items()}
    result["map50"] = mean[IOU_THRESHOLDS[0]]
    result["map75"] = mean[IOU_THRESHOLDS[5]]
    result["map"] = sum(mean.values()) / len(mean)
    return result


def torchmetrics_map(
    predictions: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]], num_classes: int
) -> dict[str, float]:
    """The same numbers from torchmetrics' MeanAveragePrecision (pycocotools or faster-coco-eval backend)."""
    try:
        from torchmetrics.detection import MeanAveragePrecision
    except ImportError:
        raise ConfigError(
            "task.backend=torchmetrics needs torchmetrics and pycocotools: pip install 'fedforge[detection]', "
            "or use task.backend=torch (the built-in COCO evaluator)"
        ) from None
    backend = "pycocotools"
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        backend = "faster_coco_eval"
    metric = MeanAveragePrecision(iou_type="bbox", class_metrics=True, backend=backend)
    metric.update(
        [{k: v.cpu() for k, v in p.items()} for p in predictions], [{k: v.cpu() for k, v in t.items()} for t in targets]
    )
    out = metric.compute()
    result = {"map": float(out["map"]), "map50": float(out["map_50"]), "map75": float(out["map_75"])}
    classes = out["classes"].reshape(-1).tolist()
    per_class = out["map_per_class"].reshape(-1).tolist()  # AP@[.5:.95]; AP@0.5 per class comes from ours
    for c, value in zip(classes, per_class, strict=True):
        result[f"ap_class_{int(c)}"] = float(value)
    return result


@dataclass
class Confusion:
    """A streaming confusion matrix over pixels (rows: truth, columns: prediction); IGNORE skipped."""

    num_classes: int
    ignore: int = IGNORE
    counts: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.counts = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def add(self, predicted: torch.Tensor, truth: torch.Tensor) -> None:
        valid = truth != self.ignore
        k = self.num_classes
        index = truth[valid].long() * k + predicted[valid].long()
        self.counts += torch.bincount(index.cpu(), minlength=k * k).view(k, k)

    def metrics(self) -> dict[str, float]:
        """`miou` (mean over classes present in truth or prediction), `pixel_accuracy`, `iou_class_K`."""
        c = self.counts.double()
        tp = c.diag()
        union = c.sum(0) + c.sum(1) - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        result = {f"iou_class_{k}": float(iou[k]) for k in range(self.num_classes)}
        result["miou"] = float(iou[present].mean()) if bool(present.any()) else float("nan")
        total = c.sum()
        result["pixel_accuracy"] = float(tp.sum() / total) if total > 0 else float("nan")
        return result
