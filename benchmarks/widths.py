"""Heterogeneous widths on Fashion-MNIST: HeteroFL and FedRolex against the full-capacity clients alone.

    python benchmarks/widths.py [key=value ...] [--seeds 0 1 2] [--jobs 2] [--rows heterofl fedrolex full_only all_full]

10 clients, Dirichlet(0.5); capacities {1: 0.2, 0.5: 0.4, 0.25: 0.4} (2 / 4 / 4 clients, a seeded
draw). Rows:
- `heterofl`, `fedrolex`: every client trains its sub-model; the full-width global model and each
  narrower width alone are evaluated on the test set;
- `full_only`: the two full-capacity clients alone train the full model (HeteroFL with
  `min_capacity: 1`, which is FedAvg over those two clients: with every client at width 1 HeteroFL
  equals FedAvg bit for bit, tests/unit/test_widths.py);
- `all_full`: FedAvg with every client at full width, the ceiling no capacity limit allows.
To fit a 2-core CPU the images are 14x14 and the cnn has width 32 / hidden 128 with BatchNorm
(static BN and the scaler for the width methods, as the paper). Without BatchNorm (overrides go
before --rows):

    python benchmarks/widths.py model.norm=none algorithm.scaler=false --rows heterofl fedrolex full_only

Prints the tables of docs/model_level.md. Needs the Debian package dataset-fashion-mnist.
"""

from __future__ import annotations

import sys
from typing import Any

from grid import ONE_THREAD, cell, run_rows, tracked_run

CAPACITIES = {1.0: 0.2, 0.5: 0.4, 0.25: 0.4}
BASE: dict[str, Any] = {
    **ONE_THREAD,
    "data.image_size": 14,
    "model.width": 32,
    "model.hidden": 128,
    "train.rounds": 30,
    "train.local_epochs": 1,
    "train.lr": 0.05,
    "eval.every": 10,
}
ROWS: dict[str, dict[str, Any]] = {
    "heterofl": {"algorithm": {"name": "heterofl", "capacities": CAPACITIES, "scaler": True}},
    "fedrolex": {"algorithm": {"name": "fedrolex", "capacities": CAPACITIES, "scaler": True}},
    "full_only": {"algorithm": {"name": "heterofl", "capacities": CAPACITIES, "min_capacity": 1.0}},
    "all_full": {"algorithm": {"name": "fedavg"}},
}
LABELS = {
    "heterofl": "HeteroFL, all 10 clients",
    "fedrolex": "FedRolex, all 10 clients",
    "full_only": "FedAvg, the 2 full-capacity clients alone",
    "all_full": "FedAvg, all 10 clients at full width (ceiling)",
}
WIDTHS = ("0.5", "0.25")


def one_run(job: tuple[str, int, dict[str, str]]) -> dict[str, Any]:
    row, seed, overrides = job
    summary, rounds, _ = tracked_run("configs/fmnist_fedavg.yaml", seed, {**BASE, **ROWS[row], **overrides})
    final = summary.get("final_metrics") or {}
    result = {
        "row": row,
        "final": summary["final_accuracy"],
        **{w: final.get(f"width_{w}_accuracy") for w in WIDTHS},
        "bytes_up": summary["bytes_up"] / summary["rounds"],
        "seconds": summary["train_seconds"],
    }
    print(f"{row:9s} seed {seed}: {result}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str]) -> None:
    results, rows, n = run_rows(argv, __doc__, one_run, list(ROWS))
    print(f"| training ({n} seeds) | full width | width 1/2 alone | width 1/4 alone | KiB up per round | train s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        got = [r for r in results if r["row"] == row]
        widths = [cell([r[w] for r in got]) if all(r[w] is not None for r in got) else "-" for w in WIDTHS]
        print(f"| {LABELS[row]} | {cell([r['final'] for r in got])} | {' | '.join(widths)} | "
              f"{sum(r['bytes_up'] for r in got) / len(got) / 1024:.0f} | "
              f"{sum(r['seconds'] for r in got) / len(got):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
