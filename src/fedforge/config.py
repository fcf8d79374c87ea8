"""Experiment configuration: pydantic models, YAML loading and dotted command-line overrides.

Every field documents its default; unknown keys, wrong types and inconsistent values raise
ConfigError naming the field, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fedforge.aggregation.attacks import AttackConfig
from fedforge.errors import ConfigError, FedforgeError
from fedforge.plugins import StrictModel, import_plugins, plugin_params
from fedforge.registry import Registry


class PluginConfig(BaseModel):
    """A section that names a registered plug-in plus that plug-in's own parameters.

    Parameters sit beside the name (`{name: fedprox, mu: 0.01}`) and are validated by the
    plug-in's Params model; after validation the extras hold every parameter, defaults
    included, so the saved config is fully resolved.
    """

    model_config = ConfigDict(extra="allow")
    key: ClassVar[str] = "name"
    _params: BaseModel | None = PrivateAttr(default=None)

    @classmethod
    def registry(cls) -> Registry[Any]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _validate_plugin(self) -> PluginConfig:
        plugin_name = getattr(self, self.key)
        try:
            entry = self.registry().get(plugin_name)
        except FedforgeError as err:
            raise PydanticCustomError("unknown_name", "{msg}", {"msg": str(err), "subloc": self.key}) from None
        try:
            params = plugin_params(entry).model_validate(self.model_extra or {})
        except ValidationError as err:
            first = err.errors()[0]
            ctx = first.get("ctx") or {}
            subloc = ".".join([str(p) for p in first["loc"]] + ([ctx["subloc"]] if "subloc" in ctx else []))
            raise PydanticCustomError(
                "plugin_params",
                "{msg} (parameter of {kind} '{name}')",
                {"msg": _message(first), "subloc": subloc, "kind": self.registry().kind, "name": plugin_name},
            ) from None
        self._params = params
        self.__pydantic_extra__ = params.model_dump()
        return self

    @property
    def params(self) -> BaseModel:
        """The plug-in's validated parameters."""
        assert self._params is not None
        return self._params

    def resolve(self) -> Any:
        """The registry entry this section names."""
        return self.registry().get(getattr(self, self.key))

    def set_param(self, key: str, value: Any) -> None:
        """Fill in a parameter after validation (e.g. a default that depends on another section)."""
        setattr(self.params, key, value)
        assert self.__pydantic_extra__ is not None
        self.__pydantic_extra__[key] = getattr(self.params, key)


class PartitionConfig(PluginConfig):
    """How training samples are split across clients (see `fedforge list` for kinds)."""

    key: ClassVar[str] = "kind"
    kind: str = Field("dirichlet", description="iid | dirichlet | shards | quantity (default dirichlet)")

    @classmethod
    def registry(cls) -> Registry[Any]:
        from fedforge.data.partition import PARTITIONS

        return PARTITIONS


def _default_partition() -> PartitionConfig:
    return PartitionConfig(kind="dirichlet", alpha=0.5, min_samples=10)


class DataConfig(StrictModel):
    name: str = Field("digits", description="dataset name (default digits, bundled with scikit-learn)")
    root: str = Field("./data", description="folder holding on-disk datasets (default ./data)")
    download: bool = Field(False, description="let torchvision download missing data (default false)")
    variant: str | None = Field(None, description="dataset variant, e.g. the EMNIST split (default balanced)")
    image_size: int | None = Field(
        None, ge=4, description="resize images to this square size (default: native; 32 for imagefolder)"
    )
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="use a fixed random share of the training set (default 1: all of it)"
    )
    num_clients: int = Field(10, ge=1, description="number of clients (default 10)")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="global test share for datasets without an official split (default 0.2)"
    )
    local_test_fraction: float = Field(
        0.2, ge=0, lt=1, description="share of each client's data held out for its local test (default 0.2)"
    )
    augment: bool = Field(False, description="random crop (+ flip where label-safe) while training")
    partition: PartitionConfig = Field(default_factory=_default_partition)

    @model_validator(mode="after")
    def _known_dataset(self) -> DataConfig:
        from fedforge.data.sources import DATASETS

        try:
            DATASETS.get(self.name)
        except FedforgeError as err:
            raise PydanticCustomError("unknown_name", "{msg}", {"msg": str(err), "subloc": "name"}) from None
        return self


