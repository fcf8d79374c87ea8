"""Public registration decorators: make your model, dataset, method, partition or task a name
that configs, the CLI (`--import your_module`) and `fedforge resume` can use.

    @fedforge.register_model("mynet")
    class MyNet(nn.Module):
        def __init__(self, in_channels: int, num_classes: int, *, width: int = 32): ...

    @fedforge.register_dataset("pets")
    def pets(cfg):  # the data: section; return a Dataset, (train, test) or tensors
        return torchvision.datasets.ImageFolder(Path(cfg.root) / "pets", transform=T.Resize((32, 32)))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fedforge.registry import Registry

if TYPE_CHECKING:
    from fedforge.config import DataConfig
    from fedforge.data.sources import DatasetTensors

T = TypeVar("T")


def _decorator(registry: Registry[Any], name: str | None, replace: bool, check: Callable[[Any], Any] | None = None):
    def decorate(obj: T) -> T:
        if check is not None:
            check(obj)
        registry.add(name or _default_name(obj), obj, replace=replace)
        return obj

    return decorate


def _default_name(obj: Any) -> str:
    return str(getattr(obj, "name", None) or obj.__name__).lower()


def register_model(name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
    """Register a model class or factory (default name: its own, lower-cased)."""
    from fedforge.models import MODELS, check_factory

    return _decorator(MODELS, name, replace, check_factory)


def register_algorithm(name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
    """Register an Algorithm subclass (default name: its `name`, else the class name)."""
    from fedforge.algorithms import ALGORITHMS

    return _decorator(ALGORITHMS, name, replace)


def register_partition(name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
    """Register a partitioner with the built-ins' signature (see data/partition.py)."""
    from fedforge.data.partition import PARTITIONS

    return _decorator(PARTITIONS, name, replace)


def register_task(name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
    """Register a Task subclass."""
    from fedforge.tasks import TASKS

    return _decorator(TASKS, name, replace)


def register_dataset(name: str | None = None, *, replace: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """Register a function returning your data in any form `fedforge.run(data=...)` takes.

    It is called with the `data:` config section if it takes an argument, else with none, each
    time a run (or resume) loads it; what it returns is materialized into the in-memory store."""
    from fedforge.data.sources import DATASETS

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        dataset_name = (name or fn.__name__).lower()
        takes_config = bool(inspect.signature(fn).parameters)

        def load(cfg: DataConfig) -> DatasetTensors:
            from fedforge.data.user import as_user_data

            return as_user_data(fn(cfg) if takes_config else fn(), dataset_name).load(cfg)

        load.__doc__ = fn.__doc__ or f"your dataset {dataset_name} ({fn.__module__}.{fn.__qualname__})"
        DATASETS.add(dataset_name, load, replace=replace)
        return fn

    return decorate
