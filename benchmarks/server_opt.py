"""Server optimizers on Fashion-MNIST: FedAvg, FedAvgM, FedAdam, FedYogi x 3 seeds.

    python benchmarks/server_opt.py [--seeds 0 1 2] [--jobs 2] [key=value ...]

Dirichlet(0.1) over 20 clients, 10 sampled per round, 30 rounds, 1 local epoch; the CNN of
configs/fmnist_fedavg.yaml. Clients run plain SGD (no momentum) as in Reddi et al. (2021), so the
server's optimizer is the only momentum or adaptivity in play. Needs the Debian package
dataset-fashion-mnist (or the idx files under data.root). Prints a markdown table of final and best
global test accuracy (mean +- std over seeds), as in docs/robustness.md.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import fedforge
from grid import ONE_THREAD, cell, parse_args, run_all

BASE = {
    **ONE_THREAD,
    "data.num_clients": 20,
    "data.partition": {"kind": "dirichlet", "alpha": 0.1, "min_samples": 10},
    "train.clients_per_round": 10,
    "train.rounds": 30,
    "train.local_epochs": 1,
    "train.lr": 0.03,
    "train.momentum": 0.0,
    "eval.every": 5,
}
# Server settings near Reddi et al.'s best for their EMNIST CNN (Table 8: client lr 10^-1.5; server
# lr 1 with momentum 0.9 for FedAvgM, 10^-2.5 for FedAdam, 10^-2 for FedYogi; tau 10^-3).
METHODS: dict[str, dict[str, Any]] = {
    "FedAvg": {"name": "none"},
    "FedAvgM": {"name": "avgm", "lr": 1.0, "momentum": 0.9},
    "FedAdam": {"name": "adam", "lr": 0.003, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3},
    "FedYogi": {"name": "yogi", "lr": 0.01, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3},
}


def one_run(job: tuple[str, int, dict[str, str]]) -> tuple[str, float, float]:
    method, seed, overrides = job
    with tempfile.TemporaryDirectory() as runs:
        result = fedforge.run(
            "configs/fmnist_fedavg.yaml",
            quiet=True,
            seed=seed,
            server_opt=METHODS[method],
            **{**BASE, "tracking.runs_dir": runs},
            **overrides,
        )
    final, best = result.final_accuracy, result.best_accuracy
    print(f"{method:8s} seed {seed}: final {final:.4f} best {best:.4f}", file=sys.stderr, flush=True)
    return method, final, best


def main(argv: list[str]) -> None:
    seeds, processes, overrides = parse_args(argv, __doc__)
    jobs = [(method, seed, overrides) for method in METHODS for seed in seeds]
    finals: dict[str, list[float]] = {}
    bests: dict[str, list[float]] = {}
    for method, final, best in run_all(one_run, jobs, processes):
        finals.setdefault(method, []).append(final)
        bests.setdefault(method, []).append(best)
    print(f"| method | server_opt | final accuracy ({len(seeds)} seeds) | best accuracy |")
    print("|---|---|---|---|")
    for method, section in METHODS.items():
        settings = ", ".join(f"{k}={v}" for k, v in section.items())
        print(f"| {method} | {settings} | {cell(finals[method])} | {cell(bests[method])} |")


if __name__ == "__main__":
    main(sys.argv[1:])
