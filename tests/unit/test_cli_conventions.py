"""CLI conventions: --version, -h, --log-level, runs --format, list descriptions, Ctrl-C."""

import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fedforge
from fedforge.cli import app, describe

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_version_and_short_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fedforge {fedforge.__version__}"
    for args in (["-h"], ["run", "-h"], ["runs", "-h"], ["resume", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output, args


def test_help_imports_no_torch():
    code = "import sys; from fedforge.cli import main; sys.argv = ['fedforge', '--help']\n"
    code += "try:\n    main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stderr


def test_log_level_is_checked():
    result = runner.invoke(app, ["--log-level", "loud", "list"])
    assert result.exit_code == 2 and "loud" in result.output


def test_every_listed_plugin_has_a_description():
    from fedforge import AGGREGATORS, ALGORITHMS, DATASETS, EXECUTORS, MODELS, PARTITIONS, SERVER_OPTIMIZERS, TASKS

    for registry in (DATASETS, PARTITIONS, MODELS, TASKS, ALGORITHMS, AGGREGATORS, SERVER_OPTIMIZERS, EXECUTORS):
        for name in registry.names():
            entry = registry.get(name)
            if not getattr(entry, "__module__", "").startswith("fedforge."):
                continue  # registered by another test of this session, not shipped
            assert "no description" not in describe(entry), f"{registry.kind} {name}"
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0 and "torchvision:NAME" in result.output


@pytest.fixture(scope="module")
def stored_runs(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    for name, algo in (("a-very-long-run-name-that-would-not-fit-in-eighty-columns", "fedavg"), ("b", "fedprox")):
        fedforge.run(
            quiet=True,
            algorithm={"name": algo},
            train={"rounds": 2, "local_epochs": 1},
            tracking={"runs_dir": str(runs_dir), "name": name},
        )
    return runs_dir


def test_runs_table_fits_80_columns(stored_runs):
    result = runner.invoke(app, ["runs", str(stored_runs)], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert len(lines) == 4  # title, header, one line per run: nothing wraps
    assert "…" in lines[2] or "…" in lines[3]  # the long name is shortened, keeping its tail
    assert "fedprox" in result.output and "finished" in result.output


def test_runs_csv_and_json_carry_every_field(stored_runs):
    as_csv = list(csv.DictReader(io.StringIO(runner.invoke(app, ["runs", str(stored_runs), "-f", "csv"]).output)))
    as_json = json.loads(runner.invoke(app, ["runs", str(stored_runs), "--format", "json"]).output)
    assert [r["run"] for r in as_csv] == [r["run"] for r in as_json] and len(as_json) == 2
    full = next(r for r in as_json if r["run"].startswith("a-very"))
    assert full["run"] == "a-very-long-run-name-that-would-not-fit-in-eighty-columns"
    assert full["metric"] == "accuracy" and 0 < full["final"] <= 1 and full["rounds"] == 2
    assert runner.invoke(app, ["runs", str(stored_runs), "--format", "xml"]).exit_code == 2


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, time
            from fedforge.cli import user_errors

            @user_errors
            def work():
                try:
                    os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: unwinds
                    time.sleep(60)
                finally:
                    print("cleaning up", flush=True)
                    os.kill(os.getpid(), signal.SIGINT)  # a second one while cleaning up
                    time.sleep(60)  # a clean-up that would hang

            work()
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=50)
    assert proc.returncode == 130 and "cleaning up" in proc.stdout
    assert "second interrupt: exiting at once" in proc.stderr


def test_progress_is_one_plain_line_per_round_off_a_terminal():
    from rich.console import Console

    from fedforge.engine.federation import RoundRecord
    from fedforge.tracking.progress import ProgressSink

    stream = io.StringIO()
    sink = ProgressSink(3, "fedavg on digits", start=1, console=Console(file=stream, force_terminal=False))
    for index in (1, 2):
        sink.log_round(RoundRecord(index, [], [], 0.5, 0, 0, 0.1, seconds=0.25))
    sink.close()
    assert stream.getvalue().splitlines() == [
        "fedavg on digits: resuming at round 2/3",
        "fedavg on digits: round 2/3  loss 0.500  0.2 s",
        "fedavg on digits: round 3/3  loss 0.500  0.2 s",
    ]
    assert "\x1b" not in stream.getvalue()  # no escape codes in a log file
