"""`scenes`: a generated detection and segmentation set with weather domains, made offline.

Each 64x64 RGB image (`data.image_size` changes the side) has 1 to 3 objects: real
Fashion-MNIST items (`data.variant: fashion`, the default; the training scenes use the
official training items, the test scenes the test items) or scikit-learn's digits
(`variant: digits`, upsampled), scaled to 35-55 % of the side, tinted with a random colour
and alpha-composited on a textured background (smooth coloured noise plus stripes). Boxes
are the tight boxes of each object's visible alpha (> 0.3), masks the class of the top-most
object per pixel: both exact by construction. Classes 1..K (0 is the background).

Every image belongs to one of four fixed weather domains (equal shares, a fixed permutation),
applied after compositing, so a detector trained on one domain is tested on another:

| domain | effect |
|---|---|
| clear | none |
| rain | 40-70 bright streaks, 1 px wide, slanted ~15 degrees, 8-16 px long, blended at 60 % |
| fog | blend toward light grey, 55 % at the top to 35 % at the bottom, then a 3x3 blur |
| night | brightness x 0.35 with a blue cast, plus Gaussian noise of std 12 (of 255) |

The set is fixed (seed `SCENES_SEED`), like a downloaded dataset: every run sees the same
2,400 training and 400 test images (`data.train_fraction` subsamples).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from fedforge.data.sources import DATASETS, DatasetTensors
from fedforge.data.targets import BOXES, MASKS, PackedBoxes
from fedforge.errors import ConfigError

if TYPE_CHECKING:
    from fedforge.config import DataConfig

SCENES_SEED = 20250901
WEATHER = ("clear", "rain", "fog", "night")
TRAIN_IMAGES, TEST_IMAGES = 2400, 400
SIDE = 64
# Fashion-MNIST classes whose silhouettes differ (a shirt, a pullover and a coat do not at 25 px).
FASHION_CLASSES = {"t-shirt": 0, "trouser": 1, "dress": 3, "sandal": 5, "bag": 8, "ankle-boot": 9}
DIGIT_CLASSES = {str(d): d for d in (0, 1, 2, 3, 4, 7)}
ALPHA_VISIBLE = 0.3  # an object pixel counts (box, mask) where its alpha exceeds this


def _items(variant: str, split: str, cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Object cut-outs (float [n, h, w] in [0, 1]) and their scene classes 1..K."""
    if variant == "fashion":
        from fedforge.data.sources import fashion_mnist

        source = fashion_mnist(cfg.model_copy(update={"name": "fashion-mnist"}))
        x, y, wanted = (source.train_x, source.train_y, FASHION_CLASSES) if split == "train" else (
            source.test_x, source.test_y, FASHION_CLASSES)  # fmt: skip
    elif variant == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        half = len(bunch.target) * 4 // 5
        part = slice(0, half) if split == "train" else slice(half, None)
        x = torch.as_tensor(bunch.images[part] / 16.0, dtype=torch.float32)[:, None]
        x = (F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False) * 255).to(torch.uint8)
        y, wanted = torch.as_tensor(bunch.target[part]), DIGIT_CLASSES
    else:
        raise ConfigError(f"data.variant: scenes draws objects from 'fashion' or 'digits', not '{variant}'")
    originals = list(wanted.values())
    keep = torch.isin(y, torch.tensor(originals))
    remap = {orig: i + 1 for i, orig in enumerate(originals)}
    classes = torch.tensor([remap[int(v)] for v in y[keep]])
    return x[keep][:, 0].float() / 255.0, classes, list(wanted)


def _background(rng: np.random.Generator, side: int) -> torch.Tensor:
    """Smooth coloured noise plus faint stripes: texture a detector must learn to ignore."""
    coarse = torch.as_tensor(rng.random((1, 1, 4, 4)), dtype=torch.float32)
    field = F.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)[0, 0].clamp(0, 1)
    low, high = (
        torch.as_tensor(rng.random(3) * 0.5, dtype=torch.float32),
        torch.as_tensor(0.3 + rng.random(3) * 0.5, dtype=torch.float32),
    )
    image = low[:, None, None] + (high - low)[:, None, None] * field
    angle, period = rng.random() * np.pi, 4 + rng.random() * 8
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    stripes = torch.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period))
    return (image + 0.06 * stripes).clamp(0, 1)


