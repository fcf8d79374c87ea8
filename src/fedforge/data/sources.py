"""Dataset readers: each turns an on-disk (or bundled) dataset into in-memory tensors.

Images are uint8 [N, C, H, W] and labels int64 [N], loaded once; clients are index arrays
into them (see federated.py). Readers parse the standard formats users already have
(torchvision's folders, idx, CIFAR pickles, SVHN .mat, ImageFolder trees) and never
download anything unless `data.download: true`.
"""

from __future__ import annotations

import gzip
import pickle
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fedforge.data.targets import BOXES, MASKS, PackedBoxes
from fedforge.errors import ConfigError, DatasetFormatError, DatasetNotFound
from fedforge.registry import Registry

if TYPE_CHECKING:  # avoids an import cycle with config
    from fedforge.config import DataConfig

DATASETS: Registry[Callable[[DataConfig], DatasetTensors]] = Registry("dataset")

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SUBSAMPLE_SEED = 20240506  # fixed: data.train_fraction keeps the same samples in every run


@dataclass
class DatasetTensors:
    """A whole dataset in memory: uint8 images, int64 labels, official or fixed test split."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    hflip_safe: bool = False  # whether a horizontal flip keeps the label (not for digits/letters)
    # Multi-domain sets: the domain index of every sample, and the domains' names.
    train_domain: torch.Tensor | None = None
    test_domain: torch.Tensor | None = None
    domain_names: list[str] | None = None
    # What label-aware partitioners (dirichlet, shards) split by, per training sample: the label
    # by default; a dataset whose targets are not one class (boxes, masks) or that should split
    # by something else (a writer, a dominant class) sets it.
    train_key: torch.Tensor | None = None
    # Sets with several attributes per image (BDD100K's weather, scene, time of day): int64 codes
    # [N, A], the domain's attribute first; what the hierarchical `hdirichlet` partition splits by.
    train_attributes: torch.Tensor | None = None
    # Natural splits (LEAF): the writer (user) of every training image, int64 0..W-1, what the
    # `leaf` partition makes one client of.
    train_writer: torch.Tensor | None = None
    # Dense sets: their target stores by kind (data/targets.py: "boxes", "masks"); train_y/test_y
    # then hold each image's dominant class, so histograms and label-skew partitions still work.
    train_targets: dict[str, Any] = field(default_factory=dict)
    test_targets: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise DatasetFormatError(
                    f"{self.name}: {split} images must be uint8 [N,C,H,W], got {x.dtype} {tuple(x.shape)}"
                )
            if y.ndim != 1 or len(y) != len(x):
                raise DatasetFormatError(f"{self.name}: {split} has {len(x)} images but {len(y)} labels")
        key = self.train_key
        if key is not None and (key.dtype != torch.int64 or key.shape != (len(self.train_x),)):
            raise DatasetFormatError(
                f"{self.name}: the partition key must be int64 with one entry per training image, got "
                f"{key.dtype} {tuple(key.shape)} for {len(self.train_x)} images"
            )
        attrs = self.train_attributes
        if attrs is not None and (attrs.dtype != torch.int64 or attrs.ndim != 2 or len(attrs) != len(self.train_x)):
            raise DatasetFormatError(
                f"{self.name}: the attributes must be int64 [N, A] with one row per training image, got "
                f"{attrs.dtype} {tuple(attrs.shape)} for {len(self.train_x)} images"
            )

    def targets(self, split: str, kind: str, index: torch.Tensor) -> Any:
        """The targets of the samples at `index` of `split` ("train" or "test") from the `kind` store
        ("labels" or a dense store): what a task's loss and evaluator take."""
        if kind == "labels":
            return (self.train_y if split == "train" else self.test_y)[index]
        return (self.train_targets if split == "train" else self.test_targets)[kind][index]

    def require(self, kind: str, task: str) -> None:
        """Refuse a task whose target store this dataset does not have, before anything runs."""
        if kind != "labels" and kind not in self.train_targets:
            have = ", ".join(["labels", *self.train_targets]) or "labels"
            raise ConfigError(
                f"task '{task}' learns {kind}, but dataset '{self.name}' has {have} only; pick a dataset with "
                f"{kind} (scenes, coco, voc, bdd100k) or another task"
            )

    def select_train(self, keep: torch.Tensor) -> None:
        """Keep only the training samples at `keep` (every per-sample tensor and target store)."""
        self.train_x, self.train_y = self.train_x[keep], self.train_y[keep]
        for name in ("train_domain", "train_key", "train_attributes", "train_writer"):
            if (value := getattr(self, name)) is not None:
                setattr(self, name, value[keep])
        self.train_targets = {
            k: v.select(keep) if isinstance(v, PackedBoxes) else v[keep] for k, v in self.train_targets.items()
        }

    def to(self, device: torch.device | str) -> DatasetTensors:
        """A copy with images, labels and target stores on `device`."""
        import dataclasses

        def move(stores: dict[str, Any]) -> dict[str, Any]:
            return {k: v.to(device) for k, v in stores.items()}

        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
            train_targets=move(self.train_targets),
            test_targets=move(self.test_targets),
        )

    @property
    def partition_key(self) -> torch.Tensor:
        """Per training sample, what partitions split by (the label unless the dataset says otherwise)."""
        return self.train_y if self.train_key is None else self.train_key

    @property
    def attributes(self) -> torch.Tensor | None:
        """Per training sample, its attribute codes [N, A]: the dataset's own, else its domain as the one attribute."""
        if self.train_attributes is not None:
            return self.train_attributes
        return None if self.train_domain is None else self.train_domain[:, None]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the training images, on the [0, 1] scale."""
        x = self.train_x.float().div_(255)
        return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-3)


def load_dataset(cfg: DataConfig) -> DatasetTensors:
    """Read the dataset the config names, subsampled to `train_fraction` and resized to `image_size`."""
    data = DATASETS.get(cfg.name)(cfg)
    if cfg.train_fraction < 1:
        n = len(data.train_y)
        # A fixed stream of its own: seed 0 is the domain assignment's, and reusing it would
        # keep exactly the first domain's share.
        keep = np.sort(np.random.default_rng(SUBSAMPLE_SEED).permutation(n)[: max(1, int(n * cfg.train_fraction))])
        data.select_train(torch.as_tensor(keep))
    if cfg.image_size is not None and data.input_shape[1:] != (cfg.image_size, cfg.image_size):
        height, width = data.input_shape[1:]
        data.train_x = _resize(data.train_x, cfg.image_size)
        data.test_x = _resize(data.test_x, cfg.image_size)
        for stores in (data.train_targets, data.test_targets):
            _resize_targets(stores, cfg.image_size, height, width)
    return data


def _resize_targets(stores: dict[str, Any], size: int, height: int, width: int) -> None:
    """Move dense targets with a resize of their images from height x width to size x size."""
    if BOXES in stores:
        packed: PackedBoxes = stores[BOXES]
        scale = torch.tensor([size / width, size / height, size / width, size / height])
        stores[BOXES] = PackedBoxes(packed.boxes * scale.to(packed.boxes.device), packed.labels, packed.offsets)
    if MASKS in stores:
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvf

        stores[MASKS] = tvf.resize(stores[MASKS], [size, size], interpolation=InterpolationMode.NEAREST_EXACT)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as tvf

    return tvf.resize(x, [size, size], antialias=True)


def _split_fixed(
    x: np.ndarray, y: np.ndarray, test_fraction: float, where: str = "", classes: list[str] | None = None
) -> tuple[np.ndarray, ...]:
    """Stratified train/test split with a fixed seed, so every run sees the same test set."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    small = [int(c) for c in np.flatnonzero((counts > 0) & (counts < 2))]
    if small:
        names = [classes[c] if classes else str(c) for c in small]
        raise DatasetFormatError(
            f"{where or 'the dataset'}: class {', '.join(names)} has a single image, so no test share can be held "
            "out for it; add images, remove the class, or give root/train and root/test folders"
        )
    try:
        return tuple(train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=0))
    except ValueError as err:  # e.g. a test share smaller than the number of classes
        raise DatasetFormatError(
            f"{where or 'the dataset'}: cannot hold out data.test_fraction={test_fraction} per class ({err})"
        ) from None


