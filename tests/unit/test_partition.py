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


# --- attribute partitions (COALA's BDD100K dir / hdir splits) ----------------------------------

# 3,000 images with three attributes: weather (4 values), scene (3), time of day (2, skewed prior).
_ATTR_RNG = np.random.default_rng(7)
ATTRIBUTES = np.stack(
    [_ATTR_RNG.integers(0, 4, 3000), _ATTR_RNG.integers(0, 3, 3000), (_ATTR_RNG.random(3000) < 0.2).astype(int)], 1
)


def skew(parts, column, attributes=ATTRIBUTES):
    """Mean over clients of the total-variation distance between the client's distribution of
    `column`'s values and the whole set's (0 for a perfect IID split)."""
    values = attributes[:, column]
    size = values.max() + 1
    overall = np.bincount(values, minlength=size) / len(values)
    per_client = [np.bincount(values[p], minlength=size) / len(p) for p in parts]
    return float(np.mean([0.5 * np.abs(c - overall).sum() for c in per_client]))


def test_hdirichlet_is_an_exact_cover_reproducible_and_skews_every_attribute():
    labels = np.zeros(len(ATTRIBUTES), dtype=int)
    parts = PARTITIONS.get("hdirichlet")(labels, 10, rng(1), ATTRIBUTES, alpha=0.1, alpha_secondary=0.1)
    assert_exact_cover(parts, len(ATTRIBUTES))
    again = PARTITIONS.get("hdirichlet")(labels, 10, rng(1), ATTRIBUTES, alpha=0.1, alpha_secondary=0.1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    iid_parts = iid(labels, 10, rng(1))
    for column in range(3):  # every attribute's distribution differs per client, far more than under IID
        assert skew(parts, column) > skew(iid_parts, column) + 0.2
    mild = PARTITIONS.get("hdirichlet")(labels, 10, rng(1), ATTRIBUTES, alpha=100.0, alpha_secondary=1000.0)
    assert_exact_cover(mild, len(ATTRIBUTES))
    for column in range(3):  # large concentrations approach IID
        assert skew(mild, column) < skew(iid_parts, column) + 0.05


def test_hdirichlet_secondary_skew_is_its_own_knob():
    labels = np.zeros(len(ATTRIBUTES), dtype=int)
    flat = PARTITIONS.get("hdirichlet")(labels, 10, rng(2), ATTRIBUTES, alpha=0.1, alpha_secondary=1000.0)
    skewed = PARTITIONS.get("hdirichlet")(labels, 10, rng(2), ATTRIBUTES, alpha=0.1, alpha_secondary=0.1)
    assert skew(skewed, 1) > skew(flat, 1) + 0.2 and skew(skewed, 2) > skew(flat, 2) + 0.1
    assert abs(skew(skewed, 0) - skew(flat, 0)) < 0.15  # the weather skew is alike


def test_hdirichlet_with_one_attribute_is_a_domain_skew():
    labels, domains = np.zeros(3000, dtype=int), ATTRIBUTES[:, :1]
    parts = PARTITIONS.get("hdirichlet")(labels, 8, rng(0), domains, alpha=0.05)
    assert_exact_cover(parts, 3000)
    assert skew(parts, 0) > 0.5  # IID: about 0.03


def test_attribute_partitions_explain_a_dataset_without_attributes():
    with pytest.raises(PartitionError, match="needs a dataset with attributes or domains"):
        PARTITIONS.get("hdirichlet")(LABELS, 4, rng())
    with pytest.raises(PartitionError, match="needs a dataset with domains or attributes"):
        PARTITIONS.get("domain_dirichlet")(LABELS, 4, rng())
    with pytest.raises(PartitionError, match="could not give all 10 clients at least 290 samples"):
        PARTITIONS.get("hdirichlet")(np.zeros(3000, int), 10, rng(), ATTRIBUTES, alpha=0.01, min_samples=290)


def test_domain_dirichlet_splits_each_domain_by_dirichlet_shares():
    parts = PARTITIONS.get("domain_dirichlet")(LABELS, 8, rng(5), domains=ATTRIBUTES[:2000, 0], alpha=0.05)
    assert_exact_cover(parts, 2000)
    assert skew(parts, 0) > 0.5  # by domain: the class labels play no part


def test_scenes_clients_get_hdirichlet_splits_of_their_domain():
    """A dataset with domains but no attribute table: its domain is the one attribute."""
    from fedforge.api import resolve_config
    from fedforge.data.federated import partition_clients
    from fedforge.data.sources import load_dataset

    cfg = resolve_config(
        None,
        {"data": {"name": "digits-domains", "num_clients": 6, "partition": {"kind": "hdirichlet", "alpha": 0.05}}},
    )
    data = load_dataset(cfg.data)
    train, _ = partition_clients(cfg, data, np.arange(len(data.train_y)))
    shares = [np.bincount(data.train_domain[t].numpy()).max() / len(t) for t in train if len(t)]
    assert np.mean(shares) > 0.8