class ModelConfig(PluginConfig):
    """The network, by registry name, plus its parameters (e.g. `{name: cnn, width: 64}`)."""

    name: str = Field("cnn", description="model name, or torchvision:NAME for any torchvision classifier (default cnn)")
    weights: str | None = Field(
        None, description="a local .pt state dict to start from (pretrained weights; never downloaded; default none)"
    )

    @field_validator("weights")
    @classmethod
    def _weights_file(cls, path: str | None) -> str | None:
        if path is not None and not Path(path).expanduser().is_file():
            raise ValueError(f"no file '{path}'; give the path of a saved state dict (torch.save(model.state_dict()))")
        return None if path is None else str(Path(path).expanduser().resolve())

    @classmethod
    def registry(cls) -> Registry[Any]:
        from fedforge.models import MODELS

        return MODELS


class AlgorithmConfig(PluginConfig):
    """The federated method plus its hyper-parameters (e.g. `{name: fedprox, mu: 0.01}`)."""

    name: str = Field("fedavg", description="algorithm name (default fedavg)")

    @classmethod
    def registry(cls) -> Registry[Any]:
        from fedforge.algorithms import ALGORITHMS

        return ALGORITHMS


class TaskConfig(PluginConfig):
    """What is learned: `classification` (labels), `ssl` (self-supervised, labels unused), `detection`
    (boxes) or `segmentation` (masks)."""

    name: str = Field("classification", description="task (default: the one the algorithm trains)")

    @classmethod
    def registry(cls) -> Registry[Any]:
        from fedforge.tasks import TASKS

        return TASKS


class AggregationConfig(PluginConfig):
    """How the uploaded models are reduced: `mean` (streams) or a robust aggregator (docs/robustness.md)."""

    name: str = Field("mean", description="aggregator (default mean, the sample-weighted average)")

    @classmethod
    def registry(cls) -> Registry[Any]:
        from fedforge.aggregation import AGGREGATORS

        return AGGREGATORS


class ServerOptConfig(PluginConfig):
    """The server's step from the reduced uploads (Reddi et al. 2021): none, avgm, adam, yogi, adagrad."""

    name: str = Field("none", description="server optimizer (default none: the reduced model is the new one)")

    @classmethod
    def registry(cls) -> Registry[Any]:
        from fedforge.aggregation import SERVER_OPTIMIZERS

        return SERVER_OPTIMIZERS


class TrainConfig(StrictModel):
    rounds: int = Field(20, ge=1, description="federated rounds (default 20)")
    clients_per_round: int | None = Field(
        None, ge=1, description="clients sampled each round (default: all of data.num_clients)"
    )
    local_epochs: int = Field(2, ge=1, description="passes over the local data per round (default 2)")
    batch_size: int = Field(32, ge=1, description="local mini-batch size (default 32)")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="local optimizer (default sgd)")
    lr: float = Field(0.05, gt=0, description="local learning rate (default 0.05)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (default 0.9)")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay (default 0)")
    dropout_rate: float = Field(
        0.0, ge=0, lt=1, description="chance that a sampled client drops out of a round (default 0)"
    )


class EvalConfig(StrictModel):
    every: int = Field(1, ge=1, description="evaluate every N rounds; the last round always (default 1)")
    personalized: bool = Field(True, description="also evaluate each client on its local test split")
    batch_size: int = Field(1024, ge=1, description="evaluation batch size (default 1024)")


