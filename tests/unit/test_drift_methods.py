"""SCAFFOLD, FedNova, FedDyn and MOON against closed-form problems and hand computations."""

import pytest
import torch

from fedforge.algorithms.base import MODEL, ClientJob, ServerState
from fedforge.algorithms.drift import step_norm
from fedforge.algorithms.fedavg import FedAvg
from fedforge.algorithms.feddyn import FedDyn
from fedforge.algorithms.fednova import FedNova
from fedforge.algorithms.scaffold import CONTROL, Scaffold
from fedforge.errors import ConfigError
from tests.quadratic import Quadratic, fedavg_fixed_point, fednova_fixed_point, sgd

# Three clients with different curvatures and optima, equal shards: one local epoch of 4 batches.
EQUAL = Quadratic(a=[1.0, 2.0, 4.0], b=[[1.0, -2.0], [-3.0, 0.5], [2.0, 4.0]], n=[40, 40, 40])
# Unequal shards: K = 2, 10, 20 steps at batch 10 and 2 epochs.
UNEQUAL = Quadratic(a=[1.0, 2.0, 4.0], b=[[1.0, -2.0], [-3.0, 0.5], [2.0, 4.0]], n=[10, 50, 100])


def test_fedavg_converges_to_the_biased_fixed_point_the_analysis_predicts():
    lr = 0.1
    x, _ = EQUAL.run(FedAvg(train=sgd(lr, 1, 10)), rounds=60)
    predicted = fedavg_fixed_point(EQUAL, lr, [4, 4, 4])
    assert torch.allclose(x, predicted, atol=1e-5)
    assert torch.linalg.vector_norm(predicted - EQUAL.optimum()) > 0.3  # drift: not the optimum


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_scaffold_converges_to_the_optimum(momentum):
    x, _ = EQUAL.run(Scaffold(train=sgd(0.1, 1, 10, momentum)), rounds=80)
    assert torch.linalg.vector_norm(x - EQUAL.optimum()) < 1e-4


def test_scaffold_with_partial_participation_still_reaches_the_optimum():
    x, _ = EQUAL.run(Scaffold(train=sgd(0.1, 1, 10)), rounds=150, cohorts=lambda r: [r % 3, (r + 1) % 3])
    assert torch.linalg.vector_norm(x - EQUAL.optimum()) < 1e-4


# The fixed point is exact for any alpha; a larger one than the default 0.1 only gets there in fewer rounds.
def test_feddyn_converges_to_the_optimum():
    x, _ = EQUAL.run(FedDyn(FedDyn.Params(alpha=0.5), train=sgd(0.1, 1, 10)), rounds=100)
    assert torch.linalg.vector_norm(x - EQUAL.optimum()) < 1e-4


def test_feddyn_with_unequal_shards_reaches_the_sample_weighted_optimum():
    x, _ = UNEQUAL.run(FedDyn(FedDyn.Params(alpha=2.0), train=sgd(0.05, 1, 25)), rounds=100)  # K = 1, 2, 4
    assert torch.linalg.vector_norm(x - UNEQUAL.optimum()) < 1e-4


def test_fednova_removes_the_step_count_bias_that_fedavg_has():
    problem = Quadratic(a=UNEQUAL.a, b=UNEQUAL.b, n=[10, 30, 60])
    lr, steps = 0.005, [1, 3, 6]  # one epoch at batch 10
    fedavg, _ = problem.run(FedAvg(train=sgd(lr, 1, 10)), rounds=200)
    fednova, _ = problem.run(FedNova(train=sgd(lr, 1, 10)), rounds=200)
    assert torch.allclose(fedavg, fedavg_fixed_point(problem, lr, steps), atol=1e-5)
    assert torch.allclose(fednova, fednova_fixed_point(problem, lr, steps), atol=1e-5)
    optimum = problem.optimum()
    surrogate = problem.optimum(problem.p * torch.tensor(steps, dtype=torch.float64))  # argmin sum p_k K_k f_k
    # FedAvg lands near the step-weighted surrogate, FedNova near the sample-weighted optimum (exactly
    # so as lr -> 0; here 1 - (1 - lr a)^K differs from K lr a by at most 6 %).
    assert torch.linalg.vector_norm(fedavg - surrogate) < 0.1 * torch.linalg.vector_norm(fedavg - optimum)
    assert torch.linalg.vector_norm(fednova - optimum) < 0.1 * torch.linalg.vector_norm(fedavg - optimum)


