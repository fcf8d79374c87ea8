"""Compare FedAvg, FedProx and FedBN where they differ: digits with 2 classes per client.

    python examples/compare_methods.py                 # 1 seed, ~15 s on 2 CPU cores
    python examples/compare_methods.py --seeds 3       # mean and spread over 3 seeds

Writes the runs to runs/compare/ and `fedforge report`'s figures and report.md to
report/compare/; prints each method's final, client-mean and worst-10% accuracy.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import fedforge
from fedforge.tracking.report import write_report

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits_shards_compare.yaml"
METHODS = {"fedavg": {}, "fedprox": {"mu": 0.1}, "fedbn": {}}
COLUMNS = {
    "final": "final_accuracy",
    "client mean": "final_personalized_accuracy",
    "worst 10%": "final_worst10_accuracy",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"))
    parser.add_argument("--out", type=Path, default=Path("report/compare"))
    args = parser.parse_args()

    run_dirs, results = [], {}
    for method, params in METHODS.items():
        for seed in range(args.seeds):
            result = fedforge.run(
                CONFIG,
                quiet=True,
                seed=seed,
                algorithm={"name": method, **params},
                tracking={"runs_dir": str(args.runs), "name": f"{method}-seed{seed}"},
            )
            run_dirs.append(result.run_dir)
            results.setdefault(method, []).append(result.summary)

    print(f"{'method':8} " + " ".join(f"{c:>16}" for c in COLUMNS))
    for method, summaries in results.items():
        cells = []
        for key in COLUMNS.values():
            values = [s[key] for s in summaries]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}".rjust(16))
        print(f"{method:8} " + " ".join(cells))
    report = write_report(run_dirs, args.out)
    print(f"report: {report.folder / 'report.md'} ({len(report.files)} files)")


if __name__ == "__main__":
    main()
