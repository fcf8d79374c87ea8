"""Target stores, dense augmentation and the generated scenes."""

from __future__ import annotations

import pytest
import torch

from fedforge.config import DataConfig
from fedforge.data.dense_augment import DenseAugment
from fedforge.data.scenes import TEST_IMAGES, TRAIN_IMAGES, WEATHER
from fedforge.data.sources import load_dataset
from fedforge.data.targets import BOXES, IGNORE, MASKS, PackedBoxes, check_masks, mask_dominant_class
from fedforge.errors import DatasetFormatError


def packed() -> PackedBoxes:
    return PackedBoxes.from_lists(
        [torch.tensor([[0.0, 0, 10, 10], [5, 5, 30, 20]]), torch.zeros(0, 4), torch.tensor([[1.0, 2, 3, 4]])],
        [torch.tensor([1, 2]), torch.zeros(0, dtype=torch.int64), torch.tensor([3])],
    )


def test_packed_boxes_slice_like_an_index():
    store = packed()
    assert len(store) == 3 and store.offsets.tolist() == [0, 2, 2, 3]
    got = store[torch.tensor([2, 0])]
    assert got[0]["labels"].tolist() == [3] and got[1]["boxes"].shape == (2, 4)
    sub = store.select(torch.tensor([1, 2]))
    assert len(sub) == 2 and sub.offsets.tolist() == [0, 0, 1]
    # dominant class: the largest area per image; an empty image is background
    assert store.dominant_class().tolist() == [2, 0, 3]


@pytest.mark.parametrize(
    ("box", "label", "needle"),
    [
        ([0.0, 0, 70, 10], 1, "outside the 64x64 image"),
        ([10.0, 10, 10, 20], 1, "degenerate box"),
        ([1.0, 1, 5, 5], 9, "label outside 1..6"),
    ],
)
def test_bad_boxes_name_the_item(box, label, needle):
    store = PackedBoxes.from_lists(
        [torch.tensor([[1.0, 1, 4, 4]]), torch.tensor([box])], [torch.tensor([1]), torch.tensor([label])]
    )
    with pytest.raises(DatasetFormatError, match=needle) as err:
        store.check("instances.json", 64, 64, 7, names=["a.jpg", "b.jpg"])
    assert "b.jpg" in str(err.value) and "instances.json" in str(err.value)


def test_mask_with_unknown_class_names_the_item():
    masks = torch.zeros(2, 4, 4, dtype=torch.uint8)
    masks[1, 0, 0] = 9
    masks[0, 1, 1] = IGNORE  # ignored pixels are fine
    with pytest.raises(DatasetFormatError, match=r"2007_000033.png has class id\(s\) \[9\]"):
        check_masks("SegmentationClass", masks, 5, names=["2007_000032.png", "2007_000033.png"])
    masks[1, 0, 0] = 3
    check_masks("SegmentationClass", masks, 5)
    assert mask_dominant_class(masks).tolist() == [0, 3]


def square_scene() -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], torch.Tensor]:
    images = torch.zeros(6, 3, 32, 32, dtype=torch.uint8)
    masks = torch.zeros(6, 32, 32, dtype=torch.uint8)
    boxes = []
    for i in range(6):
        x0, y0 = 2 + 3 * i, 4 + i
        images[i, :, y0 : y0 + 10, x0 : x0 + 8] = 255
        masks[i, y0 : y0 + 10, x0 : x0 + 8] = 1
        boxes.append(
            {"boxes": torch.tensor([[float(x0), float(y0), x0 + 8.0, y0 + 10.0]]), "labels": torch.tensor([1])}
        )
    return images, boxes, masks


def test_augmentation_moves_boxes_and_masks_with_the_image():
    images, boxes, masks = square_scene()
    augment = DenseAugment(flip=True, scale=(0.7, 1.4), brightness=0.0, contrast=0.0)
    for seed in range(8):
        x, moved, m = augment(images, torch.Generator().manual_seed(seed), boxes=boxes, masks=masks)
        assert x.shape == (6, 3, 32, 32) and m.shape == (6, 32, 32)
        for i in range(6):
            white = x[i, 0] > 0.5
            if moved[i]["boxes"].numel() == 0:  # cropped away: nothing of the square may be left
                assert white.sum() < 6
                continue
            x1, y1, x2, y2 = moved[i]["boxes"][0].tolist()
            inside = torch.zeros_like(white)
            inside[int(y1) : int(round(y2)), int(x1) : int(round(x2))] = True
            assert (white & ~inside).sum() <= 0.1 * white.sum() + 2  # the object stays in its box
            assert ((m[i] == 1) == white).float().mean() > 0.97  # and its mask on it
            assert bool((m[i][~white] != 1).all()) or (m[i] == 1).sum() > 0


def test_augmentation_is_seeded_and_pads_masks_with_ignore():
    images, boxes, masks = square_scene()
    augment = DenseAugment(scale=(0.5, 0.5))  # shrink only: the rest is padding
    a = augment(images, torch.Generator().manual_seed(3), boxes=boxes, masks=masks)
    b = augment(images, torch.Generator().manual_seed(3), boxes=boxes, masks=masks)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert all(torch.equal(p["boxes"], q["boxes"]) for p, q in zip(a[1], b[1], strict=True))
    assert bool((a[2] == IGNORE).any())  # padded pixels are not background


@pytest.fixture(scope="module")
def scenes():
    return load_dataset(DataConfig(name="scenes"))


def test_scenes_are_exact_fixed_and_split_by_weather(scenes):
    assert scenes.train_x.shape == (TRAIN_IMAGES, 3, 64, 64) and len(scenes.test_x) == TEST_IMAGES
    assert scenes.num_classes == 7 and scenes.domain_names == list(WEATHER)
    assert torch.bincount(scenes.train_domain).tolist() == [TRAIN_IMAGES // 4] * 4
    boxes: PackedBoxes = scenes.train_targets[BOXES]
    boxes.check("scenes", 64, 64, scenes.num_classes)  # every box inside, non-degenerate, labelled
    masks = scenes.train_targets[MASKS]
    for i in range(50):  # every object pixel of the mask lies in a box of its class
        b, labels = boxes.image(i)
        for c in masks[i].unique().tolist():
            if c == 0:
                continue
            ys, xs = torch.nonzero(masks[i] == c, as_tuple=True)
            mine = b[labels == c]
            assert len(mine), f"scene {i}: mask class {c} without a box"
            covered = torch.zeros(len(xs), dtype=torch.bool)
            for x1, y1, x2, y2 in mine.tolist():
                covered |= (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
            assert bool(covered.all())
    again = load_dataset(DataConfig(name="scenes"))
    assert torch.equal(again.train_x, scenes.train_x) and torch.equal(
        again.test_targets[BOXES].boxes, scenes.test_targets[BOXES].boxes
    )


def test_scenes_subsample_keeps_targets_aligned(scenes):
    half = load_dataset(DataConfig(name="scenes", train_fraction=0.25))
    assert len(half.train_x) == len(half.train_targets[BOXES]) == len(half.train_targets[MASKS]) == TRAIN_IMAGES // 4
    assert torch.equal(half.train_y, half.train_targets[BOXES].dominant_class())


def test_scenes_resized_moves_boxes():
    small = load_dataset(DataConfig(name="scenes", image_size=48, variant="digits"))
    assert small.train_x.shape[-2:] == (48, 48) and small.train_targets[MASKS].shape[-2:] == (48, 48)
    small.train_targets[BOXES].check("scenes", 48, 48, small.num_classes)
