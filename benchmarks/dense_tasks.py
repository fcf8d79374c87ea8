"""Dense tasks, measured: the shipped scene configs, their centralized bounds, FedExchange vs the
baselines, and fedforge's cost per detection step against plain PyTorch.

    python benchmarks/dense_tasks.py step [--steps 60 --repeats 5]   # s / client step vs a plain loop
    python benchmarks/dense_tasks.py ray                           # one detection round, ray vs sequential
    python benchmarks/dense_tasks.py shipped [--seeds 1]           # the two scene configs + centralized bounds
    python benchmarks/dense_tasks.py compare [--seeds 3] [--rounds 40] [--methods fedavg fedexchange ...]

`compare` runs configs/scenes_weather_fedexchange.yaml (8 clients, 2 per weather domain) with
each method and prints per-domain mAP@0.5, the mean and the worst domain, mean +- std over
seeds, and the client steps each method ran (from the run store). Tables: docs/dense_tasks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import fedforge
from fedforge.algorithms import ALGORITHMS
from fedforge.algorithms.base import ClientContext
from fedforge.api import Experiment
from fedforge.config import load_config
from fedforge.engine.weights import FlatModel
from fedforge.records import MODEL, ClientJob
from fedforge.seeding import CLIENT, torch_generator

ROOT = Path(__file__).resolve().parents[1]
DETECTION = ROOT / "configs" / "scenes_detection_fedavg.yaml"
SEGMENTATION = ROOT / "configs" / "scenes_segmentation_fedavg.yaml"
EXCHANGE = ROOT / "configs" / "scenes_weather_fedexchange.yaml"


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


# --- step: fedforge's client update vs a plain PyTorch loop ------------------------------------


def step_ratio(steps: int, repeats: int) -> None:
    """The same fcos_tiny steps (same batches, augmentation draws and SGD) both ways, interleaved."""
    torch.set_num_threads(1)
    cfg = load_config(DETECTION, ["data.num_clients=1", "data.partition.kind=iid", "data.local_test_fraction=0"])
    exp = Experiment(cfg)
    data, task, t = exp.data, exp.task, cfg.train
    idx = data.client_train[0][: steps * t.batch_size]
    data.client_train[0] = idx
    flat = FlatModel(exp.build_model())
    algorithm = ALGORITHMS.get("fedavg")(train=cfg.train.model_copy(update={"local_epochs": 1}), seed=cfg.seed)
    state = algorithm.init_server(flat, data)
    plain_model = exp.build_model()

    def fedforge_client() -> None:
        ctx = ClientContext(0, 0, flat, data, task, algorithm.train, torch_generator(cfg.seed, CLIENT, 0, 0), {})
        algorithm.local_update(ctx, ClientJob(0, 0, {MODEL: state.weights}))

    def plain_client() -> None:
        gen = torch_generator(cfg.seed, CLIENT, 0, 0)
        plain_model.train()
        opt = torch.optim.SGD(plain_model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        order = idx[torch.randperm(len(idx), generator=gen)]
        boxes = data.source.train_targets["boxes"]
        for start in range(0, len(order), t.batch_size):
            batch = order[start : start + t.batch_size]
            x, targets, _ = task.augmenter(data.source.train_x[batch], gen, boxes=boxes[batch])
            loss = sum(plain_model(list(x.unbind(0)), targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
        {k: v.clone() for k, v in plain_model.state_dict().items()}  # what a client would send back

    times: dict[str, list[float]] = {"fedforge": [], "plain": []}
    fedforge_client(), plain_client()  # warm-up
    for _ in range(repeats):
        for name, fn in (("fedforge", fedforge_client), ("plain", plain_client)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / steps)
    ff, pl = statistics.median(times["fedforge"]), statistics.median(times["plain"])
    print(f"fcos_tiny, batch {t.batch_size}, {steps} steps, 1 thread, median of {repeats}:")
    print(f"  fedforge client update  {ff * 1000:.1f} ms/step")
    print(f"  plain PyTorch loop      {pl * 1000:.1f} ms/step")
    print(f"  ratio fedforge / plain  {ff / pl:.3f}")


# --- ray: one detection round on 2 workers vs sequential ---------------------------------------


def ray_round(workers: int) -> None:
    from fedforge.tracking.query import load_rounds

    out = {}
    for name, backend in (("sequential", {"kind": "sequential"}), ("ray", {"kind": "ray", "num_workers": workers})):
        with tempfile.TemporaryDirectory() as runs:
            fedforge.run(
                DETECTION,
                **{"train.rounds": 3, "eval.every": 100, "tracking.runs_dir": runs, "backend.threads": 1},
                backend=backend,
                quiet=True,
            )
            rounds = load_rounds(runs)
            out[name] = statistics.mean(r["seconds"] for r in rounds[:2])  # rounds 1-2: no evaluation
    print(f"one detection round (fcos_tiny, 4 clients x 540 scenes, 1 thread per process): "
          f"sequential {out['sequential']:.1f} s, ray {workers} workers {out['ray']:.1f} s, "
          f"speed-up {out['sequential'] / out['ray']:.2f}x")  # fmt: skip


# --- shipped configs and centralized bounds ----------------------------------------------------


def _final(config: Path, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as runs:
        result = fedforge.run(config, **{**overrides, "tracking.runs_dir": runs}, quiet=True)
    return result.summary


def shipped(seeds: int) -> None:
    central = {"data.num_clients": 1, "data.partition.kind": "iid", "data.local_test_fraction": 0.0}
    jobs = []
    for config in (DETECTION, SEGMENTATION):
        for seed in range(seeds):
            jobs += [(config, "federated", {"seed": seed}), (config, "centralized", {"seed": seed, **central})]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_final, [c for c, _, _ in jobs], [o for _, _, o in jobs]))
    table: dict[tuple[str, str], list[float]] = {}
    domains: dict[tuple[str, str], list[dict]] = {}
    for (config, kind, _), summary in zip(jobs, results, strict=True):
        table.setdefault((config.stem, kind), []).append(summary["final_metric"])
        domains.setdefault((config.stem, kind), []).append(summary["final_domain_accuracy"] or {})
    print("| config | setting | headline | per domain (clear / rain / fog / night) |\n|---|---|---|---|")
    for (stem, kind), values in table.items():
        per = domains[(stem, kind)]
        cells = " / ".join(f"{statistics.mean(d[k] for d in per):.3f}" for k in per[0])
        print(f"| {stem} | {kind} | {mean_std(values)} | {cells} |")


# --- compare: FedExchange vs FedAvg, FedProx, FedBN -------------------------------------------


def _compare_one(method: str, seed: int, rounds: int) -> dict:
    from fedforge.tracking.query import load_client_rounds

    algorithm = {"name": method, **({"mu": 0.01} if method == "fedprox" else {})}
    with tempfile.TemporaryDirectory() as runs:
        result = fedforge.run(
            EXCHANGE, seed=seed, algorithm=algorithm, quiet=True,
            **{"train.rounds": rounds, "tracking.runs_dir": runs, "eval.every": rounds},
        )  # fmt: skip
        samples = sum(r["num_samples"] for r in load_client_rounds(runs))
    s = result.summary
    return {"domains": s["final_domain_accuracy"], "map50": s["final_metric"], "samples": samples}


def client_flops(methods: list[str], steps: int = 4) -> dict[str, int]:
    """FLOPs of one client's local update (the same job and data) under each method."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = load_config(EXCHANGE)
    exp = Experiment(cfg)
    exp.data.client_train[0] = exp.data.client_train[0][: steps * cfg.train.batch_size]
    flops = {}
    for method in methods:
        flat = FlatModel(exp.build_model())
        algorithm = ALGORITHMS.get(method)(train=cfg.train.model_copy(update={"local_epochs": 1}), seed=cfg.seed)
        state = algorithm.init_server(flat, exp.data)
        job = algorithm.client_job(state, 0, 0)
        role = algorithm.client_role(flat, exp.data)
        ctx = ClientContext(
            0, 0, flat, exp.data, exp.task, algorithm.train, torch_generator(0, CLIENT, 0, 0), {}, role=role
        )
        with FlopCounterMode(display=False) as counter:
            algorithm.local_update(ctx, job)
        flops[method] = counter.get_total_flops()
    return flops


