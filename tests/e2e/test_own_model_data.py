"""The README's own-model and own-data examples, run verbatim; a plug-in run killed with
SIGKILL resumes from the CLI (its config's imports bring the plug-ins back) bit-identically."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fedforge.tracking.query import load_rounds, load_runs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README.split("## Your own model and data", 1)[1].split("\n## ", 1)[0]
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", SECTION, re.S)
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", SECTION, re.S)


def readme_block(first_line: str) -> str:
    return next(b for b in PYTHON_BLOCKS if b.startswith(first_line))


def fedforge_cli(cwd: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "fedforge", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def readme_command(verb: str) -> list[str]:
    """The README's `fedforge VERB ...` line, as arguments (comments dropped)."""
    line = next(text for text in BASH_BLOCKS[0].splitlines() if text.startswith(f"fedforge {verb} "))
    return line.split("#", 1)[0].split()[1:]


@pytest.mark.slow
def test_readme_python_example_runs_verbatim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = readme_block("import torch")
    printed: list[str] = []
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: printed.append(" ".join(map(str, a)))})
    tensors, dataset = (float(re.search(r"(\d\.\d+)", line).group(1)) for line in printed)
    assert tensors > 0.85 and dataset > 0.85, printed  # TinyNet learns the digits either way
    runs = load_runs(tmp_path / "runs")
    assert {r["config"]["model"]["name"] for r in runs} == {"tinynet"}
    assert {r["config"]["data"]["name"] for r in runs} == {"custom"}
    assert sorted(r["config"]["model"]["width"] for r in runs) == [16, 32]


def rounds_done(runs_dir: Path, run_id: str) -> int:
    try:
        return len(load_rounds(runs_dir / run_id))
    except Exception:  # not created yet, or locked for a moment
        return 0


@pytest.mark.slow
def test_plugin_run_resumes_from_the_cli_after_sigkill(tmp_path):
    (tmp_path / "my_plugins.py").write_text(readme_block("# my_plugins.py"))
    run_args = readme_command("run")
    assert "--import" in run_args and "tracking.name=tinynet-run" in run_args
    extra = ["checkpoint.every=1", "train.local_epochs=3"]
    reference = fedforge_cli(tmp_path, *[a.replace("tinynet-run", "reference") for a in run_args], *extra, "-q")
    victim = fedforge_cli(tmp_path, *run_args, *extra, "-q")
    deadline = time.monotonic() + 300
    while rounds_done(tmp_path / "runs", "tinynet-run") < 3:
        assert victim.poll() is None, victim.communicate()[1]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert reference.wait(timeout=300) == 0, reference.communicate()[1]
    assert not (tmp_path / "runs" / "tinynet-run" / "summary.json").exists()

    resume_args = readme_command("resume")
    elsewhere = tmp_path / "elsewhere"  # not the folder holding my_plugins.py: the saved path is absolute
    elsewhere.mkdir()
    resumed = fedforge_cli(elsewhere, resume_args[0], str(tmp_path / resume_args[1]), "-q")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    a = torch.load(tmp_path / "runs" / "tinynet-run" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "runs" / "reference" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["round"] for r in load_rounds(tmp_path / "runs" / "tinynet-run")] == list(range(1, 11))
