"""FedSSL comparison: methods x seeds on one config, linear-probe and kNN accuracy of the
global encoder, next to the same probes on the randomly initialized encoder.

    python benchmarks/fedssl.py [--config configs/digits_fedssl.yaml] [--seeds 0 1 2] [--jobs 2]
        [--methods fedbyol "fedema:tau=0.5" "fedsimclr:task.temperature=0.2" ...] [key=value ...]

Runs go to a temporary folder, `--jobs` at a time (one torch thread each). Prints a
markdown table (mean +- std over seeds), as reported in docs/fedssl.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor

METHODS = [
    "random-init",
    "fedbyol",
    "fedsimsiam",
    "fedsimclr",
    "fedmoco",
    "fedu",
    "fedema",
    "fedema:divergence=local_change",
]


def one_run(config: str, method: str, seed: int, overrides: list[str], runs: str) -> dict[str, float]:
    """Final probe/kNN accuracy of one (method, seed); `random-init` probes the untrained encoder."""
    import torch

    torch.set_num_threads(1)
    import fedforge
    from fedforge.api import Experiment, resolve_config
    from fedforge.config import merge, parse_overrides

    # e.g. "fedema:divergence=local_change,tau=0.5" or "fedsimclr:task.temperature=0.2"
    name, _, extra = method.partition(":")
    items = [*overrides, f"seed={seed}", f"tracking.runs_dir={runs}", "checkpoint.every=0"]
    if name != "random-init":
        items.append(f"algorithm.name={name}")
    for item in filter(None, extra.split(",")):  # bare keys are the algorithm's parameters
        items.append(item if "." in item.partition("=")[0] else f"algorithm.{item}")
    over = merge({}, parse_overrides(items))
    if name == "random-init":
        metrics = Experiment(resolve_config(config, over)).initial_metrics()
        return {"probe": metrics.accuracy, **metrics.extra, "seconds": 0.0}
    result = fedforge.run(config, quiet=True, **over)
    return {
        "probe": result.final_accuracy,
        **result.summary["final_metrics"],
        "seconds": result.summary["wall_seconds"],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    parser.add_argument("--config", default="configs/digits_fedssl.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    with tempfile.TemporaryDirectory() as runs, ProcessPoolExecutor(args.jobs) as pool:
        futures = {
            (m, s): pool.submit(one_run, args.config, m, s, overrides, runs) for m in args.methods for s in args.seeds
        }
        results: dict[str, list[dict[str, float]]] = {}
        for (method, seed), future in futures.items():
            row = future.result()
            results.setdefault(method, []).append(row)
            print(f"{method} seed {seed}: probe {row['probe']:.4f} knn {row['knn_accuracy']:.4f}", file=sys.stderr)

    def cell(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.2f} +- {100 * spread:.2f}"

    print(f"| method | linear probe % ({len(args.seeds)} seeds) | kNN % | seconds/run |")
    print("|---|---|---|---|")
    for method, rows in results.items():
        probe, knn = [r["probe"] for r in rows], [r["knn_accuracy"] for r in rows]
        print(f"| {method} | {cell(probe)} | {cell(knn)} | {statistics.mean(r['seconds'] for r in rows):.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
