"""The round loop (DESIGN section 3). Nothing here is specific to any method."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fedforge.algorithms.base import Algorithm, ClientResult, ServerState
from fedforge.engine.client_store import ClientStore
from fedforge.engine.evaluation import EvalMetrics, RoundEvaluator
from fedforge.engine.executors import ClientFailure, Executor
from fedforge.engine.selection import ClientSelector
from fedforge.engine.validation import Rejection, UpdateValidator
from fedforge.engine.weights import payload_bytes


@dataclass
class ClientRecord:
    client_id: int
    num_samples: int
    train_loss: float
    seconds: float
    bytes_down: int
    bytes_up: int
    metrics: dict[str, float] = field(default_factory=dict)  # what the method reported beyond loss and time


STANDARD_CLIENT_METRICS = {"train_loss", "seconds"}


@dataclass
class RoundRecord:
    """Everything observed in one round; what trackers store and progress bars show."""

    round: int
    clients: list[ClientRecord]
    rejected: list[Rejection]
    train_loss: float
    bytes_down: int
    bytes_up: int
    train_seconds: float
    seconds: float = 0.0
    eval: EvalMetrics | None = None
    events: list[tuple[int | None, str, str]] = field(default_factory=list)


class RoundSink(Protocol):
    def log_round(self, record: RoundRecord) -> None: ...


class AllClientsFailed(RuntimeError):
    """Every client of a round raised: almost surely a bug, not a flaky client."""


class Federation:
    def __init__(
        self,
        algorithm: Algorithm,
        executor: Executor,
        selector: ClientSelector,
        validator: UpdateValidator,
        evaluator: RoundEvaluator,
        client_store: ClientStore,
        rounds: int,
        eval_every: int,
        sinks: Sequence[RoundSink] = (),
        checkpoint: Callable[[int, ServerState], None] | None = None,
    ) -> None:
        self.algorithm, self.executor, self.selector = algorithm, executor, selector
        self.validator, self.evaluator, self.client_store = validator, evaluator, client_store
        self.rounds, self.eval_every, self.sinks = rounds, eval_every, list(sinks)
        self.checkpoint = checkpoint

    def should_evaluate(self, round_index: int) -> bool:
        return (round_index + 1) % self.eval_every == 0 or round_index == self.rounds - 1

    def run(self, state: ServerState, start_round: int = 0) -> ServerState:
        for r in range(start_round, self.rounds):
            state = self.run_round(state, r)
        return state

    def run_round(self, state: ServerState, r: int) -> ServerState:
        start = time.perf_counter()
        reporting, dropped = self.selector.drop(r, self.selector.sample(r))
        jobs = [self.algorithm.client_job(state, cid, r) for cid in reporting]
        outcomes = self.executor.run(jobs)
        failures = [o for o in outcomes if isinstance(o, ClientFailure)]
        results = [o for o in outcomes if not isinstance(o, ClientFailure)]
        if jobs and not results:
            raise AllClientsFailed(f"every client failed in round {r}: {failures[0].reason}") from failures[0].error
        kept, rejected = self.validator.filter(results, self.algorithm.upload_reference(state))
        state = self.algorithm.aggregate(state, kept, r)
        train_seconds = time.perf_counter() - start
        record = self._record(r, jobs, results, kept, rejected, train_seconds)
        record.events += [(cid, "dropout", "simulated dropout (train.dropout_rate)") for cid in dropped]
        record.events += [(f.client_id, "client_failed", f.reason) for f in failures]
        if self.should_evaluate(r):
            final = r == self.rounds - 1
            record.eval = self.evaluator.evaluate(self.algorithm, state, self.client_store, final)
        record.seconds = time.perf_counter() - start
        for sink in self.sinks:
            sink.log_round(record)
        if self.checkpoint is not None:
            self.checkpoint(r, state)
        return state

    @staticmethod
    def _record(r, jobs, results: list[ClientResult], kept, rejected, train_seconds: float) -> RoundRecord:
        down = {job.client_id: payload_bytes(job.weights, job.extras) for job in jobs}
        clients = [
            ClientRecord(
                client_id=res.client_id,
                num_samples=res.num_samples,
                train_loss=float(res.metrics.get("train_loss", float("nan"))),
                seconds=float(res.metrics.get("seconds", 0.0)),
                bytes_down=down.get(res.client_id, 0),
                bytes_up=payload_bytes(res.weights, res.extras),
                metrics={k: float(v) for k, v in res.metrics.items() if k not in STANDARD_CLIENT_METRICS},
            )
            for res in results
        ]
        trained = [res for res in kept if res.num_samples > 0]
        samples = sum(res.num_samples for res in trained)
        weighted = sum(res.num_samples * float(res.metrics.get("train_loss", float("nan"))) for res in trained)
        loss = weighted / samples if samples else float("nan")
        return RoundRecord(
            round=r,
            clients=clients,
            rejected=rejected,
            train_loss=loss,
            bytes_down=sum(down.values()),
            bytes_up=sum(c.bytes_up for c in clients),
            train_seconds=train_seconds,
            events=[(rej.client_id, "rejected_update", rej.reason) for rej in rejected],
        )
