"""A busy machine: the demo's federation beside CPU hogs, with torch's default threads (one per
core) and with fedforge's `backend.threads` default, each in its own process, alternating.

Torch's intra-op threads spin waiting for each other; when other processes hold the cores the
spinning turns into waiting for the scheduler, and a small model trains many times slower.

    python benchmarks/busy_machine.py [--hogs N] [--repeats 3] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile

from fedforge.resources import default_threads, usable_cpus

RUN = """
import json, sys, time, torch, fedforge
threads = int(sys.argv[1])
overrides = dict(a.split("=", 1) for a in sys.argv[3:])
start = time.perf_counter()
result = fedforge.run("configs/digits_fedavg.yaml", quiet=True, **{"tracking.runs_dir": sys.argv[2],
    "backend.device": "cpu", "backend.threads": threads, **overrides})
print(json.dumps({"seconds": time.perf_counter() - start, "accuracy": result.final_accuracy}))
"""


def hog(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def timed(threads: int, runs_dir: str, overrides: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(threads), runs_dir, *overrides], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hogs", type=int, default=usable_cpus(), help="busy processes beside the run (default: one per CPU)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "overrides", nargs="*", default=["train.rounds=5"], help="config overrides (default train.rounds=5)"
    )
    args = parser.parse_args()
    sides = {"torch default": usable_cpus(), "fedforge default": default_threads()}
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=hog, args=(stop,), daemon=True) for _ in range(args.hogs)]
    for p in hogs:
        p.start()
    times: dict[str, list[float]] = {name: [] for name in sides}
    accuracy: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                for name, threads in sides.items():
                    outcome = timed(threads, os.path.join(tmp, name.replace(" ", "-")), args.overrides)
                    times[name].append(outcome["seconds"])
                    accuracy[name] = outcome["accuracy"]
    finally:
        stop.set()
        for p in hogs:
            p.join(timeout=10)
    print(f"{usable_cpus()} usable CPUs, {args.hogs} CPU hogs, {' '.join(args.overrides)}, median of {args.repeats}")
    for name, threads in sides.items():
        print(
            f"  {name:17s} {threads} threads: {statistics.median(times[name]):7.1f} s  (accuracy {accuracy[name]:.4f})"
        )
    ratio = statistics.median(times["torch default"]) / statistics.median(times["fedforge default"])
    print(f"torch default / fedforge default: {ratio:.2f}x")


if __name__ == "__main__":
    main()
