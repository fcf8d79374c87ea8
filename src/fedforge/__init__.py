"""fedforge: federated learning for computer vision.

import fedforge
result = fedforge.run("configs/digits_fedavg.yaml", train={"rounds": 5})
print(result.final_accuracy, result.run_dir)
"""

from fedforge import algorithms, tracking
from fedforge.aggregation import AGGREGATORS, SERVER_OPTIMIZERS
from fedforge.algorithms import ALGORITHMS, Algorithm, ClientContext, ClientJob, ClientResult, ServerState
from fedforge.api import RunResult, resume, run
from fedforge.backends import EXECUTORS
from fedforge.config import Config, load_config
from fedforge.data.partition import PARTITIONS
from fedforge.data.sources import DATASETS
from fedforge.errors import (
    ConfigError,
    DatasetFormatError,
    DatasetNotFound,
    FedforgeError,
    InvalidUpdate,
    PartitionError,
    UnknownNameError,
)
from fedforge.models import MODELS
from fedforge.plugins import StrictModel as HyperParams
from fedforge.tasks import TASKS, Task

__version__ = "0.1.0"

__all__ = [
    "AGGREGATORS",
    "ALGORITHMS",
    "DATASETS",
    "EXECUTORS",
    "HyperParams",
    "MODELS",
    "PARTITIONS",
    "SERVER_OPTIMIZERS",
    "TASKS",
    "Algorithm",
    "ClientContext",
    "ClientJob",
    "ClientResult",
    "Config",
    "ConfigError",
    "DatasetFormatError",
    "DatasetNotFound",
    "FedforgeError",
    "InvalidUpdate",
    "PartitionError",
    "RunResult",
    "ServerState",
    "Task",
    "UnknownNameError",
    "algorithms",
    "load_config",
    "resume",
    "run",
    "tracking",
]
