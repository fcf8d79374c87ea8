import numpy as np
import pytest

from fedforge.data.partition import PARTITIONS, dirichlet, iid, label_histogram, quantity, shards
from fedforge.errors import PartitionError

LABELS = np.repeat(np.arange(10), 200)  # 2,000 samples, 10 balanced classes


def rng(seed=0):
    return np.random.default_rng(seed)


def assert_exact_cover(parts, n):
    joined = np.concatenate(parts)
    assert len(joined) == n and len(np.unique(joined)) == n


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards", "quantity"])
def test_every_partition_is_an_exact_cover_and_reproducible(kind):
    fn = PARTITIONS.get(kind)
    parts = fn(LABELS, 20, rng(3))
    assert len(parts) == 20
    assert_exact_cover(parts, len(LABELS))
    again = fn(LABELS, 20, rng(3))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = fn(LABELS, 20, rng(4))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def test_iid_sizes_equal_and_labels_balanced():
    parts = iid(LABELS, 10, rng())
    assert {len(p) for p in parts} == {200}
    hist = label_histogram(LABELS, parts, 10)
    assert hist.min() > 5  # every client sees every class


def test_dirichlet_small_alpha_gives_near_one_class_clients():
    parts = dirichlet(LABELS, 100, rng(), alpha=0.01, min_samples=0)
    hist = label_histogram(LABELS, [p for p in parts if len(p)], 10)
    dominant = hist.max(axis=1) / hist.sum(axis=1)
    assert dominant.mean() > 0.85  # vs ~0.1-0.3 for IID-like splits
    assert np.median(dominant) > 0.99


def test_dirichlet_large_alpha_is_close_to_iid():
    parts = dirichlet(LABELS, 10, rng(), alpha=1000.0, min_samples=0)
    hist = label_histogram(LABELS, parts, 10)
    shares = hist / hist.sum(axis=1, keepdims=True)
    assert np.abs(shares - 0.1).max() < 0.05


def test_dirichlet_skew_grows_as_alpha_shrinks():
    def mean_dominant(alpha):
        hist = label_histogram(LABELS, dirichlet(LABELS, 10, rng(), alpha=alpha, min_samples=1), 10)
        return (hist.max(axis=1) / hist.sum(axis=1)).mean()

    assert mean_dominant(0.1) > mean_dominant(1.0) > mean_dominant(100.0)


def test_dirichlet_min_samples_is_honoured_or_explained():
    parts = dirichlet(LABELS, 20, rng(), alpha=0.5, min_samples=30)
    assert min(len(p) for p in parts) >= 30
    with pytest.raises(PartitionError, match="could not give all 20 clients at least 99"):
        dirichlet(LABELS, 20, rng(), alpha=0.001, min_samples=99)


def test_shards_limits_classes_per_client():
    parts = shards(LABELS, 50, rng(), classes_per_client=2)
    classes = [len(np.unique(LABELS[p])) for p in parts]
    assert max(classes) <= 2  # 100 shards of 20 never straddle a 200-sample class
    assert {len(p) for p in parts} == {40}


def test_quantity_skews_sizes_not_labels():
    parts = quantity(LABELS, 10, rng(), alpha=0.3, min_samples=20)
    sizes = np.array([len(p) for p in parts])
    assert sizes.min() >= 20 and sizes.max() > 3 * sizes.min()
    big = max(parts, key=len)
    shares = np.bincount(LABELS[big], minlength=10) / len(big)
    assert np.abs(shares - 0.1).max() < 0.06


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "quantity", "shards"])
def test_more_clients_than_samples_is_an_error(kind):
    with pytest.raises(PartitionError, match="num_clients"):
        PARTITIONS.get(kind)(LABELS[:15], 16, rng())


def test_partitions_split_by_the_datasets_partition_key_when_it_has_one():
    """A dataset whose samples should be split by something else than their label (a detection set's
    dominant class, a writer) sets `train_key`; every label-aware partitioner then uses it."""
    import dataclasses

    import numpy as np
    import torch

    from fedforge.api import resolve_config
    from fedforge.data.federated import partition_clients
    from fedforge.data.sources import DatasetTensors, load_dataset
    from fedforge.errors import DatasetFormatError

    cfg = resolve_config(None, {"data": {"num_clients": 2, "partition": {"kind": "shards", "classes_per_client": 1}}})
    data = load_dataset(cfg.data)
    parity = dataclasses.replace(data, train_key=data.train_y % 2)  # two "classes": even and odd digits
    train, _ = partition_clients(cfg, parity, np.arange(len(data.train_y)))
    majority = []
    for shard in train:  # two equal shards of the key-sorted samples: one parity each, but for the
        odd = float((data.train_y[shard] % 2).float().mean())  # few at the boundary (the parities differ in size)
        assert min(odd, 1 - odd) < 0.03 and len(set(data.train_y[shard].tolist())) >= 5
        majority.append(round(odd))
    assert sorted(majority) == [0, 1]
    with pytest.raises(DatasetFormatError, match="partition key must be int64 with one entry per training image"):
        DatasetTensors("bad", data.train_x, data.train_y, data.test_x, data.test_y, 10, train_key=torch.zeros(3))