class ValidationConfig(StrictModel):
    max_update_norm: float | None = Field(
        None, gt=0, description="reject updates whose L2 distance to the global model exceeds this"
    )
    max_update_ratio: float | None = Field(
        100.0,
        gt=0,
        description="reject updates farther from the global model than this many times its L2 norm (at least 1): "
        "absurd magnitudes never reach the mean (default 100; null disables)",
    )


class BackendConfig(PluginConfig):
    """Where and how client updates run."""

    key: ClassVar[str] = "kind"
    kind: str = Field("sequential", description="executor (default sequential)")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N (default auto: cuda when available)")
    threads: int | None = Field(
        None,
        ge=1,
        description="torch threads of this process (default: half the CPUs it may use, 1 to 8; Ray workers use "
        "their cpus_per_worker)",
    )

    @classmethod
    def registry(cls) -> Registry[Any]:
        from fedforge.backends import EXECUTORS

        return EXECUTORS

    @model_validator(mode="after")
    def _device_format(self) -> BackendConfig:
        if not (self.device in {"auto", "cpu", "cuda", "mps"} or self.device.startswith("cuda:")):
            raise PydanticCustomError(
                "device", "unknown device '{d}'; use auto, cpu, cuda or cuda:N", {"d": self.device, "subloc": "device"}
            )
        return self


class MlflowConfig(StrictModel):
    uri: str | None = Field(None, description="tracking URI (default: sqlite:///<runs_dir>/mlflow.db, a local file)")
    experiment: str = Field("fedforge", description="MLflow experiment name (default fedforge)")


class TrackingConfig(StrictModel):
    runs_dir: str = Field("runs", description="folder for run directories and runs.db (default runs)")
    name: str | None = Field(None, description="run name (default <algorithm>-<dataset>-<timestamp>)")
    database: bool = Field(True, description="record rounds, clients and events in <runs_dir>/runs.db (default true)")
    tensorboard: bool = Field(False, description="write TensorBoard scalars to <run>/tensorboard (extra: tensorboard)")
    mlflow: MlflowConfig | None = Field(None, description="log to MLflow, e.g. {uri: ...} or {} (extra: mlflow)")

    @field_validator("name")
    @classmethod
    def _one_plain_folder_name(cls, name: str | None) -> str | None:
        """The name becomes a folder under runs_dir and the run's key in runs.db: one plain component."""
        if name is None:
            return name
        bad = [ch for ch in name if unicodedata.category(ch).startswith("C")]
        if bad or name in {"", ".", ".."} or "/" in name or "\\" in name or len(name) > 128:
            raise PydanticCustomError(
                "run_name",
                "{shown} is not a usable run name: use one folder name of at most 128 characters without '/', "
                "'\\', control characters or escape sequences, and not '.' or '..' (e.g. fedavg-digits-try1)",
                {"shown": ascii(name)},
            )
        return name

    @field_validator("mlflow", mode="before")
    @classmethod
    def _mlflow_switch(cls, value: Any) -> Any:
        """`tracking.mlflow=true` means MLflow with defaults; false means off."""
        if value is True:
            return {}
        return None if value is False else value


class SpeedProfileConfig(StrictModel):
    kind: Literal["uniform", "lognormal", "real"] = Field(
        "uniform",
        description="how clients' step times vary: uniform in [low, high], lognormal exp(N(0, sigma)), or real "
        "(phone latency tiers, engine/system.py) (default uniform)",
    )
    low: float = Field(1.0, gt=0, description="uniform: smallest step-time multiplier (default 1)")
    high: float = Field(1.0, gt=0, description="uniform: largest step-time multiplier (default 1)")
    sigma: float = Field(1.0, ge=0, description="lognormal: spread of log step times (default 1)")

    @model_validator(mode="after")
    def _ordered(self) -> SpeedProfileConfig:
        if self.high < self.low:
            raise PydanticCustomError(
                "bad_range", "high={high} is below low={low}", {"high": self.high, "low": self.low, "subloc": "high"}
            )
        return self


