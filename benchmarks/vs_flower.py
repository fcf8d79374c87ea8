"""fedforge vs Flower: the same FedAvg experiment in both, side by side.

One config (default `configs/digits_fedavg.yaml`: digits, 10 clients, Dirichlet 0.5, the cnn,
20 rounds x 2 local epochs, batch 32, SGD lr 0.05 momentum 0.9) is exported once to an .npz
file: images, labels, each client's index array, normalization, the initial weights, the
hyper-parameters and every client's shuffling seed per round. fedforge runs the config
(sequential executor, default tracking); Flower 1.42.0 runs `flower_app.py` on the export
(`flwr.simulation.run_simulation`, ClientApp/ServerApp, FedAvg, 1 CPU per client). Both do
the same sample-gradient steps, so the accuracies must agree. Each framework runs in its own
subprocess, alternating which goes first, `--repeats` times; medians are printed.

Flower is never a fedforge dependency: it lives in its own virtual environment, created on
first use under `.bench/` (torch at the versions installed here, flwr[simulation]==1.42.0).

    python benchmarks/vs_flower.py [--repeats 3] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FLWR = "1.42.0"
FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}

REQUIREMENTS = """
import importlib.metadata as m
from pip._vendor.packaging.requirements import Requirement
for line in m.requires("flwr"):
    req = Requirement(line)
    if req.marker is None or req.marker.evaluate({"extra": "simulation"}):
        extras = "[" + ",".join(sorted(req.extras)) + "]" if req.extras else ""
        print(req.name + extras + "\\t" + str(req.specifier))
"""


def flower_python(venv: Path) -> Path:
    """The benchmark's own Flower environment (created once; about 2-3 minutes)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", f"import flwr, sys; sys.exit(flwr.__version__ != '{FLWR}')"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} with flwr[simulation]=={FLWR} (first run only)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    torch = [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}"]
    attempt = subprocess.run([*pip, *torch, f"flwr[simulation]=={FLWR}"], capture_output=True, text=True)
    if attempt.returncode != 0:
        # A package registry may lack a dependency at the exact floor flwr declares (this machine's
        # lacks certifi>=2026.10.19, one day newer than its newest). Install flwr's declared
        # requirements with only the unsatisfiable floors relaxed, then flwr itself.
        missing = set(re.findall(r"No matching distribution found for ([A-Za-z0-9_.\-]+)", attempt.stderr))
        if not missing:
            sys.exit(f"installing flwr[simulation]=={FLWR} failed:\n{attempt.stderr}")
        subprocess.run([*pip, "--no-deps", f"flwr=={FLWR}"], check=True)
        listed = subprocess.run([str(python), "-c", REQUIREMENTS], capture_output=True, text=True, check=True)
        reqs = []
        for line in listed.stdout.splitlines():
            name, spec = line.split("\t")
            relaxed = re.split(r"\[", name)[0].lower() in {m.lower() for m in missing}
            reqs.append(name if relaxed else name + spec)
        print(f"relaxed unsatisfiable floor(s) of flwr's requirements: {', '.join(sorted(missing))}", flush=True)
        subprocess.run([*pip, *torch, *reqs], check=True)
    return python


def export(cfg_path: str, overrides: list[str], out: Path) -> dict:
    """Write the experiment the Flower side runs; refuse configs it does not reproduce."""
    from fedforge.api import Experiment
    from fedforge.config import load_config
    from fedforge.seeding import CLIENT, derive_seed

    exp = Experiment(load_config(cfg_path, [*overrides, "backend.device=cpu"]))
    cfg, data = exp.cfg, exp.data
    t, model = cfg.train, cfg.model
    supported = {
        "algorithm.name=fedavg": cfg.algorithm.name == "fedavg",
        "model.name=cnn": model.name == "cnn" and model.params.norm == "batch",
        "train.optimizer=sgd": t.optimizer == "sgd",
        "train.clients_per_round=all": t.clients_per_round in (None, cfg.data.num_clients),
        "data.augment=false": not cfg.data.augment,
        "train.dropout_rate=0": t.dropout_rate == 0,
    }
    if not all(supported.values()):
        sys.exit("vs_flower.py reproduces only: " + ", ".join(k for k, ok in supported.items() if not ok))
    src = data.source
    mean, std = src.channel_stats()
    channels, size, _ = data.input_shape
    hparams = {
        "rounds": t.rounds,
        "local_epochs": t.local_epochs,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "momentum": t.momentum,
        "weight_decay": t.weight_decay,
        "channels": channels,
        "size": size,
        "classes": data.num_classes,
        "width": model.params.width,
        "hidden": model.params.hidden,
    }
    seeds = [[derive_seed(cfg.seed, CLIENT, r, cid) for cid in range(data.num_clients)] for r in range(t.rounds)]
    sizes = [len(idx) for idx in data.client_train]
    np.savez(
        out,
        hparams=json.dumps(hparams),
        mean=mean.numpy(),
        std=std.numpy(),
        train_x=src.train_x.numpy(),
        train_y=src.train_y.numpy(),
        test_x=src.test_x.numpy(),
        test_y=src.test_y.numpy(),
        client_index=np.concatenate([idx.numpy() for idx in data.client_train]),
        client_offsets=np.cumsum([0, *sizes]),
        seeds=np.array(seeds, dtype=np.int64),
        **{f"init/{k}": v.numpy() for k, v in exp.build_model().state_dict().items()},
    )
    return hparams | {"clients": data.num_clients, "dataset": cfg.data.name, "samples": sum(sizes)}


