"""Readers of real dense datasets in their standard on-disk formats (never downloaded).

- `coco`: `<root>/annotations/instances_<split>.json` + `<root>/<split>/<file_name>`, the
  first json whose name holds "train" and the first holding "val" (COCO 2017's layout).
- `bdd100k`: BDD100K in the COCO-converted layout COALA uses, the same files, whose image
  entries carry `weather`, `scene` and `timeofday` (top level or under `attributes`);
  `data.variant` picks the attribute that becomes the domain (default weather), so the
  `domain` and `domain_dirichlet` (COALA's `dir`) partitions split clients by it, and
  `hdirichlet` (COALA's `hdir`) by it first and the other two attributes within.
- `voc`: Pascal VOC (`<root>` holds JPEGImages, Annotations, SegmentationClass, ImageSets):
  `variant: segmentation` (default; the `SegmentationClass` PNGs, 21 classes, 255 borders)
  or `detection` (the xml boxes of ImageSets/Main, 20 classes + background).

Images are resized to `data.image_size` x `data.image_size` (default 128) with their boxes
and masks, so the set lives in one uint8 tensor. COCO crowd boxes are left out; COCO and VOC
boxes of zero width or height are skipped with one warning that counts them (documented in
docs/dense_tasks.md); a box that leaves its image by more than a pixel, a missing image file
and a mask value outside the classes are errors naming the file and the item.
"""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedforge.data.sources import DATASETS, DatasetTensors
from fedforge.data.targets import BOXES, MASKS, PackedBoxes, check_masks, mask_dominant_class
from fedforge.errors import ConfigError, DatasetFormatError, DatasetNotFound

if TYPE_CHECKING:
    from fedforge.config import DataConfig

DEFAULT_SIDE = 128
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
BDD_ATTRIBUTES = ("weather", "scene", "timeofday")
TOLERANCE = 1.0  # px a box may overhang its image (rounding in converted labels) before it is an error


def _open_rgb(path: Path, where: str, side: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 [3, side, side] and the original (height, width)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DatasetFormatError(
            f"{where} references '{path.name}', but '{path}' does not exist; add it or drop its entry"
        )
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            size = (rgb.height, rgb.width)
            resized = rgb.resize((side, side), Image.BILINEAR)
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetFormatError(f"'{path}' is not a readable image ({err}); replace or remove it") from None
    return torch.as_tensor(np.asarray(resized).copy()).permute(2, 0, 1).contiguous(), size


def _scaled(boxes: list[list[float]], size: tuple[int, int], side: int) -> torch.Tensor:
    h, w = size
    scale = torch.tensor([side / w, side / h, side / w, side / h])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) * scale


def _box_ok(box: list[float], size: tuple[int, int], where: str, skipped: list[str]) -> list[float] | None:
    """A box clipped within TOLERANCE; None (counted) if degenerate; an error if it leaves the image."""
    h, w = size
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        skipped.append(where)
        return None
    if x1 < -TOLERANCE or y1 < -TOLERANCE or x2 > w + TOLERANCE or y2 > h + TOLERANCE:
        raise DatasetFormatError(
            f"{where}: box {[round(v, 1) for v in box]} lies outside its {w}x{h} image; fix or drop that annotation"
        )
    return [max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)]


def _warn_skipped(skipped: list[str], source: str) -> None:
    if skipped:
        warnings.warn(
            f"{source}: skipped {len(skipped)} box(es) of zero width or height (first: {skipped[0]})", stacklevel=3
        )


# --- COCO and BDD100K ------------------------------------------------------------------------


def _coco_files(root: Path, name: str) -> dict[str, Path]:
    found = {}
    for split in ("train", "val"):
        matches = sorted((root / "annotations").glob(f"*{split}*.json"))
        if matches:
            found[split] = matches[0]
    if set(found) != {"train", "val"}:
        raise DatasetNotFound(
            f"dataset '{name}' not found: expected {root / 'annotations'}/instances_train*.json and "
            f"instances_val*.json (COCO layout) with the images in {root}/<split>/; set data.root to that folder"
        )
    return found


