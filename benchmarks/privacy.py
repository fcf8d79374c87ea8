"""Central DP-FedAvg on Fashion-MNIST, 1,000 clients, 10 % per round: accuracy against epsilon, 3 seeds.

    python benchmarks/privacy.py [key=value ...] [--seeds 0 1 2] [--jobs 2] [--rows none clip z0.3 ... adaptive local]

Each client holds 60 images (IID); 100 clients train 2 local epochs of plain SGD (lr 0.1, batch
16) per round for 40 rounds, and the server applies the noised mean with momentum 0.9 (DP-FedAvgM,
as McMahan et al. 2018 do; without it 40 rounds leave the model under-trained, and there noise
helps: docs/privacy.md). The rows: no DP; clipping alone (C = 0.5, about the median update
norm, z = 0); and noise multipliers 0.3, 0.6, 1.0 and 3.0 on the same clip. `--rows adaptive
local` adds adaptive clipping at z = 1 and local DP-SGD at z = 1 (per-sample clip 1). Epsilon is the RDP
accountant's at delta = 1e-5 for sampling rate 0.1 over the 40 rounds. To fit a 2-core CPU the
images are resized to 14x14 and the cnn is narrowed (width 16, hidden 64, no BatchNorm: DP
refuses batch statistics), which the table states. Prints the table of docs/privacy.md. Needs
the Debian package dataset-fashion-mnist.
"""

from __future__ import annotations

import sys
from typing import Any

from grid import ONE_THREAD, cell, run_rows, tracked_run

CLIP = 0.5
BASE: dict[str, Any] = {
    **ONE_THREAD,
    "data.num_clients": 1000,
    "data.partition": {"kind": "iid"},
    "data.image_size": 14,
    "model.width": 16,
    "model.hidden": 64,
    "model.norm": "none",
    "train.clients_per_round": 100,
    "train.rounds": 40,
    "train.local_epochs": 2,
    "train.batch_size": 16,
    "train.lr": 0.1,
    "train.momentum": 0.0,
    "eval.every": 10,
    "server_opt": {"name": "avgm", "lr": 1.0, "momentum": 0.9},  # DP-FedAvgM, as McMahan et al. 2018
}
ROWS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "clip": {"clip": CLIP, "noise_multiplier": 0.0},
    "z0.3": {"clip": CLIP, "noise_multiplier": 0.3},
    "z0.6": {"clip": CLIP, "noise_multiplier": 0.6},
    "z1.0": {"clip": CLIP, "noise_multiplier": 1.0},
    "z3.0": {"clip": CLIP, "noise_multiplier": 3.0},
    "adaptive": {"clip": CLIP, "noise_multiplier": 1.0, "adaptive_clip": {"target_quantile": 0.5}},
    "local": {"mechanism": "local", "clip": 1.0, "noise_multiplier": 1.0},
}
LABELS = {
    "none": "no DP",
    "clip": f"clipping only (C={CLIP}, z=0)",
    "adaptive": f"adaptive clip (from C={CLIP}, quantile 0.5), z=1.0",
    "local": "local DP-SGD (per-sample C=1, z=1.0; epsilon: worst client)",
}


def one_run(job: tuple[str, int, dict[str, str]]) -> dict[str, Any]:
    row, seed, overrides = job
    settings = {**BASE, **({"privacy": ROWS[row]} if ROWS[row] is not None else {}), **overrides}
    summary, _, _ = tracked_run("configs/fmnist_fedavg.yaml", seed, settings)
    privacy = summary.get("privacy") or {}
    result = {"row": row, "final": summary["final_accuracy"], "epsilon": privacy.get("epsilon"),
              "seconds": summary["train_seconds"]}  # fmt: skip
    print(f"{row:5s} seed {seed}: {result}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str]) -> None:
    results, rows, n = run_rows(argv, __doc__, one_run, list(ROWS), default=list(ROWS)[:6],
                                rows_help="default: none, clip and z in 0.3, 0.6, 1.0, 3.0")  # fmt: skip
    baseline = [r["final"] for r in results if r["row"] == "none"]
    print(f"| mechanism | final accuracy ({n} seeds) | vs no DP (points) | epsilon (delta 1e-5) | train s |")
    print("|---|---|---|---|---|")
    for row in rows:
        got = [r for r in results if r["row"] == row]
        finals = [r["final"] for r in got]
        gap = f"{100 * (sum(finals) / len(finals) - sum(baseline) / len(baseline)):+.2f}" if baseline else "-"
        spent = [r["epsilon"] for r in got if r["epsilon"] is not None]
        eps = max(spent) if spent else None  # local DP: the worst client, over the seeds
        label = LABELS.get(row, f"C={CLIP}, z={ROWS[row]['noise_multiplier']}" if ROWS[row] else row)
        shown = "-" if ROWS[row] is None else ("inf" if eps is None else f"{eps:.2f}")
        print(f"| {label} | {cell(finals)} | {gap if row != 'none' else '0'} | {shown} | "
              f"{sum(r['seconds'] for r in got) / len(got):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
