"""`backend: ray` end to end: the same federation as `sequential`, spread over 2 worker actors."""

import os

import pytest
import torch

import fedforge
from fedforge.algorithms.base import register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.algorithms.fedbn import FedBN
from fedforge.engine.federation import AllClientsFailed
from fedforge.errors import ConfigError
from fedforge.tracking import load_events

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module (executors join it instead of starting their own).

    The sequential side trains with one torch thread, like each worker: float reductions then
    run in the same order on both sides and the weights must match exactly (aggregation sums
    in float64, so how clients are split over workers does not change the average)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=300 * 1024**2)
    yield
    ray.shutdown()
    torch.set_num_threads(threads)


def run(runs_dir, backend, **extra):
    config = {
        "train": {"rounds": 3, "local_epochs": 1},
        "tracking": {"runs_dir": str(runs_dir), "database": True},
        "backend": {"device": "cpu", "threads": 1, **backend},
        **extra,
    }
    return fedforge.run(quiet=True, **config)


def final_weights(result):
    return torch.cat([t.detach().flatten().float() for t in result.model.state_dict().values()])


RAY = {"kind": "ray", "num_workers": 2}


STREAM = {
    "continual": {"tasks": 2, "rounds_per_task": 2, "classes_per_task": 2},
    "data": {"local_test_fraction": 0.0},
    "train": {"local_epochs": 1},
}
TINY_SYNTHESIS = {"synthesis_rounds": 3, "warmup": 1, "generator_steps": 5, "student_steps": 3, "generator_width": 8}


@pytest.mark.parametrize("algorithm", [{"name": "target", **TINY_SYNTHESIS}, {"name": "fedewc"}])
def test_class_continual_methods_on_ray_match_sequential(runs_dir, algorithm):
    """Workers see each round's task shard; the teacher, synthetic set and Fisher travel as extras."""
    config = {"tracking": {"runs_dir": str(runs_dir)}, "backend": {"device": "cpu"}, "algorithm": algorithm, **STREAM}
    seq = fedforge.run(quiet=True, **config)
    par = fedforge.run(quiet=True, **{**config, "backend": {"device": "cpu", **RAY}})
    assert torch.equal(final_weights(par), final_weights(seq))
    assert par.summary["continual"] == seq.summary["continual"]


@pytest.mark.parametrize("method", ["fedavg", "fedbn", "fedprox", "scaffold", "moon", "fedbuff", "fedrolex", "fedmef"])
def test_ray_ends_with_the_sequential_weights(runs_dir, method):
    """SCAFFOLD's control variates and MOON's previous models travel to the workers and back; FedBuff's
    asynchronous loop starts its clients on the workers one by one; FedRolex's sub-models and FedMef's
    active weights come back as parts of the model, summed per position on each worker (FedMef's
    masks travel as uint8 bit sets)."""
    partial = {"train": {"rounds": 3, "local_epochs": 1, "clients_per_round": 5}}  # client state across rounds
    seq = run(runs_dir, {}, algorithm={"name": method}, **partial)
    par = run(runs_dir, RAY, algorithm={"name": method}, **partial)
    assert torch.equal(final_weights(par), final_weights(seq))
    assert par.final_accuracy == seq.final_accuracy
    assert par.summary["bytes_up"] == seq.summary["bytes_up"]
    if method == "fedbn":  # local norm layers went to the workers and came back each round
        assert par.summary["final_personalized_accuracy"] == seq.summary["final_personalized_accuracy"]


@pytest.mark.parametrize(
    "sections",
    [
        {"aggregation": {"name": "krum", "f": 2}, "server_opt": {"name": "adam", "lr": 0.01}},
        {"aggregation": {"name": "median"}, "attack": {"kind": "sign_flip", "strength": 5}},
        {"aggregation": {"name": "centered_clip"}, "server_opt": {"name": "avgm"}, "attack": {"kind": "alie"}},
        {"aggregation": {"name": "geometric_median"}, "attack": {"kind": "gaussian"}},
        {"aggregation": {"name": "trimmed_mean"}, "server_opt": {"name": "yogi"}, "attack": {"kind": "label_flip"}},
        {"aggregation": {"name": "multikrum", "f": 1}, "server_opt": {"name": "adagrad"}, "attack": {"kind": "scale"}},
        {
            "privacy": {"clip": 0.5, "noise_multiplier": 0.5, "adaptive_clip": {"count_stddev": 1}},
            "secure_aggregation": {"dropout_rate": 0.2},
            "model": {"norm": "none"},
        },
    ],
    ids=["krum", "median", "centered_clip", "geometric_median", "trimmed_mean", "multikrum", "dp-secagg"],
)
def test_aggregators_server_optimizers_and_attacks_on_ray_match_sequential(runs_dir, sections):
    seq = run(runs_dir, {}, **sections)
    par = run(runs_dir, RAY, **sections)
    assert torch.equal(final_weights(par), final_weights(seq))
    attackers = [
        [(e["round"], e["client_id"]) for e in load_events(r.run_dir) if e["kind"] == "byzantine"] for r in (seq, par)
    ]
    assert attackers[0] == attackers[1] and (len(attackers[0]) == 3 * 2) == ("attack" in sections)