def _tensors(name: str, tx, ty, vx, vy, hflip_safe: bool = False, num_classes: int | None = None) -> DatasetTensors:
    ty_t, vy_t = torch.as_tensor(np.asarray(ty), dtype=torch.int64), torch.as_tensor(np.asarray(vy), dtype=torch.int64)
    classes = num_classes if num_classes is not None else int(max(ty_t.max(), vy_t.max())) + 1
    return DatasetTensors(
        name=name,
        train_x=torch.as_tensor(np.ascontiguousarray(tx), dtype=torch.uint8),
        train_y=ty_t,
        test_x=torch.as_tensor(np.ascontiguousarray(vx), dtype=torch.uint8),
        test_y=vy_t,
        num_classes=classes,
        hflip_safe=hflip_safe,
    )


# --- bundled ---------------------------------------------------------------------------------


@DATASETS.register("digits")
def digits(cfg: DataConfig) -> DatasetTensors:
    """scikit-learn's bundled 8x8 digits (1,797 images): works offline right after install."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    tx, vx, ty, vy = _split_fixed(images, bunch.target, cfg.test_fraction)
    return _tensors("digits", tx, ty, vx, vy, num_classes=10)


# --- idx (MNIST family) ----------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (optionally gzip-compressed), the format of MNIST and its siblings."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; truncation an EOFError
        raise DatasetFormatError(f"'{path}' is a corrupt or truncated gzip file ({err}); re-download it") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetFormatError(f"'{path}' is not an idx file (bad magic number); re-download it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetFormatError(
            f"'{path}' is truncated or corrupt: header says {dims} ({expected} bytes), file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).copy()  # writable for torch


def _find(dirs: Sequence[Path], stem: str) -> Path | None:
    for folder in dirs:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _missing(name: str, dirs: Sequence[Path], files: Sequence[str], how: str) -> DatasetNotFound:
    looked = ", ".join(f"'{d}'" for d in dirs)
    return DatasetNotFound(f"dataset '{name}' not found: looked for {', '.join(files)} in {looked}. {how}")


def _download_hint(name: str) -> str:
    return f"Put the files under data.root, or set data.download=true to let torchvision fetch {name} (needs internet)."


def _torchvision_download(cfg: DataConfig, cls_name: str, **kwargs) -> None:
    import torchvision.datasets as tvd

    root = Path(cfg.root)
    cls = getattr(tvd, cls_name)
    for train in (True, False):
        if cls_name == "SVHN":
            cls(str(root), split="train" if train else "test", download=True)
        else:
            cls(str(root), train=train, download=True, **kwargs)


def _idx_dataset(
    cfg: DataConfig,
    name: str,
    folder: str,
    prefix: str = "",
    extra_dirs: Sequence[Path] = (),
    how: str | None = None,
    hflip_safe: bool = False,
    transpose: bool = False,
    label_offset: int = 0,
    download_kwargs: dict | None = None,
) -> DatasetTensors:
    root = Path(cfg.root)
    dirs = [root / folder / "raw", root / folder, root, *extra_dirs]
    stems = [
        f"{prefix}{s}"
        for s in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]
    if _find(dirs, stems[0]) is None and cfg.download:
        _torchvision_download(cfg, folder, **(download_kwargs or {}))
    found = [_find(dirs, s) for s in stems]
    if any(f is None for f in found):
        raise _missing(
            name, dirs, [s for s, f in zip(stems, found, strict=True) if f is None], how or _download_hint(name)
        )
    tx, ty, vx, vy = (read_idx(f) for f in found)  # type: ignore[arg-type]
    for images, labels, x, y in ((found[0], found[1], tx, ty), (found[2], found[3], vx, vy)):
        if len(x) != len(y):
            raise DatasetFormatError(f"'{images}' has {len(x)} images but '{labels}' has {len(y)} labels")
    if transpose:
        tx, vx = tx.transpose(0, 2, 1), vx.transpose(0, 2, 1)
    return _tensors(
        name,
        tx[:, None],
        ty.astype(np.int64) - label_offset,
        vx[:, None],
        vy.astype(np.int64) - label_offset,
        hflip_safe=hflip_safe,
    )


@DATASETS.register("mnist")
def mnist(cfg: DataConfig) -> DatasetTensors:
    """MNIST handwritten digits (idx files, raw or .gz) from data.root."""
    return _idx_dataset(cfg, "mnist", "MNIST")


@DATASETS.register("fashion-mnist")
def fashion_mnist(cfg: DataConfig) -> DatasetTensors:
    """Fashion-MNIST from data.root, else from Debian's `dataset-fashion-mnist` package."""
    how = (
        "Install the official set with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, "
        f"puts it in {FASHION_MNIST_SYSTEM_DIR}), put the idx files under data.root, "
        "or set data.download=true (needs internet)."
    )
    return _idx_dataset(
        cfg, "fashion-mnist", "FashionMNIST", extra_dirs=[FASHION_MNIST_SYSTEM_DIR], how=how, hflip_safe=True
    )


