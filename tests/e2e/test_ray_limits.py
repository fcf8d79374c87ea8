"""Ray on a machine smaller than asked for: refused up front, and no Ray process outlives a run,
whether it fails or is killed (each test starts its own local Ray in a `fedforge run` process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def ray_processes(driver: int) -> set[int]:
    """Processes of the local Ray a driver started: its session's servers (named after the driver's
    pid) and everything those servers spawned (workers and agents rename themselves)."""
    servers, raylets, found = set(), set(), set()
    procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    for proc in procs:
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "/session_" in cmdline and f"_{driver}/" in cmdline:
            servers.add(int(proc.name))
            if "raylet/raylet" in cmdline:
                raylets.add(int(proc.name))
    for proc in procs:
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(entry == f"RAY_RAYLET_PID={pid}".encode() for pid in raylets for entry in environ):
            found.add(int(proc.name))
    return servers | found


def wait_until_gone(driver: int, timeout: float = 240) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := ray_processes(driver)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


def fedforge(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fedforge", "run", *args, "--quiet"], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_more_workers_than_usable_cpus_is_refused_and_leaves_no_ray_process(runs_dir):
    proc = fedforge("backend.kind=ray", "backend.num_workers=64", f"tracking.runs_dir={runs_dir}")
    _, errors = proc.communicate(timeout=300)
    assert proc.returncode == 2, errors
    assert "backend.num_workers=64" in errors and f"the Ray cluster has {len(os.sched_getaffinity(0))}" in errors
    assert wait_until_gone(proc.pid) == set()
    assert not runs_dir.exists() or not [p for p in runs_dir.iterdir() if p.is_dir()]


def test_a_killed_ray_run_leaves_no_ray_process_behind(runs_dir):
    proc = fedforge("backend.kind=ray", "backend.num_workers=1", "train.rounds=500", f"tracking.runs_dir={runs_dir}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(runs_dir.glob("*/checkpoints/*.ckpt")):
        time.sleep(0.5)  # the federation is under way
    assert ray_processes(proc.pid), "the run never started its Ray"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert wait_until_gone(proc.pid) == set()
