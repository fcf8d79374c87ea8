"""Writes a small FEMNIST-layout LEAF dataset: real digits (scikit-learn's) drawn by writers with styles.

Each writer has its own offset and stroke intensity and favours a few digits, so the split is
non-IID by writer as FEMNIST's is. Files follow LEAF: train/*.json and test/*.json holding users,
num_samples and user_data (x: 784 floats in [0, 1], y: labels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def digits_28() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    return F.interpolate(x, size=(20, 20), mode="bilinear").squeeze(1).numpy(), d.target


def write_leaf(root: Path, writers: int = 12, seed: int = 0, files: int = 2) -> Path:
    """LEAF json files under root/femnist/data; returns that folder."""
    rng = np.random.default_rng(seed)
    images, labels = digits_28()
    order = rng.permutation(len(labels))
    chunks = np.array_split(order, writers)
    users: list[dict[str, dict]] = [{}, {}]  # train, test
    for w, chunk in enumerate(chunks):
        favourite = rng.choice(10, size=4, replace=False)
        keep = chunk[np.isin(labels[chunk], favourite) | (rng.random(len(chunk)) < 0.2)]
        dy, dx = rng.integers(0, 9, size=2)
        canvas = np.zeros((len(keep), 28, 28), dtype=np.float32)
        canvas[:, dy : dy + 20, dx : dx + 20] = images[keep] * rng.uniform(0.6, 1.0)
        x = np.round(canvas.reshape(len(keep), -1), 3)
        cut = max(1, len(keep) // 5)
        for split, sel in ((0, slice(cut, None)), (1, slice(None, cut))):
            users[split][f"f{w:04d}_{w % 7:02d}"] = {"x": x[sel].tolist(), "y": labels[keep][sel].tolist()}
    folder = root / "femnist" / "data"
    for split, name in enumerate(("train", "test")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        names = sorted(users[split])
        for f, part in enumerate(np.array_split(np.array(names), files)):
            blob = {
                "users": part.tolist(),
                "num_samples": [len(users[split][u]["y"]) for u in part],
                "user_data": {u: users[split][u] for u in part},
            }
            (folder / name / f"all_data_{f}_niid_0_keep_0_{name}_9.json").write_text(json.dumps(blob))
    return folder
