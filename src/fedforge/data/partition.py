"""Partitions: pure functions of (labels, num_clients, rng, params) -> per-client index arrays.

Each is registered by name; its keyword-only arguments are its config parameters
(`data.partition: {kind: dirichlet, alpha: 0.5, min_samples: 10}`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

import numpy as np
from pydantic import Field

from fedforge.errors import PartitionError
from fedforge.registry import Registry

Partitioner = Callable[..., list[np.ndarray]]
PARTITIONS: Registry[Partitioner] = Registry("partition")

MAX_DIRICHLET_TRIES = 1000


def _check_size(labels: np.ndarray, num_clients: int, min_samples: int = 1) -> None:
    if num_clients > len(labels):
        raise PartitionError(
            f"data.num_clients={num_clients} is more than the {len(labels)} training samples; "
            "every client needs at least one sample, so use fewer clients"
        )
    if num_clients * min_samples > len(labels):
        raise PartitionError(
            f"data.num_clients={num_clients} clients cannot get data.partition.min_samples={min_samples} each "
            f"from {len(labels)} training samples; use fewer clients or a smaller min_samples"
        )


def _cut(idx: np.ndarray, proportions: np.ndarray) -> list[np.ndarray]:
    """Cut (shuffled) `idx` into one chunk per client, sized by `proportions` (summing to 1)."""
    return np.split(idx, (np.cumsum(proportions) * len(idx)).astype(int)[:-1])


def _redraw_until_filled(
    kind: str,
    alpha: float,
    num_clients: int,
    min_samples: int,
    pieces: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
) -> list[np.ndarray]:
    """Draw a Dirichlet split until every client has `min_samples`; one draw is `pieces()`, which
    yields (shuffled indices, client proportions) for each group of samples cut across clients."""
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx, proportions in pieces():
            for client, chunk in enumerate(_cut(idx, proportions)):
                parts[client].append(chunk)
        clients = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(c) for c in clients) >= min_samples:
            return clients
    raise PartitionError(
        f"{kind} partition with alpha={alpha} could not give all {num_clients} clients at least "
        f"{min_samples} samples in {MAX_DIRICHLET_TRIES} draws; raise data.partition.alpha, or lower "
        "data.partition.min_samples or data.num_clients"
    )


@PARTITIONS.register("iid")
def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Uniformly random, equal-sized shards."""
    _check_size(labels, num_clients)
    return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), num_clients)]


@PARTITIONS.register("dirichlet")
def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    alpha: Annotated[float, Field(gt=0, description="concentration; small = more skewed")] = 0.5,
    min_samples: Annotated[int, Field(ge=0, description="resample until every client has this many")] = 10,
) -> list[np.ndarray]:
    """Label skew: each class is split across clients by proportions drawn from Dir(alpha)."""
    _check_size(labels, num_clients, min_samples)
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]

    def pieces() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for idx in by_class:
            yield rng.permutation(idx), rng.dirichlet(np.full(num_clients, alpha))

    return _redraw_until_filled("dirichlet", alpha, num_clients, min_samples, pieces)


@PARTITIONS.register("shards")
def shards(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    classes_per_client: Annotated[int, Field(ge=1, description="label-sorted shards per client")] = 2,
) -> list[np.ndarray]:
    """Pathological non-IID (McMahan et al.): sort by label, cut into shards, deal a few to each."""
    total = num_clients * classes_per_client
    if total > len(labels):
        raise PartitionError(
            f"shards partition needs {total} shards (data.num_clients x classes_per_client) but there are "
            f"only {len(labels)} training samples; use fewer clients or classes_per_client"
        )
    num_classes = len(np.unique(labels))
    if classes_per_client > num_classes:
        raise PartitionError(
            f"data.partition.classes_per_client={classes_per_client} is more than the {num_classes} classes of the "
            f"training set; use at most {num_classes}"
        )
    order = np.lexsort((rng.random(len(labels)), labels))  # by label, random within a label
    pieces = np.array_split(order, total)
    deal = rng.permutation(total).reshape(num_clients, classes_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in deal]


