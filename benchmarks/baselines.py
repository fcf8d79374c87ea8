"""The standard non-IID baselines on Fashion-MNIST: FedAvg, FedProx, SCAFFOLD, FedNova, FedDyn, MOON x 3 seeds.

    python benchmarks/baselines.py [--seeds 0 1 2] [--jobs 2] [--methods FedAvg SCAFFOLD ...] [key=value ...]

The issue's setting: Dirichlet(0.1) over 20 clients, 10 sampled per round, 2 local epochs, 30 rounds.
Every method runs the same local optimizer (SGD, lr 0.05, momentum 0.9, batch 64) and the same
network; to fit a 2-core CPU the images are resized to 14x14 and the cnn is narrowed (width 16,
hidden 64), which the table states. Each method keeps its paper's defaults: FedProx mu 0.01,
SCAFFOLD server lr 1, FedDyn alpha 0.1, MOON mu 5 and tau 0.5. Prints a markdown table of the
final global accuracy, the best, the first round reaching 0.80 and the bytes moved (mean +- std
over seeds), as in docs/baselines.md. Needs the Debian package dataset-fashion-mnist.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from grid import ONE_THREAD, cell, run_all, tracked_run

TARGET = 0.80
BASE: dict[str, Any] = {
    **ONE_THREAD,
    "data.num_clients": 20,
    "data.partition": {"kind": "dirichlet", "alpha": 0.1, "min_samples": 10},
    "data.image_size": 14,
    "model.width": 16,
    "model.hidden": 64,
    "train.clients_per_round": 10,
    "train.rounds": 30,
    "train.local_epochs": 2,
    "train.batch_size": 64,
    "train.lr": 0.05,
    "train.momentum": 0.9,
    "eval.every": 1,
}
METHODS: dict[str, dict[str, Any]] = {
    "FedAvg": {"name": "fedavg"},
    "FedProx": {"name": "fedprox", "mu": 0.01},
    "SCAFFOLD": {"name": "scaffold", "server_lr": 1.0},
    "FedNova": {"name": "fednova"},
    "FedDyn": {"name": "feddyn", "alpha": 0.1},
    "MOON": {"name": "moon", "mu": 5.0, "temperature": 0.5},
}


def one_run(job: tuple[str, int, dict[str, str]]) -> dict[str, Any]:
    method, seed, overrides = job
    settings = {**BASE, "algorithm": METHODS[method], **overrides}
    summary, rounds, _ = tracked_run("configs/fmnist_fedavg.yaml", seed, settings)
    curve = [r["global_accuracy"] for r in rounds]
    reached = next((i + 1 for i, acc in enumerate(curve) if acc is not None and acc >= TARGET), None)
    row = {
        "method": method,
        "final": summary["final_accuracy"],
        "best": summary["best_accuracy"],
        "reached": reached,
        "mbytes": (summary["bytes_down"] + summary["bytes_up"]) / 2**20,
        "seconds": summary["train_seconds"],
    }
    print(f"{method:8s} seed {seed}: {row}", file=sys.stderr, flush=True)
    return row


def rounds_cell(values: list[int | None]) -> str:
    """Mean +- std of the rounds to TARGET over the seeds that reached it, and how many did."""
    hit = [v for v in values if v is not None]
    if not hit:
        return f"not reached (0/{len(values)})"
    spread = f" +- {statistics.stdev(hit):.1f}" if len(hit) > 1 else ""
    return f"{statistics.mean(hit):.1f}{spread} ({len(hit)}/{len(values)})"


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one torch thread each (default 2)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    jobs = [(method, seed, overrides) for seed in args.seeds for method in args.methods]  # every method early
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in run_all(one_run, jobs, args.jobs):
        rows.setdefault(row["method"], []).append(row)
    n = len(args.seeds)
    print(f"| method | final accuracy ({n} seeds) | best accuracy | rounds to {TARGET:.2f} | MiB moved | train s |")
    print("|---|---|---|---|---|---|")
    for method in args.methods:
        got = rows[method]
        mib = statistics.mean(r["mbytes"] for r in got)
        secs = statistics.mean(r["seconds"] for r in got)
        print(
            f"| {method} | {cell([r['final'] for r in got])} | {cell([r['best'] for r in got])} | "
            f"{rounds_cell([r['reached'] for r in got])} | {mib:.1f} | {secs:.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
