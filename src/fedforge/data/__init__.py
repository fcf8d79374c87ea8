"""Datasets as in-memory tensors, partitions into clients, batched transforms."""

from fedforge.data import dense_readers, domains, leaf, scenes  # noqa: F401  (registers the dense, multi-domain, LEAF and generated sources)
