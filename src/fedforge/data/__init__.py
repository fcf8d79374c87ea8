"""Datasets as in-memory tensors, partitions into clients, batched transforms."""

from fedforge.data import dense_readers, domains, scenes  # noqa: F401  (registers the dense, multi-domain and generated sources)
