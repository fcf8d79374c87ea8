"""Every script in examples/ runs as a user would run it, and does what its docstring says."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
CHECKS = {  # what each example must print, beyond exiting cleanly
    "compare_methods.py": ["fedavg", "fedprox", "fedbn", "worst 10%", "report: report/compare/report.md"],
    "warm_start.py": ["pretrained on dirichlet(0.5)", "round 1: cold start"],
}


def test_every_example_is_checked():
    assert {p.name for p in EXAMPLES} == set(CHECKS)


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    for expected in CHECKS[script.name]:
        assert expected in proc.stdout, (expected, proc.stdout)
    if script.name == "compare_methods.py":
        table = (tmp_path / "report" / "compare" / "report.md").read_text()
        assert "| worst 10% |" in table and table.count("| shards(classes_per_client=2) |") == 3
    if script.name == "warm_start.py":
        cold, warm = (float(x) for x in proc.stdout.split("round 1: cold start ")[1].split("\n")[0].split(", warm "))
        assert warm > cold + 0.2  # starting from the pretrained model is visibly ahead after one round