def _compose(
    rng: np.random.Generator, items: torch.Tensor, classes: torch.Tensor, side: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One scene: image float [3, side, side], boxes [k, 4], labels [k], mask uint8 [side, side]."""
    image = _background(rng, side)
    mask = torch.zeros(side, side, dtype=torch.uint8)
    alphas, labels = [], []
    placed: list[tuple[int, int, int]] = []
    for _ in range(int(rng.integers(1, 4))):
        size = int(round(side * (0.35 + 0.2 * rng.random())))
        for _try in range(10):  # keep objects mostly apart: centres at least 0.6 x size apart
            x0, y0 = int(rng.integers(0, side - size + 1)), int(rng.integers(0, side - size + 1))
            if all(abs(x0 - px) + abs(y0 - py) > 0.6 * (size + ps) for px, py, ps in placed):
                break
        else:
            continue
        placed.append((x0, y0, size))
        k = int(rng.integers(len(items)))
        alpha = F.interpolate(items[k][None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        alpha = alpha.clamp(0, 1)
        colour = torch.as_tensor(0.55 + 0.45 * rng.random(3), dtype=torch.float32)
        if rng.random() < 0.5:
            colour = 1.0 - colour  # dark objects on some scenes, light on others
        full = torch.zeros(side, side)
        full[y0 : y0 + size, x0 : x0 + size] = alpha
        image = image * (1 - full) + colour[:, None, None] * full
        for earlier in alphas:  # a later object hides what it covers of earlier ones
            earlier.mul_(1 - full)
        alphas.append(full)
        labels.append(int(classes[k]))
        mask[full > ALPHA_VISIBLE] = labels[-1]
    boxes, kept = [], []
    for alpha, label in zip(alphas, labels, strict=True):
        visible = alpha > ALPHA_VISIBLE
        if int(visible.sum()) < 12:  # almost fully hidden: no box for it (its pixels are another's)
            continue
        ys, xs = torch.nonzero(visible, as_tuple=True)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1])
        kept.append(label)
    return image, torch.tensor(boxes).reshape(-1, 4), torch.tensor(kept, dtype=torch.int64), mask


def rain(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    side = image.shape[-1]
    n = int(rng.integers(40, 71))
    x, y, length = rng.random(n) * side, rng.random(n) * side, 8 + rng.random(n) * 8
    t = np.linspace(0, 1, 32)[None, :]  # 32 points along each streak
    px = (x[:, None] + t * length[:, None] * 0.27).astype(int).ravel()
    py = (y[:, None] + t * length[:, None]).astype(int).ravel()
    inside = (px < side) & (py < side)
    streaks = torch.zeros(side, side)
    streaks[torch.as_tensor(py[inside]), torch.as_tensor(px[inside])] = 1.0
    return image * (1 - 0.6 * streaks) + 0.9 * 0.6 * streaks


def fog(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    side = image.shape[-1]
    density = torch.linspace(0.55, 0.35, side)[None, :, None]
    fogged = image * (1 - density) + 0.8 * density
    return F.avg_pool2d(fogged[None], 3, stride=1, padding=1, count_include_pad=False)[0]


def night(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    dark = image * torch.tensor([0.3, 0.33, 0.45])[:, None, None]
    noise = torch.as_tensor(rng.normal(0, 12 / 255, image.shape), dtype=torch.float32)
    return (dark + noise).clamp(0, 1)


EFFECTS = {"clear": lambda image, rng: image, "rain": rain, "fog": fog, "night": night}


def generate(
    items: torch.Tensor, classes: torch.Tensor, count: int, side: int, seed: int
) -> tuple[torch.Tensor, PackedBoxes, torch.Tensor, torch.Tensor]:
    """`count` scenes: uint8 images [n, 3, side, side], boxes, masks uint8 [n, side, side], domains [n]."""
    rng = np.random.default_rng(seed)
    domains = torch.as_tensor(rng.permutation(np.arange(count) % len(WEATHER)), dtype=torch.int64)
    images, masks, all_boxes, all_labels = [], [], [], []
    for i in range(count):
        image, boxes, labels, mask = _compose(rng, items, classes, side)
        image = EFFECTS[WEATHER[int(domains[i])]](image, rng)
        images.append((image.clamp(0, 1) * 255).round().to(torch.uint8))
        masks.append(mask)
        all_boxes.append(boxes)
        all_labels.append(labels)
    return torch.stack(images), PackedBoxes.from_lists(all_boxes, all_labels), torch.stack(masks), domains


_GENERATED: dict[tuple[str, int, str], tuple] = {}  # one generation per process: the set is fixed


@DATASETS.register("scenes")
def scenes(cfg: DataConfig) -> DatasetTensors:
    """Generated scenes of Fashion-MNIST (or digits) objects with boxes, masks and 4 weather domains."""
    variant = cfg.variant or "fashion"
    side = cfg.image_size or SIDE
    parts = {}
    for split, count, offset in (("train", TRAIN_IMAGES, 0), ("test", TEST_IMAGES, 1)):
        key = (variant, side, split)
        if key not in _GENERATED:
            items, classes, names = _items(variant, split, cfg)
            _GENERATED[key] = (*generate(items, classes, count, side, SCENES_SEED + offset), names)
        parts[split] = _GENERATED[key]
    (tx, tboxes, tmasks, tdom, names), (vx, vboxes, vmasks, vdom, _) = parts["train"], parts["test"]
    return DatasetTensors(
        name="scenes",
        train_x=tx,
        train_y=tboxes.dominant_class(),
        test_x=vx,
        test_y=vboxes.dominant_class(),
        num_classes=len(names) + 1,
        hflip_safe=True,
        train_domain=tdom,
        test_domain=vdom,
        domain_names=list(WEATHER),
        train_targets={BOXES: tboxes, MASKS: tmasks},
        test_targets={BOXES: vboxes, MASKS: vmasks},
    )
