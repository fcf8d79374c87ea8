"""`fedforge.run(...)` and `fedforge.resume(...)`: whole experiments from a config."""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fedforge.aggregation.attacks import Attack
from fedforge.algorithms.base import ALGORITHMS, Algorithm, ServerState
from fedforge.config import Config, SystemConfig, build_config, load_config, merge, read_yaml
from fedforge.data.federated import FederatedDataset, build_federated_dataset
from fedforge.data.user import as_user_data
from fedforge.data.user import register as register_user_data
from fedforge.engine.asynchronous import AsyncFederation
from fedforge.engine.checkpoint import Checkpointer, restore_rng_states
from fedforge.engine.client_store import ClientStore, build_client_store
from fedforge.engine.evaluation import EvalMetrics, build_evaluator
from fedforge.engine.executors import Executor
from fedforge.engine.federation import Federation
from fedforge.engine.private import check_private
from fedforge.engine.selection import ClientSelector
from fedforge.engine.system import SystemModel
from fedforge.engine.validation import UpdateValidator
from fedforge.engine.weights import FlatModel, save_state_dict
from fedforge.errors import CheckpointError, ConfigError, RunDirError, RunInterrupted
from fedforge.models import MODELS, build_network, check_factory
from fedforge.privacy import build_privacy
from fedforge.privacy.secagg.rounds import SecureAggregation
from fedforge.resources import apply_threads
from fedforge.seeding import INIT, derive_seed
from fedforge.tasks import Task
from fedforge.tracking.progress import ProgressSink
from fedforge.tracking.rundir import create_run_dir, write_config, write_json
from fedforge.tracking.sinks import MlflowSink, TensorBoardSink
from fedforge.tracking.store import RunStore, connect
from fedforge.tracking.summary import SummarySink


@dataclass
class RunResult:
    """What a finished run hands back: its directory, summary metrics, config and model."""

    run_dir: Path
    summary: dict[str, Any]
    config: Config
    model: nn.Module

    @property
    def final_accuracy(self) -> float | None:
        return self.summary["final_accuracy"]

    @property
    def best_accuracy(self) -> float | None:
        return self.summary["best_accuracy"]


def resolve_config(config: Config | str | Path | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> Config:
    """Combine a base config and overrides (nested or dotted keys) into a validated Config."""
    overrides = _register_objects(dict(overrides))
    source: str | None = None
    if config is None:
        raw: dict[str, Any] = {}
    elif isinstance(config, Config):
        raw = config.to_dict()
    elif isinstance(config, str | Path):
        raw, source = read_yaml(config), str(config)
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        raise ConfigError(f"config must be a Config, a YAML path or a mapping, not {type(config).__name__}")
    return build_config(merge(raw, overrides), source)


def _register_objects(overrides: dict[str, Any]) -> dict[str, Any]:
    """Python objects in place of names: `run(algorithm=MyAlgorithm, model=MyNet, data=my_dataset)`.

    Each is registered under a name on the fly (an algorithm's `name`, the model's lower-cased
    class or function name, the data's `name`, default "custom"), which the saved config records."""
    algo = overrides.get("algorithm")
    if isinstance(algo, type) and issubclass(algo, Algorithm):
        name = algo.name or algo.__name__.lower()
        ALGORITHMS.add(name, algo, replace=True)
        overrides["algorithm"] = {"name": name}
    model = overrides.get("model")
    if callable(model) and not isinstance(model, Mapping | nn.Module):
        name = getattr(model, "__name__", type(model).__name__).lower()
        MODELS.add(name, check_factory(model), replace=True)
        overrides["model"] = {"name": name}
    elif isinstance(model, nn.Module):
        raise ConfigError("model= takes a class or a factory, not a built model: pass MyNet, not MyNet()")
    data = overrides.get("data")
    if data is not None and not isinstance(data, Mapping):
        overrides["data"] = {"name": register_user_data(as_user_data(data))}
    return overrides


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"backend.device={name} but no CUDA device is available; use backend.device=cpu")
    return device


def run(
    config: Config | str | Path | Mapping[str, Any] | None = None, *, quiet: bool = False, **overrides: Any
) -> RunResult:
    """Run one federated experiment.

    `fedforge.run()` runs the default (FedAvg on digits); keyword overrides are nested
    (`train={"rounds": 5}`) or dotted (`**{"train.rounds": 5}`). `algorithm=`, `model=` and
    `data=` also take your own class, model factory and data (a torch Dataset or tensors).
    """
    cfg = resolve_config(config, overrides)
    return Experiment(cfg).run(quiet=quiet)


