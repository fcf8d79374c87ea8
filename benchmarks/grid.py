"""Shared by the comparison benchmarks: runs in parallel processes (one torch thread each), means +- std."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

ONE_THREAD: dict[str, Any] = {
    "backend.threads": 1,  # runs share the machine: one thread each, as many runs as cores
    "checkpoint.every": 0,
    "tracking.database": False,
    "eval.personalized": False,
}


def parse_args(argv: list[str], doc: str | None) -> tuple[list[int], int, dict[str, str]]:
    """(seeds, parallel runs, key=value overrides for every run) from a benchmark's command line."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one torch thread each (default 2)")
    args = parser.parse_args(argv)
    return args.seeds, args.jobs, dict(item.split("=", 1) for item in args.overrides)


def run_rows(
    argv: list[str],
    doc: str | None,
    one_run: Callable[[Any], T],
    rows: list[str],
    default: list[str] | None = None,
    rows_help: str | None = None,
) -> tuple[list[T], list[str], int]:
    """Parse `--seeds --jobs --rows key=value...` and run `one_run((row, seed, overrides))` for every
    seed and chosen row (seeds outermost, so every row starts early): (results, rows, seed count)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one torch thread each (default 2)")
    parser.add_argument("--rows", nargs="+", default=default or rows, choices=rows, help=rows_help)
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    results = run_all(one_run, [(row, seed, overrides) for seed in args.seeds for row in args.rows], args.jobs)
    return results, args.rows, len(args.seeds)


def tracked_run(config: str, seed: int, settings: dict[str, Any]) -> tuple[dict[str, Any], list, list]:
    """One run in a scratch runs dir: its summary, its per-round rows and its metric rows."""
    import tempfile

    import fedforge
    from fedforge.tracking.query import load_metrics, load_rounds

    with tempfile.TemporaryDirectory() as runs:
        settings = {**settings, "tracking.runs_dir": runs, "tracking.database": True}
        result = fedforge.run(config, quiet=True, seed=seed, **settings)
        return result.summary, load_rounds(runs), load_metrics(runs)


def run_all(function: Callable[[Any], T], jobs: Iterable[Any], processes: int) -> list[T]:
    """`function` over `jobs` in `processes` worker processes, results in job order."""
    with ProcessPoolExecutor(processes) as pool:
        return list(pool.map(function, jobs))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def cell(values: list[float]) -> str:
    """`mean +- std` of accuracies, in points."""
    mean, std = mean_std([100 * v for v in values])
    return f"{mean:.2f} +- {std:.2f}"
