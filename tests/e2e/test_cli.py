"""The command line as a user meets it: output, exit codes, one-paragraph errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def fedforge(*args, cwd=ROOT, timeout=600):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "fedforge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def test_run_prints_run_directory_and_final_accuracy(runs_dir):
    proc = fedforge("run", "train.rounds=2", "train.local_epochs=1", f"tracking.runs_dir={runs_dir}", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    run_dir = Path(lines[0].removeprefix("run directory: "))
    assert run_dir.parent == runs_dir and (run_dir / "summary.json").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"final accuracy: {summary['final_accuracy']:.4f}" in lines[1]
    assert proc.stderr == ""  # --quiet: no progress bar


def test_a_continual_run_prints_its_scores_and_synthesis_cost(runs_dir):
    tiny = ["continual.tasks=2", "continual.rounds_per_task=2", "algorithm.synthesis_rounds=2", "algorithm.warmup=1",
            "algorithm.generator_steps=3", "algorithm.student_steps=2", "train.local_epochs=1"]  # fmt: skip
    proc = fedforge("run", "configs/digits_continual_target.yaml", *tiny, f"tracking.runs_dir={runs_dir}", "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(
        (Path(proc.stdout.splitlines()[0].removeprefix("run directory: ")) / "summary.json").read_text()
    )
    c = summary["continual"]
    assert f"average accuracy {c['average_accuracy']:.4f}" in proc.stdout and "over 2 tasks" in proc.stdout
    assert f"synthesis after task 0: {summary['synthesis'][0]['seconds']:.1f} s, 256 images" in proc.stdout


def test_progress_bar_shows_round_and_accuracy(runs_dir):
    proc = fedforge("run", "train.rounds=2", "train.local_epochs=1", f"tracking.runs_dir={runs_dir}")
    assert proc.returncode == 0
    assert "round" in proc.stderr and "2/2" in proc.stderr and "accuracy 0." in proc.stderr
    assert "client mean 0." in proc.stderr  # the headline per client, named as the task names it


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["data.partiton.alpha=1"], ["data.partiton", "did you mean 'partition'"]),
        (["train.rounds=many"], ["train.rounds", "integer"]),
        (["data.partition.alpha=0"], ["data.partition.alpha", "greater than 0"]),
        (["data.num_clients=100000"], ["data.num_clients=100000", "training samples"]),
        (["train.clients_per_round=11"], ["train.clients_per_round", "data.num_clients=10"]),
        (["data.name=imagenet"], ["unknown dataset 'imagenet'", "known datasets:", "digits"]),
        (["model.name=vgg"], ["unknown model 'vgg'", "known models:", "resnet18"]),
        (["algorithm.name=fedmagic"], ["unknown algorithm 'fedmagic'", "known algorithms:", "scaffold"]),
        (["data.name=mnist", "data.root=/nonexistent/data"], ["/nonexistent/data", "data.download=true"]),
        (["missing.yaml"], ["missing.yaml", "does not exist"]),
        (["oops"], ["oops", "does not exist"]),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(args, fragments, runs_dir):
    proc = fedforge("run", *args, f"tracking.runs_dir={runs_dir}", "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    message = " ".join(proc.stderr.split())
    assert message.startswith("error:")
    for fragment in fragments:
        assert fragment in message, message
    assert not runs_dir.exists()  # nothing half-created


def test_list_shows_every_registry_with_parameters():
    proc = fedforge("list")
    assert proc.returncode == 0
    for word in (
        "digits",
        "fashion-mnist",
        "cifar10",
        "dirichlet",
        "alpha=0.5",
        "shards",
        "cnn",
        "resnet18",
        "mobilenet_v3_small",
        "fedavg",
        "fedprox",
        "mu=0.01",
        "fedbn",
        "sequential",
    ):
        assert word in proc.stdout, word


def test_partition_prints_histograms_and_draws_a_heat_map(tmp_path):
    png = tmp_path / "heat.png"
    proc = fedforge("partition", "configs/digits_fedavg.yaml", "data.num_clients=4", "--plot", png)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.strip().startswith("│")]
    assert len(rows) == 4
    counts = [int(row.split("│")[2]) for row in rows]
    label_sums = [sum(int(v) for v in row.split("│")[4].split()) for row in rows]
    assert counts == label_sums
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_demo_command_reaches_094_on_digits(runs_dir):
    """What `make demo` runs: FedAvg, digits, 10 clients, Dirichlet 0.5, 20 rounds, 2 local epochs."""
    proc = fedforge("run", "configs/digits_fedavg.yaml", f"tracking.runs_dir={runs_dir}", "--quiet")
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.splitlines()[0].removeprefix("run directory: "))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rounds"] == 20 and summary["final_accuracy"] >= 0.94  # its speed: benchmarks/overhead.py


@pytest.mark.slow
def test_fashion_mnist_official_split_reaches_080(runs_dir):
    if not FASHION_MNIST.is_dir():
        if os.environ.get("CI") or os.environ.get("FEDFORGE_REQUIRE_DATASETS"):
            pytest.fail(f"{FASHION_MNIST} is missing in CI: .ci/run must apt-get install dataset-fashion-mnist")
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    proc = fedforge(
        "run",
        "configs/fmnist_fedavg.yaml",
        "model.width=16",
        "data.root=/nonexistent",
        f"tracking.runs_dir={runs_dir}",
        "--quiet",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.splitlines()[0].removeprefix("run directory: "))
    summary = json.loads((run_dir / "summary.json").read_text())
    partition = json.loads((run_dir / "partition.json").read_text())
    assert sum(len(c["train"]) + len(c["test"]) for c in partition["clients"]) == 60000  # official train split
    assert summary["rounds"] == 5 and summary["final_accuracy"] >= 0.80


def test_config_prints_the_resolved_config_as_annotated_yaml():
    import yaml

    from fedforge.config import load_config

    proc = fedforge("config", "configs/digits_fedprox.yaml", "algorithm.mu=0.3")
    assert proc.returncode == 0, proc.stderr
    assert "mu: 0.3  # proximal coefficient" in proc.stdout
    parsed = yaml.safe_load(proc.stdout)
    assert parsed == load_config("configs/digits_fedprox.yaml", ["algorithm.mu=0.3"]).to_dict()


def test_a_private_run_prints_its_epsilon_per_round_and_at_the_end(runs_dir):
    proc = fedforge("run", "train.rounds=2", "model.norm=none", "privacy.noise_multiplier=0.8",
                    f"tracking.runs_dir={runs_dir}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(next(Path(runs_dir).glob("*/summary.json")).read_text())
    spent = summary["privacy"]["epsilon"]
    assert f"epsilon {spent:.2f}" in proc.stderr  # the round-2 progress line
    assert f"privacy (central DP): epsilon {spent:.3f} at delta 1e-05, z = 0.8" in proc.stdout
