"""LEAF's FEMNIST json layout: read, validated, and split one client per writer."""

import json

import numpy as np
import pytest

from fedforge.config import DataConfig
from fedforge.data.leaf import femnist
from fedforge.data.partition import leaf
from fedforge.errors import DatasetFormatError, DatasetNotFound, PartitionError
from tests.leaf_fixture import write_leaf


def test_reads_every_file_and_remembers_each_images_writer(tmp_path):
    folder = write_leaf(tmp_path, writers=12)
    data = femnist(DataConfig(name="femnist", root=str(tmp_path)))
    assert data.train_x.shape[1:] == (1, 28, 28) and data.num_classes == 62
    assert int(data.train_writer.max()) + 1 == 12  # writers of both train files
    train_users = [json.loads(p.read_text()) for p in sorted((folder / "train").glob("*.json"))]
    assert len(data.train_y) == sum(sum(b["num_samples"]) for b in train_users)
    first = train_users[0]["users"][0]
    x0 = np.asarray(train_users[0]["user_data"][first]["x"][0])
    assert np.array_equal(data.train_x[0, 0].numpy().reshape(-1), np.rint(x0 * 255).astype(np.uint8))
    assert (data.train_writer[: train_users[0]["num_samples"][0]] == 0).all()


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DatasetNotFound, match="femnist/data"):
        femnist(DataConfig(name="femnist", root=str(tmp_path)))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b, u: b["num_samples"].__setitem__(0, 999), "num_samples"),
        (lambda b, u: b["user_data"][u]["y"].__setitem__(0, 62), "labels outside"),
        (lambda b, u: b["user_data"][u]["x"][0].__setitem__(0, 3.0), "pixels outside"),
        (lambda b, u: b["user_data"].pop(u), "no x and y"),
    ],
)
def test_malformed_files_name_the_file_and_the_user(tmp_path, damage, message):
    folder = write_leaf(tmp_path, writers=4, files=1)
    path = next((folder / "train").glob("*.json"))
    blob = json.loads(path.read_text())
    user = blob["users"][0]
    damage(blob, user)
    path.write_text(json.dumps(blob))
    with pytest.raises(DatasetFormatError, match=message) as err:
        femnist(DataConfig(name="femnist", root=str(tmp_path)))
    assert path.name in str(err.value)


def test_leaf_partition_one_client_per_writer_and_its_knobs():
    rng = np.random.default_rng
    writers = np.repeat(np.arange(6), [50, 40, 30, 20, 5, 5])  # two writers below min_size 10
    labels = np.zeros(len(writers), dtype=np.int64)
    clients = leaf(labels, 4, rng(0), writers, min_size=10)
    assert len(clients) == 4
    for idx in clients:
        assert len(np.unique(writers[idx])) == 1 and len(idx) >= 10  # one whole writer each
    assert leaf(labels, 4, rng(0), writers, min_size=10)[0].tolist() == clients[0].tolist()  # seeded

    with pytest.raises(PartitionError, match="only 4 writers qualify"):
        leaf(labels, 5, rng(0), writers, min_size=10)
    small = leaf(labels, 1, rng(0), writers, min_size=10, data_amount=0.1)  # 15 samples: one writer is enough
    assert len(small) == 1
    with pytest.raises(PartitionError, match="data.num_clients"):
        leaf(labels, 2, rng(0), writers, min_size=10, data_amount=0.1)

    mixed = leaf(labels, 4, rng(0), writers, min_size=10, iid_fraction=1.0)
    assert sorted(len(c) for c in mixed) == sorted(len(c) for c in clients)  # sizes kept
    assert np.array_equal(np.sort(np.concatenate(mixed)), np.sort(np.concatenate(clients)))  # same samples
    assert any(len(np.unique(writers[c])) > 1 for c in mixed)  # writers mixed across clients
    with pytest.raises(PartitionError, match="records writers"):
        leaf(labels, 2, rng(0), None)