def test_k_counts_every_local_step_epochs_times_batches():
    algo = Scaffold(train=sgd(0.1, 3, 7))
    problem = Quadratic(a=[1.0], b=[[1.0]], n=[20])  # ceil(20 / 7) = 3 batches, 3 epochs: K = 9
    _, states = problem.run(algo, rounds=1)
    # One client, x = 0: c_1 = (x - y) / (K lr) with y after 9 steps of y <- y - lr (y - 1).
    y = 1 - (1 - 0.1) ** 9
    assert torch.allclose(states[0].extras[CONTROL], torch.tensor([(0 - y) / (9 * 0.1)]), atol=1e-6)


def test_scaffold_corrects_each_gradient_by_c_minus_c_i():
    from fedforge.engine.weights import FlatModel
    from tests.quadratic import Point

    flat = FlatModel(Point(3))
    flat.grad.copy_(torch.tensor([1.0, 1.0, 1.0]))

    class Ctx:
        pass

    ctx = Ctx()
    ctx.flat, ctx.state = flat, {CONTROL: torch.tensor([0.5, 0.0, -1.0])}
    job = ClientJob(0, 0, {MODEL: torch.zeros(3), CONTROL: torch.tensor([0.25, 0.25, 0.25])})
    Scaffold(train=sgd(0.1, 1, 1)).after_backward(ctx, job)
    assert torch.equal(flat.grad, torch.tensor([1 - 0.5 + 0.25, 1 + 0.25, 1 + 1 + 0.25]))


def test_the_server_control_moves_by_the_cohorts_share_of_the_mean_change():
    from tests.rounds import aggregate, result

    algo = Scaffold()
    algo.layout = type("L", (), {"num_params": 2})()
    algo.samples = 10 * 4  # N = 10 clients of 4 samples
    state = ServerState(torch.zeros(2), {CONTROL: torch.zeros(2)})
    changes = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([2.0, 1.0])]
    results = [result(i, [0.0, 0.0], 4, **{CONTROL: dc}) for i, dc in enumerate(changes)]
    new = aggregate(algo, state, results, 0)
    mean_change = torch.stack(changes).mean(0)
    assert torch.allclose(new.extras[CONTROL], 3 / 10 * mean_change)  # |S| / N of the mean change


def test_momentum_aware_step_norm():
    assert step_norm(7, 0.0) == 7
    rho, k = 0.9, 5
    weights = [sum(rho**j for j in range(k - t)) for t in range(k)]  # the weight on step t's gradient
    assert step_norm(k, rho) == pytest.approx(sum(weights))


def test_methods_that_assume_sgd_refuse_adam():
    for cls in (Scaffold, FedNova, FedDyn):
        with pytest.raises(ConfigError, match="train.optimizer"):
            cls(train=sgd(0.1, 1, 1).model_copy(update={"optimizer": "adam"}))


def test_model_contrastive_loss_by_hand():
    import math

    from fedforge.algorithms.moon import model_contrastive_loss

    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z_global = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # cosine 1 with z: the positive
    z_previous = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # cosine 0 and 1/sqrt(2)
    expected = [-math.log(math.exp(2) / (math.exp(2) + math.exp(0))), -math.log(1 / (1 + math.exp(-2 + 2**0.5 * 1)))]
    got = model_contrastive_loss(z, z_global, z_previous, temperature=0.5)
    assert got.item() == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_moon_without_its_term_trains_exactly_like_fedavg_and_keeps_the_previous_model():
    from fedforge.algorithms.moon import PREVIOUS, Moon
    from tests.unit.test_algorithms import executor_for

    _, s1, ex1, _ = executor_for(FedAvg)
    _, s2, ex2, store = executor_for(Moon, Moon.Params(mu=0.0))
    r1 = ex1.run_one(ClientJob(1, 0, {MODEL: s1.weights}))
    r2 = ex2.run_one(ClientJob(1, 0, {MODEL: s2.weights}))
    assert torch.equal(r1.update[MODEL], r2.update[MODEL])
    assert torch.equal(store.get(1)[PREVIOUS], r2.update[MODEL])  # the previous local model, as state

    # With the term, the previous model shapes round 2: a client without one trains differently.
    _, s3, ex3, store3 = executor_for(Moon)
    ex3.run_one(ClientJob(1, 0, {MODEL: s3.weights}))
    with_previous = ex3.run_one(ClientJob(1, 1, {MODEL: s3.weights})).update[MODEL]
    store3.put(1, {})
    without = ex3.run_one(ClientJob(1, 1, {MODEL: s3.weights})).update[MODEL]
    assert not torch.equal(with_previous, without)
