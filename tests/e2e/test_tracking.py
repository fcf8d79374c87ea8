"""Reports, sinks and events as a user sees them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import fedforge
from fedforge.algorithms.fedavg import FedAvg
from fedforge.engine.federation import AllClientsFailed
from fedforge.tracking import load_events, load_rounds, load_runs

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def quick(runs_dir, **extra):
    return {
        "train": {"rounds": 3, "local_epochs": 1},
        "tracking": {"runs_dir": str(runs_dir)},
        "backend": {"device": "cpu"},
        **extra,
    }


def test_report_on_three_methods_matches_the_database(runs_dir, tmp_path):
    run_dirs = []
    for method in ("fedavg", "fedprox", "fedbn"):
        result = fedforge.run(
            f"configs/digits_{method}.yaml",
            quiet=True,
            **quick(runs_dir, tracking={"runs_dir": str(runs_dir), "name": method}),
        )
        run_dirs.append(result.run_dir)
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "fedforge", "report", *run_dirs, "--out", out, "--target", "0.5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(p.name for p in out.glob("*.png"))
    # the three configs split the data identically: one partition map, not three copies
    assert pngs == ["accuracy_vs_bytes.png", "accuracy_vs_round.png", "client_accuracy.png", "partition_1.png"]
    for name in pngs:
        assert (out / name).read_bytes().startswith(PNG), name
        assert_looks_like_a_plot(out / name)

    table = (out / "report.md").read_text()
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
        for line in table.splitlines()
        if re.match(r"\| fed", line)
    }
    assert set(rows) == {"fedavg", "fedprox", "fedbn"}
    assert rows["fedprox"][2] == "mu=0.01"
    assert "`partition_1.png`: fedavg, fedprox, fedbn" in table
    for run in load_runs(runs_dir):
        row, summary = rows[run["name"]], run["summary"]
        assert row[1] == run["algorithm"]
        assert row[5] == f"{summary['final_accuracy']:.4f}"
        assert row[6] == f"{summary['best_accuracy']:.4f}"
        assert row[7] == f"{summary['final_personalized_accuracy']:.4f}"
        assert row[8] == f"{summary['final_worst10_accuracy']:.4f}"
        rounds = load_rounds(runs_dir, run["run_id"])
        reached = next(r["round"] for r in rounds if r["global_accuracy"] >= 0.5)  # rounds are 1-based
        assert row[9] == str(reached)
        assert row[10] == str(len(rounds))
        assert row[11] == "-"  # no privacy section: no epsilon
        assert row[12] == f"{summary['wall_seconds']:.1f}"


def assert_looks_like_a_plot(path: Path) -> None:
    """A readable figure: a sensible size, and coloured marks (curves, points, cells) inside
    its axes area rather than an empty frame."""
    import matplotlib.image

    image = matplotlib.image.imread(path)[..., :3]
    height, width = image.shape[:2]
    assert 300 <= height <= 3000 and 400 <= width <= 4000, (path.name, image.shape)
    inner = image[height // 8 : -height // 8, width // 8 : -width // 8]
    coloured = (inner.max(axis=2) - inner.min(axis=2)) > 0.25  # not white, grey or black
    assert coloured.mean() > 0.003, f"{path.name}: no coloured marks inside the axes"
    assert (inner.mean(axis=2) < 0.9).mean() > 0.01, f"{path.name}: almost blank"


def test_runs_command_lists_runs(runs_dir):
    fedforge.run(quiet=True, **quick(runs_dir, tracking={"runs_dir": str(runs_dir), "name": "listed"}))
    proc = subprocess.run(
        [sys.executable, "-m", "fedforge", "runs", runs_dir],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert "listed" in proc.stdout and "finished" in proc.stdout and "fedavg" in proc.stdout
    summary = load_runs(runs_dir)[0]["summary"]
    assert f"{summary['final_accuracy']:.4f}" in proc.stdout


def test_dropouts_rejections_and_failures_are_events(runs_dir):
    class Flaky(FedAvg):
        name = "flaky"

        def local_update(self, ctx, job):
            if job.client_id == 1:
                raise RuntimeError("disk full on client 1")
            return super().local_update(ctx, job)

    result = fedforge.run(
        quiet=True, algorithm=Flaky, **quick(runs_dir, train={"rounds": 3, "local_epochs": 1, "dropout_rate": 0.3})
    )
    events = load_events(result.run_dir)
    kinds = {e["kind"] for e in events}
    assert {"dropout", "client_failed"} <= kinds
    failed = [e for e in events if e["kind"] == "client_failed"]
    assert all(e["client_id"] == 1 and "disk full" in e["reason"] for e in failed)
    assert result.final_accuracy > 0.3

    tight = fedforge.run(quiet=True, **quick(runs_dir, validation={"max_update_norm": 1e-6}))
    rejected = [e for e in load_events(tight.run_dir) if e["kind"] == "rejected_update"]
    assert len(rejected) == 30 and "max_update_norm" in rejected[0]["reason"]
    assert tight.summary["rejected_updates"] == 30


def test_a_round_where_every_client_fails_stops_the_run(runs_dir):
    class Broken(FedAvg):
        name = "broken"

        def local_update(self, ctx, job):
            raise ValueError("bug in my method")

    with pytest.raises(AllClientsFailed, match="bug in my method"):
        fedforge.run(quiet=True, algorithm=Broken, **quick(runs_dir))
    assert load_runs(runs_dir)[0]["status"] == "failed"


def test_tensorboard_sink_writes_every_round(runs_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fedforge.run(quiet=True, **quick(runs_dir, tracking={"runs_dir": str(runs_dir), "tensorboard": True}))
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "global/accuracy",
        "global/loss",
        "clients/accuracy_mean",
        "clients/accuracy_worst10",
        "comm/bytes_up",
        "comm/bytes_down",
        "time/round_seconds",
    } <= tags
    accuracy = events.Scalars("global/accuracy")
    assert [s.step for s in accuracy] == [1, 2, 3]  # steps are the 1-based round numbers
    assert accuracy[-1].value == pytest.approx(result.final_accuracy)


def test_mlflow_sink_logs_params_and_metrics_to_a_local_store(runs_dir):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    result = fedforge.run(quiet=True, **quick(runs_dir, tracking={"runs_dir": str(runs_dir), "mlflow": True}))
    client = MlflowClient(f"sqlite:///{(runs_dir / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("fedforge")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == result.run_dir.name and run.info.status == "FINISHED"
    assert run.data.params["algorithm.name"] == "fedavg" and run.data.params["train.rounds"] == "3"
    history = client.get_metric_history(run.info.run_id, "global_accuracy")
    assert [m.step for m in history] == [1, 2, 3]
    assert history[-1].value == pytest.approx(result.final_accuracy)
    assert {"clients_accuracy_mean", "comm_bytes_up", "time_round_seconds"} <= set(run.data.metrics)


@pytest.mark.slow
def test_attackers_are_stored_and_the_report_shows_aggregation_and_attack(runs_dir, tmp_path):
    from fedforge.tracking.report import write_report

    attacked = fedforge.run(
        quiet=True,
        **quick(runs_dir, tracking={"runs_dir": str(runs_dir), "name": "attacked"}),
        aggregation={"name": "krum", "f": 2},
        server_opt={"name": "avgm", "momentum": 0.5},
        attack={"kind": "sign_flip", "fraction": 0.2, "strength": 5.0},
    )
    plain = fedforge.run(quiet=True, **quick(runs_dir, tracking={"runs_dir": str(runs_dir), "name": "plain"}))
    events = [e for e in load_events(attacked.run_dir) if e["kind"] == "byzantine"]
    assert len(events) == 3 * 2 and all(e["reason"] == "simulated attack: sign_flip" for e in events)
    text = (write_report([attacked.run_dir, plain.run_dir], tmp_path / "report").folder / "report.md").read_text()
    section = text.split("## Aggregation and attacks", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| attacked"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:5] == ["krum(f=2)", "avgm(lr=1.0, momentum=0.5)", "sign_flip(fraction=0.2, strength=5.0)", "6"]
    assert "| plain" not in section  # plain mean, no attack: nothing to say
