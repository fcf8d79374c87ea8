"""Partitions: pure functions of (labels, num_clients, rng, params) -> per-client index arrays.

Each is registered by name; its keyword-only arguments are its config parameters
(`data.partition: {kind: dirichlet, alpha: 0.5, min_samples: 10}`).
"""

from __future__ import annotations

from collections.abc import Callable
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
    for _ in range(MAX_DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in by_class:
            idx = rng.permutation(idx)
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha))) * len(idx)).astype(int)[:-1]
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].append(chunk)
        clients = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(c) for c in clients) >= min_samples:
            return clients
    raise PartitionError(
        f"dirichlet partition with alpha={alpha} could not give all {num_clients} clients at least "
        f"{min_samples} samples in {MAX_DIRICHLET_TRIES} draws; raise data.partition.alpha, or lower "
        "data.partition.min_samples or data.num_clients"
    )


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
