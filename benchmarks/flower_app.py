"""The Flower side of `vs_flower.py`: the same FedAvg experiment in Flower's simulation runtime.

Runs only in the benchmark's own virtual environment (flwr[simulation], torch, numpy; no
fedforge). Everything that defines the experiment comes from the .npz file that
`vs_flower.py` exports from a fedforge config: images, labels, the clients' index arrays,
normalization, the initial weights, the hyper-parameters and every client's shuffling seed
per round. Training is written the way a Flower user writes it (ClientApp/ServerApp with the
Message API, `FedAvg` strategy, `run_simulation`, 1 CPU per client); it does the same
sample-gradient steps as fedforge, so both must reach the same accuracy.

    PYTHONPATH=benchmarks FEDFORGE_BENCH_EXPERIMENT=exp.npz FEDFORGE_BENCH_RESULT=out.json \
        python -c "import flower_app; flower_app.simulate()"

It is imported, not run as a script, because the simulation ships the apps to Ray actors by
reference: they import this module (found through PYTHONPATH, read paths from the environment).
"""

from __future__ import annotations

import functools
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from torch import nn


@functools.cache
def experiment() -> dict:
    """Loaded once per process (the server, and each simulation actor)."""
    raw = np.load(os.environ["FEDFORGE_BENCH_EXPERIMENT"])
    hp = json.loads(str(raw["hparams"]))
    mean = torch.from_numpy(raw["mean"]).view(1, -1, 1, 1)
    std = torch.from_numpy(raw["std"]).view(1, -1, 1, 1)
    offsets = raw["client_offsets"]
    return {
        "hp": hp,
        "train_x": (torch.from_numpy(raw["train_x"]).float() / 255 - mean) / std,
        "train_y": torch.from_numpy(raw["train_y"]),
        "test_x": (torch.from_numpy(raw["test_x"]).float() / 255 - mean) / std,
        "test_y": torch.from_numpy(raw["test_y"]),
        "clients": [torch.from_numpy(raw["client_index"][a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)],
        "seeds": raw["seeds"],
        "init": {k[len("init/") :]: torch.from_numpy(raw[k]) for k in raw.files if k.startswith("init/")},
    }


def cnn(channels: int, size: int, classes: int, width: int, hidden: int) -> nn.Module:
    """The same layers, in the same order, as fedforge's `cnn` model (so state_dict keys match)."""

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(channels, width),
        *block(width, 2 * width),
        nn.Flatten(),
        nn.Linear(2 * width * (size // 4) ** 2, hidden),
        nn.ReLU(True),
        nn.Linear(hidden, classes),
    )


def new_model() -> nn.Module:
    hp = experiment()["hp"]
    return cnn(hp["channels"], hp["size"], hp["classes"], hp["width"], hp["hidden"])


client_app = ClientApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    exp, cid = experiment(), int(context.node_config["partition-id"])
    hp, idx = exp["hp"], exp["clients"][cid]
    model = new_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    gen = torch.Generator().manual_seed(int(exp["seeds"][int(msg.content["config"]["server-round"]) - 1, cid]))
    total, steps = 0.0, 0
    for _ in range(hp["local_epochs"]):
        order = idx[torch.randperm(len(idx), generator=gen)]
        for start in range(0, len(order), hp["batch_size"]):
            batch = order[start : start + hp["batch_size"]]
            loss = F.cross_entropy(model(exp["train_x"][batch]), exp["train_y"][batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + float(loss), steps + 1
    metrics = MetricRecord({"num-examples": len(idx), "train_loss": total / max(steps, 1)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    exp = experiment()
    hp = exp["hp"]
    n = len(exp["clients"])
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
    start = time.perf_counter()
    result = strategy.start(
        grid=grid, initial_arrays=ArrayRecord(exp["init"]), num_rounds=hp["rounds"], train_config=ConfigRecord({})
    )
    loop_seconds = time.perf_counter() - start
    model = new_model()
    model.load_state_dict(result.arrays.to_torch_state_dict())
    model.eval()
    with torch.inference_mode():
        accuracy = float((model(exp["test_x"]).argmax(1) == exp["test_y"]).float().mean())
    with open(os.environ["FEDFORGE_BENCH_RESULT"], "w") as fh:
        json.dump({"accuracy": accuracy, "loop_seconds": loop_seconds}, fh)


def simulate() -> None:
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=len(experiment()["clients"]),
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
