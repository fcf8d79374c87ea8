"""Start a federation from local pretrained weights (`model.weights`), never a download.

    python examples/warm_start.py

Trains FedAvg on the digits for a few rounds, then starts FedProx from the saved global
model (`model.pt`, a state dict) on a harder partition, and prints how much the warm start
gives in the first round against a cold start with the same seed.
"""

from __future__ import annotations

from pathlib import Path

import fedforge

RUNS = Path("runs/warm_start")


def first_round_accuracy(result: fedforge.RunResult) -> float:
    rounds = fedforge.tracking.load_rounds(result.run_dir)
    return next(r["global_accuracy"] for r in rounds if r["global_accuracy"] is not None)


def main() -> None:
    common = {"quiet": True, "tracking": {"runs_dir": str(RUNS)}}
    pretrain = fedforge.run(train={"rounds": 10}, **common)
    weights = pretrain.run_dir / "model.pt"
    harder = {"algorithm": {"name": "fedprox", "mu": 0.1}, "data": {"partition": {"kind": "shards"}}}
    cold = fedforge.run(train={"rounds": 3}, **harder, **common)
    warm = fedforge.run(train={"rounds": 3}, model={"name": "cnn", "weights": str(weights)}, **harder, **common)
    print(f"pretrained on dirichlet(0.5): final accuracy {pretrain.final_accuracy:.3f} -> {weights}")
    first_cold, first_warm = first_round_accuracy(cold), first_round_accuracy(warm)
    print(f"fedprox on shards, round 1: cold start {first_cold:.3f}, warm {first_warm:.3f}")
    print(f"fedprox on shards, round 3: cold start {cold.final_accuracy:.3f}, warm {warm.final_accuracy:.3f}")


if __name__ == "__main__":
    main()
