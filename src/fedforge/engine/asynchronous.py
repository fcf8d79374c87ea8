"""The asynchronous mode (DESIGN section 8): clients start and finish on the virtual clock.

A method with `asynchronous = True` (FedBuff) runs here instead of in rounds. `concurrency`
clients are busy at any time; each trains, when it starts, on the global model of that moment
(training is computed then and its update held until the client's virtual finish time, which
the system model gives). Arrivals are taken in finish order; each frees its slot and a seeded
draw among the idle clients (neither training nor waiting in the buffer) starts the next.
Every `buffer_size` arrivals the server applies the staleness-weighted buffer: one server
step, logged, evaluated and checkpointed like a round. The clock, the model version and the
clients in flight (with their held updates) are server state, so a checkpoint resumes
bit-identically.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from fedforge.algorithms.base import ServerState
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.federation import AllClientsFailed, ClientRecord, Federation, RoundRecord
from fedforge.engine.weights import payload_bytes
from fedforge.seeding import ASYNC, numpy_rng

BOOK = "async"  # the server state entry holding the clock, the version and the clients in flight


class AsyncFederation(Federation):
    """Buffered asynchronous aggregation; one `run_round` is one server step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.system is None:  # the configuration's own checks (config.Config._asynchronous) ran before
            raise ValueError("the asynchronous mode needs a system model (its virtual clock)")

    def run(self, state: ServerState, start_round: int = 0) -> ServerState:
        for r in range(start_round, self.rounds):
            state = self.run_round(state, r)
        return state

    def run_round(self, state: ServerState, r: int) -> ServerState:
        start = time.perf_counter()
        book = dict(state.extras.get(BOOK) or {"clock": 0.0, "version": 0, "started": 0, "in_flight": []})
        book["in_flight"] = list(book["in_flight"])
        began, rejected, events = float(book["clock"]), [], []
        arrived: list[dict[str, Any]] = []
        while len(book["in_flight"]) < self.algorithm.params.concurrency:
            self._start_client(state, book, arrived, rejected, events)
        while len(arrived) < self.algorithm.params.buffer_size:
            book["in_flight"].sort(key=lambda item: (item["finish"], item["order"]))
            item = book["in_flight"].pop(0)
            book["clock"] = item["finish"]
            arrived.append(item)
            self._start_client(state, book, arrived, rejected, events)  # its slot goes to the next client at once
        state = self._apply(state, arrived, book)
        clients = [self._client_record(item, book["version"] - 1) for item in arrived]
        record = RoundRecord(
            round=r,
            clients=clients,
            rejected=rejected,
            train_loss=_weighted_loss(arrived),
            bytes_down=sum(c.bytes_down for c in clients),
            bytes_up=sum(c.bytes_up for c in clients),
            train_seconds=time.perf_counter() - start,
            events=events,
        )
        record.metrics.update(virtual_seconds=book["clock"] - began, virtual_time=book["clock"])
        self.close_round(state, record, start)
        return state

    def _start_client(
        self, state: ServerState, book: dict[str, Any], arrived: list[dict[str, Any]], rejected: list, events: list
    ) -> None:
        """Start one idle client (seeded draw) on the current model; retry past failures and rejections.

        A client whose update waits in the buffer is not idle: it contributes at most once per server
        step (so one fast client cannot fill the buffer, and each step's record has a row per client)."""
        for _ in range(2 * self.selector.num_clients):
            busy = {item["client"] for item in book["in_flight"] + arrived}
            idle = [c for c in range(self.selector.num_clients) if c not in busy]
            order = int(book["started"])
            cid = idle[int(numpy_rng(self.seed, ASYNC, order).integers(len(idle)))]
            book["started"] = order + 1
            job = self.algorithm.client_job(state, cid, order)  # `round` = start order: a fresh seed each time
            plan = self.system.plan(cid)
            job.max_epochs = plan.epochs
            outcome = RoundOutcome(self.validator, self.algorithm.upload_specs(state), streaming=False)
            self.executor.execute([job], outcome)
            rejected += outcome.rejected
            events += [(rej.client_id, "rejected_update", rej.reason) for rej in outcome.rejected]
            events += [(f.client_id, "client_failed", f.reason) for f in outcome.failures]
            if outcome.kept:
                receipt = outcome.receipts[0]
                book["in_flight"].append({
                    "client": cid, "order": order, "version": int(book["version"]),
                    "finish": float(book["clock"]) + plan.seconds, "busy": plan.seconds,
                    "held": self._held(outcome.kept[0].vector, state.weights), "samples": receipt.num_samples,
                    "metrics": {k: float(v) for k, v in receipt.metrics.items()},
                    "bytes_down": payload_bytes(job.payload), "bytes_up": receipt.bytes_up,
                })  # fmt: skip
                return
        raise AllClientsFailed(f"{2 * self.selector.num_clients} client starts in a row failed or were rejected")

    @property
    def seed(self) -> int:
        return self.selector.seed

    def _held(self, upload: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """What waits in the buffer: the change of the parameters, the buffers (BN statistics) as
        uploaded. Statistics are estimates, not steps: stale changes of a running variance, added
        to a newer model, could turn it negative."""
        num_params = self.algorithm.layout.num_params
        held = upload.clone()
        held[:num_params] -= weights[:num_params]
        return held

    def _apply(self, state: ServerState, arrived: list[dict[str, Any]], book: dict[str, Any]) -> ServerState:
        """Parameters: x + server_lr (1/K) sum_i w(staleness_i) delta_i; buffers: the w-weighted mean of
        the uploaded statistics; then the server optimizer."""
        algorithm, version = self.algorithm, int(book["version"])
        num_params = algorithm.layout.num_params
        total = torch.zeros_like(state.weights, dtype=torch.float64)
        weights = [algorithm.staleness_weight(version - item["version"]) for item in arrived]
        for item, weight in zip(arrived, weights, strict=True):
            total.add_(item["held"].to(total.device), alpha=weight)
        reduced = (total / sum(weights)).to(state.weights.dtype)  # buffers: the weighted mean
        change = total[:num_params] * (algorithm.params.server_lr / len(arrived))
        reduced[:num_params] = state.weights[:num_params] + change.to(state.weights.dtype)
        if self._trainable is None:
            self._trainable = algorithm.trainable_upload(state)
        new, opt_state = self.server_opt.step(state.weights, reduced, state.server_opt, self._trainable)
        book["version"] = version + 1
        return ServerState(new, {**state.extras, BOOK: book}, opt_state)

    @staticmethod
    def _client_record(item: dict[str, Any], version: int) -> ClientRecord:
        metrics = {k: v for k, v in item["metrics"].items() if k not in ("train_loss", "seconds")}
        metrics.update(staleness=float(version - item["version"]), virtual_seconds=float(item["busy"]))
        return ClientRecord(
            client_id=item["client"],
            num_samples=item["samples"],
            train_loss=float(item["metrics"].get("train_loss", float("nan"))),
            seconds=float(item["metrics"].get("seconds", 0.0)),
            bytes_down=item["bytes_down"],
            bytes_up=item["bytes_up"],
            metrics=metrics,
        )


def _weighted_loss(items: list[dict[str, Any]]) -> float:
    samples = sum(item["samples"] for item in items)
    if not samples:
        return float("nan")
    losses = np.array([item["metrics"].get("train_loss", np.nan) for item in items])
    return float(np.dot([item["samples"] for item in items], losses) / samples)
