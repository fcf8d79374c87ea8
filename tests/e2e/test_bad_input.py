"""What a careless user types, from the command line: one paragraph, exit code 2, no traceback,
nothing written outside runs_dir and no half-written run directory."""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fedforge
from fedforge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def fedforge_cli(*args, cwd=ROOT):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "fedforge", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=600,
    )  # fmt: skip


def non_utf8_config(tmp: Path) -> list[str]:
    (tmp / "latin1.yaml").write_bytes("train: {rounds: 2}  # r\xe9sum\xe9\n".encode("latin-1"))
    return [tmp / "latin1.yaml"]


def python_tag_config(tmp: Path) -> list[str]:
    (tmp / "tag.yaml").write_text(f"seed: !!python/object/apply:os.system ['touch {tmp / 'executed'}']\n")
    return [tmp / "tag.yaml"]


def empty_config(tmp: Path) -> list[str]:
    (tmp / "empty.yaml").write_text("")
    return [tmp / "empty.yaml"]


def runs_dir_under_a_file(tmp: Path) -> list[str]:
    (tmp / "plain").write_text("a file")
    return [f"tracking.runs_dir={tmp / 'plain' / 'runs'}"]


def runs_dir_is_a_file(tmp: Path) -> list[str]:
    (tmp / "plain").write_text("a file")
    return [f"tracking.runs_dir={tmp / 'plain'}"]


def image_folder(tmp: Path, per_class: dict[str, int], big: bool = False) -> list[str]:
    for cls, count in per_class.items():
        (tmp / "images" / cls).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp / "images" / cls / f"{i}.png")
    if big:
        Image.new("1", (20_000, 10_000)).save(tmp / "images" / "a" / "huge.png")
    return ["data.name=imagefolder", f"data.root={tmp / 'images'}", "data.num_clients=2"]


def truncated_gzip_mnist(tmp: Path) -> list[str]:
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # fmt: skip
        whole = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 7]))
        (raw / f"{stem}.gz").write_bytes(whole[: len(whole) // 2])
    return ["data.name=mnist", f"data.root={tmp}"]


def cifar(tmp: Path, batch: object) -> list[str]:
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(good))
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))
    return ["data.name=cifar10", f"data.root={tmp}"]


CASES = {
    "non-utf8 config": (non_utf8_config, ["latin1.yaml", "not UTF-8"]),
    "python tag in a config": (python_tag_config, ["tag.yaml", "not valid YAML"]),
    "python tag in an override": (
        lambda tmp: ["seed=!!python/object/apply:os.system ['touch executed']"],
        ["override 'seed=!!python", "not valid YAML"],
    ),
    "unparsable override": (lambda tmp: ["train.lr=[0.1,"], ["override 'train.lr=[0.1,'", "not valid YAML"]),
    "empty config": (empty_config, ["empty.yaml", "is empty", "leave the file out to run the defaults"]),
    "seed of 2^63": (lambda tmp: [f"seed={2**63}"], ["seed", "less than 9223372036854775808"]),
    "infinite lr": (lambda tmp: ["train.lr=.inf"], ["train.lr", "finite"]),
    "nan momentum": (lambda tmp: ["train.momentum=.nan"], ["train.momentum", "finite"]),
    "runs_dir under a file": (runs_dir_under_a_file, ["plain' is a file, not a folder"]),
    "runs_dir is a file": (runs_dir_is_a_file, ["plain' is a file, not a folder"]),
    "classes_per_client above the classes": (
        lambda tmp: ["data.partition.kind=shards", "data.partition.classes_per_client=11"],
        ["classes_per_client=11", "10 classes"],
    ),
    "name escapes runs_dir": (lambda tmp: ["tracking.name=../outside"], ["tracking.name", "'../outside'"]),
    "absolute name": (lambda tmp: [f"tracking.name={tmp / 'abs'}"], ["tracking.name", "not a usable run name"]),
    "nested name": (lambda tmp: ["tracking.name=a/b"], ["tracking.name", "'a/b'"]),
    "dot name": (lambda tmp: ["tracking.name=."], ["tracking.name", "not a usable run name"]),
    "escape sequence in the name": (lambda tmp: ["tracking.name=\x1b[31mred"], ["tracking.name=\\x1b[31mred"]),
    "one image in a class": (lambda tmp: image_folder(tmp, {"a": 3, "b": 1}), ["class b has a single image"]),
    "image over Pillow's limit": (
        lambda tmp: image_folder(tmp, {"a": 2, "b": 2}, big=True),
        ["huge.png' is larger than Pillow's safety limit"],
    ),
    "truncated gzip idx": (truncated_gzip_mnist, ["train-images-idx3-ubyte.gz' is a corrupt or truncated gzip"]),
    "cifar batch that is a list": (lambda tmp: cifar(tmp, [1, 2]), ["data_batch_1' holds a list"]),
    "cifar batch of the wrong image size": (
        lambda tmp: cifar(tmp, {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
        ["data_batch_1'", "expected rows of 3x32x32"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_paragraph_exit_2_and_leaves_nothing(case, tmp_path):
    make, fragments = CASES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args = make(inputs)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    config = [a for a in args if not str(a).count("=")]
    overrides = [a for a in args if str(a).count("=")]
    runs = tmp_path / "runs"
    if not any(str(a).startswith("tracking.runs_dir=") for a in overrides):
        overrides.append(f"tracking.runs_dir={runs}")
    proc = fedforge_cli("run", *config, *overrides, "train.rounds=1", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    message = " ".join(proc.stderr.split())
    assert message.startswith("error:") and proc.stderr.strip().count("\n\n") == 0
    for fragment in fragments:
        assert fragment in message, message
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before  # nothing executed, nothing half-written, nothing outside runs_dir


@pytest.mark.parametrize("name", ["a\x00b", "\x1b[2Jwiped", "tab\tname", "x" * 129])
def test_names_yaml_cannot_carry_are_refused_by_the_api_too(tmp_path, name):
    with pytest.raises(ConfigError, match="tracking.name"):
        fedforge.run(tracking={"name": name, "runs_dir": str(tmp_path / "runs")}, quiet=True)
    assert not (tmp_path / "runs").exists()


def test_a_run_that_cannot_start_leaves_no_run_directory(tmp_path, monkeypatch):
    """A failure after the run directory exists but before round 0 (here: the store cannot open)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "runs.db").write_text("not a database")
    proc = fedforge_cli("run", "train.rounds=1", f"tracking.runs_dir={runs}", "--quiet", cwd=tmp_path)
    assert proc.returncode == 2 and "runs.db" in proc.stderr
    assert [p.name for p in runs.iterdir()] == ["runs.db"]


@pytest.mark.slow
def test_resume_from_another_working_directory_uses_the_runs_own_store(tmp_path):
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    elsewhere.mkdir()
    settings = ["train.rounds=2", "train.local_epochs=1", "tracking.runs_dir=rel-runs", "tracking.name=r1", "--quiet"]
    assert fedforge_cli("run", *settings, cwd=first).returncode == 0
    (first / "rel-runs" / "r1" / "summary.json").unlink()  # as if it had stopped before the end
    proc = fedforge_cli("resume", first / "rel-runs" / "r1", "--quiet", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert list(elsewhere.iterdir()) == []  # no new, empty store where the command ran
    runs = fedforge.tracking.load_runs(first / "rel-runs")
    assert [r["name"] for r in runs] == ["r1"] and runs[0]["status"] == "finished"
