"""Your own data: tensors, arrays or a torch Dataset, materialized once into the in-memory store.

fedforge keeps every image as uint8 [N, C, H, W] and normalizes per channel itself (see
data/transforms.py), so what comes in must be images, not already-normalized features:
- torch tensors are [N, C, H, W] or [N, H, W] (grayscale); numpy arrays [N, H, W, C] or
  [N, H, W], the layout numpy image sets use;
- uint8 values are kept; float values must lie in [0, 1] (what `ToTensor()` gives) and are
  stored as round(255 x);
- a Dataset yields (image, label) pairs: PIL images, arrays or tensors of one size, and
  integer class labels.
Without a test split, a stratified share (data.test_fraction) is held out with a fixed seed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedforge.data.sources import DATASETS, DatasetTensors, _split_fixed, _tensors
from fedforge.errors import DatasetFormatError

if TYPE_CHECKING:
    from fedforge.config import DataConfig

DEFAULT_NAME = "custom"
MEMORY_SHARE = 0.5  # refuse to materialize a dataset larger than this share of the machine's memory


@dataclass
class UserData:
    """Materialized images and labels; the test split is held out at load time when absent."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    num_classes: int | None = None
    hflip_safe: bool = False

    def load(self, cfg: DataConfig) -> DatasetTensors:
        """Data handed to `fedforge.run(data=...)` in this process, held in memory."""
        if self.test_x is None or self.test_y is None:
            tx, vx, ty, vy = _split_fixed(self.train_x.numpy(), self.train_y.numpy(), cfg.test_fraction, self.name)
        else:
            tx, ty, vx, vy = self.train_x, self.train_y, self.test_x, self.test_y
        return _tensors(self.name, tx, ty, vx, vy, self.hflip_safe, self.num_classes)


def from_tensors(
    train_x: Any,
    train_y: Any,
    test_x: Any = None,
    test_y: Any = None,
    *,
    name: str = DEFAULT_NAME,
    num_classes: int | None = None,
    hflip_safe: bool = False,
) -> UserData:
    """Images and labels as tensors or numpy arrays (layouts in this module's docstring)."""
    if (test_x is None) != (test_y is None):
        raise DatasetFormatError(f"{name}: give both test_x and test_y, or neither (a share is then held out)")
    data = UserData(name, _images(train_x, name, "train"), _labels(train_y, name, "train"), hflip_safe=hflip_safe)
    if test_x is not None:
        data.test_x, data.test_y = _images(test_x, name, "test"), _labels(test_y, name, "test")
    _check_pairs(data)
    data.num_classes = _num_classes(data, num_classes)
    return data


def from_dataset(
    train: Any, test: Any = None, *, name: str = DEFAULT_NAME, num_classes: int | None = None, hflip_safe: bool = False
) -> UserData:
    """A torch Dataset (or any sized iterable of (image, label)), and optionally its test set."""
    classes = num_classes if num_classes is not None else _declared_classes(train)
    train_x, train_y = _materialize(train, name, "train")
    test_pair = _materialize(test, name, "test") if test is not None else (None, None)
    return from_tensors(train_x, train_y, *test_pair, name=name, num_classes=classes, hflip_safe=hflip_safe)


def as_user_data(obj: Any, name: str = DEFAULT_NAME) -> UserData:
    """What `fedforge.run(data=...)` accepts besides a config mapping: UserData, a Dataset,
    (train, test) Datasets, (x, y) or (x, y, x_test, y_test) tensors."""
    if isinstance(obj, UserData):
        return obj
    if isinstance(obj, DatasetTensors):
        return UserData(obj.name, obj.train_x, obj.train_y, obj.test_x, obj.test_y, obj.num_classes, obj.hflip_safe)
    if isinstance(obj, tuple | list) and len(obj) in (2, 4) and all(_is_array(part) for part in obj):
        return from_tensors(*obj, name=name)
    if isinstance(obj, tuple | list) and len(obj) == 2 and all(_is_dataset(part) for part in obj):
        return from_dataset(obj[0], obj[1], name=name)
    if _is_dataset(obj):
        return from_dataset(obj, name=name)
    raise DatasetFormatError(
        f"data={type(obj).__name__}: pass a torch Dataset of (image, label), a (train, test) pair of them, "
        "(x, y) or (x, y, x_test, y_test) tensors, or a mapping of data settings"
    )


def register(data: UserData) -> str:
    """Make `data` the dataset named `data.name` in this process; returns the name."""
    DATASETS.add(data.name, data.load, replace=True)
    return data.name


def _is_array(obj: Any) -> bool:
    return isinstance(obj, torch.Tensor | np.ndarray)


def _is_dataset(obj: Any) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not _is_array(obj) and not isinstance(obj, str)


def _declared_classes(dataset: Any) -> int | None:
    classes = getattr(dataset, "classes", None)
    return len(classes) if isinstance(classes, Sequence) and classes else None


