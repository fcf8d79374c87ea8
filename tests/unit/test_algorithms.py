"""Each algorithm's aggregation and client step against a hand computation."""

import torch

from fedforge.algorithms import ALGORITHMS, ClientJob, ServerState
from fedforge.algorithms.fedavg import FedAvg
from fedforge.algorithms.fedbn import FedBN
from fedforge.algorithms.fedprox import FedProx
from fedforge.config import Config
from fedforge.data.federated import build_federated_dataset
from fedforge.engine.client_store import ClientStore
from fedforge.engine.executors import SequentialExecutor
from fedforge.engine.weights import FlatModel
from fedforge.models.small import cnn
from fedforge.records import MODEL
from tests.rounds import aggregate, result


def test_registered_names():
    assert {"fedavg", "fedprox", "fedbn"} <= set(ALGORITHMS.names())
    assert ALGORITHMS.get("fedprox") is FedProx and FedProx.name == "fedprox"


def test_fedavg_aggregate_is_sample_weighted_mean():
    state = ServerState(torch.zeros(3))
    new = aggregate(FedAvg(), state, [result(0, [1, 1, 1], 10), result(1, [4, 0, 2], 30), result(2, [9, 9, 9], 0)], 0)
    # (10*[1,1,1] + 30*[4,0,2]) / 40; the empty client carries no weight
    assert torch.allclose(new.weights, torch.tensor([3.25, 0.25, 1.75]))


def test_fedavg_keeps_state_when_nobody_contributes():
    state = ServerState(torch.ones(2))
    assert aggregate(FedAvg(), state, [], 0) is state


def test_fedprox_and_fedbn_share_fedavg_aggregation():
    results = [result(0, [2, 0], 1), result(1, [0, 2], 3)]
    expected = aggregate(FedAvg(), ServerState(torch.zeros(2)), results, 0).weights
    for cls in (FedProx, FedBN):
        assert torch.equal(aggregate(cls(), ServerState(torch.zeros(2)), results, 0).weights, expected)


class _Ctx:
    """The slice of ClientContext that the hooks under test touch."""

    def __init__(self, flat, state=None, role=None):
        self.flat = flat
        self.state = state if state is not None else {}
        self.role = role


def test_fedprox_adds_mu_times_distance_to_the_gradient():
    torch.manual_seed(0)
    flat = FlatModel(cnn((1, 8, 8), 10))
    global_weights = flat.read()
    flat.vector.add_(0.5)  # local model drifted by 0.5 everywhere
    flat.grad.fill_(1.0)
    algo = FedProx(FedProx.Params(mu=0.2))
    algo.after_backward(_Ctx(flat), ClientJob(0, 0, {MODEL: global_weights}))
    assert torch.allclose(flat.grad, torch.full_like(flat.grad, 1.0 + 0.2 * 0.5))


def executor_for(algo_cls, params=None, **overrides):
    cfg = Config.model_validate({"data": {"num_clients": 4}, "train": {"local_epochs": 1}, **overrides})
    data = build_federated_dataset(cfg)

    def factory():
        torch.manual_seed(0)
        return cnn(data.input_shape, data.num_classes)

    algo = algo_cls(params, cfg.train)
    server = FlatModel(factory())
    state = algo.init_server(server, data)
    store = ClientStore()
    ex = SequentialExecutor(algo, data, factory, cfg.train, store, cfg.seed, torch.device("cpu"))
    return algo, state, ex, store


def test_fedprox_with_zero_mu_trains_exactly_like_fedavg():
    _, s1, ex1, _ = executor_for(FedAvg)
    _, s2, ex2, _ = executor_for(FedProx, FedProx.Params(mu=0.0))
    r1 = ex1.run_one(ClientJob(1, 0, {MODEL: s1.weights}))
    r2 = ex2.run_one(ClientJob(1, 0, {MODEL: s2.weights}))
    assert torch.equal(r1.update[MODEL], r2.update[MODEL])
    _, s3, ex3, _ = executor_for(FedProx, FedProx.Params(mu=1.0))
    r3 = ex3.run_one(ClientJob(1, 0, {MODEL: s3.weights}))
    moved_far = torch.linalg.vector_norm(r1.update[MODEL] - s1.weights)
    assert torch.linalg.vector_norm(r3.update[MODEL] - s3.weights) < moved_far


def test_fedbn_keeps_exactly_the_norm_layers_local():
    algo, state, ex, store = executor_for(FedBN)
    local = set(algo.local_index.tolist())
    expected = {
        i
        for e in ex.flat.layout.entries
        if e.name.startswith(("1.", "5."))
        for i in range(e.offset, e.offset + e.numel)
    }
    assert local == expected  # the two BatchNorm2d layers: weight, bias, running stats

    first = ex.run_one(ClientJob(0, 0, {MODEL: state.weights}))
    saved = store.get(0)["local"]
    assert torch.equal(saved, first.update[MODEL][algo.local_index])

    # Next round the client starts from new global weights but its own norm layers.
    new_global = state.weights + 1.0
    ex.flat.load(new_global)
    algo.prepare(_Ctx(ex.flat, store.get(0), ex.role), None)
    assert torch.equal(ex.flat.vector[algo.local_index], saved)
    shared = torch.ones(len(new_global), dtype=torch.bool)
    shared[algo.local_index] = False
    assert torch.equal(ex.flat.vector[shared], new_global[shared])

    personal = algo.personalized_weights(ServerState(new_global), store.get(0))
    assert torch.equal(personal[algo.local_index], saved) and torch.equal(personal[shared], new_global[shared])
    assert algo.personalized_weights(ServerState(new_global), {}) is None


def test_client_training_is_seeded_by_round_and_client():
    _, state, ex, _ = executor_for(FedAvg)
    a = ex.run_one(ClientJob(2, 5, {MODEL: state.weights})).update[MODEL]
    b = ex.run_one(ClientJob(2, 5, {MODEL: state.weights})).update[MODEL]
    c = ex.run_one(ClientJob(2, 6, {MODEL: state.weights})).update[MODEL]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_job_moves_to_the_executor_device_without_copying_in_place():
    job = ClientJob(3, 1, {MODEL: torch.zeros(4), "teacher": torch.ones(4)}, attack="label_flip")
    same = job.to(torch.device("cpu"))
    assert same.model is job.model and same.payload["teacher"] is job.payload["teacher"]
    moved = job.to(torch.device("meta"))  # stands in for a GPU: every entry goes, the rest stays
    assert moved.model.device.type == "meta" and moved.payload["teacher"].device.type == "meta"
    assert moved.attack == "label_flip" and (moved.client_id, moved.round) == (3, 1)
