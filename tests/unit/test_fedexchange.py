"""FedExchange: cross-cluster exchange plans, the schedule, and FedAvg's client cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fedforge
from fedforge.algorithms.fedexchange import (
    EXCHANGE,
    FedExchange,
    cluster_models,
    exchange_plan,
    model_distances,
)
from fedforge.config import TrainConfig
from fedforge.engine.weights import FlatModel
from fedforge.records import MODEL


@pytest.mark.parametrize("labels", [[0, 0, 1, 1], [0, 1, 0, 1, 2, 2], [2, 0, 1, 0, 1, 2, 0, 1]])
def test_plan_is_a_permutation_across_clusters(labels):
    labels = np.array(labels)
    plan = exchange_plan(labels, np.random.default_rng(0))
    assert sorted(plan.tolist()) == list(range(len(labels)))  # every local model goes on training
    assert bool((labels[plan] != labels).all())  # and always on another cluster's data


def test_plan_with_a_majority_cluster_still_crosses():
    labels = np.array([0, 0, 0, 0, 1])
    plan = exchange_plan(labels, np.random.default_rng(0))
    assert bool((labels[plan] != labels).all())


def test_clusters_follow_the_distance():
    base = torch.randn(2, 50)
    models = torch.cat([base[0] + 0.01 * torch.randn(3, 50), base[1] + 0.01 * torch.randn(3, 50)])
    for kind in ("cosine", "l2"):
        labels = cluster_models(model_distances(models, kind), 2)
        assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]


def test_exchange_rounds_alternate_and_the_last_round_aggregates():
    algo = FedExchange(train=TrainConfig(rounds=6))
    assert [algo.is_exchange_round(r) for r in range(6)] == [False, True, False, True, False, False]


def test_after_an_exchange_round_each_client_starts_from_another_clusters_model():
    flat = FlatModel(torch.nn.Linear(4, 2))
    algo = FedExchange(train=TrainConfig(rounds=4))
    state = algo.init_server(flat, None)
    d = state.weights.numel()
    uploads = {0: torch.ones(d), 1: torch.ones(d) * 1.01, 2: -torch.ones(d), 3: -torch.ones(d) * 1.01}
    state = algo.apply_uploads(state, uploads, 1)
    sent = {cid: algo.client_job(state, cid, 2).payload[MODEL] for cid in uploads}
    for cid, weights in sent.items():
        assert torch.sign(weights[0]) != torch.sign(uploads[cid][0])  # from the other cluster
    assert {float(w[0]) for w in sent.values()} == {float(u[0]) for u in uploads.values()}
    state = algo.apply_mean(state, torch.zeros(d), 2)  # the next aggregation ends the exchange
    assert EXCHANGE not in state.extras and torch.equal(algo.client_job(state, 0, 3).payload[MODEL], torch.zeros(d))


def run(name: str, tmp_path):
    return fedforge.run(
        data={"name": "digits-domains", "num_clients": 5, "partition": {"kind": "domain"}},
        algorithm={"name": name},
        model={"name": "cnn", "width": 8, "hidden": 16},
        train={"rounds": 4, "local_epochs": 1, "batch_size": 32},
        eval={"every": 1},
        tracking={"runs_dir": str(tmp_path)},
        quiet=True,
    )


def test_fedexchange_costs_clients_what_fedavg_costs(tmp_path):
    from fedforge.tracking.query import load_client_rounds

    ours, theirs = run("fedexchange", tmp_path / "x"), run("fedavg", tmp_path / "a")
    assert ours.summary["bytes_down"] == theirs.summary["bytes_down"]
    assert ours.summary["bytes_up"] == theirs.summary["bytes_up"]

    def work(folder):  # per round and client, the samples trained on (same batch size and epochs: same steps)
        return sorted((r["round"], r["client_id"], r["num_samples"]) for r in load_client_rounds(folder))

    assert work(tmp_path / "x") == work(tmp_path / "a")
    assert ours.summary["final_accuracy"] != theirs.summary["final_accuracy"]  # the exchange changed training