class SystemConfig(StrictModel):
    """Simulated system heterogeneity on a virtual clock (engine/system.py); nothing sleeps."""

    profile: SpeedProfileConfig = Field(default_factory=SpeedProfileConfig)
    step_seconds: float = Field(
        0.05, gt=0, description="virtual seconds of one local step at multiplier 1 (default 0.05)"
    )
    deadline: float | None = Field(
        None, gt=0, description="round deadline in virtual seconds (default none: wait for every client)"
    )
    on_deadline: Literal["partial", "drop"] = Field(
        "partial", description="a client that cannot finish: partial (sends the steps it had time for) or drop"
    )
    straggler_ratio: float = Field(
        0.0, ge=0, le=1, description="share of clients (seeded, fixed) that train fewer epochs (default 0)"
    )
    straggler_epochs: int = Field(1, ge=1, description="local epochs of a straggler (default 1)")


class AdaptiveClipConfig(StrictModel):
    """Adaptive clipping (Andrew et al. 2021): the bound follows a quantile of the clients' update norms."""

    target_quantile: float = Field(
        0.5, gt=0, lt=1, description="share of clients whose update the bound should leave unclipped (default 0.5)"
    )
    lr: float = Field(0.2, gt=0, description="geometric step of the bound per round, eta_C (default 0.2)")
    count_stddev: float | None = Field(
        None,
        ge=0,
        description="std of the noise on the count of unclipped clients (default: clients_per_round / 20, the "
        "paper's choice; 0 without update noise)",
    )


class PrivacyConfig(StrictModel):
    """Differential privacy (docs/privacy.md): central DP-FedAvg or local DP-SGD, with an RDP accountant."""

    mechanism: Literal["central", "local"] = Field(
        "central",
        description="central: each client's update is clipped to `clip`, the server adds N(0, (z clip)^2) to the "
        "sum and divides by the expected cohort (McMahan et al. 2018); local: every client runs DP-SGD, clipping "
        "per-sample gradients to `clip` and adding the noise itself (default central)",
    )
    clip: float = Field(1.0, gt=0, description="L2 bound C of an update (central) or a sample's gradient (local) (1)")
    noise_multiplier: float = Field(
        1.0, ge=0, description="z: the noise std is z times the clip; 0 clips without noise (no privacy) (default 1)"
    )
    adaptive_clip: AdaptiveClipConfig | None = Field(
        None, description="central only: let the clip follow a quantile of update norms, e.g. {} (default off)"
    )
    delta: float = Field(1e-5, gt=0, lt=1, description="the delta epsilon is reported for (default 1e-5)")
    target_epsilon: float | None = Field(
        None, gt=0, description="a privacy budget: spent, the run stops (or z is set to fit it) (default none)"
    )
    on_budget: Literal["stop", "calibrate"] = Field(
        "stop",
        description="with target_epsilon: stop after the last round within budget, or calibrate z so the planned "
        "rounds end at it (central only) (default stop)",
    )


class SecureAggregationConfig(StrictModel):
    """SecAgg / SecAgg+ (Bonawitz et al. 2017; Bell et al. 2020): the server sees only masked vectors."""

    neighbours: int | None = Field(
        None,
        ge=2,
        description="SecAgg+: each client masks with this many neighbours on a random graph (cost O(log n) for "
        "k ~ log n); none: with every other client of the cohort, as in SecAgg (default none)",
    )
    threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of a client's neighbours whose Shamir shares rebuild its secrets; fewer survivors "
        "abort the round (default 0.5)",
    )
    bits: int = Field(32, ge=16, le=62, description="the ring Z_(2^bits) masked vectors live in (default 32)")
    clip_range: float = Field(
        1.0,
        gt=0,
        description="largest |coordinate| of an update before quantization; larger ones are clipped and counted "
        "(with central DP the clip bounds it instead) (default 1)",
    )
    dropout_rate: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="simulation: share of the cohort (seeded) that drops after sharing keys, before its masked "
        "input arrives; their masks are recovered from the survivors' shares (default 0)",
    )


