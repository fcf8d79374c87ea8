"""Optional sinks: TensorBoard and MLflow, each installed by an extra.

Both receive the same per-round scalars: global accuracy and loss, per-client mean and
worst-10% accuracy, training loss, bytes down/up and round time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fedforge.config import MlflowConfig
from fedforge.engine.federation import RoundRecord
from fedforge.errors import ConfigError
from fedforge.logs import quiet_third_party


def round_scalars(record: RoundRecord) -> dict[str, float]:
    scalars = {
        "train/loss": record.train_loss,
        "comm/bytes_down": float(record.bytes_down),
        "comm/bytes_up": float(record.bytes_up),
        "time/round_seconds": record.seconds,
        "clients/reporting": float(len(record.clients)),
        "clients/rejected": float(len(record.rejected)),
    }
    ev = record.eval
    if ev is not None:
        scalars["global/accuracy"] = ev.accuracy
        scalars["global/loss"] = ev.loss
        if ev.personalized_mean is not None:
            scalars["clients/accuracy_mean"] = ev.personalized_mean
            scalars["clients/accuracy_worst10"] = ev.personalized_worst10  # type: ignore[assignment]
        for name, acc in (ev.domain_accuracy or {}).items():
            scalars[f"domain/{name}"] = acc
        if ev.domain_mean is not None:
            scalars["domain/mean"] = ev.domain_mean
        for name, value in ev.extra.items():
            scalars[f"global/{name}"] = value
    return {k: v for k, v in scalars.items() if v == v}  # drop NaN


def _missing(extra: str, package: str) -> ConfigError:
    return ConfigError(
        f"tracking.{extra} needs the '{package}' package: pip install 'fedforge[{extra}]' "
        f"(or turn tracking.{extra} off)"
    )


class TensorBoardSink:
    """Scalars to `<run_dir>/tensorboard`, one step per round."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.log_dir = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_round(self, record: RoundRecord) -> None:
        for tag, value in round_scalars(record).items():
            self.writer.add_scalar(tag, value, record.number)
        self.writer.flush()

    def close(self, summary: dict[str, Any] | None = None) -> None:
        self.writer.close()


class MlflowSink:
    """One MLflow run per fedforge run; resumes reuse it (its id is kept in the run directory)."""

    def __init__(self, cfg: MlflowConfig, runs_dir: Path, run_dir: Path, params: dict[str, Any]) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow") from None
        quiet_third_party()  # mlflow set its loggers to INFO on import
        self.uri = cfg.uri or f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        id_file = run_dir / "mlflow.json"
        if id_file.is_file():
            self.run_id = json.loads(id_file.read_text())["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = self.client.get_experiment_by_name(cfg.experiment)
            exp_id = experiment.experiment_id if experiment else self.client.create_experiment(cfg.experiment)
            self.run_id = self.client.create_run(exp_id, run_name=run_dir.name).info.run_id
            id_file.write_text(json.dumps({"run_id": self.run_id, "uri": self.uri}) + "\n")
            self._log_params(params)

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = _flatten(params)
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:500]) for k, v in flat.items()])

    def log_round(self, record: RoundRecord) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k.replace("/", "_"), v, now, record.number) for k, v in round_scalars(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, summary: dict[str, Any] | None = None) -> None:
        self.client.set_terminated(self.run_id, status="FINISHED" if summary is not None else "FAILED")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
