"""Federated dynamic pruning on Fashion-MNIST: FedMef against dense, static sparse and prune-and-grow.

    python benchmarks/pruning.py [key=value ...] [--seeds 0 1 2] [--jobs 2] [--rows dense static prune_grow bae fedmef]

10 clients, Dirichlet(0.5) over half the training set, 20 rounds of 1 local epoch; cnn (width 32,
hidden 128, no BatchNorm) on 14x14 images to fit a 2-core CPU. Density 0.2 of the conv and linear
weights (ERK); adjustments every 3 rounds in the first half (alpha 0.2, cosine-decayed). Rows:
- `dense`: every weight active (FedMef at density 1, which is FedAvg);
- `static`: a fixed random ERK mask;
- `prune_grow`: magnitude prune and gradient grow, no BaE, no SAP (FedDST / PruneFL style);
- `bae`: with budget-aware extrusion; `fedmef`: BaE and scaled activation pruning (keep 30 %).
Memory per client: `activation_bytes` is measured (saved_tensors_hooks, the largest training step);
model state (weights, gradients, momentum) is counted at its sparse size. Prints the table of
docs/model_level.md; density is checked every round. Needs the Debian package dataset-fashion-mnist.
"""

from __future__ import annotations

import sys
from typing import Any

from grid import ONE_THREAD, cell, run_rows, tracked_run

SPARSE = {"name": "fedmef", "density": 0.2, "adjust_every": 3, "activation_keep": None}
BASE: dict[str, Any] = {
    **ONE_THREAD,
    "data.image_size": 14,
    "data.train_fraction": 0.5,
    "model.width": 32,
    "model.hidden": 128,
    "model.norm": "none",
    "train.rounds": 20,
    "train.local_epochs": 1,
    "train.lr": 0.05,
    "eval.every": 10,
}
ROWS: dict[str, dict[str, Any]] = {
    "dense": {**SPARSE, "density": 1.0, "adjust_every": 0},
    "static": {**SPARSE, "adjust_every": 0},
    "prune_grow": {**SPARSE, "extrusion": False},
    "bae": SPARSE,
    "fedmef": {**SPARSE, "activation_keep": 0.3},
}
LABELS = {
    "dense": "dense (FedAvg)",
    "static": "static sparse mask, density 0.2",
    "prune_grow": "prune-and-grow, no BaE / SAP (FedDST-style)",
    "bae": "prune-and-grow + BaE",
    "fedmef": "FedMef (BaE + SAP keep 0.3)",
}


def one_run(job: tuple[str, int, dict[str, str]]) -> dict[str, Any]:
    row, seed, overrides = job
    summary, _, metrics = tracked_run("configs/fmnist_fedavg.yaml", seed, {**BASE, "algorithm": ROWS[row], **overrides})
    by_name: dict[str, list[float]] = {}
    for m in metrics:
        by_name.setdefault(m["name"], []).append(m["value"])
    target = ROWS[row]["density"]
    result = {
        "row": row,
        "final": summary["final_accuracy"],
        "density_error": max(abs(d - target) / target for d in by_name["density"]),  # every client, every round
        "activations": max(by_name["activation_bytes"]),
        "model": max(by_name["model_bytes"]),
        "bytes_up": summary["bytes_up"] / summary["rounds"],
        "seconds": summary["train_seconds"],
    }
    print(f"{row:10s} seed {seed}: {result}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str]) -> None:
    results, rows, n = run_rows(argv, __doc__, one_run, list(ROWS))
    dense = [r for r in results if r["row"] == "dense"]
    print(f"| training ({n} seeds) | accuracy | max density error | saved activations KiB | vs dense | "
          "model state KiB | peak client KiB | KiB up per round | train s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        got = [r for r in results if r["row"] == row]
        act, model = got[0]["activations"], got[0]["model"]
        ratio = f"{act / dense[0]['activations']:.2f}x" if dense else "-"
        print(f"| {LABELS[row]} | {cell([r['final'] for r in got])} | {max(r['density_error'] for r in got):.2%} | "
              f"{act / 1024:.0f} | {ratio} | {model / 1024:.0f} | {(act + model) / 1024:.0f} | "
              f"{sum(r['bytes_up'] for r in got) / len(got) / 1024:.0f} | "
              f"{sum(r['seconds'] for r in got) / len(got):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
