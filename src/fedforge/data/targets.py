"""Target stores: what a dense task learns, kept like the images (loaded once, sliced by index).

- labels: int64 `[N]` (classification; `DatasetTensors.train_y`);
- masks: uint8 `[N, H, W]` class ids per pixel, `IGNORE` (255) where a pixel is not judged;
- boxes: `PackedBoxes`, every image's boxes in one `[M, 4]` float tensor (x1, y1, x2, y2 in pixels)
  with their int64 labels `[M]` and `offsets [N+1]`: image i owns rows `offsets[i]:offsets[i+1]`.

A client's batch stays an index slice of the stores, so partitioners, executors and Ray workers
treat dense targets as they treat labels. Class 0 is the background in both dense stores: box
labels run 1..K and a dataset's `num_classes` counts the background (K + 1), as torchvision's
detectors and segmenters expect.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedforge.errors import DatasetFormatError

IGNORE = 255  # a mask value that no loss or metric counts (VOC's object borders)
BOXES, MASKS = "boxes", "masks"


@dataclass
class PackedBoxes:
    """Every image's boxes and labels in two flat tensors plus per-image offsets."""

    boxes: torch.Tensor  # float32 [M, 4], x1 y1 x2 y2 in pixels
    labels: torch.Tensor  # int64 [M], 1..K
    offsets: torch.Tensor  # int64 [N + 1], CPU

    @classmethod
    def from_lists(cls, boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> PackedBoxes:
        counts = torch.tensor([len(b) for b in boxes], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        flat_boxes = torch.cat([b.reshape(-1, 4).float() for b in boxes]) if boxes else torch.zeros(0, 4)
        flat_labels = torch.cat([lab.reshape(-1).long() for lab in labels]) if labels else torch.zeros(0).long()
        return cls(flat_boxes, flat_labels, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def image(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.boxes[lo:hi], self.labels[lo:hi]

    def __getitem__(self, index: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The targets of the images at `index`, as torchvision detectors take them."""
        out = []
        for i in index.tolist():
            boxes, labels = self.image(i)
            out.append({"boxes": boxes, "labels": labels})
        return out

    def select(self, index: torch.Tensor) -> PackedBoxes:
        """A store of the images at `index` only (a subsample or a split)."""
        pairs = [self.image(i) for i in index.tolist()]
        return PackedBoxes.from_lists([b for b, _ in pairs], [lab for _, lab in pairs])

    def to(self, device: torch.device | str) -> PackedBoxes:
        return PackedBoxes(self.boxes.to(device), self.labels.to(device), self.offsets)

    def dominant_class(self) -> torch.Tensor:
        """Per image, the class covering the largest box area (0 for an image without boxes):
        the partition key a label-skew split of a detection set uses."""
        area = ((self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])).cpu()
        image = torch.repeat_interleave(torch.arange(len(self)), self.offsets.diff())
        classes = int(self.labels.max()) + 1 if len(self.labels) else 1
        per_class = torch.zeros(len(self), classes, dtype=torch.float64)
        per_class.index_put_((image, self.labels.cpu()), area.double(), accumulate=True)
        key = per_class.argmax(1)
        key[self.offsets.diff() == 0] = 0
        return key

    def check(self, where: str, height: int, width: int, num_classes: int, names: list[str] | None = None) -> None:
        """Refuse boxes outside the image, degenerate boxes and labels outside 1..K, naming the item."""
        if len(self.boxes) == 0:
            return
        b = self.boxes
        bad_label = (self.labels < 1) | (self.labels >= num_classes)
        outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > width) | (b[:, 3] > height)
        degenerate = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        image = torch.repeat_interleave(torch.arange(len(self)), self.offsets.diff())
        for problem, what in (
            (bad_label, f"a label outside 1..{num_classes - 1} (0 is the background)"),
            (outside, f"a box outside the {width}x{height} image"),
            (degenerate, "a degenerate box (x2 <= x1 or y2 <= y1)"),
        ):
            if bool(problem.any()):
                row = int(problem.nonzero()[0])
                i = int(image[row])
                item = names[i] if names else f"image {i}"
                raise DatasetFormatError(
                    f"{where}: {item} has {what}: box {[round(v, 2) for v in b[row].tolist()]}, "
                    f"label {int(self.labels[row])}; fix or drop that annotation"
                )


def check_masks(where: str, masks: torch.Tensor, num_classes: int, names: list[str] | None = None) -> None:
    """Refuse a mask with a class id that is neither a class (0..K) nor IGNORE, naming the item."""
    if masks.dtype != torch.uint8 or masks.ndim != 3:
        raise DatasetFormatError(f"{where}: masks must be uint8 [N, H, W], got {masks.dtype} {tuple(masks.shape)}")
    bad = (masks >= num_classes) & (masks != IGNORE)
    if bool(bad.any()):
        i = int(bad.flatten(1).any(1).nonzero()[0])
        values = sorted({int(v) for v in masks[i][bad[i]].unique().tolist()})
        item = names[i] if names else f"mask {i}"
        raise DatasetFormatError(
            f"{where}: {item} has class id(s) {values}, but the dataset has classes 0..{num_classes - 1} "
            f"(and {IGNORE} for ignored pixels); fix the mask or the class list"
        )


def mask_dominant_class(masks: torch.Tensor) -> torch.Tensor:
    """Per mask, its most frequent non-background class (0 when only background): the partition key."""
    flat = masks.flatten(1).long()
    classes = int(flat[flat != IGNORE].max()) + 1 if bool((flat != IGNORE).any()) else 1
    counts = torch.zeros(len(masks), max(classes, 2), dtype=torch.int64)
    valid = (flat != IGNORE) & (flat != 0)
    rows = torch.arange(len(masks))[:, None].expand_as(flat)
    counts.index_put_((rows[valid], flat[valid]), torch.ones_like(flat[valid]), accumulate=True)
    key = counts.argmax(1)
    key[counts.sum(1) == 0] = 0
    return key