def test_a_killed_worker_has_its_clients_rerun_elsewhere(runs_dir, tmp_path):
    marker = tmp_path / "killed-once"

    class DiesOnce(FedAvg):
        name = "dies_once"

        def local_update(self, ctx, job):
            if job.round == 1 and job.client_id == 4 and not marker.exists():
                marker.touch()
                os._exit(1)  # the worker process dies mid-round, as on a lost node
            return super().local_update(ctx, job)

    marker.touch()  # the sequential reference run must not kill the test process
    seq = run(runs_dir, {}, algorithm=DiesOnce)
    marker.unlink()
    par = run(runs_dir, RAY, algorithm=DiesOnce)
    assert marker.exists()  # the kill happened
    assert torch.equal(final_weights(par), final_weights(seq))
    assert not [e for e in load_events(par.run_dir) if e["kind"] == "client_failed"]


def test_a_client_that_always_kills_its_worker_fails_alone(runs_dir):
    class Poison(FedAvg):
        name = "poison"

        def local_update(self, ctx, job):
            if job.client_id == 2:
                os._exit(1)
            return super().local_update(ctx, job)

    result = run(runs_dir, {**RAY, "max_attempts": 2}, algorithm=Poison, train={"rounds": 2, "local_epochs": 1})
    failed = [e for e in load_events(result.run_dir) if e["kind"] == "client_failed"]
    assert [(e["round"], e["client_id"]) for e in failed] == [(1, 2), (2, 2)]
    assert "worker died 2 times" in failed[0]["reason"]
    assert result.final_accuracy > 0.3  # the other nine clients still trained


def test_a_crashed_ray_run_resumes_to_the_sequential_weights(runs_dir, tmp_path):
    healthy = tmp_path / "healthy"

    @register("fedbn_crash_once", replace=True)
    class CrashOnce(FedBN):  # client state (local norm layers) must survive the crash too
        def local_update(self, ctx, job):
            if job.round == 2 and not healthy.exists():
                raise RuntimeError("simulated crash")
            return super().local_update(ctx, job)

    rounds = {"rounds": 4, "local_epochs": 1}
    with pytest.raises(AllClientsFailed):
        run(runs_dir, RAY, algorithm={"name": "fedbn_crash_once"}, train=rounds)
    healthy.touch()
    (crashed,) = [d for d in runs_dir.iterdir() if d.is_dir()]
    resumed = fedforge.resume(crashed, quiet=True)
    reference = run(runs_dir, {}, algorithm={"name": "fedbn_crash_once"}, train=rounds)
    assert torch.equal(final_weights(resumed), final_weights(reference))
    assert resumed.summary["final_personalized_accuracy"] == reference.summary["final_personalized_accuracy"]


def test_more_workers_than_the_cluster_holds_is_a_config_error(runs_dir):
    with pytest.raises(ConfigError, match=r"backend.num_workers=3 x backend.cpus_per_worker=1.0 needs 3 CPUs"):
        run(runs_dir, {"kind": "ray", "num_workers": 3})
    with pytest.raises(ConfigError, match="backend.num_worker"):
        run(runs_dir, {"kind": "ray", "num_worker": 2})


TINY_DETECTION = {
    "data": {"name": "scenes", "num_clients": 4, "partition": {"kind": "domain"}, "train_fraction": 0.1},
    "task": {"name": "detection"},
    "model": {"name": "fcos_tiny", "width": 8, "head_channels": 32, "head_convs": 1},
    "train": {"rounds": 3, "local_epochs": 1, "batch_size": 8, "lr": 0.01},
    "eval": {"every": 3},
}


@pytest.mark.parametrize("algorithm", ["fedavg", "fedexchange", "fedbn"])
def test_detection_on_ray_ends_bit_identical_to_sequential(runs_dir, algorithm):
    sections = {**TINY_DETECTION, "algorithm": {"name": algorithm}}
    seq, par = run(runs_dir, {}, **sections), run(runs_dir, RAY, **sections)
    assert torch.equal(final_weights(seq), final_weights(par))
    assert seq.summary["final_metric"] == par.summary["final_metric"]
