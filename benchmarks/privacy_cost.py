"""What each privacy mechanism costs in training time, side by side in one process.

    python benchmarks/privacy_cost.py [--rounds 5] [--repeats 3]

The federation of benchmarks/privacy.py cut down (100 clients of Fashion-MNIST, 10 per round,
60 images each, the narrowed cnn), run with no mechanism, central DP, local DP-SGD, secure
aggregation, and central DP under secure aggregation. Each row's `train_seconds` (the rounds'
wall time, evaluation excluded) is the best of `--repeats`, and the ratio is against no mechanism.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

import fedforge

BASE: dict[str, Any] = {
    "backend.threads": 1,
    "checkpoint.every": 0,
    "tracking.database": False,
    "eval.personalized": False,
    "data.num_clients": 100,
    "data.partition": {"kind": "iid"},
    "data.image_size": 14,
    "data.train_fraction": 0.1,
    "model.width": 16,
    "model.hidden": 64,
    "model.norm": "none",
    "train.clients_per_round": 10,
    "train.local_epochs": 2,
    "train.batch_size": 16,
    "train.lr": 0.1,
    "train.momentum": 0.0,
}
ROWS: dict[str, dict[str, Any]] = {
    "none": {},
    "central DP (z=1)": {"privacy": {"clip": 0.5, "noise_multiplier": 1.0}},
    "local DP-SGD (z=1)": {"privacy": {"mechanism": "local", "clip": 1.0, "noise_multiplier": 1.0}},
    "SecAgg": {"secure_aggregation": {}},
    "central DP + SecAgg": {"privacy": {"clip": 0.5, "noise_multiplier": 1.0}, "secure_aggregation": {}},
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    seconds: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, so a busy spell hits every row alike
        for name, extra in ROWS.items():
            with tempfile.TemporaryDirectory() as runs:
                settings = {**BASE, "train.rounds": args.rounds, "tracking.runs_dir": runs, **extra}
                result = fedforge.run("configs/fmnist_fedavg.yaml", quiet=True, **settings)
            seconds[name] = min(seconds.get(name, float("inf")), result.summary["train_seconds"])
    print(f"| mechanism | train s ({args.rounds} rounds, best of {args.repeats}) | x no mechanism |")
    print("|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} | {value / seconds['none']:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