def _coco_split(
    path: Path, side: int, categories: dict[int, int] | None, attributes: tuple[str, ...]
) -> tuple[torch.Tensor, PackedBoxes, dict[int, int], list[tuple[str, ...]]]:
    """Images, boxes, the category-id -> label map, and each image's values of `attributes`."""
    try:
        doc = json.loads(path.read_text())
        images, annotations = doc["images"], doc.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DatasetFormatError(
            f"'{path}' is not a COCO instances file ({err!r}); it needs images and annotations"
        ) from None
    if categories is None:
        ids = sorted(int(c["id"]) for c in doc.get("categories", []))
        categories = {cid: i + 1 for i, cid in enumerate(ids)}
    folder = path.parent.parent / path.stem.removeprefix("instances_")
    per_image: dict[int, list[dict[str, Any]]] = {}
    for ann in annotations:
        per_image.setdefault(int(ann["image_id"]), []).append(ann)
    pixels, all_boxes, all_labels, values, skipped = [], [], [], [], []
    for entry in images:
        where = f"{path.name}, image {entry.get('file_name')}"
        image, size = _open_rgb(folder / entry["file_name"], path.name, side)
        boxes, labels = [], []
        for ann in per_image.get(int(entry["id"]), []):
            if ann.get("iscrowd", 0):
                continue
            if int(ann["category_id"]) not in categories:
                raise DatasetFormatError(
                    f"{where}: annotation {ann.get('id')} has unknown category {ann['category_id']}"
                )
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            box = _box_ok([x, y, x + bw, y + bh], size, f"{where}, annotation {ann.get('id')}", skipped)
            if box is not None:
                boxes.append(box)
                labels.append(categories[int(ann["category_id"])])
        pixels.append(image)
        all_boxes.append(_scaled(boxes, size, side))
        all_labels.append(torch.tensor(labels, dtype=torch.int64))
        if attributes:
            attrs = entry.get("attributes", entry)
            if missing := [a for a in attributes if a not in attrs]:
                raise DatasetFormatError(f"{where} has no '{missing[0]}' attribute (BDD100K layout: {BDD_ATTRIBUTES})")
            values.append(tuple(str(attrs[a]) for a in attributes))
    _warn_skipped(skipped, str(path))
    if not pixels:
        raise DatasetFormatError(f"'{path}' lists no images")
    return torch.stack(pixels), PackedBoxes.from_lists(all_boxes, all_labels), categories, values


def _coco_like(cfg: DataConfig, name: str, attributes: tuple[str, ...] = ()) -> DatasetTensors:
    """COCO files; with `attributes`, the first is each image's domain and all are its attribute codes."""
    root, side = Path(cfg.root).expanduser(), cfg.image_size or DEFAULT_SIDE
    files = _coco_files(root, name)
    tx, tboxes, categories, tvals = _coco_split(files["train"], side, None, attributes)
    vx, vboxes, _, vvals = _coco_split(files["val"], side, categories, attributes)
    domains: dict[str, Any] = {}
    if attributes:
        vocab = [sorted({v[a] for v in tvals + vvals}) for a in range(len(attributes))]

        def codes(values: list[tuple[str, ...]]) -> torch.Tensor:
            return torch.tensor([[vocab[a].index(v[a]) for a in range(len(attributes))] for v in values])

        train_codes = codes(tvals)
        domains = {
            "train_domain": train_codes[:, 0].clone(),
            "test_domain": codes(vvals)[:, 0].clone(),
            "domain_names": vocab[0],
            "train_attributes": train_codes,
        }
    return DatasetTensors(
        name=name,
        train_x=tx,
        train_y=tboxes.dominant_class(),
        test_x=vx,
        test_y=vboxes.dominant_class(),
        num_classes=len(categories) + 1,
        hflip_safe=True,
        train_targets={BOXES: tboxes},
        test_targets={BOXES: vboxes},
        **domains,
    )


@DATASETS.register("coco")
def coco(cfg: DataConfig) -> DatasetTensors:
    """COCO-format detection (instances json + image folders) from data.root, resized to data.image_size."""
    return _coco_like(cfg, "coco")


@DATASETS.register("bdd100k")
def bdd100k(cfg: DataConfig) -> DatasetTensors:
    """BDD100K, COCO-converted; data.variant (weather | scene | timeofday) is the domain attribute,
    and the hierarchical `hdirichlet` partition splits by it first, then by the other two."""
    attribute = cfg.variant or "weather"
    if attribute not in BDD_ATTRIBUTES:
        raise ConfigError(f"data.variant: bdd100k splits by {', '.join(BDD_ATTRIBUTES)}, not '{attribute}'")
    return _coco_like(cfg, "bdd100k", (attribute, *(a for a in BDD_ATTRIBUTES if a != attribute)))


# --- Pascal VOC --------------------------------------------------------------------------------


def _voc_root(cfg: DataConfig) -> Path:
    root = Path(cfg.root).expanduser()
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets").is_dir():
            return candidate
    raise DatasetNotFound(
        f"dataset 'voc' not found: no JPEGImages and ImageSets under '{root}' (or its VOC2012, VOCdevkit/VOC2012); "
        "set data.root to the VOC2012 folder"
    )


