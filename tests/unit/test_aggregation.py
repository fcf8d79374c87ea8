"""Streaming aggregation: partial sums merge into exactly the weighted mean of the uploads."""

import pytest
import torch

from fedforge.aggregation.reducers import Mean, Median
from fedforge.algorithms.base import ServerState
from fedforge.algorithms.fedavg import FedAvg
from fedforge.engine.aggregation import RoundOutcome, WeightedSum
from fedforge.engine.executors import ClientFailure
from fedforge.engine.validation import UpdateValidator
from fedforge.records import MODEL, UploadSpec
from tests.rounds import aggregate, result


def test_weighted_sum_matches_hand_computation_and_skips_empty_clients():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    total = WeightedSum()
    total.add(a, 1)
    total.add(b, 3)
    total.add(torch.tensor([100.0, 100.0]), 0)  # a client without samples does not count
    assert torch.allclose(total.mean(), torch.tensor([2.5, 5.0])) and total.weight == 4
    assert torch.equal(a, torch.tensor([1.0, 2.0]))  # the first upload is not summed into in place
    with pytest.raises(ValueError, match="undefined"):
        WeightedSum().mean()


def test_partial_sums_merge_to_the_sum_over_all_clients():
    vectors = [torch.randn(50, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    counts = [3, 1, 4, 1, 5, 9]
    whole = WeightedSum()
    for v, n in zip(vectors, counts, strict=True):
        whole.add(v, n)
    left, right = WeightedSum(), WeightedSum()
    for i, (v, n) in enumerate(zip(vectors, counts, strict=True)):
        (left if i % 2 else right).add(v, n)
    merged = WeightedSum()
    merged.merge(left)
    merged.merge(right)
    merged.merge(WeightedSum())  # a worker whose clients all failed
    assert merged.weight == whole.weight == 23
    assert torch.allclose(merged.mean(), whole.mean(), atol=1e-6)


def outcomes():
    g = torch.zeros(3)
    good = [result(i, torch.full((3,), float(i)), i + 1) for i in range(3)]
    for r in good:
        r.metrics["train_loss"] = 0.5
    bad = result(7, [0.0, float("nan"), 0.0], 4)
    return g, good, bad, ClientFailure(9, RuntimeError("boom"))


@pytest.mark.parametrize("streaming", [True, False])
def test_round_outcome_validates_then_sums_or_keeps(streaming):
    g, good, bad, failure = outcomes()
    outcome = RoundOutcome(UpdateValidator(), {MODEL: UploadSpec.of(g)}, streaming)
    for item in [good[0], bad, failure, good[1], good[2]]:
        outcome.add(item)
    assert [r.client_id for r in outcome.receipts] == [0, 7, 1, 2]
    assert [r.kept for r in outcome.receipts] == [True, False, True, True]
    assert outcome.receipts[0].bytes_up == 12 and outcome.receipts[0].metrics == {"train_loss": 0.5}
    assert [r.client_id for r in outcome.rejected] == [7] and "NaN" in outcome.rejected[0].reason
    assert [f.client_id for f in outcome.failures] == [9]
    if streaming:
        assert outcome.kept == [] and torch.allclose(outcome.sums[MODEL].mean(), torch.full((3,), 8 / 6))
    else:
        assert [k.client_id for k in outcome.kept] == [0, 1, 2] and MODEL not in outcome.sums
        assert [k.weight for k in outcome.kept] == [1, 2, 3]
    assert torch.allclose(outcome.reduce(Mean())[MODEL], torch.full((3,), 8 / 6))


def test_merged_worker_outcomes_are_put_back_in_job_order():
    g, good, bad, failure = outcomes()
    first, second = (RoundOutcome(UpdateValidator(), {MODEL: UploadSpec.of(g)}, True) for _ in range(2))
    first.add(good[2])
    second.add(good[0])
    second.add(bad)
    first.merge(second)
    first.order_by([0, 7, 2])
    assert [r.client_id for r in first.receipts] == [0, 7, 2] and first.sums[MODEL].weight == 4


def test_any_method_takes_any_aggregator_without_subclassing():
    state = ServerState(torch.zeros(3))
    _, good, _, _ = outcomes()
    assert torch.allclose(aggregate(FedAvg(), state, good, 0).weights, torch.full((3,), 8 / 6))
    assert torch.equal(aggregate(FedAvg(), state, good, 0, Median()).weights, torch.ones(3))  # values 0, 1, 2
    assert aggregate(FedAvg(), state, [result(0, torch.ones(3), 0)], 0) is state  # nobody had samples