def _materialize(dataset: Any, name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read every (image, label) once; checks size against memory after the first image."""
    if not hasattr(dataset, "__len__"):
        raise DatasetFormatError(f"{name}: the {split} dataset has no len(); an iterable stream cannot be stored")
    n = len(dataset)
    if n == 0:
        raise DatasetFormatError(f"{name}: the {split} dataset is empty")
    images: list[torch.Tensor] = []
    labels: list[int] = []
    for index in range(n):
        item = dataset[index]
        if not isinstance(item, tuple | list) or len(item) < 2:
            raise DatasetFormatError(
                f"{name}: {split} sample {index} is {type(item).__name__}, not an (image, label) pair"
            )
        image = _image(item[0], name, f"{split} sample {index}")
        if images and image.shape != images[0].shape:
            raise DatasetFormatError(
                f"{name}: {split} sample {index} is {tuple(image.shape)} but sample 0 is {tuple(images[0].shape)}; "
                "give the dataset a transform that makes every image one size (e.g. transforms.Resize((32, 32)))"
            )
        if index == 0:
            _check_fits(n * image.numel(), name, split)
        images.append(image)
        labels.append(_label(item[1], name, f"{split} sample {index}"))
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _check_fits(nbytes: int, name: str, split: str) -> None:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on every platform
        return
    if nbytes > MEMORY_SHARE * memory:
        raise DatasetFormatError(
            f"{name}: the {split} images need {nbytes / 2**30:.1f} GiB as uint8, over half of this machine's "
            f"{memory / 2**30:.1f} GiB; resize them smaller (transforms.Resize) or use a subset"
        )


def _image(value: Any, name: str, where: str) -> torch.Tensor:
    """One image as uint8 [C, H, W]."""
    if hasattr(value, "convert") and hasattr(value, "mode"):  # a PIL image
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        array = value if value.ndim == 2 else np.moveaxis(value, -1, 0) if value.ndim == 3 else value
        value = torch.from_numpy(np.ascontiguousarray(array))
    if not isinstance(value, torch.Tensor):
        raise DatasetFormatError(f"{name}: {where} is {type(value).__name__}; images must be PIL, arrays or tensors")
    if value.ndim == 2:
        value = value[None]
    if value.ndim != 3:
        raise DatasetFormatError(f"{name}: {where} has shape {tuple(value.shape)}; an image is [C, H, W] or [H, W]")
    return _to_uint8(value, name, where)


def _images(value: Any, name: str, split: str) -> torch.Tensor:
    """A batch as uint8 [N, C, H, W] (numpy input is [N, H, W, C] or [N, H, W])."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(np.moveaxis(value, -1, 1) if value.ndim == 4 else value))
    if not isinstance(value, torch.Tensor):
        raise DatasetFormatError(f"{name}: {split} images are {type(value).__name__}; pass a tensor or numpy array")
    if value.ndim == 3:
        value = value[:, None]
    if value.ndim != 4 or len(value) == 0:
        raise DatasetFormatError(
            f"{name}: {split} images have shape {tuple(value.shape)}; expected a non-empty [N, C, H, W] or [N, H, W]"
        )
    return _to_uint8(value, name, f"{split} images")


def _to_uint8(x: torch.Tensor, name: str, where: str) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.dtype == torch.bool or not (x.is_floating_point() or x.dtype in (torch.int16, torch.int32, torch.int64)):
        raise DatasetFormatError(f"{name}: {where} has dtype {x.dtype}; images are uint8 or floats in [0, 1]")
    if not x.is_floating_point():
        if x.min() < 0 or x.max() > 255:
            raise DatasetFormatError(f"{name}: {where} has integer values outside 0..255")
        return x.to(torch.uint8)
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1 or not np.isfinite([low, high]).all():
        raise DatasetFormatError(
            f"{name}: {where} has float values in [{low:.3g}, {high:.3g}], not [0, 1]; fedforge stores images as "
            "uint8 and normalizes them itself, so drop transforms.Normalize (keep ToTensor) or pass uint8 images"
        )
    return x.mul(255).round_().to(torch.uint8)


def _label(value: Any, name: str, where: str) -> int:
    if isinstance(value, torch.Tensor | np.ndarray) and np.prod(value.shape, dtype=np.int64) == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DatasetFormatError(
            f"{name}: {where} has a label of type {type(value).__name__}; labels must be integer class indices"
        )
    return int(value)


def _labels(value: Any, name: str, split: str) -> torch.Tensor:
    labels = torch.as_tensor(value)
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DatasetFormatError(
            f"{name}: {split} labels must be a 1-D tensor of integer class indices, got {labels.dtype} "
            f"{tuple(labels.shape)}"
        )
    return labels.to(torch.int64)


def _check_pairs(data: UserData) -> None:
    pairs = [("train", data.train_x, data.train_y)]
    if data.test_x is not None and data.test_y is not None:
        pairs.append(("test", data.test_x, data.test_y))
        if data.test_x.shape[1:] != data.train_x.shape[1:]:
            raise DatasetFormatError(
                f"{data.name}: test images are {tuple(data.test_x.shape[1:])} but train images "
                f"{tuple(data.train_x.shape[1:])}; resize them to one size"
            )
    for split, x, y in pairs:
        if len(x) != len(y):
            raise DatasetFormatError(f"{data.name}: {split} has {len(x)} images but {len(y)} labels")
        if len(y) and int(y.min()) < 0:
            raise DatasetFormatError(f"{data.name}: {split} labels must be class indices >= 0, found {int(y.min())}")


def _num_classes(data: UserData, declared: int | None) -> int:
    highest = int(max(data.train_y.max(), data.test_y.max() if data.test_y is not None else 0))
    if declared is not None and highest >= declared:
        raise DatasetFormatError(f"{data.name}: label {highest} found but num_classes is {declared}")
    return declared if declared is not None else highest + 1
