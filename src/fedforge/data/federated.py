"""FederatedDataset: the dataset's tensors once, plus per-client index arrays into them."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from fedforge.data.partition import label_histogram
from fedforge.data.sources import DatasetTensors, load_dataset
from fedforge.data.transforms import BatchTransform
from fedforge.seeding import PARTITION, SPLIT, numpy_rng

if TYPE_CHECKING:  # config imports the registries lazily; avoid a cycle at import time
    from fedforge.config import Config


@dataclass
class FederatedDataset:
    """Shared tensors + per-client train/test index tensors; batches are index slices."""

    source: DatasetTensors
    client_train: list[torch.Tensor]
    client_test: list[torch.Tensor]
    transform: BatchTransform
    partition_kind: str = ""
    partition_params: dict = field(default_factory=dict)

    def client_domain(self, client_id: int) -> int | None:
        """The domain a client's training data comes from (its majority domain), if any."""
        domains = self.source.train_domain
        idx = self.client_train[client_id]
        if domains is None or len(idx) == 0:
            return None
        return int(torch.bincount(domains[idx.cpu()]).argmax())

    @property
    def num_clients(self) -> int:
        return len(self.client_train)

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.source.input_shape

    def to(self, device: torch.device | str) -> FederatedDataset:
        """This dataset with images, labels and indices on `device` (moved once, not per batch).

        Like `Tensor.to`, it leaves `self` as it is: a GPU run can still ship a CPU copy to workers."""
        s = self.source
        source = dataclasses.replace(
            s,
            train_x=s.train_x.to(device),
            train_y=s.train_y.to(device),
            test_x=s.test_x.to(device),
            test_y=s.test_y.to(device),
        )
        return dataclasses.replace(
            self,
            source=source,
            client_train=[idx.to(device) for idx in self.client_train],
            client_test=[idx.to(device) for idx in self.client_test],
            transform=copy.copy(self.transform).to(device),
        )

    def histogram(self, split: str = "train") -> np.ndarray:
        clients = self.client_train if split == "train" else self.client_test
        return label_histogram(self.source.train_y.cpu().numpy(), [c.cpu().numpy() for c in clients], self.num_classes)

    def partition_record(self) -> dict:
        """What partition.json stores: enough to see and reproduce the exact split."""
        return {
            "dataset": self.source.name,
            "kind": self.partition_kind,
            "params": self.partition_params,
            "num_classes": self.num_classes,
            "label_histogram": self.histogram().tolist(),  # train samples per client and class
            "clients": [
                {"id": cid, "train": tr.cpu().tolist(), "test": te.cpu().tolist()}
                for cid, (tr, te) in enumerate(zip(self.client_train, self.client_test, strict=True))
            ],
        }


def split_local(indices: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `fraction` of one client's samples as its local test split (at least one stays for training)."""
    shuffled = rng.permutation(indices)
    n_test = min(int(len(shuffled) * fraction), max(len(shuffled) - 1, 0))
    return np.sort(shuffled[n_test:]), np.sort(shuffled[:n_test])


def build_federated_dataset(cfg: Config) -> FederatedDataset:
    """Load `cfg.data`, partition it with `cfg.seed`, and hold out each client's local test split."""
    data = load_dataset(cfg.data)
    part_cfg = cfg.data.partition
    labels = data.train_y.numpy()
    partitioner = part_cfg.resolve()
    extra = {}
    if "domains" in inspect.signature(partitioner).parameters:  # feature-shift partitions need domain ids
        extra["domains"] = None if data.train_domain is None else data.train_domain.numpy()
    clients = partitioner(
        labels, cfg.data.num_clients, numpy_rng(cfg.seed, PARTITION), **extra, **part_cfg.params.model_dump()
    )
    split_rng = numpy_rng(cfg.seed, SPLIT)
    train, test = zip(*(split_local(c, cfg.data.local_test_fraction, split_rng) for c in clients), strict=True)
    mean, std = data.channel_stats()
    return FederatedDataset(
        source=data,
        client_train=[torch.as_tensor(t, dtype=torch.int64) for t in train],
        client_test=[torch.as_tensor(t, dtype=torch.int64) for t in test],
        transform=BatchTransform(mean, std, augment=cfg.data.augment, hflip=data.hflip_safe),
        partition_kind=part_cfg.kind,
        partition_params=part_cfg.params.model_dump(),
    )