def compare(methods: list[str], seeds: int, rounds: int) -> None:
    jobs = [(m, s) for m in methods for s in range(seeds)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_compare_one, [m for m, _ in jobs], [s for _, s in jobs], [rounds] * len(jobs)))
    by_method: dict[str, list[dict]] = {}
    for (method, _), result in zip(jobs, results, strict=True):
        by_method.setdefault(method, []).append(result)
    names = list(results[0]["domains"])
    print(f"{rounds} rounds, {seeds} seed(s); mAP@0.5 of the global model per weather domain's test set")
    print(f"| method | {' | '.join(names)} | mean | worst domain | client samples trained |")
    print("|---|" + "---|" * (len(names) + 3))
    for method, runs in by_method.items():
        cells = [mean_std([r["domains"][n] for r in runs]) for n in names]
        worst = mean_std([min(r["domains"].values()) for r in runs])
        mean = mean_std([statistics.mean(r["domains"].values()) for r in runs])
        print(f"| {method} | {' | '.join(cells)} | {mean} | {worst} | {runs[0]['samples']} |")
    flops = client_flops(methods)
    print("client FLOPs of one 4-step local update: " + ", ".join(f"{m} {f / 1e9:.2f} GFLOP" for m, f in flops.items()))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["step", "ray", "shipped", "compare"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--methods", nargs="+", default=["fedavg", "fedexchange", "fedprox", "fedbn"])
    args = parser.parse_args(argv)
    if args.what == "step":
        step_ratio(args.steps, args.repeats)
    elif args.what == "ray":
        ray_round(args.workers)
    elif args.what == "shipped":
        shipped(args.seeds)
    else:
        compare(args.methods, args.seeds, args.rounds)


if __name__ == "__main__":
    main(sys.argv[1:])
