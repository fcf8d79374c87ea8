"""The Python API end to end: learning, outputs on disk, determinism, user algorithms."""

import copy
import json
import sqlite3

import pytest
import torch
import yaml

import fedforge
from fedforge.algorithms import ServerState, register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.engine.weights import FlatModel


def test_default_run_learns_and_writes_its_outputs(quick, runs_dir):
    result = fedforge.run(quiet=True, **{**quick, "tracking": {"runs_dir": str(runs_dir), "name": "api"}})
    assert result.run_dir == runs_dir / "api"
    assert result.final_accuracy > 0.6  # 3 short rounds; chance is 0.1 (the demo test asks for 0.94)

    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["algorithm"] == {"name": "fedavg"}
    assert config["data"]["partition"] == {"kind": "dirichlet", "alpha": 0.5, "min_samples": 10}
    assert config["train"]["rounds"] == 3 and config["train"]["clients_per_round"] == 10

    partition = json.loads((result.run_dir / "partition.json").read_text())
    assert partition["kind"] == "dirichlet" and len(partition["clients"]) == 10
    all_ids = [i for c in partition["clients"] for i in c["train"] + c["test"]]
    assert len(all_ids) == len(set(all_ids)) == 1437  # digits' training split, no overlap

    summary = json.loads((result.run_dir / "summary.json").read_text())
    for key in (
        "final_accuracy",
        "best_accuracy",
        "rounds",
        "wall_seconds",
        "train_seconds",
        "bytes_down",
        "bytes_up",
        "seed",
    ):
        assert key in summary
    assert summary["rounds"] == 3 and summary["seed"] == 0
    assert summary["best_accuracy"] >= summary["final_accuracy"] == result.final_accuracy
    model_floats = sum(p.numel() for p in result.model.parameters()) + sum(
        b.numel() for b in result.model.buffers() if b.is_floating_point()
    )
    vector_floats = flat_size(result.model)  # the model's floats plus < 16 alignment floats per tensor
    assert model_floats <= vector_floats < model_floats + 16 * len(result.model.state_dict())
    assert summary["bytes_down"] == summary["bytes_up"] == 3 * 10 * 4 * vector_floats

    state = torch.load(result.run_dir / "model.pt")
    assert set(state) <= set(result.model.state_dict())

    db = sqlite3.connect(runs_dir / "runs.db")
    rounds = db.execute(
        "SELECT round, global_accuracy, bytes_up FROM rounds WHERE run_id='api' ORDER BY round"
    ).fetchall()
    assert [r[0] for r in rounds] == [1, 2, 3]  # stored 1-based
    assert rounds[-1][1] == pytest.approx(result.final_accuracy)
    assert sum(r[2] for r in rounds) == summary["bytes_up"]
    trained = db.execute("SELECT COUNT(*) FROM client_rounds WHERE run_id='api' AND trained=1").fetchone()[0]
    assert trained == 30
    status, stored = db.execute("SELECT status, summary FROM runs WHERE run_id='api'").fetchone()
    assert status == "finished" and json.loads(stored)["final_accuracy"] == result.final_accuracy


def flat_size(model: torch.nn.Module) -> int:
    """Floats in the flat weight vector that travels each round (tensors start 64-byte aligned)."""
    return FlatModel(copy.deepcopy(model)).layout.size


def test_same_seed_same_weights_other_seed_other_weights(quick, runs_dir):
    runs = [fedforge.run(quiet=True, seed=s, **quick) for s in (7, 7, 8)]
    weights = [torch.load(r.run_dir / "model.pt") for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert runs[0].summary["final_accuracy"] == runs[1].summary["final_accuracy"]
    assert not torch.equal(weights[0]["0.weight"], weights[2]["0.weight"])
    assert runs[0].run_dir != runs[1].run_dir  # never overwrites an earlier run


def test_partial_participation_and_dotted_overrides(quick):
    result = fedforge.run(quiet=True, **quick, **{"data.num_clients": 20, "train.clients_per_round": 5})
    assert result.config.train.clients_per_round == 5
    assert result.summary["bytes_down"] == 3 * 5 * 4 * flat_size(result.model)


def test_config_file_plus_overrides(quick):
    result = fedforge.run("configs/digits_fedprox.yaml", quiet=True, **quick, algorithm={"name": "fedprox", "mu": 0.1})
    assert result.config.algorithm.params.mu == 0.1 and result.config.algorithm.name == "fedprox"


def test_errors_surface_as_fedforge_errors(quick):
    with pytest.raises(fedforge.ConfigError, match="train.rouds"):
        fedforge.run(quiet=True, **quick, **{"train.rouds": 3})


@register("fedavgm")
class FedAvgM(FedAvg):
    """FedAvg with server momentum, written by hand (the README's example before `server_opt: avgm`)."""

    class Params(fedforge.HyperParams):
        beta: float = 0.9

    def apply_mean(self, state, mean, round_index):
        velocity = self.params.beta * state.extras.get("velocity", 0) + (state.weights - mean)
        return ServerState(state.weights - velocity, {"velocity": velocity})


def parameters(result):
    return torch.cat([p.detach().flatten() for p in result.model.parameters()])


def test_user_defined_algorithm_by_name_and_by_class(quick):
    by_name = fedforge.run(quiet=True, **quick, algorithm={"name": "fedavgm", "beta": 0.5})
    assert by_name.config.algorithm.params.beta == 0.5
    assert by_name.final_accuracy > 0.5
    built_in = fedforge.run(quiet=True, **quick, server_opt={"name": "avgm", "lr": 1.0, "momentum": 0.5})
    # The built-in is that arithmetic exactly, on the parameters; BN statistics take the mean instead
    # of a momentum step (a stepped running variance could turn negative). Training mode never reads them.
    assert torch.equal(parameters(built_in), parameters(by_name))
    without_momentum = fedforge.run(quiet=True, **quick, algorithm={"name": "fedavgm", "beta": 0.0})
    plain = fedforge.run(quiet=True, **quick)  # beta 0 is FedAvg up to float rounding of w - (w - mean)
    assert without_momentum.final_accuracy == pytest.approx(plain.final_accuracy, abs=0.02)

    class Plain(FedAvg):
        name = "plain_from_class"

    by_class = fedforge.run(quiet=True, **quick, algorithm=Plain)
    reference = fedforge.run(quiet=True, **quick)
    assert by_class.config.algorithm.name == "plain_from_class"
    assert by_class.final_accuracy == reference.final_accuracy
    with pytest.raises(fedforge.ConfigError, match="algorithm.betta"):
        fedforge.run(quiet=True, **quick, algorithm={"name": "fedavgm", "betta": 0.5})


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "minimum"), [("fedavg", 0.94), ("fedprox", 0.94), ("fedbn", 0.9)])
def test_every_method_learns_digits(algorithm, minimum, runs_dir):
    result = fedforge.run(
        f"configs/digits_{algorithm}.yaml", quiet=True, tracking={"runs_dir": str(runs_dir)}, backend={"device": "cpu"}
    )
    assert result.summary["final_personalized_accuracy"] >= minimum
    if algorithm != "fedbn":
        assert result.final_accuracy >= minimum
