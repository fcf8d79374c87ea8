"""The round loop (DESIGN section 3). Nothing here is specific to any method."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from fedforge.aggregation.attacks import Attack
from fedforge.aggregation.reducers import Aggregator, Mean
from fedforge.aggregation.server_opt import NoServerOptimizer, ServerOptimizer
from fedforge.algorithms.base import MODEL, Algorithm, ClientJob, ServerState
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.client_store import ClientStore
from fedforge.engine.evaluation import EvalMetrics, RoundEvaluator
from fedforge.engine.executors import Executor
from fedforge.engine.interrupts import deferred_interrupt
from fedforge.engine.selection import ClientSelector
from fedforge.engine.system import ClientPlan, SystemModel
from fedforge.engine.validation import Rejection, UpdateValidator
from fedforge.engine.weights import payload_bytes
from fedforge.privacy.local import BudgetSpent


@dataclass
class ClientRecord:
    client_id: int
    num_samples: int
    train_loss: float
    seconds: float
    bytes_down: int
    bytes_up: int
    metrics: dict[str, float] = field(default_factory=dict)  # what the method reported beyond loss and time
    trained: bool = True  # False: the upload was rejected (its claims are not recorded)


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
    metrics: dict[str, float] = field(default_factory=dict)  # round-level scalars (the virtual clock's)

    @property
    def number(self) -> int:
        """The round as users see it, 1-based: in the bar, the store, events, reports and plots.

        `round` is the 0-based index the engine seeds and schedules with."""
        return self.round + 1


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
        eval_rounds: frozenset[int] = frozenset(),
        aggregator: Aggregator | None = None,
        server_opt: ServerOptimizer | None = None,
        attack: Attack | None = None,
        system: SystemModel | None = None,
        privacy: Any = None,
        secure: Any = None,
    ) -> None:
        self.algorithm, self.executor, self.selector = algorithm, executor, selector
        self.validator, self.evaluator, self.client_store = validator, evaluator, client_store
        self.rounds, self.eval_every, self.sinks = rounds, eval_every, list(sinks)
        self.checkpoint = checkpoint
        self.eval_rounds = eval_rounds  # evaluated whatever eval_every says (e.g. the end of each task)
        self.aggregator = aggregator if aggregator is not None else Mean()
        self.server_opt = server_opt if server_opt is not None else NoServerOptimizer()
        self.attack = attack
        self.system = system
        self.privacy = privacy  # CentralDP or LocalAccounting (privacy/): jobs, specs, the release of MODEL
        self.secure = secure  # SecureAggregation (privacy/secagg): MODEL is summed under masks
        self.clock = 0.0  # virtual seconds since round 1 (with a system section)
        self._trainable: torch.Tensor | None = None  # the MODEL entry's parameter positions (fixed for a run)

    def should_evaluate(self, round_index: int) -> bool:
        every = (round_index + 1) % self.eval_every == 0
        return every or round_index == self.rounds - 1 or round_index in self.eval_rounds

    def run(self, state: ServerState, start_round: int = 0) -> ServerState:
        # The clock is a pure function of the seed: a resumed run recomputes where it stood.
        self.clock = sum(self._cohort(r)[3] for r in range(start_round)) if self.system is not None else 0.0
        for r in range(start_round, self.rounds):
            state = self.run_round(state, r)
        return state

    def _cohort(self, r: int) -> tuple[list[int], list[int], dict[int, ClientPlan], float]:
        """(reporting, dropped out, each selected client's plan, the round's virtual seconds)."""
        reporting, dropped = self.selector.drop(r, self.selector.sample(r))
        if self.system is None:
            return reporting, dropped, {}, 0.0
        plans = {cid: self.system.plan(cid) for cid in reporting}
        return reporting, dropped, plans, self.system.round_seconds(list(plans.values()))

    def run_round(self, state: ServerState, r: int) -> ServerState:
        start = time.perf_counter()
        reporting, dropped, plans, virtual_seconds = self._cohort(r)
        late = [cid for cid in reporting if plans and plans[cid].dropped]
        reporting = [cid for cid in reporting if cid not in late]
        jobs = [self.algorithm.client_job(state, cid, r) for cid in reporting]
        for job in jobs:
            if plans:
                job.max_epochs, job.max_steps = plans[job.client_id].epochs, plans[job.client_id].max_steps
            if self.privacy is not None:
                self.privacy.dress(job, state)
        attackers = self.attack.choose(r, reporting) if self.attack is not None else frozenset()
        outcome = self._collect(state, jobs, attackers, r)
        spent = all(isinstance(f.error, BudgetSpent) for f in outcome.failures)  # local DP: a quiet round
        if jobs and not outcome.receipts and not spent:
            first = outcome.failures[0]
            raise AllClientsFailed(f"every client failed in round {r + 1}: {first.reason}") from first.error
        state, private, private_events = self._fold(state, outcome, r)
        train_seconds = time.perf_counter() - start
        record = self._record(r, jobs, outcome, train_seconds)
        record.metrics.update(private)
        record.events += private_events
        if "secagg_bytes_up" in private:  # what crossed the network is the protocol's, masked vectors included
            record.bytes_up = int(private["secagg_bytes_up"])
            record.bytes_down += int(private["secagg_bytes_down"])
        if self.attack is not None:
            kind = self.attack.config.kind
            record.events += [(cid, "byzantine", f"simulated attack: {kind}") for cid in sorted(attackers)]
        record.events += [(cid, "dropout", "simulated dropout (train.dropout_rate)") for cid in dropped]
        if self.system is not None:
            self._clock(record, plans, late, virtual_seconds)
        record.events += [(f.client_id, "client_failed", f.reason) for f in outcome.failures]
        self.close_round(state, record, start)
        return state

    def close_round(self, state: ServerState, record: RoundRecord, start: float) -> None:
        """Evaluate (when due), then log and checkpoint the round as one step."""
        r = record.round
        if self.should_evaluate(r):
            final = r == self.rounds - 1
            record.eval = self.evaluator.evaluate(self.algorithm, state, self.client_store, final, r)
        record.seconds = time.perf_counter() - start
        with deferred_interrupt():  # a Ctrl-C here lands after the checkpoint: record and checkpoint agree
            for sink in self.sinks:
                sink.log_round(record)
            if self.checkpoint is not None:
                self.checkpoint(r, state)

    def _clock(self, record: RoundRecord, plans: dict[int, ClientPlan], late: list[int], seconds: float) -> None:
        """The virtual clock's view of the round: its length, the time so far, each client's busy time."""
        assert self.system is not None
        self.clock += seconds
        record.metrics.update(virtual_seconds=seconds, virtual_time=self.clock)
        for client in record.clients:
            plan = plans[client.client_id]
            client.metrics["virtual_seconds"] = plan.seconds
            if plan.work_fraction < 1:
                client.metrics["work_fraction"] = plan.work_fraction
        deadline = self.system.cfg.deadline
        record.events += [
            (cid, "deadline", f"dropped: needs {plans[cid].planned_steps * self.system.step_seconds(cid):.1f} "
             f"virtual s, the deadline is {deadline} s") for cid in late
        ]  # fmt: skip

    def _collect(self, state: ServerState, jobs: list[ClientJob], attackers: frozenset[int], r: int) -> RoundOutcome:
        """Run the jobs; results arrive validated, summed or kept, the attackers' turned last."""
        held = frozenset() if self.attack is None or self.attack.runs_on_client else attackers
        if self.attack is not None and self.attack.runs_on_client:
            for job in jobs:
                job.attack = self.attack.config.kind if job.client_id in attackers else ""
        streaming = self.aggregator.streams and not self.algorithm.keeps_uploads(r) and self.secure is None
        specs = self.algorithm.upload_specs(state)
        if self.privacy is not None:
            specs = self.privacy.specs(specs, state)
        if self.secure is not None:
            specs = self.secure.specs(specs)
        outcome = RoundOutcome(self.validator, specs, streaming, held)
        self.executor.execute(jobs, outcome)
        order = [job.client_id for job in jobs]
        outcome.order_by(order)
        if outcome.held:
            assert self.attack is not None
            attack = self.attack
            outcome.release_held(lambda results: attack.corrupt(results, outcome.reference, r, len(jobs)))
            outcome.order_by(order)
        return outcome

    def _fold(
        self, state: ServerState, outcome: RoundOutcome, r: int
    ) -> tuple[ServerState, dict[str, float], list[tuple[int | None, str, str]]]:
        """Reduce the round's entries (MODEL under masks with secure aggregation), release MODEL under the
        privacy mechanism, step the server optimizer on it, and let the method apply them; also returns
        the mechanisms' metrics and events for the round."""
        metrics: dict[str, float] = {}
        events: list[tuple[int | None, str, str]] = []
        if self.secure is None:
            reduced = outcome.reduce(self.aggregator)
            count = outcome.weight_of(MODEL)
        else:
            reduced = outcome.reduce_sums()
            bound = self.privacy.coordinate_bound(state) if self.privacy is not None else None
            mean, count, metrics, events = self.secure.reduce(outcome, outcome.reference, r, bound)
            if mean is not None:
                reduced[MODEL] = mean
        if self.privacy is not None:
            client_metrics = [rec.metrics for rec in outcome.receipts if rec.kept]
            reduced, kept, private = self.privacy.release(state, reduced, count, client_metrics, r)
            metrics.update(private)
        opt_state = state.server_opt
        if MODEL in reduced:
            if self._trainable is None and not isinstance(self.server_opt, NoServerOptimizer):
                self._trainable = self.algorithm.trainable_upload(state)
            reduced[MODEL], opt_state = self.server_opt.step(
                outcome.reference, reduced[MODEL], state.server_opt, self._trainable
            )
        state = self.algorithm.apply(state, reduced, r)
        if self.algorithm.keeps_uploads(r):
            state = self.algorithm.apply_uploads(state, {k.client_id: k.vector for k in outcome.kept}, r)
        state.server_opt = opt_state
        if self.privacy is not None:
            state.extras["privacy"] = kept  # after apply: a method may rebuild its extras
        return state, metrics, events

    @staticmethod
    def _record(r: int, jobs: list[ClientJob], outcome: RoundOutcome, train_seconds: float) -> RoundRecord:
        down = {job.client_id: payload_bytes(job.payload) for job in jobs}
        clients = [
            ClientRecord(
                client_id=rec.client_id,
                num_samples=rec.num_samples,
                train_loss=float(rec.metrics.get("train_loss", float("nan"))),
                seconds=float(rec.metrics.get("seconds", 0.0)),
                bytes_down=down.get(rec.client_id, 0),
                bytes_up=rec.bytes_up,
                metrics={k: float(v) for k, v in rec.metrics.items() if k not in STANDARD_CLIENT_METRICS},
                trained=rec.kept,
            )
            for rec in outcome.receipts
        ]
        trained = [rec for rec in outcome.receipts if rec.kept and rec.num_samples > 0]
        samples = sum(rec.num_samples for rec in trained)
        weighted = sum(rec.num_samples * float(rec.metrics.get("train_loss", float("nan"))) for rec in trained)
        loss = weighted / samples if samples else float("nan")
        return RoundRecord(
            round=r,
            clients=clients,
            rejected=outcome.rejected,
            train_loss=loss,
            bytes_down=sum(down.values()),
            bytes_up=sum(c.bytes_up for c in clients),
            train_seconds=train_seconds,
            events=[(rej.client_id, "rejected_update", rej.reason) for rej in outcome.rejected],
        )
