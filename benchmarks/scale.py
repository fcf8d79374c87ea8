"""Cross-device scale: time per round and peak memory as clients per round and in total grow.

    python benchmarks/scale.py [--per-round 10 100 1000] [--totals 3000 60000] [--rounds 3] [key=value ...]
    python benchmarks/scale.py --stateful [--stateful-rounds 40]

Fashion-MNIST (60,000 training images, read from disk once), IID over `total` clients:
3,000 clients hold 20 images each (16 for training); 60,000 hold one each. Every
configuration runs FedAvg with one local epoch in its own process, so its peak resident
memory (`ru_maxrss`) is its own. Two tables: clients per round vs time per round (total
fixed at the first of --totals), and total clients vs memory (clients per round fixed at
the middle of --per-round): memory should stay flat, as the dataset is shared and a
client is an index array plus (for FedAvg) no state.

`--stateful` measures what per-client state costs instead: SCAFFOLD (a control variate per client,
as large as the model) with the digits-sized cnn (8x8 inputs) on 100 clients (all of them each
round, 2 rounds) and on 10,000 (500 per round, --stateful-rounds rounds), in memory and with
`engine.client_store: disk`. The disk store should keep 10,000 clients
within 20 % of the memory of 100.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile

BASE = [
    "data.name=fashion-mnist",
    "data.partition.kind=iid",
    "train.local_epochs=1",
    "eval.every=1000",
    "eval.personalized=false",
    "backend.device=cpu",
    "checkpoint.every=0",
]


def child(total: int, per_round: int, rounds: int, overrides: list[str]) -> dict[str, float]:
    """One run in this process: seconds per round (median) and memory."""
    from fedforge.api import Experiment
    from fedforge.config import load_config
    from fedforge.tracking.query import load_client_rounds, load_rounds

    with tempfile.TemporaryDirectory() as runs:
        items = [
            *BASE,
            f"data.num_clients={total}",
            f"train.clients_per_round={per_round}",
            f"train.rounds={rounds}",
            f"tracking.runs_dir={runs}",
            *overrides,
        ]
        exp = Experiment(load_config(None, items))
        loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = exp.run(quiet=True)
        per_round_s = statistics.median(r["train_seconds"] for r in load_rounds(result.run_dir))
        stateful = len({r["client_id"] for r in load_client_rounds(result.run_dir) if r["trained"]})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds_per_round": per_round_s, "loaded_mb": loaded_mb, "peak_mb": peak_mb, "stateful": stateful}


def measure(total: int, per_round: int, rounds: int, overrides: list[str]) -> dict[str, float]:
    code = "import json, sys; from benchmarks.scale import child; print(json.dumps(child(*json.loads(sys.argv[1]))))"
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps([total, per_round, rounds, overrides])],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    parser.add_argument("--per-round", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--totals", type=int, nargs="+", default=[3000, 60000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stateful", action="store_true", help="measure SCAFFOLD's per-client state instead")
    parser.add_argument("--stateful-rounds", type=int, default=40)
    args = parser.parse_args(argv)
    if args.stateful:
        stateful(args.stateful_rounds, args.overrides)
        return
    total = args.totals[0]
    print(f"| clients per round (of {total}) | seconds per round | ms per client | peak MB |")
    print("|---|---|---|---|")
    for n in args.per_round:
        m = measure(total, n, args.rounds, args.overrides)
        s = m["seconds_per_round"]
        print(f"| {n} | {s:.2f} | {1000 * s / n:.1f} | {m['peak_mb']:.0f} |", flush=True)
    n = args.per_round[len(args.per_round) // 2]
    print(f"\n| total clients ({n} per round) | MB after loading data | peak MB | seconds per round |")
    print("|---|---|---|---|")
    for t in args.totals:
        m = measure(t, n, args.rounds, args.overrides)
        print(f"| {t} | {m['loaded_mb']:.0f} | {m['peak_mb']:.0f} | {m['seconds_per_round']:.2f} |", flush=True)


STATEFUL = ["algorithm.name=scaffold", "data.image_size=8", "train.batch_size=8"]


def stateful(rounds: int, overrides: list[str]) -> None:
    """SCAFFOLD's client state in memory and on disk, for 100 and 10,000 clients."""
    print("| client store | total clients | clients holding state | peak MB | vs 100 in memory | seconds per round |")
    print("|---|---|---|---|---|---|")
    base = None
    for store, total in (("memory", 100), ("memory", 10_000), ("disk", 100), ("disk", 10_000)):
        items = [*STATEFUL, f"engine.client_store={store}", *overrides]
        m = measure(total, min(500, total), rounds if total > 100 else 2, items)  # 100: all hold state at once
        base = base if base is not None else m["peak_mb"]
        print(
            f"| {store} | {total} | {m['stateful']} | {m['peak_mb']:.0f} | {m['peak_mb'] / base:.2f}x | "
            f"{m['seconds_per_round']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
