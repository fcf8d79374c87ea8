"""How much of the machine a run may use: CPUs this process may run on, and torch's threads.

On a shared or busy machine torch's default (one intra-op thread per core) oversubscribes:
its threads spin waiting for each other while other processes hold the cores, and a run can
become ten times slower. fedforge therefore sets the thread count itself (`backend.threads`).
"""

from __future__ import annotations

import os

import torch

MAX_DEFAULT_THREADS = 8  # beyond this, small federated models gain nothing from more threads


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under taskset, Slurm or a container)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def default_threads() -> int:
    """Half the usable CPUs (1 on a 2-core machine), at least 1, at most MAX_DEFAULT_THREADS:
    headroom for the data pipeline, the tracker and whatever else shares the machine."""
    return max(1, min(usable_cpus() // 2, MAX_DEFAULT_THREADS))


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads for this process; returns the count in force."""
    count = threads if threads is not None else default_threads()
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
