"""COCO mAP held to pycocotools on hand-made cases; the confusion-matrix IoU by hand."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from fedforge.data.targets import IGNORE
from fedforge.tasks.dense_metrics import Confusion, coco_map, torchmetrics_map


def det(boxes, labels, scores):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


def gt(boxes, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def pycocotools_map(preds, targets, num_classes):
    """(AP@[.5:.95], AP@0.5) from pycocotools itself."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    anns = [
        {
            "id": k + 1000 * i + 1,
            "image_id": i,
            "category_id": lab,
            "bbox": xywh(b),
            "area": xywh(b)[2] * xywh(b)[3],
            "iscrowd": 0,
        }
        for i, t in enumerate(targets)
        for k, (b, lab) in enumerate(zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True))
    ]
    dets = [
        {"image_id": i, "category_id": lab, "bbox": xywh(b), "score": s}
        for i, p in enumerate(preds)
        for b, lab, s in zip(p["boxes"].tolist(), p["labels"].tolist(), p["scores"].tolist(), strict=True)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {
            "images": [{"id": i, "width": 100, "height": 100} for i in range(len(targets))],
            "annotations": anns,
            "categories": [{"id": c} for c in range(1, num_classes)],
        }
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(dets), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0]), float(evaluation.stats[1])


CASES = {
    "missed object": (
        [det([[10, 10, 30, 30]], [1], [0.9]), det([], [], [])],
        [gt([[10, 10, 30, 30], [50, 50, 70, 70]], [1, 1]), gt([[5, 5, 20, 25]], [2])],
    ),
    "duplicate detection": (
        [det([[10, 10, 30, 30], [11, 10, 30, 31], [60, 60, 80, 80]], [1, 1, 1], [0.9, 0.8, 0.7])],
        [gt([[10, 10, 30, 30], [61, 59, 80, 81]], [1, 1])],
    ),
    "empty image with a false alarm": (
        [det([[10, 10, 30, 30]], [1], [0.6]), det([[0, 0, 12, 12]], [1], [0.95])],
        [gt([[10, 12, 30, 30]], [1]), gt([], [])],
    ),
    "loose boxes and a wrong class": (
        [det([[10, 10, 26, 30], [40, 40, 60, 52], [40, 40, 60, 60]], [2, 1, 2], [0.5, 0.9, 0.4])],
        [gt([[10, 10, 30, 30], [40, 40, 60, 60]], [2, 1])],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_map_equals_pycocotools(case):
    preds, targets = CASES[case]
    ours = coco_map(preds, targets, num_classes=3)
    ref_map, ref_map50 = pycocotools_map(preds, targets, 3)
    assert ours["map"] == pytest.approx(ref_map, abs=1e-6)
    assert ours["map50"] == pytest.approx(ref_map50, abs=1e-6)


def test_map_equals_pycocotools_on_random_detections():
    rng = np.random.default_rng(0)
    preds, targets = [], []
    for _ in range(40):
        n = int(rng.integers(0, 4))
        xy = rng.random((n, 2)) * 60
        boxes = np.concatenate([xy, xy + 5 + rng.random((n, 2)) * 30], 1)
        labels = rng.integers(1, 4, n)
        found = [boxes[k] + rng.normal(0, 3, 4) for k in range(n) if rng.random() < 0.7]
        found += [np.r_[xy0 := rng.random(2) * 60, xy0 + 10] for _ in range(int(rng.integers(0, 3)))]
        flabels = [int(labels[k]) for k in range(n) if k < len(found)] + [1] * (len(found) - min(n, len(found)))
        found_boxes = np.array(found).reshape(-1, 4)
        found_boxes[:, 2:] = np.maximum(found_boxes[:, 2:], found_boxes[:, :2] + 1)
        preds.append(det(found_boxes.tolist(), flabels[: len(found)], rng.random(len(found)).tolist()))
        targets.append(gt(boxes.tolist(), labels.tolist()))
    ours = coco_map(preds, targets, num_classes=4)
    ref_map, ref_map50 = pycocotools_map(preds, targets, 4)
    assert ours["map"] == pytest.approx(ref_map, abs=1e-6) and ours["map50"] == pytest.approx(ref_map50, abs=1e-6)


def test_torchmetrics_backend_agrees_with_the_built_in():
    pytest.importorskip("torchmetrics")
    pytest.importorskip("pycocotools")
    for preds, targets in CASES.values():
        theirs, ours = torchmetrics_map(preds, targets, 3), coco_map(preds, targets, 3)
        assert theirs["map50"] == pytest.approx(ours["map50"], abs=0.01)


def test_perfect_and_hopeless_detectors():
    targets = [gt([[1, 1, 9, 9]], [1]), gt([[20, 20, 40, 40]], [2])]
    perfect = [det([[1, 1, 9, 9]], [1], [0.9]), det([[20, 20, 40, 40]], [2], [0.8])]
    assert coco_map(perfect, targets, 3)["map"] == pytest.approx(1.0)
    assert coco_map([det([], [], []), det([], [], [])], targets, 3)["map50"] == 0.0


def test_confusion_matrix_iou_by_hand():
    truth = torch.tensor([[0, 0, 1, 1], [0, 2, 2, IGNORE]], dtype=torch.uint8)
    predicted = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 2]], dtype=torch.uint8)
    confusion = Confusion(3)
    confusion.add(predicted, truth)
    m = confusion.metrics()
    # class 0: tp 2, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 1/2 (ignored pixel skipped)
    assert m["iou_class_0"] == pytest.approx(0.5) and m["iou_class_1"] == pytest.approx(2 / 3)
    assert m["iou_class_2"] == pytest.approx(0.5)
    assert m["miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert m["pixel_accuracy"] == pytest.approx(5 / 7)
