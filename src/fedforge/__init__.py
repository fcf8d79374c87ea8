# ruff: noqa: F401  (the TYPE_CHECKING imports are the lazy exports, for type checkers)
"""fedforge: federated learning for computer vision.

    import fedforge
    result = fedforge.run("configs/digits_fedavg.yaml", train={"rounds": 5})
    print(result.final_accuracy, result.run_dir)

Names are imported on first use (PEP 562), so `import fedforge` and `fedforge --help` do not
load torch; `fedforge.run` does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.6.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "AGGREGATORS": "fedforge.aggregation",
    "SERVER_OPTIMIZERS": "fedforge.aggregation",
    "ALGORITHMS": "fedforge.algorithms",
    "Algorithm": "fedforge.algorithms",
    "ClientContext": "fedforge.algorithms",
    "ClientJob": "fedforge.algorithms",
    "ClientResult": "fedforge.algorithms",
    "ServerState": "fedforge.algorithms",
    "RunResult": "fedforge.api",
    "resume": "fedforge.api",
    "run": "fedforge.api",
    "EXECUTORS": "fedforge.backends",
    "Config": "fedforge.config",
    "load_config": "fedforge.config",
    "PARTITIONS": "fedforge.data.partition",
    "DATASETS": "fedforge.data.sources",
    "DatasetTensors": "fedforge.data.sources",
    "from_tensors": "fedforge.data.user",
    "from_dataset": "fedforge.data.user",
    "MODELS": "fedforge.models",
    "TASKS": "fedforge.tasks",
    "Task": "fedforge.tasks",
    "register_algorithm": "fedforge.register",
    "register_dataset": "fedforge.register",
    "register_model": "fedforge.register",
    "register_partition": "fedforge.register",
    "register_task": "fedforge.register",
    "ConfigError": "fedforge.errors",
    "DatasetFormatError": "fedforge.errors",
    "DatasetNotFound": "fedforge.errors",
    "FedforgeError": "fedforge.errors",
    "InvalidUpdate": "fedforge.errors",
    "PartitionError": "fedforge.errors",
    "RunInterrupted": "fedforge.errors",
    "UnknownNameError": "fedforge.errors",
}
_RENAMED = {"HyperParams": ("fedforge.plugins", "StrictModel")}
_SUBMODULES = {"algorithms", "tracking"}

__all__ = sorted([*_EXPORTS, *_RENAMED, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _RENAMED:
        module, attr = _RENAMED[name]
        value = getattr(importlib.import_module(module), attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"fedforge.{name}")
    else:
        raise AttributeError(f"module 'fedforge' has no attribute '{name}'")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # what type checkers and IDEs see
    from fedforge import algorithms, tracking
    from fedforge.aggregation import AGGREGATORS, SERVER_OPTIMIZERS
    from fedforge.algorithms import ALGORITHMS, Algorithm, ClientContext, ClientJob, ClientResult, ServerState
    from fedforge.api import RunResult, resume, run
    from fedforge.backends import EXECUTORS
    from fedforge.config import Config, load_config
    from fedforge.data.partition import PARTITIONS
    from fedforge.data.sources import DATASETS, DatasetTensors
    from fedforge.data.user import from_dataset, from_tensors
    from fedforge.errors import (
        ConfigError,
        DatasetFormatError,
        DatasetNotFound,
        FedforgeError,
        InvalidUpdate,
        PartitionError,
        RunInterrupted,
        UnknownNameError,
    )
    from fedforge.models import MODELS
    from fedforge.plugins import StrictModel as HyperParams
    from fedforge.register import (
        register_algorithm,
        register_dataset,
        register_model,
        register_partition,
        register_task,
    )
    from fedforge.tasks import TASKS, Task
