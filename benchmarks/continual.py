"""Class-continual methods side by side on one task stream, averaged over seeds.

    python benchmarks/continual.py CONFIG [--methods finetune fedlwf target] [--seeds 0 1 2] [key=value ...]

(key=value overrides may stand anywhere on the line.)

Every method runs the config's stream (same partitions per seed, same model, same local
training settings); only `algorithm.name` changes (method-specific keys of the config's
algorithm section are kept only for the method it names). Prints, per method, the mean
and spread over seeds of: average incremental accuracy, final accuracy on all classes,
final accuracy on the old classes, forgetting, wall time, and (TARGET) the synthesis
cost per task.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

from fedforge.api import resolve_config, run
from fedforge.config import read_yaml

COLUMNS = ("average_accuracy", "final_accuracy", "final_old_accuracy", "forgetting")


def method_overrides(config: str, method: str) -> dict:
    """Switch the method; keep the config's algorithm settings only for the method they belong to."""
    algorithm = read_yaml(config).get("algorithm", {})
    if algorithm.get("name") == method:
        return {}
    return {"algorithm": {"name": method}}


def fmt(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {spread:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--methods", nargs="+", default=["finetune", "fedprox", "fedewc", "fedlwf", "target"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    argv = sys.argv[1:]
    extra = dict(item.split("=", 1) for item in argv if "=" in item and not item.startswith("-"))
    args = parser.parse_args([item for item in argv if "=" not in item or item.startswith("-")])
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for method in args.methods:
            scores: dict[str, list[float]] = {k: [] for k in (*COLUMNS, "wall_seconds")}
            synthesis: list[dict] = []
            for seed in args.seeds:
                overrides = {**method_overrides(args.config, method), "seed": seed, "tracking.runs_dir": runs, **extra}
                cfg = resolve_config(args.config, overrides)
                result = run(cfg, quiet=True)
                summary = result.summary
                for key in COLUMNS:
                    scores[key].append(summary["continual"][key])
                scores["wall_seconds"].append(summary["wall_seconds"])
                synthesis += summary.get("synthesis", [])
                print(f"{method} seed {seed}: " + ", ".join(f"{k} {summary['continual'][k]:.3f}" for k in COLUMNS))
            rows.append((method, scores, synthesis))
    print(f"\n{args.config}, seeds {args.seeds} (mean ± std over seeds)\n")
    print("| method | avg accuracy | final accuracy | old-class accuracy | forgetting ↓ | wall s |")
    print("|---|---|---|---|---|---|")
    for method, scores, _ in rows:
        cells = " | ".join(fmt(scores[k]) for k in COLUMNS)
        print(f"| {method} | {cells} | {statistics.fmean(scores['wall_seconds']):.1f} |")
    for method, _, synthesis in rows:
        if synthesis:
            print(f"\n{method}: synthesis after each task (mean over seeds)\n")
            print("| after task | seconds | synthetic images | bytes | generator steps | teacher agreement |")
            print("|---|---|---|---|---|---|")
            for task in sorted({entry["task"] for entry in synthesis}):
                same = [e for e in synthesis if e["task"] == task]
                print(
                    f"| {task} | {statistics.fmean(e['seconds'] for e in same):.1f} | {same[0]['synthetic_images']} | "
                    f"{same[0]['synthetic_bytes']} | {same[0]['generator_steps']} | "
                    f"{statistics.fmean(e['teacher_agreement'] for e in same):.3f} |"
                )


if __name__ == "__main__":
    main()