class EngineConfig(StrictModel):
    client_store: Literal["memory", "disk"] = Field(
        "memory",
        description="where per-client state lives between rounds: memory, or disk (fixed slots in files under the "
        "run directory, so memory stays flat in the number of stateful clients; for 1,000s of SCAFFOLD, FedDyn or "
        "MOON clients) (default memory)",
    )


class CheckpointConfig(StrictModel):
    every: int = Field(1, ge=0, description="checkpoint every N rounds and at the end; 0 disables (default 1)")
    keep: int = Field(2, ge=1, description="newest checkpoints kept; older ones are deleted (default 2)")


class ContinualConfig(StrictModel):
    """Class-continual learning: the classes arrive as a sequence of tasks (docs/continual.md)."""

    tasks: int = Field(..., ge=1, description="number of tasks the label space is split into")
    classes_per_task: int | None = Field(None, ge=1, description="classes in each task (default: all classes / tasks)")
    rounds_per_task: int = Field(..., ge=1, description="federated rounds spent on each task")
    class_order: Literal["seeded", "natural"] = Field(
        "seeded", description="seeded: a permutation fixed by `seed`; natural: 0, 1, 2, ... (default seeded)"
    )


class Config(StrictModel):
    """A whole experiment. `Config()` is the default: FedAvg on digits, 10 clients."""

    seed: int = Field(0, ge=0, lt=2**63, description="fixes partition, sampling, init and training (default 0)")
    imports: list[str] = Field(
        default_factory=list,
        description="modules (or .py files) imported first, registering your models, data, methods (default none)",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    aggregation: AggregationConfig = Field(default_factory=lambda: AggregationConfig(name="mean"))
    server_opt: ServerOptConfig = Field(default_factory=lambda: ServerOptConfig(name="none"))
    attack: AttackConfig | None = Field(
        None,
        description="simulated Byzantine clients, e.g. {kind: sign_flip, fraction: 0.2, strength: 5} (default off)",
    )
    backend: BackendConfig = Field(default_factory=BackendConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    system: SystemConfig | None = Field(
        None,
        description="simulated client speeds, deadlines and stragglers on a virtual clock, e.g. {profile: {kind: "
        "lognormal, sigma: 1}, deadline: 60} (default off)",
    )
    continual: ContinualConfig | None = Field(
        None, description="class-continual task stream, e.g. {tasks: 5, rounds_per_task: 10} (default off)"
    )
    privacy: PrivacyConfig | None = Field(
        None,
        description="differential privacy, e.g. {mechanism: central, clip: 1, noise_multiplier: 1} (default off)",
    )
    secure_aggregation: SecureAggregationConfig | None = Field(
        None, description="secure aggregation of the model entry, e.g. {} or {neighbours: 8} (default off)"
    )

    @model_validator(mode="before")
    @classmethod
    def _task_follows_algorithm(cls, data: Any) -> Any:
        """A task section without a name (or no section) means the algorithm's own task."""
        if not isinstance(data, dict):
            return data
        algo = data.get("algorithm") or {}
        name = algo.get("name", "fedavg") if isinstance(algo, Mapping) else "fedavg"
        from fedforge.algorithms import ALGORITHMS

        if name not in ALGORITHMS:
            return data  # the algorithm section reports the unknown name
        task = data.get("task")
        if task is None or (isinstance(task, Mapping) and "name" not in task):
            data = {**data, "task": {**(task or {}), "name": ALGORITHMS.get(name).task}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        algo = self.algorithm.resolve()
        if not algo.trains(self.task.resolve()):
            raise PydanticCustomError(
                "inconsistent",
                "algorithm '{a}' trains the '{want}' task, not '{got}'; set task.name={want} or pick another algorithm",
                {"a": self.algorithm.name, "want": algo.task, "got": self.task.name, "subloc": "task.name"},
            )
        try:
            algo.configure_task(self.task)
        except ValueError as err:
            raise PydanticCustomError("inconsistent", "{msg}", {"msg": str(err), "subloc": "task"}) from None
        if self.continual is not None:
            self._continual_rounds(self.continual)
        if self.train.clients_per_round is None:
            self.train.clients_per_round = self.data.num_clients
        elif self.train.clients_per_round > self.data.num_clients:
            raise PydanticCustomError(
                "inconsistent",
                "{cpr} exceeds data.num_clients={n}; sample at most as many clients as exist",
                {"cpr": self.train.clients_per_round, "n": self.data.num_clients, "subloc": "train.clients_per_round"},
            )
        try:
            self.aggregation.resolve()(self.aggregation.params).check_clients(self.train.clients_per_round)
        except ValueError as err:
            raise PydanticCustomError("inconsistent", "{msg}", {"msg": str(err), "subloc": "aggregation"}) from None
        if (
            self.attack is not None
            and self.attack.kind == "label_flip"
            and (self.task.name != "classification" or self.continual)
        ):
            raise PydanticCustomError(
                "inconsistent",
                "label_flip flips class labels, so it needs a classification run without a continual stream; "
                "attack a task stream, an ssl, detection or segmentation run with sign_flip, scale, gaussian or alie",
                {"subloc": "attack.kind"},
            )
        if getattr(algo, "asynchronous", False):
            self._asynchronous()
        if algo.uploads_parts:
            self._partial()
        if self.privacy is not None or self.secure_aggregation is not None:
            self._private()
        if self.system is not None and self.backend.kind == "remote":
            raise PydanticCustomError(
                "inconsistent",
                "the system section simulates client speeds on a virtual clock; a remote federation runs on real "
                "machines and real time, so drop system or use backend.kind sequential or ray",
                {"subloc": "system"},
            )
        return self

    def _asynchronous(self) -> None:
        """What an asynchronous method (FedBuff) cannot combine with, said before anything runs."""
        name, params, clients = self.algorithm.name, self.algorithm.params, self.data.num_clients
        need = params.concurrency + params.buffer_size
        problems = [
            (need > clients, "algorithm.concurrency",
             f"{params.concurrency} + buffer_size {params.buffer_size} exceeds data.num_clients={clients}: a client "
             "waiting in the buffer cannot start again, so every start needs one idle; lower either"),
            (self.system is not None and self.system.deadline is not None, "system.deadline",
             f"{name} has no rounds to end at a deadline; drop system.deadline"),
            (self.aggregation.name != "mean", "aggregation.name", f"{name} applies a buffer of updates: it takes mean"),
            (self.attack is not None, "attack", f"{name} does not simulate attacks; drop the attack section"),
            (self.train.dropout_rate > 0, "train.dropout_rate",
             f"{name} models slow clients with the system section, not dropouts; set it to 0"),
            (self.continual is not None, "continual", f"{name} does not run task streams"),
            (self.backend.kind == "remote", "backend.kind", f"{name} runs on the virtual clock, in simulation only"),
        ]  # fmt: skip
        _refuse(problems)

    def _partial(self) -> None:
        """What a method whose clients upload parts of the model (HeteroFL) cannot combine with."""
        name = self.algorithm.name
        problems = [
            (self.aggregation.name != "mean", "aggregation.name",
             f"{name} averages each weight over the clients holding it; robust aggregators compare whole models, "
             "so use aggregation.name=mean"),
            (self.attack is not None, "attack",
             f"the attack simulation turns whole-model uploads; {name} uploads sub-models: drop the attack section"),
            (getattr(self.algorithm.params, "assign", None) == "speed" and self.system is None,
             "algorithm.assign", "assign: speed ranks clients by the system: section's speeds; add a system "
             "section or use assign: random"),
            (self.continual is not None, "continual", f"{name} does not run task streams"),
        ]  # fmt: skip
        _refuse(problems)

    def _private(self) -> None:
        """What DP and secure aggregation cannot compose with, said before anything runs."""
        privacy, secure = self.privacy, self.secure_aggregation
        which = "privacy" if privacy is not None else "secure_aggregation"
        local = privacy is not None and privacy.mechanism == "local"
        central_only = (privacy is not None and not local) or secure is not None
        problems = [
            (central_only and self.aggregation.name != "mean", "aggregation.name",
             f"{which} bounds each client's share of a sum, so the model entry must be reduced by the mean, not "
             f"{self.aggregation.name}; use aggregation.name=mean"),
            (getattr(self.algorithm.resolve(), "asynchronous", False), "algorithm.name",
             f"{which} accounts and masks per round; the asynchronous {self.algorithm.name} has none"),
            (local and self.task.name != "classification", "privacy.mechanism",
             f"local DP-SGD clips per-sample gradients of the classification loss; the {self.task.name} task "
             "has no per-sample loss here: use mechanism central"),
            (local and privacy.adaptive_clip is not None, "privacy.adaptive_clip",
             "adaptive clipping tunes the central clip from noised counts; drop it with mechanism local"),
            (local and privacy.on_budget == "calibrate", "privacy.on_budget",
             "calibrate sets the server's noise for the planned rounds; with local DP each client stops when its "
             "own budget is spent: use on_budget stop"),
            (privacy is not None and privacy.target_epsilon is not None and privacy.noise_multiplier == 0
             and privacy.on_budget == "stop", "privacy.noise_multiplier",
             "without noise (z=0) epsilon is infinite, so no round fits target_epsilon; set z > 0 or "
             "on_budget calibrate"),
            (secure is not None and (self.train.clients_per_round or 0) < 2, "train.clients_per_round",
             "secure aggregation reveals the sum of a round's updates, which for one client is its update: "
             "sample at least 2 clients per round"),
            (secure is not None and secure.neighbours is not None
             and secure.neighbours >= (self.train.clients_per_round or self.data.num_clients) - 1,
             "secure_aggregation.neighbours",
             f"{secure.neighbours if secure else 0} neighbours in a cohort of {self.train.clients_per_round}: "
             "that is every other client; drop neighbours (plain SecAgg)"),
        ]  # fmt: skip
        _refuse(problems)

    def _continual_rounds(self, continual: ContinualConfig) -> None:
        """A task stream fixes the number of rounds; an explicit, different train.rounds is a mistake."""
        rounds = continual.tasks * continual.rounds_per_task
        if "rounds" in self.train.model_fields_set and self.train.rounds != rounds:
            raise PydanticCustomError(
                "inconsistent",
                "{r} but continual asks for {t} tasks x {rpt} rounds = {n}; drop train.rounds or make it {n}",
                {"r": self.train.rounds, "t": continual.tasks, "rpt": continual.rounds_per_task, "n": rounds,
                 "subloc": "train.rounds"},
            )  # fmt: skip
        self.train.rounds = rounds

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved config (plug-in defaults included), as plain YAML-able data."""
        return self.model_dump(mode="json")


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err.get("type") not in {"unknown_key", "unknown_name", "plugin_params", "inconsistent", "device", "run_name"}:
        shown = err.get("input")
        if not isinstance(shown, dict | list):
            msg += f" (got {shown!r})"
    return msg


def _format_validation_error(err: ValidationError, source: str | None) -> ConfigError:
    parts = []
    for item in err.errors():
        loc = [str(p) for p in item["loc"]]
        subloc = (item.get("ctx") or {}).get("subloc")
        if subloc:
            loc.append(subloc)
        parts.append(f"{'.'.join(loc) or 'config'}: {_message(item)}")
    where = f" in {source}" if source else ""
    return ConfigError(
        f"invalid configuration{where}: " + "; ".join(parts) + ". `fedforge config` lists every key with its default."
    )


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for i, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{'.'.join(keys[: i + 1])}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["train.rounds=5", "algorithm.mu=0.01"]` -> nested dict; values parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not of the form key.sub=value (e.g. train.rounds=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:  # also a `!!python/...` tag: safe_load constructs no objects
            problem = str(err).splitlines()[0]
            raise ConfigError(
                f"override '{item}': the value is not valid YAML ({problem}); quote it or fix the brackets"
            ) from None
        _set_dotted(tree, key.strip(), value)
    return tree


# Sections whose parameters belong to the plug-in they name: switching the plug-in starts
# from the new one's defaults instead of inheriting parameters it would not accept.
PLUGIN_SECTIONS = {
    ("algorithm", "name"),
    ("model", "name"),
    ("task", "name"),
    ("data", "partition", "kind"),
    ("aggregation", "name"),
    ("server_opt", "name"),
}


def merge(base: dict[str, Any], update: Mapping[str, Any], _path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Deep-merge `update` into a copy of `base`; keys with dots are treated as paths.

    Where `update` switches a plug-in (`algorithm.name`, `model.name`,
    `data.partition.kind`) to another one, that section is replaced, not merged.
    """
    out = copy.deepcopy(base)
    for key, value in update.items():
        if "." in key:
            nested: dict[str, Any] = {}
            _set_dotted(nested, key, value)
            out = merge(out, nested, _path)
        elif (
            isinstance(value, Mapping)
            and isinstance(out.get(key), dict)
            and not _switches_plugin(_path + (key,), out[key], value)
        ):
            out[key] = merge(out[key], value, _path + (key,))
        else:
            out[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return out


def _switches_plugin(path: tuple[str, ...], old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    for *section, key in PLUGIN_SECTIONS:
        if tuple(section) == path and key in new and key in old and new[key] != old[key]:
            return True
    return False


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass the path of a YAML file (see configs/)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise ConfigError(f"config file '{path}' cannot be read: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {err}") from None
    if raw is None:  # almost always the wrong file; the defaults are one command away
        raise ConfigError(
            f"config file '{path}' is empty; write at least one section (e.g. `train: {{rounds: 5}}`), "
            "or leave the file out to run the defaults"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections (seed, data, model, ...)")
    return raw


def build_config(raw: Mapping[str, Any], source: str | None = None) -> Config:
    """Validate a raw mapping into a Config, turning pydantic errors into one ConfigError.

    The config's `imports` are imported first: what they register is what its names refer to."""
    raw = dict(raw)
    imports = raw.get("imports") or []
    if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
        raise ConfigError(f"imports: expected a list of module names or .py paths, got {imports!r}")
    if imports:
        raw["imports"] = import_plugins(imports)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise _format_validation_error(err, source) from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] | None = None) -> Config:
    """Read a YAML config (or start from defaults) and apply overrides.

    Overrides are either `key.sub=value` strings (CLI style) or a mapping, nested or dotted.
    """
    raw = read_yaml(path) if path is not None else {}
    if overrides:
        update = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
        raw = merge(raw, update)
    return build_config(raw, str(path) if path is not None else None)


def _refuse(problems: list[tuple[bool, str, str]]) -> None:
    """Raise the first (bad, field, message) that applies, located at its field."""
    for bad, where, message in problems:
        if bad:
            raise PydanticCustomError("inconsistent", "{msg}", {"msg": message, "subloc": where})


def annotated_yaml(cfg: Config) -> str:
    """The resolved config as YAML, each key followed by its documented meaning."""
    lines: list[str] = []

    def emit(model: BaseModel, indent: str) -> None:
        fields = dict(type(model).model_fields)
        if isinstance(model, PluginConfig):
            fields.update(type(model.params).model_fields)
        values = model.model_dump(mode="json")
        for key, value in values.items():
            child = getattr(model, key, None)
            if isinstance(child, BaseModel):
                lines.append(f"{indent}{key}:")
                emit(child, indent + "  ")
                continue
            text = yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip()[1:-1]  # the outer {}
            info = fields.get(key)
            note = f"  # {info.description}" if info is not None and info.description else ""
            lines.append(f"{indent}{text}{note}")

    emit(cfg, "")
    return "\n".join(lines) + "\n"
