"""Simulation overhead: fedforge FedAvg vs a plain PyTorch loop doing the same gradient steps.

Both sides get the same partitioned data (built once, outside the timing), the same
initial weights, the same per-client shuffling seeds, batch size, epochs and optimizer,
and evaluate the global model once at the end. fedforge runs twice per repeat: with its
default tracking (run directory, partition.json, SQLite rounds, a checkpoint after every
round, model.pt) and with tracking off (`tracking.database=false checkpoint.every=0`), and
(when Ray is installed) once more untracked on `backend.kind=ray` with `--ray-workers`
workers, timed whole (each run starts and stops its workers) and as its round loop alone.
The sides are interleaved `--repeats` times; median wall-time ratios are printed.

    python benchmarks/overhead.py [--repeats 5] [--ray-workers 2] [key=value ...]

Cross-device (500 of 3000 Fashion-MNIST clients of ~16 training samples per round):

    python benchmarks/overhead.py --repeats 3 data.name=fashion-mnist data.num_clients=3000 \
        data.partition.kind=iid train.clients_per_round=500 train.rounds=3 train.local_epochs=1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from fedforge.api import Experiment
from fedforge.config import load_config
from fedforge.engine.selection import ClientSelector
from fedforge.models import build_model
from fedforge.seeding import CLIENT, INIT, derive_seed


def plain_fedavg(exp: Experiment) -> float:
    """FedAvg written directly in PyTorch: state_dict in, train, state_dict out, average."""
    cfg, data = exp.cfg, exp.data
    src, t = data.source, cfg.train
    mean, std = (s.view(1, -1, 1, 1) for s in src.channel_stats())
    train_x = (src.train_x.float() / 255 - mean) / std
    test_x = (src.test_x.float() / 255 - mean) / std
    model = build_model(cfg.model, data.input_shape, data.num_classes, derive_seed(cfg.seed, INIT))
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    selector = ClientSelector(cfg.data.num_clients, t.clients_per_round, cfg.seed)  # the same clients per round
    for r in range(t.rounds):
        clients = selector.sample(r)
        total = sum(len(data.client_train[cid]) for cid in clients)
        new_state = {k: torch.zeros_like(v) for k, v in global_state.items() if v.is_floating_point()}
        for cid in clients:
            idx = data.client_train[cid]
            model.load_state_dict(global_state)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
            gen = torch.Generator().manual_seed(derive_seed(cfg.seed, CLIENT, r, cid))
            for _ in range(t.local_epochs):
                order = idx[torch.randperm(len(idx), generator=gen)]
                for start in range(0, len(order), t.batch_size):
                    batch = order[start : start + t.batch_size]
                    loss = F.cross_entropy(model(train_x[batch]), src.train_y[batch])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            for k, v in model.state_dict().items():
                if k in new_state:
                    new_state[k] += v * (len(idx) / total)
        global_state.update(new_state)
    model.load_state_dict(global_state)
    model.eval()
    with torch.inference_mode():
        return float((model(test_x).argmax(1) == src.test_y).float().mean())


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def fedforge_side(exp: Experiment):
    """A whole fedforge run: (final accuracy, seconds of its round loop without evaluation)."""

    def run() -> tuple[float, float]:
        result = exp.run(quiet=True)
        return result.final_accuracy, result.summary["train_seconds"]

    return run


def plain_side(exp: Experiment):
    def run() -> tuple[float, float]:
        start = time.perf_counter()
        accuracy = plain_fedavg(exp)
        return accuracy, time.perf_counter() - start

    return run


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--ray-workers", type=int, default=2, help="also time backend.kind=ray with this many workers (0: skip)"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.rounds=10")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as runs:
        base = [
            "data.name=digits",
            "train.rounds=20",
            "train.local_epochs=2",
            "eval.every=1000",
            "eval.personalized=false",
            "backend.device=cpu",
            f"tracking.runs_dir={runs}",
            *args.overrides,
        ]
        untracked = ["tracking.database=false", "checkpoint.every=0"]
        experiments = {
            "tracked": Experiment(load_config("configs/digits_fedavg.yaml", base)),
            "untracked": Experiment(load_config("configs/digits_fedavg.yaml", base + untracked)),
        }
        if args.ray_workers:
            import ray  # one local Ray for every repeat; each run still starts (and stops) its own workers

            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            ray_overrides = ["backend.kind=ray", f"backend.num_workers={args.ray_workers}"]
            experiments["ray"] = Experiment(load_config("configs/digits_fedavg.yaml", base + untracked + ray_overrides))
        sides = {name: fedforge_side(exp) for name, exp in experiments.items()}
        sides["plain"] = plain_side(experiments["tracked"])
        for side in sides.values():
            side()  # warm-up
        times: dict[str, list[float]] = {name: [] for name in sides}
        loops: dict[str, list[float]] = {name: [] for name in sides}
        acc: dict[str, float] = {}
        for i in range(args.repeats):
            for name, side in sides.items():
                seconds, (acc[name], loop) = timed(side)
                times[name].append(seconds)
                loops[name].append(loop)
            print(f"repeat {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()), flush=True)
    cfg = experiments["tracked"].cfg

    def ratio(a: str, b: str, table: dict[str, list[float]] = times) -> float:
        return statistics.median(x / y for x, y in zip(table[a], table[b], strict=True))

    print(
        f"\n{cfg.data.name}, {cfg.model.name}, {cfg.data.num_clients} clients, {cfg.train.rounds} rounds, "
        f"{cfg.train.local_epochs} local epochs, batch {cfg.train.batch_size}, torch threads {torch.get_num_threads()}"
    )
    print("median time: " + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in times.items()))
    print("accuracy:    " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    print(
        f"overhead ratio, fedforge with tracking / plain PyTorch (median of {args.repeats}): "
        f"{ratio('tracked', 'plain'):.3f}"
    )
    print(f"overhead ratio, fedforge without tracking / plain PyTorch:            {ratio('untracked', 'plain'):.3f}")
    print(f"tracking cost, with / without tracking:                              {ratio('tracked', 'untracked'):.3f}")
    print(
        f"fastest vs fastest (least noisy): with {min(times['tracked']) / min(times['plain']):.3f}, "
        f"without {min(times['untracked']) / min(times['plain']):.3f}"
    )
    if "ray" in sides:
        print(
            f"ray ({args.ray_workers} workers) / plain PyTorch, whole run incl. starting the workers: "
            f"{ratio('ray', 'plain'):.3f}; round loop only: {ratio('ray', 'plain', loops):.3f}"
        )
        print(
            f"ray / sequential (both untracked): whole run {ratio('ray', 'untracked'):.3f}, "
            f"round loop {ratio('ray', 'untracked', loops):.3f} (below 1: ray is faster)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
