"""Fold a list of results into a method's state the way a round does (validated, reduced, applied)."""

from __future__ import annotations

import torch

from fedforge.aggregation.reducers import Aggregator, Mean
from fedforge.algorithms.base import Algorithm
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.validation import UpdateValidator
from fedforge.records import MODEL, ClientResult, ServerState


def result(cid: int, values, n: int, **entries: torch.Tensor) -> ClientResult:
    """A result whose MODEL entry is `values` (a tensor as it is, else float32), plus further named entries."""
    model = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.float32)
    return ClientResult(cid, {MODEL: model, **entries}, n)


def aggregate(
    algorithm: Algorithm, state: ServerState, results: list[ClientResult], r: int, aggregator: Aggregator | None = None
) -> ServerState:
    aggregator = aggregator if aggregator is not None else Mean()
    outcome = RoundOutcome(UpdateValidator(), algorithm.upload_specs(state), aggregator.streams)
    for item in results:
        outcome.add(item)
    return algorithm.apply(state, outcome.reduce(aggregator), r)
