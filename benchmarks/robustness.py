"""Robust aggregation under simulated Byzantine clients: every aggregator x attack x 3 seeds.

    python benchmarks/robustness.py [--seeds 0 1 2] [--jobs 2] [key=value ...]

The digits demo (configs/digits_fedavg.yaml: Dirichlet 0.5, 2 local epochs, lr 0.05) with 20
clients, all of them every round, 20 rounds; 20 % of each round's clients attack. Prints a
markdown table of final global accuracy (mean +- std over seeds) per aggregator and attack, and
each cell's drop against clean FedAvg (plain mean, no attack), as in docs/robustness.md.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import fedforge
from grid import ONE_THREAD, mean_std, parse_args, run_all

BASE = {**ONE_THREAD, "data.num_clients": 20, "train.rounds": 20, "eval.every": 20}
BYZANTINE = 4  # 20 % of 20: the f that krum, multikrum and trimmed_mean are told to tolerate
AGGREGATORS: dict[str, dict[str, Any]] = {
    "mean": {"name": "mean"},
    "median": {"name": "median"},
    "trimmed_mean": {"name": "trimmed_mean", "beta": BYZANTINE / 20},
    "krum": {"name": "krum", "f": BYZANTINE},
    "multikrum": {"name": "multikrum", "f": BYZANTINE},
    "geometric_median": {"name": "geometric_median"},
    "centered_clip": {"name": "centered_clip"},
}
ATTACKS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "sign_flip (s=5)": {"kind": "sign_flip", "fraction": 0.2, "strength": 5.0},
    "alie (z_max)": {"kind": "alie", "fraction": 0.2},  # the paper's z for 4 of 20: 0.385
    "alie (z=10)": {"kind": "alie", "fraction": 0.2, "strength": 10.0},
}


def one_run(job: tuple[str, str, int, dict[str, str]]) -> tuple[str, str, int, float]:
    aggregator, attack, seed, overrides = job
    with tempfile.TemporaryDirectory() as runs:
        result = fedforge.run(
            "configs/digits_fedavg.yaml",
            quiet=True,
            seed=seed,
            aggregation=AGGREGATORS[aggregator],
            attack=ATTACKS[attack],
            **{**BASE, "tracking.runs_dir": runs},
            **overrides,
        )
    accuracy = result.final_accuracy
    print(f"{aggregator:17s} {attack:16s} seed {seed}: {accuracy:.4f}", file=sys.stderr, flush=True)
    return aggregator, attack, seed, accuracy


def main(argv: list[str]) -> None:
    seeds, processes, overrides = parse_args(argv, __doc__)
    jobs = [(agg, att, seed, overrides) for agg in AGGREGATORS for att in ATTACKS for seed in seeds]
    table: dict[tuple[str, str], list[float]] = {}
    for aggregator, attack, _, accuracy in run_all(one_run, jobs, processes):
        table.setdefault((aggregator, attack), []).append(100 * accuracy)
    clean = mean_std(table[("mean", "none")])[0]
    print(f"| aggregator | {' | '.join(ATTACKS)} |")
    print("|---|" + "---|" * len(ATTACKS))
    for aggregator in AGGREGATORS:
        cells = []
        for attack in ATTACKS:
            mean, std = mean_std(table[(aggregator, attack)])
            cells.append(f"{mean:.2f} +- {std:.2f} ({mean - clean:+.2f})")
        print(f"| {aggregator} | " + " | ".join(cells) + " |")
    print(f"\nclean FedAvg (mean, no attack): {clean:.2f}; in brackets: each cell's difference to it, in points")


if __name__ == "__main__":
    main(sys.argv[1:])