def fedforge_side(cfg_path: str, overrides: list[str], result: Path) -> None:
    """Runs in its own process: the config as a user runs it, default tracking included."""
    from fedforge.api import Experiment
    from fedforge.config import load_config

    with tempfile.TemporaryDirectory() as runs:
        cfg = load_config(cfg_path, [*overrides, "backend.device=cpu", f"tracking.runs_dir={runs}"])
        run = Experiment(cfg).run(quiet=True)
    summary = {"accuracy": run.final_accuracy, "loop_seconds": run.summary["train_seconds"]}
    result.write_text(json.dumps(summary))


def timed_subprocess(command: list[str], env: dict[str, str], result: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not result.exists():
        sys.exit(f"{' '.join(command[:3])} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text()) | {"end_to_end": seconds}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default="configs/digits_fedavg.yaml")
    parser.add_argument("--flower-venv", type=Path, default=ROOT / ".bench" / f"flwr-{FLWR}")
    parser.add_argument("--side", choices=["fedforge"], help=argparse.SUPPRESS)  # internal: one timed side
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.rounds=10")
    args = parser.parse_args(argv)
    overrides = ["eval.every=1000", "eval.personalized=false", *args.overrides]
    if args.side == "fedforge":
        fedforge_side(args.config, overrides, args.result)
        return

    flower = flower_python(args.flower_venv)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "experiment.npz"
        setting = export(args.config, overrides, npz)
        sides = {
            "fedforge": lambda out: (
                [sys.executable, __file__, "--side", "fedforge", "--config", args.config, "--result", str(out)]
                + overrides,
                {},
            ),
            "flower": lambda out: (
                [str(flower), "-c", "import flower_app; flower_app.simulate()"],
                FLOWER_ENV
                | {"PYTHONPATH": str(HERE), "FEDFORGE_BENCH_EXPERIMENT": str(npz), "FEDFORGE_BENCH_RESULT": str(out)},
            ),
        }
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for i in range(args.repeats):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for name in order:
                out = Path(tmp) / f"{name}-{i}.json"
                runs[name].append(timed_subprocess(*sides[name](out), out))
            print(
                f"repeat {i + 1}: "
                + ", ".join(
                    f"{n} {r[-1]['end_to_end']:.1f} s (loop {r[-1]['loop_seconds']:.1f} s)" for n, r in runs.items()
                ),
                flush=True,
            )
    report(setting, runs, args.repeats)


def report(setting: dict, runs: dict[str, list[dict]], repeats: int) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def ratio(key: str) -> float:
        return statistics.median(f[key] / g[key] for f, g in zip(runs["flower"], runs["fedforge"], strict=True))

    s = setting
    print(
        f"\nFedAvg on {s['dataset']}: {s['clients']} clients ({s['samples']} training images), cnn, "
        f"{s['rounds']} rounds x {s['local_epochs']} local epochs, batch {s['batch_size']}, lr {s['lr']}; "
        f"{os.cpu_count()} CPU cores; median of {repeats}"
    )
    print(f"{'':28}{'fedforge':>10}{'Flower ' + FLWR:>14}{'Flower / fedforge':>20}")
    for label, key in (("end to end (s)", "end_to_end"), ("round loop (s)", "loop_seconds")):
        print(f"{label:28}{median('fedforge', key):>10.2f}{median('flower', key):>14.2f}{ratio(key):>20.2f}")
    accs = {name: [r["accuracy"] for r in rs] for name, rs in runs.items()}
    print(
        f"{'final accuracy':28}{statistics.median(accs['fedforge']):>10.4f}{statistics.median(accs['flower']):>14.4f}"
    )
    print("accuracy per repeat: " + "; ".join(f"{n} " + ", ".join(f"{a:.4f}" for a in v) for n, v in accs.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
