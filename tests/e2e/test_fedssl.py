"""FedSSL end to end: learning from unlabeled clients, what is stored, resume with client state."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fedforge
from fedforge.api import Experiment, resolve_config
from fedforge.tracking.query import load_events, load_metrics, load_rounds

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "digits_fedssl.yaml")


def random_init_metrics(**overrides):
    return Experiment(resolve_config(CONFIG, overrides)).initial_metrics()


@pytest.mark.slow
def test_fedsimsiam_beats_the_random_encoder_and_stores_probe_and_knn(runs_dir):
    # IID clients learn fastest; the non-IID comparison of all methods is benchmarks/fedssl.py.
    common = {
        "train": {"rounds": 10, "local_epochs": 5},
        "eval": {"every": 5},
        "algorithm": {"name": "fedsimsiam"},
        "data": {"partition": {"kind": "iid"}},
    }
    result = fedforge.run(CONFIG, quiet=True, tracking={"runs_dir": str(runs_dir)}, **common)
    baseline = random_init_metrics(**common)
    # measured: probe 0.975 (2 threads) / 0.981 (1 thread) vs 0.956; the margin is the claim
    assert result.final_accuracy > baseline.accuracy + 0.01, (result.final_accuracy, baseline.accuracy)
    assert result.summary["final_metrics"]["knn_accuracy"] > 0.93  # no collapse (random encoder: 0.953)
    assert set(result.summary["final_metrics"]) == {"knn_accuracy"}
    rounds = load_rounds(result.run_dir)
    assert [r["round"] for r in rounds if r["global_accuracy"] is not None] == [5, 10]  # eval.every 5, 1-based
    metrics = load_metrics(result.run_dir)
    global_metrics = {(m["round"], m["name"]) for m in metrics if m["client_id"] is None}
    assert global_metrics == {(5, "knn_accuracy"), (10, "knn_accuracy")}
    # SimSiam sends and receives encoder, projector and predictor, and has no target
    assert rounds[0]["bytes_up"] == rounds[0]["bytes_down"] > 0


@pytest.mark.slow
def test_fedema_resume_restores_lambda_and_local_networks_bit_for_bit(runs_dir):
    common = {
        "train": {"rounds": 4, "local_epochs": 1},
        "eval": {"every": 4},
        "checkpoint": {"keep": 4},
        "tracking": {"runs_dir": str(runs_dir)},
    }
    reference = fedforge.run(CONFIG, quiet=True, **{**common, "tracking": {**common["tracking"], "name": "ref"}})
    broken = fedforge.run(CONFIG, quiet=True, **{**common, "tracking": {**common["tracking"], "name": "broken"}})
    # Crash after round 3: round 4 must run again with the clients' lambda and local networks.
    (broken.run_dir / "checkpoints" / "round-000004.ckpt").unlink()
    (broken.run_dir / "model.pt").unlink()
    (broken.run_dir / "summary.json").unlink()
    resumed = fedforge.resume(broken.run_dir, quiet=True)
    resumes = [e for e in load_events(broken.run_dir) if e["kind"] == "resume"]
    assert [(e["round"], e["reason"].split(" from ")[0]) for e in resumes] == [(4, "resumed after round 3")]
    ref_weights, new_weights = torch.load(reference.run_dir / "model.pt"), torch.load(resumed.run_dir / "model.pt")
    assert all(torch.equal(ref_weights[k], new_weights[k]) for k in ref_weights)
    decays = {
        m["client_id"]: m["value"] for m in load_metrics(broken.run_dir) if m["name"] == "ema_decay" and m["round"] == 4
    }
    ref_decays = {
        m["client_id"]: m["value"]
        for m in load_metrics(reference.run_dir)
        if m["name"] == "ema_decay" and m["round"] == 4
    }
    assert decays == ref_decays and len(decays) == 5 and all(0 < d <= 1 for d in decays.values())


def test_cli_runs_fedssl_and_lists_tasks(runs_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "fedforge", "run", CONFIG, "train.rounds=1", "train.local_epochs=1",
         "algorithm.name=fedu", f"tracking.runs_dir={runs_dir}", "--quiet"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "final linear-probe accuracy:" in proc.stdout and "further metrics: knn_accuracy" in proc.stdout
    listed = subprocess.run([sys.executable, "-m", "fedforge", "list"], capture_output=True, text=True, cwd=ROOT)
    for name in ("ssl", "fedema", "fedu", "fedbyol", "fedsimsiam", "fedsimclr", "fedmoco"):
        assert name in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fedforge", "run", CONFIG, "algorithm.name=fedavg", f"tracking.runs_dir={runs_dir}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert (
        bad.returncode == 2 and "task.name" in bad.stderr and "'fedavg' trains the 'classification' task" in bad.stderr
    )