def _voc_ids(root: Path, kind: str, split: str) -> list[str]:
    listing = root / "ImageSets" / kind / f"{split}.txt"
    if not listing.is_file():
        raise DatasetNotFound(f"dataset 'voc': '{listing}' is missing; it lists the {split} images")
    return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]


def _voc_masks(root: Path, ids: list[str], side: int) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    images, masks = [], []
    for stem in ids:
        image, _ = _open_rgb(root / "JPEGImages" / f"{stem}.jpg", f"ImageSets/Segmentation ({stem})", side)
        path = root / "SegmentationClass" / f"{stem}.png"
        if not path.is_file():
            raise DatasetFormatError(f"ImageSets/Segmentation lists '{stem}', but '{path}' does not exist")
        with Image.open(path) as png:  # palette PNG: the pixel values are the class ids
            original = np.asarray(png)
            if original.ndim != 2:
                raise DatasetFormatError(f"'{path}' is not a class-index (palette or grayscale) PNG")
            # checked at full size: a resize could drop the one bad pixel
            check_masks(str(root / "SegmentationClass"), torch.as_tensor(original.copy())[None], len(VOC_CLASSES) + 1,
                        names=[path.name])  # fmt: skip
            mask = np.asarray(png.resize((side, side), Image.NEAREST)).copy()
        images.append(image)
        masks.append(torch.as_tensor(mask, dtype=torch.uint8))
    return torch.stack(images), torch.stack(masks)


def _voc_boxes(root: Path, ids: list[str], side: int) -> tuple[torch.Tensor, PackedBoxes]:
    images, all_boxes, all_labels, skipped = [], [], [], []
    for stem in ids:
        xml_path = root / "Annotations" / f"{stem}.xml"
        try:
            tree = ET.parse(xml_path).getroot()
        except (OSError, ET.ParseError) as err:
            raise DatasetFormatError(f"'{xml_path}' is missing or not VOC xml ({err})") from None
        image, size = _open_rgb(root / "JPEGImages" / f"{stem}.jpg", xml_path.name, side)
        boxes, labels = [], []
        for k, obj in enumerate(tree.iter("object")):
            name = (obj.findtext("name") or "").strip()
            if name not in VOC_CLASSES:
                raise DatasetFormatError(f"{xml_path.name}, object {k}: unknown class '{name}'")
            bb = obj.find("bndbox")
            coords = (
                [float(bb.findtext(t) or "nan") for t in ("xmin", "ymin", "xmax", "ymax")] if bb is not None else []
            )
            if len(coords) != 4 or any(np.isnan(coords)):
                raise DatasetFormatError(f"{xml_path.name}, object {k} ({name}): no complete bndbox")
            box = _box_ok(
                [coords[0] - 1, coords[1] - 1, coords[2], coords[3]], size, f"{xml_path.name}, object {k}", skipped
            )
            if box is not None:  # VOC pixels are 1-based and inclusive
                boxes.append(box)
                labels.append(VOC_CLASSES.index(name) + 1)
        images.append(image)
        all_boxes.append(_scaled(boxes, size, side))
        all_labels.append(torch.tensor(labels, dtype=torch.int64))
    _warn_skipped(skipped, str(root / "Annotations"))
    return torch.stack(images), PackedBoxes.from_lists(all_boxes, all_labels)


@DATASETS.register("voc")
def voc(cfg: DataConfig) -> DatasetTensors:
    """Pascal VOC: segmentation (SegmentationClass PNGs) or, with data.variant=detection, xml boxes."""
    variant = cfg.variant or "segmentation"
    root, side = _voc_root(cfg), cfg.image_size or DEFAULT_SIDE
    readers: dict[str, tuple[str, Callable[..., tuple[torch.Tensor, Any]], str]] = {
        "segmentation": ("Segmentation", _voc_masks, MASKS),
        "detection": ("Main", _voc_boxes, BOXES),
    }
    if variant not in readers:
        raise ConfigError(f"data.variant: voc is read for 'segmentation' or 'detection', not '{variant}'")
    kind, read, store = readers[variant]
    tx, ttarget = read(root, _voc_ids(root, kind, "train"), side)
    vx, vtarget = read(root, _voc_ids(root, kind, "val"), side)

    def key(target: Any) -> torch.Tensor:
        return target.dominant_class() if isinstance(target, PackedBoxes) else mask_dominant_class(target)

    return DatasetTensors(
        name="voc",
        train_x=tx,
        train_y=key(ttarget),
        test_x=vx,
        test_y=key(vtarget),
        num_classes=len(VOC_CLASSES) + 1,
        hflip_safe=True,
        train_targets={store: ttarget},
        test_targets={store: vtarget},
    )
