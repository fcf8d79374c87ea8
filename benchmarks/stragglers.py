"""Stragglers on the virtual clock: synchronous FedAvg vs asynchronous FedBuff on Fashion-MNIST, 3 seeds.

    python benchmarks/stragglers.py [--seeds 0 1 2] [--jobs 2] [key=value ...]

20 clients (Dirichlet 0.5) whose step times are lognormal(0, 1) (system.profile), one local epoch
of SGD (lr 0.05, momentum 0.9, batch 64) on the 14x14, width-16 cnn of benchmarks/baselines.py.
Rows: FedAvg waiting for all 20 clients every round; FedAvg with a deadline at the median client's
time where slow clients send partial work; FedBuff with K = 5 and 10 clients in flight. Prints the
virtual time to reach 0.80 global accuracy, the accuracy at the end and the client updates used
(mean +- std over seeds), as in docs/system_heterogeneity.md.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from grid import ONE_THREAD, cell, parse_args, run_all, tracked_run

TARGET = 0.80
SYSTEM = {"profile": {"kind": "lognormal", "sigma": 1.0}, "step_seconds": 0.05}
BASE: dict[str, Any] = {
    **ONE_THREAD,
    "data.num_clients": 20,
    "data.image_size": 14,
    "model.width": 16,
    "model.hidden": 64,
    "train.local_epochs": 1,
    "train.batch_size": 64,
    "train.lr": 0.05,
    "train.momentum": 0.9,
    "eval.every": 1,
}
# A client holds ~3,000 images: 47 steps of 0.05 s at slowness 1 is ~2.4 virtual s; the deadline
# sits near the median client's time.
METHODS: dict[str, dict[str, Any]] = {
    "FedAvg (waits for all)": {"algorithm": {"name": "fedavg"}, "system": SYSTEM, "train.rounds": 30},
    "FedAvg (deadline 2.5 s, partial)": {
        "algorithm": {"name": "fedavg"},
        "system": {**SYSTEM, "deadline": 2.5, "on_deadline": "partial"},
        "train.rounds": 30,
    },
    "FedBuff (K=5, 10 in flight)": {
        "algorithm": {"name": "fedbuff", "buffer_size": 5, "concurrency": 10},
        "system": SYSTEM,
        "train.rounds": 120,
    },
}


def _is_clock(metric: dict[str, Any]) -> bool:
    return metric["name"] == "virtual_time" and metric["client_id"] is None


def one_run(job: tuple[str, int, dict[str, str]]) -> dict[str, Any]:
    method, seed, overrides = job
    summary, rounds, metrics = tracked_run("configs/fmnist_fedavg.yaml", seed, {**BASE, **METHODS[method], **overrides})
    accuracy = {r["round"]: r["global_accuracy"] for r in rounds}
    clock = {m["round"]: m["value"] for m in metrics if _is_clock(m)}
    updates = sum(r["num_clients"] - r["num_rejected"] for r in rounds)
    reached = next((clock[r] for r in sorted(accuracy) if accuracy[r] is not None and accuracy[r] >= TARGET), None)
    row = {"method": method, "reached": reached, "final": summary["final_accuracy"], "end": clock[max(clock)],
           "updates": updates}  # fmt: skip
    print(f"{method} seed {seed}: {row}", file=sys.stderr, flush=True)
    return row


def main(argv: list[str]) -> None:
    seeds, processes, overrides = parse_args(argv, __doc__)
    jobs = [(method, seed, overrides) for seed in seeds for method in METHODS]
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in run_all(one_run, jobs, processes):
        rows.setdefault(row["method"], []).append(row)
    print(f"| method | virtual s to {TARGET:.2f} ({len(seeds)} seeds) | final accuracy | virtual s at the end | "
          "client updates |")  # fmt: skip
    print("|---|---|---|---|---|")
    for method in METHODS:
        got = rows[method]
        hit = [r["reached"] for r in got if r["reached"] is not None]
        spread = f" +- {statistics.stdev(hit):.0f}" if len(hit) > 1 else ""
        reach = f"{statistics.mean(hit):.0f}{spread} ({len(hit)}/{len(got)})" if hit else f"not reached (0/{len(got)})"
        end = statistics.mean(r["end"] for r in got)
        updates = statistics.mean(r["updates"] for r in got)
        print(f"| {method} | {reach} | {cell([r['final'] for r in got])} | {end:.0f} | {updates:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
