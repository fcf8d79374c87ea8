"""Crash safety: SIGKILL mid-round, resume, and end bit-for-bit where an uninterrupted run ends."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fedforge
from fedforge.tracking.query import load_events, load_rounds, load_runs

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["configs/digits_fedavg.yaml", "train.rounds=8", "data.num_clients=6", "eval.every=2"]


def cli(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "fedforge", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def rounds_done(db: Path, run_id: str) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM rounds WHERE run_id = ?", (run_id,)).fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt")


def assert_same_weights(a: Path, b: Path):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def reference_and_killed_victim(args: list[str], runs_dir: Path, after_rounds: int, patience: float = 120):
    """Start a reference run and a victim run of `args`; SIGKILL the victim once it has stored
    `after_rounds` rounds (the next is then in flight). Returns the still running reference."""
    reference = cli("run", *args, f"tracking.runs_dir={runs_dir}", "tracking.name=reference", "--quiet")
    victim = cli("run", *args, f"tracking.runs_dir={runs_dir}", "tracking.name=victim", "--quiet")
    deadline = time.monotonic() + patience
    while rounds_done(runs_dir / "runs.db", "victim") < after_rounds:
        assert victim.poll() is None, victim.stderr.read()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    return reference


STATEFUL = [*ARGS, "algorithm.name=scaffold", "train.clients_per_round=3", "engine.client_store=disk"]
SLOW_CLIENTS = "system={profile: {kind: lognormal, sigma: 1}, deadline: 0.5, straggler_ratio: 0.3}"
STRAGGLERS = [*ARGS, "train.clients_per_round=4", SLOW_CLIENTS]
ASYNCHRONOUS = [*ARGS, "algorithm={name: fedbuff, buffer_size: 2, concurrency: 4}", "system={profile: {kind: real}}"]
WIDTHS = [*ARGS, "algorithm.name=fedrolex", "train.clients_per_round=4"]  # the window and BN statistics per width
PRUNING = [  # the mask and the weights marked for extrusion are server state, mid-extrusion at the kill
    *ARGS, "model.norm=none", "algorithm={name: fedmef, adjust_every: 2, adjust_until: 1.0, extrusion_rounds: 2}",
]  # fmt: skip
PRIVATE = [  # the adaptive clip is server state; secure aggregation's masks cancel whatever keys were drawn
    *ARGS, "model.norm=none", "train.clients_per_round=4", "secure_aggregation={dropout_rate: 0.25}",
    "privacy={clip: 0.5, noise_multiplier: 0.5, adaptive_clip: {count_stddev: 1}}",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [ARGS, STATEFUL, STRAGGLERS, ASYNCHRONOUS, PRIVATE, WIDTHS, PRUNING],
    ids=["fedavg", "scaffold-disk-store", "stragglers", "fedbuff", "dp-secagg", "fedrolex", "fedmef"],
)
def test_sigkill_mid_round_then_resume_matches_uninterrupted_run(runs_dir, args):
    reference = reference_and_killed_victim(args, runs_dir, after_rounds=3)  # round 4 is in flight
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    killed_at = rounds_done(runs_dir / "runs.db", "victim")
    assert killed_at < 8 and not (runs_dir / "victim" / "summary.json").exists()

    resumed = cli("resume", runs_dir / "victim", "--quiet")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "final accuracy" in out

    assert_same_weights(runs_dir / "victim", runs_dir / "reference")
    victim_rounds = load_rounds(runs_dir / "victim")
    assert [r["round"] for r in victim_rounds] == list(range(1, 9))  # every round exactly once, 1-based
    ref_rounds = load_rounds(runs_dir / "reference")
    assert [r["global_accuracy"] for r in victim_rounds] == [r["global_accuracy"] for r in ref_rounds]
    resumes = [e for e in load_events(runs_dir / "victim") if e["kind"] == "resume"]
    assert len(resumes) == 1 and "resumed after round" in resumes[0]["reason"]


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_prints_the_resume_command(runs_dir):
    reference = cli("run", *ARGS, f"tracking.runs_dir={runs_dir}", "tracking.name=reference", "--quiet")
    victim = cli("run", *ARGS, f"tracking.runs_dir={runs_dir}", "tracking.name=victim")
    deadline = time.monotonic() + 120
    while rounds_done(runs_dir / "runs.db", "victim") < 3:
        assert victim.poll() is None, victim.stderr.read()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGINT)
    out, err = victim.communicate(timeout=120)
    assert victim.returncode == 130, err
    assert "Traceback" not in err
    done = rounds_done(runs_dir / "runs.db", "victim")
    assert f"interrupted during round {done + 1} of 8 ({done} completed)" in err
    assert f"the last checkpoint holds round {done}" in err  # checkpoint.every 1: the last completed round
    command = next(line for line in err.splitlines() if line.startswith("resume with: ")).removeprefix("resume with: ")
    assert command == f"fedforge resume {runs_dir / 'victim'}"
    (run,) = [r for r in load_runs(runs_dir) if r["name"] == "victim"]
    assert run["status"] == "interrupted"
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    resumed = cli(*command.split()[1:], "--quiet")  # the printed command, verbatim
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert_same_weights(runs_dir / "victim", runs_dir / "reference")
    assert [r["round"] for r in load_rounds(runs_dir / "victim")] == list(range(1, 9))
    (run,) = [r for r in load_runs(runs_dir) if r["name"] == "victim"]
    assert run["status"] == "finished"


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_and_still_matches(runs_dir):
    common = {
        "data": {"num_clients": 6},
        "train": {"rounds": 6, "local_epochs": 1},
        "tracking": {"runs_dir": str(runs_dir)},
        "checkpoint": {"keep": 3},
        "backend": {"device": "cpu"},
    }
    reference = fedforge.run(quiet=True, **{**common, "tracking": {**common["tracking"], "name": "ref"}})
    broken = fedforge.run(quiet=True, **{**common, "tracking": {**common["tracking"], "name": "broken"}})
    ckpts = sorted((broken.run_dir / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in ckpts] == ["round-000004.ckpt", "round-000005.ckpt", "round-000006.ckpt"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:1000])  # truncated newest checkpoint
    (broken.run_dir / "model.pt").unlink()
    # Simulate the crash: the last two rounds must run again from round 4's checkpoint.
    resumed = fedforge.resume(broken.run_dir, quiet=True)
    assert_same_weights(resumed.run_dir, reference.run_dir)
    assert resumed.final_accuracy == reference.final_accuracy
    events = load_events(broken.run_dir)
    skipped = [e for e in events if e["kind"] == "checkpoint_skipped"]
    assert len(skipped) == 1 and "round-000006.ckpt" in skipped[0]["reason"]
    assert [r["round"] for r in load_rounds(broken.run_dir)] == list(range(1, 7))


def test_resume_errors_are_clear(tmp_path, runs_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "fedforge", "resume", tmp_path / "nope"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2 and "not a run directory" in proc.stderr and "Traceback" not in proc.stderr

    result = fedforge.run(quiet=True, train={"rounds": 2, "local_epochs": 1}, tracking={"runs_dir": str(runs_dir)})
    db = runs_dir / "runs.db"
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 1000)
    proc = subprocess.run(
        [sys.executable, "-m", "fedforge", "resume", result.run_dir], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 2 and str(db) in " ".join(proc.stderr.split()) and "Traceback" not in proc.stderr


def test_resuming_a_finished_run_changes_nothing(runs_dir):
    done = fedforge.run(quiet=True, train={"rounds": 2, "local_epochs": 1}, tracking={"runs_dir": str(runs_dir)})
    before = (done.run_dir / "summary.json").read_text()
    again = fedforge.resume(done.run_dir, quiet=True)
    assert again.summary == done.summary and (done.run_dir / "summary.json").read_text() == before
    assert [e for e in load_events(done.run_dir) if e["kind"] == "resume"] == []
    assert torch.equal(again.model.state_dict()["0.weight"], done.model.state_dict()["0.weight"])


@pytest.mark.slow
def test_a_crashed_run_resumes_its_server_optimizer_state_exactly(runs_dir, tmp_path):
    """FedAdam's moments live in the checkpoint: a run that crashed in round 2 and resumed ends with
    the uninterrupted run's weights (a lost or reset state would not)."""
    from fedforge.algorithms import register
    from fedforge.algorithms.fedavg import FedAvg
    from fedforge.engine.federation import AllClientsFailed

    healthy = tmp_path / "healthy"

    @register("fedavg_crash_once", replace=True)
    class CrashOnce(FedAvg):
        def local_update(self, ctx, job):
            if job.round == 2 and not healthy.exists():
                raise RuntimeError("simulated crash")
            return super().local_update(ctx, job)

    settings = {
        "algorithm": {"name": "fedavg_crash_once"},
        "server_opt": {"name": "adam", "lr": 0.01},
        "aggregation": {"name": "trimmed_mean", "beta": 0.1},
        "train": {"rounds": 4, "local_epochs": 1},
        "tracking": {"runs_dir": str(runs_dir)},
        "backend": {"device": "cpu"},
    }
    with pytest.raises(AllClientsFailed):
        fedforge.run(quiet=True, **settings, **{"tracking.name": "crashed"})
    healthy.touch()
    resumed = fedforge.resume(runs_dir / "crashed", quiet=True)
    reference = fedforge.run(quiet=True, **settings, **{"tracking.name": "reference"})
    assert_same_weights(resumed.run_dir, reference.run_dir)
    assert resumed.final_accuracy == reference.final_accuracy


DETECTION_ARGS = [
    "configs/scenes_detection_fedavg.yaml", "train.rounds=6", "eval.every=3", "data.train_fraction=0.15",
    "model.width=8", "model.head_channels=32", "train.batch_size=8",
]  # fmt: skip


@pytest.mark.slow
def test_a_killed_detection_run_resumes_bit_identical(runs_dir):
    reference = reference_and_killed_victim(DETECTION_ARGS, runs_dir, after_rounds=2, patience=300)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    assert not (runs_dir / "victim" / "summary.json").exists()
    resumed = cli("resume", runs_dir / "victim", "--quiet")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "final mAP@0.5" in out
    assert_same_weights(runs_dir / "victim", runs_dir / "reference")
    victim_rounds, ref_rounds = load_rounds(runs_dir / "victim"), load_rounds(runs_dir / "reference")
    assert [r["round"] for r in victim_rounds] == list(range(1, 7))
    assert [r["global_accuracy"] for r in victim_rounds] == [r["global_accuracy"] for r in ref_rounds]