def resume(
    run_dir: str | Path, *, quiet: bool = False, data: Any = None, model: Any = None, algorithm: Any = None
) -> RunResult:
    """Continue a run from its last good checkpoint; ends with the same model as an uninterrupted run.

    A run started with Python objects (`run(data=..., model=MyNet)`) is resumed with the same
    objects passed again; plug-ins registered by modules in the config's `imports` are imported."""
    run_dir = Path(run_dir)
    objects = {k: v for k, v in {"data": data, "model": model, "algorithm": algorithm}.items() if v is not None}
    _register_objects(objects)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"'{run_dir}' is not a run directory (no config.yaml); pass a folder under runs/")
    # The run's store sits beside it, whatever the saved (possibly relative) runs_dir and the
    # working directory now: resuming from elsewhere must not start a new, empty store.
    cfg = load_config(run_dir / "config.yaml", {"tracking": {"runs_dir": str(run_dir.absolute().parent)}})
    return Experiment(cfg).resume(run_dir, quiet=quiet)


class Experiment:
    """Wires data, model, algorithm, executor, trackers and checkpoints for one config."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        apply_threads(cfg.backend.threads)
        self.device = resolve_device(cfg.backend.device)
        self.data: FederatedDataset = build_federated_dataset(cfg).to(self.device)
        self.task: Task = cfg.task.resolve()(cfg.task.params)
        self.data.source.require(self.task.target, self.task.name)

    def model_factory(self) -> Callable[[], nn.Module]:
        """Builds the seeded initial model on the CPU; picklable, so remote workers build their own."""
        cfg, data = self.cfg, self.data
        seed = derive_seed(cfg.seed, INIT)
        return functools.partial(
            build_network,
            cfg.model.resolve(),
            cfg.model.params.model_dump(),
            data.input_shape,
            data.num_classes,
            seed,
            adapt=self.task.adapt_model,
            weights=cfg.model.weights,
        )

    def build_model(self) -> nn.Module:
        return self.model_factory()().to(self.device)

    def initial_metrics(self) -> EvalMetrics:
        """How the initial, untrained model scores: the baseline a method must beat (e.g. an
        SSL method's probe against the same probe on the random encoder)."""
        cfg = self.cfg
        flat = FlatModel(self.build_model())
        algorithm = cfg.algorithm.resolve()(cfg.algorithm.params, cfg.train, seed=cfg.seed)
        state = algorithm.init_server(flat, self.data)
        evaluator = build_evaluator(self.task, self.data, flat, cfg.eval.batch_size, cfg.eval.personalized, cfg.seed)
        return evaluator.evaluate(algorithm, state, ClientStore())

    def run(self, quiet: bool = False) -> RunResult:
        cfg = self.cfg
        run_dir = create_run_dir(cfg.tracking.runs_dir, cfg.tracking.name, f"{cfg.algorithm.name}-{cfg.data.name}")
        session: Session | None = None
        try:
            write_config(run_dir, cfg.to_dict())
            write_json(run_dir / "partition.json", self.data.partition_record())
            session = Session(self, run_dir)
            return session.execute(quiet)
        except BaseException:
            if session is None or not session.federating:  # it never started: leave nothing behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise

    def resume(self, run_dir: Path, quiet: bool = False) -> RunResult:
        saved = json.loads((run_dir / "partition.json").read_text()) if (run_dir / "partition.json").is_file() else None
        if saved is not None and saved["clients"] != self.data.partition_record()["clients"]:
            raise RunDirError(
                f"the partition rebuilt from '{run_dir / 'config.yaml'}' differs from '{run_dir / 'partition.json'}': "
                "the dataset on disk changed since the run started, so it cannot be resumed exactly"
            )
        return Session(self, run_dir).execute(quiet, resume=True)


class Session:
    """One execution of an experiment into a run directory: fresh, or resumed from a checkpoint."""

    def __init__(self, experiment: Experiment, run_dir: Path) -> None:
        self.exp, self.cfg, self.run_dir = experiment, experiment.cfg, run_dir
        self.server = FlatModel(experiment.build_model())
        self.algorithm = self.cfg.algorithm.resolve()(self.cfg.algorithm.params, self.cfg.train, seed=self.cfg.seed)
        system = self.system_model()
        self.algorithm.observe_system(system.slowness if system is not None else None)
        self.state = self.algorithm.init_server(self.server, experiment.data)
        cfg = self.cfg
        self.privacy = build_privacy(
            cfg.privacy, cfg.data.num_clients, cfg.train.clients_per_round or cfg.data.num_clients, cfg.train.rounds,
            cfg.seed, deployed=cfg.backend.kind == "remote",
        )  # fmt: skip
        check_private(cfg, self.algorithm, self.state, self.server.model)
        self.rounds = self.privacy.rounds if self.privacy is not None else cfg.train.rounds  # a budget may end it early
        self.clients = build_client_store(
            self.cfg.engine.client_store, run_dir / "client_states", experiment.data.num_clients
        )
        continual = self.cfg.continual
        self.totals = SummarySink(continual.rounds_per_task if continual is not None else None, experiment.task)
        self.checkpointer = Checkpointer(run_dir / "checkpoints", self.cfg.checkpoint.keep, self.cfg.checkpoint.every)
        self.elapsed_before = 0.0
        self.started = time.perf_counter()
        self.federating = False  # set once the round loop starts: from then on the run dir is kept

    def restore(self) -> tuple[int, str, list[str]]:
        """Load the newest good checkpoint; returns (next round, reason, skipped-file messages)."""
        try:
            ckpt, skipped = self.checkpointer.latest(self.exp.device, expected_size=self.state.weights.numel())
        except CheckpointError as err:
            return 0, f"restarted from round 1: {err}", []
        try:
            server_opt = {k: v.to(self.exp.device) for k, v in ckpt.state.server_opt.items()}
            self.state = ServerState(ckpt.state.weights.to(self.exp.device), ckpt.state.extras, server_opt)
            self.clients.restore(ckpt.clients, ckpt.client_folder)
            self.totals.load(ckpt.extras["totals"])
            self.elapsed_before = float(ckpt.extras["elapsed"])
            restore_rng_states(ckpt.extras["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(
                f"checkpoint '{ckpt.path}' passed its checksum but does not fit this run ({type(err).__name__}: "
                f"{err}); move it away to resume from the previous one"
            ) from None
        return ckpt.round + 1, f"resumed after round {ckpt.round + 1} from {ckpt.path.name}", skipped

    def save_checkpoint(self, round_index: int, state: ServerState) -> None:
        if self.checkpointer.due(round_index, self.rounds - 1):
            extras = {"totals": self.totals.state(), "elapsed": self.elapsed()}
            self.checkpointer.save(round_index, state, self.clients, extras)

    def system_model(self) -> SystemModel | None:
        """The virtual clock of `system:` (None without one), over the clients' training shards."""
        cfg = self.cfg
        asynchronous = getattr(self.algorithm, "asynchronous", False)  # its clock runs even at equal speeds
        if cfg.system is None and not asynchronous:
            return None
        sizes = [len(idx) for idx in self.exp.data.client_train]
        system = cfg.system if cfg.system is not None else SystemConfig()
        return SystemModel(system, sizes, cfg.train.batch_size, cfg.train.local_epochs, cfg.seed)

    def task_ends(self) -> frozenset[int]:
        """The last round of each task of a class-continual run (always evaluated)."""
        stream = self.exp.data.stream
        if stream is None:
            return frozenset()
        return frozenset(r for r in range(self.cfg.train.rounds) if stream.plan.is_task_end(r))

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def sinks(self, start_round: int, resume_reason: str | None, skipped: list[str], quiet: bool) -> list[Any]:
        cfg, run_dir = self.cfg, self.run_dir
        sinks: list[Any] = [self.totals]
        if cfg.tracking.database:
            store = RunStore(Path(cfg.tracking.runs_dir) / "runs.db", run_id=run_dir.name)
            if resume_reason is None:
                store.start(run_dir.name, str(run_dir), cfg.to_dict())
            else:
                store.resume(start_round, resume_reason)  # rounds 1..start_round are done
                for problem in skipped:
                    store.log_event(start_round + 1, None, "checkpoint_skipped", problem)
            sinks.append(store)
        if cfg.tracking.tensorboard:
            sinks.append(TensorBoardSink(run_dir))
        if cfg.tracking.mlflow is not None:
            sinks.append(MlflowSink(cfg.tracking.mlflow, Path(cfg.tracking.runs_dir), run_dir, cfg.to_dict()))
        if not quiet:
            title = f"{cfg.algorithm.name} on {cfg.data.name}"
            sinks.append(ProgressSink(self.rounds, title, start_round, task=self.exp.task))
        return sinks

    def execute(self, quiet: bool, resume: bool = False) -> RunResult:
        cfg = self.cfg
        start_round, reason, skipped = self.restore() if resume else (0, None, [])
        finished = self.run_dir / "summary.json"
        if resume and start_round >= self.rounds and finished.is_file():
            if cfg.tracking.database:
                connect(Path(cfg.tracking.runs_dir) / "runs.db").close()  # still say if the store is damaged
            self.server.load(self.state.weights)  # already complete: report it, change nothing
            summary = json.loads(finished.read_text())
            return RunResult(run_dir=self.run_dir, summary=summary, config=cfg, model=self.server.model)
        exp = self.exp
        executor = cfg.backend.resolve()(
            self.algorithm,
            exp.data,
            exp.model_factory(),
            cfg.train,
            self.clients,
            cfg.seed,
            exp.device,
            task=exp.task,
            params=cfg.backend.params,
            experiment=cfg.to_dict(),
        )
        try:
            return self._federate(executor, start_round, reason, skipped, quiet)
        finally:
            executor.close()
            self.clients.close()  # a disk store's live slots; the checkpoints keep their own copy

    def _federate(
        self, executor: Executor, start_round: int, reason: str | None, skipped: list[str], quiet: bool
    ) -> RunResult:
        cfg, exp = self.cfg, self.exp
        sinks = self.sinks(start_round, reason, skipped, quiet)  # last: from here on they must be closed
        mode = AsyncFederation if getattr(self.algorithm, "asynchronous", False) else Federation
        federation = mode(
            algorithm=self.algorithm,
            executor=executor,
            selector=ClientSelector(
                cfg.data.num_clients, cfg.train.clients_per_round, cfg.seed, cfg.train.dropout_rate
            ),
            validator=UpdateValidator(
                cfg.validation.max_update_norm, cfg.validation.max_update_ratio, max_samples=executor.max_samples
            ),
            evaluator=build_evaluator(
                exp.task, exp.data, self.server, cfg.eval.batch_size, cfg.eval.personalized, cfg.seed
            ),
            client_store=self.clients,
            rounds=self.rounds,
            eval_every=cfg.eval.every,
            sinks=sinks,
            checkpoint=self.save_checkpoint if cfg.checkpoint.every > 0 else None,
            eval_rounds=self.task_ends(),
            aggregator=cfg.aggregation.resolve()(cfg.aggregation.params),
            server_opt=cfg.server_opt.resolve()(cfg.server_opt.params),
            attack=Attack(cfg.attack, cfg.seed) if cfg.attack is not None else None,
            system=self.system_model(),
            privacy=self.privacy,
            secure=SecureAggregation(cfg.secure_aggregation, cfg.seed) if cfg.secure_aggregation is not None else None,
        )
        self.federating = True
        try:
            self.state = federation.run(self.state, start_round)
        except KeyboardInterrupt:
            self._close(sinks, None, status="interrupted")
            last = self.checkpointer.last_round() if cfg.checkpoint.every > 0 else None
            raise RunInterrupted(str(self.run_dir), self.totals.rounds, self.rounds, last) from None
        except BaseException:
            self._close(sinks, None)
            raise
        self.server.load(self.state.weights)
        save_state_dict(self.server.layout, self.state.weights, str(self.run_dir / "model.pt"))
        summary = self.totals.as_dict(
            wall_seconds=round(self.elapsed(), 3),
            seed=cfg.seed,
            algorithm=cfg.algorithm.name,
            dataset=cfg.data.name,
            model=cfg.model.name,
            run_dir=str(self.run_dir),
            **self.algorithm.summary(self.state),
            **(self.privacy.summary(self.state, self.totals.rounds) if self.privacy is not None else {}),
        )
        write_json(self.run_dir / "summary.json", summary)
        self._close(sinks, summary)
        return RunResult(run_dir=self.run_dir, summary=summary, config=cfg, model=self.server.model)

    def _close(self, sinks: list[Any], summary: dict[str, Any] | None, status: str = "failed") -> None:
        """Finish every sink; `summary` None marks the run `status` (failed or interrupted)."""
        for sink in sinks:
            if isinstance(sink, RunStore):
                stopped = summary is None
                sink.finish(self.totals.as_dict() if stopped else summary, status=status if stopped else "finished")
                sink.close()
            elif hasattr(sink, "close"):
                sink.close(summary)
