"""A client needs only its context and its job: no method's local update reads what `init_server`
left on the server's algorithm object (DESIGN section 6).

For every registered algorithm, the same jobs run on an executor holding the server's algorithm
object (as `sequential` does) and on one holding a fresh object that never saw `init_server` (as
a remote client or a worker rebuilt from the config would); the uploads, metrics and client
states must be identical, over two rounds of one client so that kept client state is exercised.
"""

import pytest
import torch

from fedforge.algorithms import ALGORITHMS
from fedforge.api import Experiment, resolve_config
from fedforge.engine.client_store import ClientStore
from fedforge.engine.executors import SequentialExecutor
from fedforge.engine.weights import FlatModel
from fedforge.records import MODEL

QUICK = {"train": {"local_epochs": 1}, "backend": {"device": "cpu", "threads": 1}}
CONTINUAL = {
    "continual": {"tasks": 2, "classes_per_task": 2, "rounds_per_task": 2},
    "data": {"local_test_fraction": 0.0},
}
TINY_SYNTHESIS = {
    "synthesis_rounds": 2,
    "warmup": 1,
    "generator_steps": 3,
    "student_steps": 2,
    "synthesis_batch_size": 16,
}


def config_for(name: str):
    algo = ALGORITHMS.get(name)
    overrides = {**QUICK, "algorithm": {"name": name}}
    if algo.task == "ssl":
        return resolve_config("configs/digits_fedssl.yaml", {**overrides, "train": {"local_epochs": 1, "rounds": 3}})
    if name == "fedwon":
        overrides["model"] = {"name": "wscnn"}
    if name in {"finetune", "fedlwf", "fedewc", "target"}:
        overrides.update(CONTINUAL)
        if name == "target":
            overrides["algorithm"] = {"name": name, **TINY_SYNTHESIS}
    return resolve_config(None, overrides)


def executor(exp: Experiment, algorithm) -> SequentialExecutor:
    cfg = exp.cfg
    return SequentialExecutor(
        algorithm, exp.data, exp.model_factory(), cfg.train, ClientStore(), cfg.seed, torch.device("cpu"), task=exp.task
    )


def comparable(result):
    metrics = {k: v for k, v in result.metrics.items() if k != "seconds"}
    return {k: v.clone() for k, v in result.update.items()}, result.num_samples, metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", ALGORITHMS.names())
def test_local_updates_need_nothing_from_init_server(name):
    cfg = config_for(name)
    exp = Experiment(cfg)
    make = cfg.algorithm.resolve()
    server = make(cfg.algorithm.params, cfg.train, seed=cfg.seed)
    state = server.init_server(FlatModel(exp.build_model()), exp.data)
    if cfg.continual is not None:  # move to the second task, so jobs carry the teacher and what goes with it
        fisher = torch.full((server.layout.num_params,), 0.5)
        state = server.apply(state, {MODEL: state.weights, "fisher": fisher}, 1)  # task 0 ends
    first = 2 if cfg.continual is not None else 0
    on_server, fresh = executor(exp, server), executor(exp, make(cfg.algorithm.params, cfg.train, seed=cfg.seed))
    for r in (first, first + 1):
        job = server.client_job(state, 0, r)
        a, b = on_server.run_one(job), fresh.run_one(job)
        assert not hasattr(a, "error") and not hasattr(b, "error"), getattr(a, "error", getattr(b, "error", None))
        (ua, na, ma), (ub, nb, mb) = comparable(a), comparable(b)
        assert ua.keys() == ub.keys() and all(torch.equal(ua[k], ub[k]) for k in ua), name
        assert (na, ma) == (nb, mb)
    state_a, state_b = on_server.client_store.get(0), fresh.client_store.get(0)
    assert state_a.keys() == state_b.keys()
    for key, value in state_a.items():
        assert torch.equal(value, state_b[key]) if isinstance(value, torch.Tensor) else value == state_b[key]