@DATASETS.register("kmnist")
def kmnist(cfg: DataConfig) -> DatasetTensors:
    """Kuzushiji-MNIST: 10 cursive Japanese characters (idx files) from data.root."""
    return _idx_dataset(cfg, "kmnist", "KMNIST")


EMNIST_SPLITS = ("balanced", "byclass", "bymerge", "digits", "letters", "mnist")


@DATASETS.register("emnist")
def emnist(cfg: DataConfig) -> DatasetTensors:
    """EMNIST; `data.variant` picks the split (default balanced). Letters are relabelled 0..25."""
    split = cfg.variant or "balanced"
    if split not in EMNIST_SPLITS:
        raise ConfigError(f"data.variant: unknown EMNIST split '{split}'; known splits: {', '.join(EMNIST_SPLITS)}")
    return _idx_dataset(
        cfg,
        "emnist",
        "EMNIST",
        prefix=f"emnist-{split}-",
        transpose=True,
        label_offset=1 if split == "letters" else 0,
        download_kwargs={"split": split},
    )


# --- CIFAR pickles ---------------------------------------------------------------------------


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits only what CIFAR's python batches hold (numpy arrays and scalars, dicts, lists, numbers,
    strings):
    any other global a pickle names, such as `os.system`, is refused before it can be called."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR batch never holds")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            batch = ArraysOnlyUnpickler(fh, encoding="bytes").load()
    except Exception as err:  # a crafted or damaged pickle raises nearly anything; none of it is run
        raise DatasetFormatError(f"'{path}' is not a CIFAR python batch ({err}); re-download it") from None
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"'{path}' holds a {type(batch).__name__}, not a CIFAR batch (a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _cifar(cfg: DataConfig, name: str, folder: str, train_files: list[str], label_key: str, tv_name: str):
    base = Path(cfg.root) / folder
    if not (base / train_files[0]).is_file() and cfg.download:
        _torchvision_download(cfg, tv_name)
    missing = [f for f in [*train_files, "test" if name == "cifar100" else "test_batch"] if not (base / f).is_file()]
    if missing:
        raise _missing(name, [base], missing, _download_hint(name))

    def read(files: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for f in files:
            batch = _unpickle(base / f)
            if "data" not in batch or label_key not in batch:
                raise DatasetFormatError(f"'{base / f}' lacks 'data' or '{label_key}'; is it a {name} batch?")
            try:
                x = np.asarray(batch["data"], dtype=np.uint8)
                y = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
            except (TypeError, ValueError) as err:
                raise DatasetFormatError(f"'{base / f}': 'data' or '{label_key}' is not numeric ({err})") from None
            if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
                raise DatasetFormatError(
                    f"'{base / f}': images are {tuple(x.shape)}, expected rows of 3x32x32={3 * 32 * 32} bytes"
                )
            if len(x) != len(y):
                raise DatasetFormatError(f"'{base / f}' has {len(x)} images but {len(y)} labels")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    tx, ty = read(train_files)
    vx, vy = read(["test" if name == "cifar100" else "test_batch"])
    return _tensors(name, tx, ty, vx, vy, hflip_safe=True, num_classes=10 if name == "cifar10" else 100)


@DATASETS.register("cifar10")
def cifar10(cfg: DataConfig) -> DatasetTensors:
    """CIFAR-10 (the python pickles in cifar-10-batches-py), read without running pickled code."""
    return _cifar(cfg, "cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "labels", "CIFAR10")


@DATASETS.register("cifar100")
def cifar100(cfg: DataConfig) -> DatasetTensors:
    """CIFAR-100, fine labels (cifar-100-python), read without running pickled code."""
    return _cifar(cfg, "cifar100", "cifar-100-python", ["train"], "fine_labels", "CIFAR100")


# --- SVHN .mat -------------------------------------------------------------------------------


@DATASETS.register("svhn")
def svhn(cfg: DataConfig) -> DatasetTensors:
    """SVHN cropped digits (train_32x32.mat / test_32x32.mat); label 10 means digit 0."""
    from scipy.io import loadmat

    root = Path(cfg.root)
    dirs = [root, root / "svhn", root / "SVHN"]
    files = ("train_32x32.mat", "test_32x32.mat")
    if _find(dirs, files[0]) is None and cfg.download:
        _torchvision_download(cfg, "SVHN")
    found = [_find(dirs, f) for f in files]
    if any(f is None for f in found):
        raise _missing(
            "svhn", dirs, [f for f, p in zip(files, found, strict=True) if p is None], _download_hint("svhn")
        )

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            mat = loadmat(str(path))
        except Exception as err:  # scipy raises several unrelated types for bad files
            raise DatasetFormatError(f"'{path}' is not a readable SVHN .mat file ({err})") from None
        if "X" not in mat or "y" not in mat:
            raise DatasetFormatError(f"'{path}' lacks the 'X' and 'y' arrays of SVHN")
        x = np.transpose(mat["X"], (3, 2, 0, 1)).astype(np.uint8)  # [H,W,C,N] -> [N,C,H,W]
        y = mat["y"].astype(np.int64).reshape(-1) % 10
        return x, y

    (tx, ty), (vx, vy) = read(found[0]), read(found[1])  # type: ignore[arg-type]
    return _tensors("svhn", tx, ty, vx, vy, num_classes=10)


# --- ImageFolder trees -----------------------------------------------------------------------

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _read_tree(folder: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    xs, ys = [], []
    for label, cls in enumerate(classes):
        paths = sorted(p for p in (folder / cls).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not paths:
            warnings.warn(
                f"class folder '{folder / cls}' holds no images: class {label} ('{cls}') will have no samples",
                DataWarning,
                stacklevel=2,
            )
        for path in paths:
            try:
                with Image.open(path) as img:
                    rgb = _as_rgb8(img, path).resize((size, size), Image.Resampling.BILINEAR)
            except Image.DecompressionBombError as err:
                raise DatasetFormatError(
                    f"'{path}' is larger than Pillow's safety limit ({err}); shrink it before training"
                ) from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                raise DatasetFormatError(f"'{path}' is not a readable image ({err})") from None
            xs.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise DatasetNotFound(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under '{folder}'")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


class DataWarning(UserWarning):
    """Data that loads but is probably not what the user meant (e.g. an empty class folder)."""


def _as_rgb8(img: Any, path: Path) -> Any:
    """8-bit RGB with the right scaling: Pillow's own convert() clips 16-bit values at 255."""
    from PIL import Image

    if img.mode in {"I;16", "I;16L", "I;16B", "I;16N", "I"}:
        values = np.asarray(img, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise DatasetFormatError(f"'{path}' holds {img.mode} values outside 0..65535; convert it to 8 or 16 bits")
        return Image.fromarray(np.rint(values / 257.0).astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "F":
        raise DatasetFormatError(f"'{path}' is a floating-point image; convert it to 8 or 16 bits first")
    return img.convert("RGB")


def read_image_tree(root: Path, size: int, test_fraction: float, classes: list[str] | None = None):
    """One ImageFolder tree, `root/<class>/<image>` (split by `test_fraction`) or
    `root/{train,test}/<class>/<image>`; returns (train x, train y, test x, test y, classes)."""
    has_split = (root / "train").is_dir() and (root / "test").is_dir()
    train_dir = root / "train" if has_split else root
    found = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not found:
        raise DatasetNotFound(f"image folder '{train_dir}' has no class sub-folders (expected <class>/<image>)")
    if classes is not None and found != classes:
        raise DatasetNotFound(f"image folder '{train_dir}' has classes {found}, expected {classes} as elsewhere")
    tx, ty = _read_tree(train_dir, found, size)
    if has_split:
        vx, vy = _read_tree(root / "test", found, size)
    else:
        tx, vx, ty, vy = _split_fixed(tx, ty, test_fraction, f"image folder '{train_dir}'", found)
    return tx, ty, vx, vy, found


@DATASETS.register("imagefolder")
def imagefolder(cfg: DataConfig) -> DatasetTensors:
    """A tree root/<class>/<image> (split by test_fraction) or root/{train,test}/<class>/<image>."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DatasetNotFound(f"imagefolder root '{root}' does not exist; set data.root to a folder of class folders")
    tx, ty, vx, vy, classes = read_image_tree(root, cfg.image_size or 32, cfg.test_fraction)
    return _tensors("imagefolder", tx, ty, vx, vy, hflip_safe=True, num_classes=len(classes))
