"""Multi-domain federations end to end on the offline digits-domains set."""

import pytest

import fedforge
from fedforge.tracking import load_domain_rounds


def run(method, runs_dir, **overrides):
    return fedforge.run(
        f"configs/digits_domains_{method}.yaml",
        quiet=True,
        tracking={"runs_dir": str(runs_dir)},
        backend={"device": "cpu"},
        **overrides,
    )


@pytest.mark.slow
def test_fedbn_and_fedwon_beat_fedavg_on_digits_domains(runs_dir):
    results = {m: run(m, runs_dir) for m in ("fedavg", "fedbn", "fedwon")}
    mean = {m: r.summary["final_domain_mean_accuracy"] for m, r in results.items()}
    assert mean["fedbn"] > mean["fedavg"] + 0.03, mean
    assert mean["fedwon"] > mean["fedavg"] + 0.03, mean
    rows = load_domain_rounds(results["fedwon"].run_dir)
    assert {r["domain"] for r in rows} == {"original", "inverted", "colored", "rotated-noisy", "blurred-faded"}
    final = {r["domain"]: r["accuracy"] for r in rows if r["round"] == 20}
    assert final == pytest.approx(results["fedwon"].summary["final_domain_accuracy"])


def test_fedwon_trains_with_batch_size_one(runs_dir):
    # One sample per step: no batch statistics needed, so nothing breaks and it learns (chance is 0.1).
    result = run("fedwon", runs_dir, train={"rounds": 3, "local_epochs": 1, "batch_size": 1, "lr": 0.003})
    assert result.summary["final_domain_mean_accuracy"] > 0.4
