"""Files fedforge reads are data, never code: crafted pickles and checkpoints cannot run anything,
and damaged or odd files become one clear error (or a correct conversion), never silent damage."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fedforge.config import DataConfig
from fedforge.data.sources import DataWarning, load_dataset, read_idx
from fedforge.engine.checkpoint import MAGIC, Checkpointer
from fedforge.errors import CheckpointError, DatasetFormatError


class RunsAShellCommand:
    """Pickles into a call of os.system: what a crafted file in data.root would carry."""

    def __init__(self, sentinel) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def cifar_folder(tmp_path, train_batch) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(good))
    (folder / "data_batch_1").write_bytes(train_batch)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (lambda s: pickle.dumps({b"data": RunsAShellCommand(s), b"labels": [0]}), "refers to posix.system"),
        (lambda s: pickle.dumps(RunsAShellCommand(s)), "refers to posix.system"),
        (lambda s: pickle.dumps([1, 2, 3]), "holds a list"),
        (lambda s: pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "expected rows"),
        (lambda s: pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "2 images but 1 labels"),
        (lambda s: b"cnot_a_module\nfun\n.", "refers to not_a_module.fun"),  # a module that does not exist
    ],
)
def test_a_crafted_or_wrong_cifar_batch_runs_nothing_and_names_the_file(tmp_path, batch, message):
    sentinel = tmp_path / "executed"
    cifar_folder(tmp_path, batch(sentinel))
    with pytest.raises(DatasetFormatError, match=message) as err:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert "data_batch_1" in str(err.value)
    assert not sentinel.exists()


def forged_checkpoint(path, blob_bytes: bytes) -> None:
    """A checkpoint whose checksum is right: only its contents are hostile or wrong."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(MAGIC + hashlib.sha256(blob_bytes).digest() + blob_bytes)


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_a_crafted_checkpoint_runs_nothing(tmp_path):
    sentinel = tmp_path / "executed"
    forged_checkpoint(tmp_path / "ckpt" / "round-000000.ckpt", torch_bytes({"round": RunsAShellCommand(sentinel)}))
    with pytest.raises(CheckpointError, match="cannot be decoded"):
        Checkpointer(tmp_path / "ckpt").latest()
    assert not sentinel.exists()


def valid_blob(weights: torch.Tensor) -> dict:
    return {"round": 0, "weights": weights, "server_extras": {}, "clients": {}, "rng": {}, "extras": {}}


def test_a_checkpoint_with_a_valid_checksum_but_wrong_contents_is_refused_by_name(tmp_path):
    folder = tmp_path / "ckpt"
    forged_checkpoint(folder / "round-000002.ckpt", torch_bytes(valid_blob(torch.zeros(7))))  # another model
    forged_checkpoint(folder / "round-000001.ckpt", torch_bytes({"round": 1, "weights": torch.zeros(5)}))  # missing
    forged_checkpoint(folder / "round-000000.ckpt", torch_bytes(valid_blob(torch.zeros(5))))  # the good one
    checkpoint, skipped = Checkpointer(folder).latest(expected_size=5)
    assert checkpoint.round == 0
    assert "round-000002.ckpt" in skipped[0] and "holds 7 weights but this run's model has 5" in skipped[0]
    assert "round-000001.ckpt" in skipped[1] and "server_extras" in skipped[1]


def test_a_corrupt_or_truncated_gzip_idx_file_is_a_format_error(tmp_path):
    whole = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4]))
    (tmp_path / "cut.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "junk.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    for name in ("cut.gz", "junk.gz"):
        with pytest.raises(DatasetFormatError, match=f"{name}' is a corrupt or truncated gzip"):
            read_idx(tmp_path / name)


def image_tree(tmp_path, images: dict[str, list[Image.Image]]):
    for cls, imgs in images.items():
        (tmp_path / cls).mkdir(parents=True)
        for i, img in enumerate(imgs):
            img.save(tmp_path / cls / f"{i}.png")
    return DataConfig(name="imagefolder", root=str(tmp_path), image_size=4, test_fraction=0.5)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    levels = {"a": 0, "b": 25700, "c": 65535}  # -> 0, 100, 255 in 8 bits
    tree = {c: [Image.fromarray(np.full((4, 4), v, np.uint16)) for _ in range(2)] for c, v in levels.items()}
    assert tree["b"][0].mode.startswith("I;16")
    data = load_dataset(image_tree(tmp_path, tree))
    by_class = {int(y): int(x.max()) for x, y in zip(data.train_x, data.train_y, strict=True)}
    assert by_class == {0: 0, 1: 100, 2: 255}


def test_an_empty_class_folder_is_warned_about(tmp_path):
    cfg = image_tree(tmp_path, {"cat": [Image.new("RGB", (4, 4))] * 2, "dog": [Image.new("RGB", (4, 4), "red")] * 2})
    (tmp_path / "empty").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_dataset(cfg)
    assert any(issubclass(w.category, DataWarning) and "'empty'" in str(w.message) for w in caught)


def test_a_class_with_one_image_names_the_class_instead_of_a_split_traceback(tmp_path):
    cfg = image_tree(tmp_path, {"cat": [Image.new("RGB", (4, 4))] * 3, "lonely": [Image.new("RGB", (4, 4))]})
    with pytest.raises(DatasetFormatError, match="class lonely has a single image"):
        load_dataset(cfg)


def test_an_image_over_pillows_pixel_limit_is_a_format_error(tmp_path):
    cfg = image_tree(tmp_path, {"a": [Image.new("L", (4, 4))] * 2, "b": [Image.new("L", (4, 4))] * 2})
    bomb = Image.new("1", (20_000, 10_000))  # 200 M pixels, 1 bit each: a small file
    bomb.save(tmp_path / "a" / "bomb.png")
    with pytest.raises(DatasetFormatError, match="bomb.png' is larger than Pillow's safety limit"):
        load_dataset(cfg)


def test_a_label_count_mismatch_names_both_idx_files(tmp_path):
    from tests.unit.test_sources import write_idx

    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(1, np.uint8))
    with pytest.raises(DatasetFormatError, match="train-images-idx3-ubyte' has 3 images but '.*train-labels"):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
