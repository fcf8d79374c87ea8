"""Transport cost of a real deployment: a gRPC server and client processes on loopback.

`fedforge serve` and `--clients` x `fedforge join` run a resnet18 (11.2 M parameters, 45 MB
of weights each way) on a small slice of digits resized to 32 px. Per round, the server's
round time (dispatch to aggregation) minus the slowest client's own training time is what
the transport costs: serializing, chunking, gRPC, validation. Round 0 also waits for the
clients to join, so medians are over the later rounds.

    python benchmarks/transport.py [--clients 1] [--rounds 5] [key=value ...]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fedforge.tracking.query import load_client_rounds, load_rounds

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.name=resnet34")
    args = parser.parse_args(argv)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as runs:
        config = [
            "configs/digits_fedavg.yaml",
            "model.name=resnet18",
            "data.image_size=32",
            "data.train_fraction=0.1",
            f"data.num_clients={args.clients}",
            f"train.rounds={args.rounds}",
            "train.local_epochs=1",
            "eval.every=1000",
            "eval.personalized=false",
            "checkpoint.every=0",
            "backend.device=cpu",
            f"tracking.runs_dir={runs}",
            *args.overrides,
        ]
        fedforge = [sys.executable, "-m", "fedforge"]
        server = subprocess.Popen([*fedforge, "serve", *config, "--address", f"127.0.0.1:{port}", "--quiet"], cwd=ROOT)
        join = [*fedforge, "join", "--server", f"127.0.0.1:{port}", "--device", "cpu", "--quiet"]
        clients = [subprocess.Popen(join, cwd=ROOT) for _ in range(args.clients)]
        if server.wait() != 0 or any(c.wait() != 0 for c in clients):
            sys.exit("the deployment failed (see above)")
        rounds = load_rounds(runs)
        client_rounds = load_client_rounds(runs)
    print(f"\nresnet18 over gRPC on loopback, {args.clients} client process(es), {args.rounds} rounds, 2-core CPU")
    print("| round | round s | slowest client training s | transport s | MB down | MB up |")
    print("|---|---|---|---|---|---|")
    overheads = []
    for row in rounds:
        training = max(c["seconds"] for c in client_rounds if c["round"] == row["round"])
        overhead = row["train_seconds"] - training
        if row["round"] > 0:
            overheads.append(overhead)
        print(
            f"| {row['round']} | {row['train_seconds']:.2f} | {training:.2f} | {overhead:.2f} | "
            f"{row['bytes_down'] / 2**20:.1f} | {row['bytes_up'] / 2**20:.1f} |"
        )
    moved = (rounds[-1]["bytes_down"] + rounds[-1]["bytes_up"]) / 2**20
    print(
        f"\ntransport per round (median of rounds 1..{args.rounds - 1}): {statistics.median(overheads):.2f} s "
        f"for {moved:.0f} MB moved ({moved / statistics.median(overheads):.0f} MB/s)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