@PARTITIONS.register("quantity")
def quantity(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    *,
    alpha: Annotated[float, Field(gt=0, description="Dir(alpha) over client sizes; small = more skewed")] = 1.0,
    min_samples: Annotated[int, Field(ge=1, description="floor on every client's size")] = 10,
) -> list[np.ndarray]:
    """Quantity skew: client sizes drawn from Dir(alpha) above a floor; labels stay IID."""
    _check_size(labels, num_clients, min_samples)
    spare = len(labels) - num_clients * min_samples
    sizes = min_samples + np.floor(rng.dirichlet(np.full(num_clients, alpha)) * spare).astype(int)
    sizes[: len(labels) - sizes.sum()] += 1  # hand out the rounding remainder
    cuts = np.cumsum(sizes)[:-1]
    return [np.sort(part) for part in np.split(rng.permutation(len(labels)), cuts)]


def label_histogram(labels: np.ndarray, clients: list[np.ndarray], num_classes: int) -> np.ndarray:
    """[num_clients, num_classes] sample counts, for printing and heat maps."""
    return np.stack([np.bincount(labels[idx], minlength=num_classes) for idx in clients])


@PARTITIONS.register("domain")
def domain(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    domains: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Feature shift: every client holds data of one domain; a domain's samples are split
    IID among its clients. Clients go to domains in turn (client c gets domain c mod D), so
    data.num_clients must be a multiple of the number of domains."""
    if domains is None:
        raise PartitionError(
            "the domain partition needs a multi-domain dataset (digits-domains, fashion-mnist-domains, domainfolder)"
        )
    names = np.unique(domains)
    if num_clients % len(names):
        raise PartitionError(
            f"data.num_clients={num_clients} is not a multiple of the {len(names)} domains; "
            f"use {len(names)}, {2 * len(names)}, {3 * len(names)}, ... clients"
        )
    per_domain = num_clients // len(names)
    clients: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * num_clients
    for d in names:
        idx = np.flatnonzero(domains == d)
        _check_size(idx, per_domain)
        for k, part in enumerate(np.array_split(rng.permutation(idx), per_domain)):
            clients[int(d) + k * len(names)] = np.sort(part)
    return clients


@PARTITIONS.register("domain_dirichlet")
def domain_dirichlet(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    domains: np.ndarray | None = None,
    *,
    alpha: Annotated[float, Field(gt=0, description="concentration; small = each client sees few domains")] = 0.5,
    min_samples: Annotated[int, Field(ge=0, description="resample until every client has this many")] = 10,
) -> list[np.ndarray]:
    """Attribute skew (COALA's BDD100K `dir` split): each domain (e.g. a weather) is split across
    clients by proportions drawn from Dir(alpha), as `dirichlet` splits classes."""
    if domains is None:
        raise PartitionError(
            "the domain_dirichlet partition needs a dataset with domains or attributes (scenes, bdd100k, "
            "digits-domains, fashion-mnist-domains, domainfolder)"
        )
    return dirichlet(domains, num_clients, rng, alpha=alpha, min_samples=min_samples)


@PARTITIONS.register("hdirichlet")
def hdirichlet(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    attributes: np.ndarray | None = None,
    *,
    alpha: Annotated[float, Field(gt=0, description="Dir(alpha) over clients per value of the first attribute")] = 0.5,
    alpha_secondary: Annotated[
        float, Field(gt=0, description="per client, Dir(alpha_secondary x prior) over each further attribute")
    ] = 1.0,
    min_samples: Annotated[int, Field(ge=0, description="resample until every client has this many")] = 10,
) -> list[np.ndarray]:
    """Hierarchical attribute skew (COALA's BDD100K `hdir` split): for each value of the first
    attribute (the domain, e.g. weather) clients get shares from Dir(alpha), and each client
    prefers values of the further attributes (scene, time of day) by Dir(alpha_secondary x the
    attribute's prior). Unlike COALA's sampling, every image goes to exactly one client: the
    images sharing one attribute combination are cut by the product of those weights."""
    if attributes is None:
        raise PartitionError(
            "the hdirichlet partition needs a dataset with attributes or domains (bdd100k, scenes, "
            "digits-domains, fashion-mnist-domains, domainfolder)"
        )
    _check_size(labels, num_clients, min_samples)
    attributes = attributes.reshape(len(labels), -1)
    combos, group = np.unique(attributes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    priors = [np.bincount(column) / len(column) for column in attributes[:, 1:].T]

    def pieces() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for value in np.unique(combos[:, 0]):
            share = rng.dirichlet(np.full(num_clients, alpha))
            prefer = [_dirichlet_over_present(alpha_secondary * prior, num_clients, rng) for prior in priors]
            for g in np.flatnonzero(combos[:, 0] == value):
                weight = share.copy()
                for a, p in enumerate(prefer):
                    weight *= p[:, combos[g, a + 1]]
                yield rng.permutation(np.flatnonzero(group == g)), weight / weight.sum()

    return _redraw_until_filled("hdirichlet", alpha, num_clients, min_samples, pieces)


def _dirichlet_over_present(concentration: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """[rows, V] draws of Dir(concentration) over the values that occur (the others get 0)."""
    out = np.zeros((rows, len(concentration)))
    present = concentration > 0
    out[:, present] = rng.dirichlet(concentration[present], size=rows)
    return out


@PARTITIONS.register("leaf")
def leaf(
    labels: np.ndarray,
    num_clients: int,
    rng: np.random.Generator,
    writers: np.ndarray | None = None,
    *,
    min_size: Annotated[int, Field(ge=1, description="writers with fewer training samples are left out")] = 10,
    data_amount: Annotated[
        float, Field(gt=0, le=1, description="share of the training samples used, taken by whole writers")
    ] = 1.0,
    iid_fraction: Annotated[
        float, Field(ge=0, le=1, description="share of the clients' samples pooled and dealt back at random")
    ] = 0.0,
) -> list[np.ndarray]:
    """Natural splits (LEAF, COALA's FEMNIST): one client per writer. Writers with at least
    `min_size` samples are taken in a seeded order until they hold `data_amount` of the training
    samples (LEAF's non-IID sampling); the first data.num_clients of them are the clients. With
    `iid_fraction` > 0 that share of their samples is pooled and dealt back uniformly at random,
    each client keeping its sample count (1: the IID simulation of the same clients)."""
    if writers is None:
        raise PartitionError("the leaf partition needs a dataset that records writers (femnist, read from LEAF json)")
    ids, counts = np.unique(writers, return_counts=True)
    eligible = rng.permutation(ids[counts >= min_size])
    budget = data_amount * len(labels)
    sizes = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    taken, total = [], 0
    for writer in eligible.tolist():
        if total >= budget:
            break
        taken.append(writer)
        total += sizes[writer]
    if len(taken) < num_clients:
        raise PartitionError(
            f"data.num_clients={num_clients} but only {len(taken)} writers qualify (min_size={min_size}, "
            f"data_amount={data_amount}, {len(eligible)} writers with {min_size}+ samples); set data.num_clients "
            f"to at most {len(taken)}, or lower min_size / raise data_amount"
        )
    clients = [np.flatnonzero(writers == w) for w in taken[:num_clients]]
    if iid_fraction > 0:
        clients = _deal_iid(clients, iid_fraction, rng)
    return clients


def _deal_iid(clients: list[np.ndarray], fraction: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Pool `fraction` of each client's samples and deal the pool back at random (same counts)."""
    kept, pooled = [], []
    for idx in clients:
        moved = int(round(fraction * len(idx)))
        shuffled = rng.permutation(idx)
        kept.append(shuffled[moved:])
        pooled.append(shuffled[:moved])
    pool = rng.permutation(np.concatenate(pooled))
    cuts = np.cumsum([len(p) for p in pooled])[:-1]
    return [np.sort(np.concatenate([k, extra])) for k, extra in zip(kept, np.split(pool, cuts), strict=True)]
