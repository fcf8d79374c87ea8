"""FederatedDataset: the dataset's tensors once, plus per-client index arrays into them."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from fedforge.data.continual import TaskPlan, TaskStream, class_order, in_classes, split_classes
from fedforge.data.partition import label_histogram
from fedforge.data.sources import DatasetTensors, load_dataset
from fedforge.data.transforms import BatchTransform
from fedforge.seeding import CLASS_ORDER, PARTITION, SPLIT, numpy_rng

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
    stream: TaskStream | None = None  # class-continual runs: which samples each client holds in each task

    def at_round(self, round_index: int) -> FederatedDataset:
        """The dataset as clients see it in `round_index`: in a task stream, only the current task's shards."""
        if self.stream is None:
            return self
        task = self.stream.plan.task_of(round_index)
        return dataclasses.replace(
            self, client_train=self.stream.client_train[task], client_test=self.stream.client_test[task]
        )

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
        return dataclasses.replace(
            self,
            source=self.source.to(device),
            client_train=[idx.to(device) for idx in self.client_train],
            client_test=[idx.to(device) for idx in self.client_test],
            transform=copy.copy(self.transform).to(device),
            stream=self.stream.to(device) if self.stream is not None else None,
        )

    def histogram(self, split: str = "train") -> np.ndarray:
        clients = self.client_train if split == "train" else self.client_test
        return label_histogram(self.source.train_y.cpu().numpy(), [c.cpu().numpy() for c in clients], self.num_classes)

    def partition_record(self) -> dict:
        """What partition.json stores: enough to see and reproduce the exact split."""
        record = {
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
        if self.source.train_writer is not None:  # natural splits: which writers each client holds
            writers = self.source.train_writer
            record["client_writers"] = [sorted(set(writers[tr.cpu()].tolist())) for tr in self.client_train]
        if self.stream is not None:
            record["tasks"] = [
                {"classes": list(classes), "clients": [idx.cpu().tolist() for idx in train]}
                for classes, train in zip(self.stream.plan.classes, self.stream.client_train, strict=True)
            ]
        return record


def split_local(indices: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `fraction` of one client's samples as its local test split (at least one stays for training)."""
    shuffled = rng.permutation(indices)
    n_test = min(int(len(shuffled) * fraction), max(len(shuffled) - 1, 0))
    return np.sort(shuffled[n_test:]), np.sort(shuffled[:n_test])


def partition_clients(
    cfg: Config, data: DatasetTensors, samples: np.ndarray, *keys: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Partition the training samples at `samples` across the clients; (train, local test) index tensors.

    `keys` separate the random streams of several partitions of one run (one per task)."""
    part_cfg = cfg.data.partition
    partitioner = part_cfg.resolve()
    extra = {}
    if "domains" in inspect.signature(partitioner).parameters:  # feature-shift partitions need domain ids
        extra["domains"] = None if data.train_domain is None else data.train_domain.numpy()[samples]
    if "attributes" in inspect.signature(partitioner).parameters:  # hierarchical attribute partitions
        extra["attributes"] = None if data.attributes is None else data.attributes.numpy()[samples]
    if "writers" in inspect.signature(partitioner).parameters:  # natural per-writer splits (LEAF)
        extra["writers"] = None if data.train_writer is None else data.train_writer.numpy()[samples]
    split_by = data.partition_key.numpy()[samples]
    clients = partitioner(
        split_by,
        cfg.data.num_clients,
        numpy_rng(cfg.seed, PARTITION, *keys),
        **extra,
        **part_cfg.params.model_dump(),
    )
    split_rng = numpy_rng(cfg.seed, SPLIT, *keys)
    pairs = [split_local(samples[c], cfg.data.local_test_fraction, split_rng) for c in clients]
    return [torch.as_tensor(tr, dtype=torch.int64) for tr, _ in pairs], [
        torch.as_tensor(te, dtype=torch.int64) for _, te in pairs
    ]


def build_task_stream(cfg: Config, data: DatasetTensors) -> TaskStream:
    """Split the classes into `cfg.continual` tasks and partition each task's samples on its own."""
    assert cfg.continual is not None
    c = cfg.continual
    rng = numpy_rng(cfg.seed, CLASS_ORDER) if c.class_order == "seeded" else None
    classes = split_classes(class_order(data.num_classes, rng), c.tasks, c.classes_per_task)
    labels, test_labels = data.train_y.numpy(), data.test_y.numpy()
    shards = [partition_clients(cfg, data, in_classes(labels, task), t) for t, task in enumerate(classes)]
    return TaskStream(
        plan=TaskPlan(classes, c.rounds_per_task),
        client_train=[train for train, _ in shards],
        client_test=[test for _, test in shards],
        test=[torch.as_tensor(in_classes(test_labels, task), dtype=torch.int64) for task in classes],
    )


def build_federated_dataset(cfg: Config) -> FederatedDataset:
    """Load `cfg.data`, partition it with `cfg.seed`, and hold out each client's local test split.

    With a `continual` section, each task is partitioned separately and clients start on task 0."""
    data = load_dataset(cfg.data)
    part_cfg = cfg.data.partition
    stream = build_task_stream(cfg, data) if cfg.continual is not None else None
    if stream is None:
        train, test = partition_clients(cfg, data, np.arange(len(data.train_y)))
    else:
        train, test = stream.client_train[0], stream.client_test[0]
    mean, std = data.channel_stats()
    return FederatedDataset(
        source=data,
        client_train=train,
        client_test=test,
        transform=BatchTransform(mean, std, augment=cfg.data.augment, hflip=data.hflip_safe),
        partition_kind=part_cfg.kind,
        partition_params=part_cfg.params.model_dump(),
        stream=stream,
    )
