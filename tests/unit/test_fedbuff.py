"""FedBuff: staleness-weighted buffers, applied every K arrivals on the virtual clock."""

import math

import torch

import fedforge
from fedforge.aggregation.server_opt import NoServerOptimizer
from fedforge.algorithms.base import ServerState
from fedforge.algorithms.fedbuff import FedBuff
from fedforge.engine.asynchronous import BOOK, AsyncFederation
from fedforge.tracking.query import load_client_rounds, load_metrics


def test_the_buffer_is_the_staleness_weighted_mean_change():
    algo = FedBuff(FedBuff.Params(buffer_size=2, server_lr=2.0))
    algo.layout = type("L", (), {"num_params": 2, "size": 3})()
    loop = object.__new__(AsyncFederation)
    loop.algorithm, loop.server_opt, loop._trainable = algo, NoServerOptimizer(), None
    state = ServerState(torch.zeros(3))
    # Held: the parameters' change (positions 0, 1) and the uploaded statistics (position 2).
    fresh = {"held": torch.tensor([1.0, 0.0, 4.0]), "version": 2}
    stale = {"held": torch.tensor([0.0, 3.0, 2.0]), "version": 0}  # two server steps old
    new = loop._apply(state, [fresh, stale], {"version": 2})
    w = 1 / math.sqrt(1 + 2)
    expected = torch.tensor([2.0 * (1.0 + 0) / 2, 2.0 * (0 + 3.0 * w) / 2, (4.0 + 2.0 * w) / (1 + w)])
    assert torch.allclose(new.weights, expected)
    assert new.extras[BOOK]["version"] == 3
    assert algo.staleness_weight(0) == 1.0 and FedBuff(FedBuff.Params(staleness_exponent=0)).staleness_weight(9) == 1


def test_fedbuff_learns_on_the_clock_and_is_reproducible(tmp_path):
    def run(name):
        return fedforge.run(
            quiet=True,
            algorithm={"name": "fedbuff", "buffer_size": 3, "concurrency": 6},
            system={"profile": {"kind": "lognormal", "sigma": 1.0}},
            **{"train.rounds": 20, "tracking.runs_dir": str(tmp_path), "tracking.name": name},
        )

    first, again = run("a"), run("b")
    assert first.final_accuracy > 0.8
    weights = zip(first.model.state_dict().values(), again.model.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in weights)
    clients = load_client_rounds(first.run_dir)
    assert [sum(1 for c in clients if c["round"] == r and c["trained"]) for r in range(1, 21)] == [3] * 20
    staleness = [m["value"] for m in load_metrics(first.run_dir) if m["name"] == "staleness"]
    assert len(staleness) == 60 and min(staleness) >= 0 and max(staleness) >= 1  # slow clients arrive late
    clock = [m["value"] for m in load_metrics(first.run_dir) if m["name"] == "virtual_time" and m["client_id"] is None]
    assert clock == sorted(clock) and clock[0] > 0
