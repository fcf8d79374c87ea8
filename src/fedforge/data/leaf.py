"""LEAF's FEMNIST (Caldas et al., 2018) as its json files lay it out: one natural client per writer.

LEAF writes `train/*.json` and `test/*.json`, each
`{"users": [...], "num_samples": [...], "user_data": {user: {"x": [[784 floats in 0..1]], "y": [...]}}}`.
The test files hold each writer's held-out samples; together they are the global test set. Images
become uint8 (x * 255, 28x28, LEAF's own polarity) and every training image remembers its writer,
which the `leaf` partition (data/partition.py) makes clients of.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedforge.data.sources import DATASETS, DatasetTensors
from fedforge.errors import DatasetFormatError, DatasetNotFound

FEMNIST_CLASSES = 62  # 10 digits, 26 upper-case and 26 lower-case letters
WHERE = ("femnist/data", "femnist", "leaf/data/femnist/data", ".")


def leaf_folder(root: Path) -> Path | None:
    """The folder under `root` holding LEAF's train/ and test/ json folders."""
    for sub in WHERE:
        folder = root / sub
        if any((folder / "train").glob("*.json")) and any((folder / "test").glob("*.json")):
            return folder
    return None


def read_leaf_split(folder: Path, writer_ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every json file of one split: (uint8 images [N,1,S,S], labels, writers); new writers get the next id."""
    images, labels, writers = [], [], []
    for path in sorted(folder.glob("*.json")):
        for user, x, y in _users(path):
            writer = writer_ids.setdefault(user, len(writer_ids))
            images.append(x)
            labels.append(y)
            writers.append(np.full(len(y), writer, dtype=np.int64))
    if not images:
        raise DatasetFormatError(f"'{folder}' has json files but no samples in them")
    return np.concatenate(images), np.concatenate(labels), np.concatenate(writers)


def _users(path: Path) -> Any:
    """(user, uint8 images, labels) of one LEAF json file, each checked against the layout."""
    try:
        blob = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetFormatError(f"LEAF file '{path}' cannot be read as json: {err}") from None
    if not isinstance(blob, dict) or not {"users", "num_samples", "user_data"} <= set(blob):
        raise DatasetFormatError(f"LEAF file '{path}' lacks users, num_samples or user_data (FEMNIST layout)")
    users, counts, data = blob["users"], blob["num_samples"], blob["user_data"]
    if len(users) != len(counts):
        raise DatasetFormatError(f"LEAF file '{path}': {len(users)} users but {len(counts)} num_samples")
    for user, count in zip(users, counts, strict=True):
        entry = data.get(user) if isinstance(data, dict) else None
        if not isinstance(entry, dict) or "x" not in entry or "y" not in entry:
            raise DatasetFormatError(f"LEAF file '{path}': user '{user}' has no x and y in user_data")
        x, y = np.asarray(entry["x"], dtype=np.float32), np.asarray(entry["y"])
        side = math.isqrt(x.shape[1]) if x.ndim == 2 else 0
        if x.ndim != 2 or side * side != x.shape[1] or len(x) != len(y) or len(y) != count:
            raise DatasetFormatError(
                f"LEAF file '{path}': user '{user}' has x of shape {x.shape} and {len(y)} labels for num_samples "
                f"{count}; expected {count} rows of square images (784 = 28x28 floats) and {count} labels"
            )
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= FEMNIST_CLASSES)):
            raise DatasetFormatError(f"LEAF file '{path}': user '{user}' has labels outside 0..{FEMNIST_CLASSES - 1}")
        if len(x) and (not np.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise DatasetFormatError(f"LEAF file '{path}': user '{user}' has pixels outside [0, 1]")
        pixels = np.rint(x * 255).astype(np.uint8).reshape(len(x), 1, side, side)
        yield user, pixels, y.astype(np.int64)


@DATASETS.register("femnist")
def femnist(cfg: Any) -> DatasetTensors:
    """FEMNIST from LEAF's json files under data.root (62 classes, one writer per image)."""
    root = Path(cfg.root)
    folder = leaf_folder(root)
    if folder is None:
        looked = ", ".join(f"'{root / sub}'" for sub in WHERE)
        raise DatasetNotFound(
            f"dataset 'femnist' not found: looked for LEAF's train/*.json and test/*.json in {looked}. Run LEAF's "
            "preprocessing (github.com/TalwalkarLab/leaf, data/femnist: ./preprocess.sh -s niid --sf 1.0 -k 0 -t "
            "sample) and put its data/ folder at <data.root>/femnist/data"
        )
    writer_ids: dict[str, int] = {}
    tx, ty, tw = read_leaf_split(folder / "train", writer_ids)
    vx, vy, _ = read_leaf_split(folder / "test", writer_ids)
    return DatasetTensors(
        name="femnist",
        train_x=torch.from_numpy(tx),
        train_y=torch.from_numpy(ty),
        test_x=torch.from_numpy(vx),
        test_y=torch.from_numpy(vy),
        num_classes=FEMNIST_CLASSES,
        train_writer=torch.from_numpy(tw),
    )
