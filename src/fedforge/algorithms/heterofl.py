"""HeteroFL (Diao et al., ICLR 2021) and FedRolex (Alam et al., NeurIPS 2022): clients of different
capacity train sub-models of different widths of one global model.

A client of capacity r trains the model whose every hidden layer keeps ceil(r * C) of its C channels
(models/width.py): HeteroFL the first ones, FedRolex a window that rolls one channel per round, so
every channel of the global model gets trained by the small clients too. A client receives and
uploads only its sub-model (its bytes shrink like its compute), as a part of MODEL at known
positions; the server averages every position over the clients that hold it (engine/aggregation.py's
PartialSum), so the aggregator plug-in and the server optimizer still see one MODEL entry.

- **Scaler** (`scaler: true`, off by default): a narrower model divides each hidden layer's output by
  r, so the layers after it see activations on the full model's scale. Measured here, it changes
  little under BatchNorm and makes a BN-free cnn diverge, hence the default. Unlike the released
  code (which drops it at inference, harmless with BatchNorm's scale invariance), it stays on
  whenever the narrower model runs, so a sub-model evaluated alone is the model its clients trained.
- **Static BN**: running statistics are not averaged across widths (a channel's statistics depend on
  how many channels feed it). After training, a client recomputes the statistics of its final
  sub-model over its data and uploads them (`stats/w<r>`); the server keeps them per width, and the
  full model's are the full-width clients'.
- **Capacities**: `capacities` maps a width to the share of clients at it, assigned by a seeded
  draw, or by speed (`assign: speed`, the `system:` profile's fastest clients get the widest models).
  `min_capacity` lets narrower clients sit out: the baseline of training only with the clients that
  can run the full model.
Each width's sub-model is evaluated alone every evaluation round (`width_<r>_accuracy`; FedRolex's at the
window its clients trained last, whose statistics the server holds).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from fedforge.algorithms.base import MODEL, Algorithm, ClientContext, ClientJob, ClientResult, ServerState, register
from fedforge.data.federated import FederatedDataset
from fedforge.engine.weights import FlatModel, Layout
from fedforge.errors import ConfigError
from fedforge.models.width import WidthPlan
from fedforge.plugins import StrictModel
from fedforge.records import UploadSpec
from fedforge.seeding import WIDTHS, numpy_rng

RATE = "width"  # job entry: the capacity the client trains at


def part_name(rate: float) -> str:
    """The upload entry of a width-`rate` sub-model's parameters."""
    return f"model/w{rate:g}"


def stats_name(rate: float) -> str:
    """The upload entry of a width-`rate` sub-model's BatchNorm statistics."""
    return f"stats/w{rate:g}"


class Scaler:
    """Divides a hidden layer's output by the sub-model's capacity (a forward hook)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, _module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
        return output / self.rate


@dataclass
class SubModel:
    """A width-r copy of the model with flat weights; `compact` are the flat positions of its tensors
    (layout order: parameters, then statistics), i.e. what travels."""

    flat: FlatModel
    compact: torch.Tensor
    num_params: int  # how many of `compact` are parameters

    @classmethod
    def build(cls, plan: WidthPlan, model: nn.Module, rate: float, scaler: bool) -> SubModel:
        module = plan.sub_module(model, rate)
        if scaler and rate < 1:
            hidden = [layer.name for layer in plan.layers if layer.producer][:-1]  # not the classifier
            for name in hidden:
                module.get_submodule(name).register_forward_hook(Scaler(rate))
        flat = FlatModel(module)
        layout = flat.layout
        names = {e.name for e in layout.entries if e.is_param}
        params, stats = layout.indices(lambda n: n in names), layout.indices(lambda n: n not in names)
        return cls(flat, torch.cat([params, stats]).to(flat.vector.device), len(params))

    def load(self, weights: torch.Tensor) -> None:
        self.flat.vector[self.compact] = weights.to(self.flat.vector.device)

    def params(self) -> torch.Tensor:
        return self.flat.vector[self.compact[: self.num_params]].clone()

    def stats(self) -> torch.Tensor:
        return self.flat.vector[self.compact[self.num_params :]].clone()


@dataclass
class WidthRole:
    """What a client needs: the model's width plan and its sub-models, built once per width."""

    plan: WidthPlan
    model: nn.Module
    scaler: bool
    subs: dict[float, SubModel] = field(default_factory=dict)

    def sub(self, rate: float) -> SubModel:
        if rate not in self.subs:
            self.subs[rate] = SubModel.build(self.plan, self.model, rate, self.scaler)
        return self.subs[rate]


def recompute_statistics(ctx: ClientContext) -> None:
    """Static BN: replace the running statistics by those of the final weights over the client's data:
    one pass without gradients, each BN layer averaging its batches' statistics (PyTorch's cumulative
    average, momentum None), as the released code's statistics pass does."""
    norms = [m for m in ctx.model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over the pass
    ctx.model.train()
    with torch.no_grad():
        for images, _ in ctx.batches(1):
            ctx.model(ctx.data.transform(images, ctx.generator))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def assign_capacities(
    capacities: dict[float, float], num_clients: int, seed: int, slowness: np.ndarray | None
) -> np.ndarray:
    """Each client's width: the shares of `capacities` as exact counts (largest remainder), given to a
    seeded permutation of the clients, or to the clients ordered fastest first (`slowness`)."""
    rates = sorted(capacities, reverse=True)
    exact = np.array([capacities[r] * num_clients for r in rates])
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: num_clients - counts.sum()]:
        counts[i] += 1
    order = (
        np.argsort(slowness, kind="stable")
        if slowness is not None
        else numpy_rng(seed, WIDTHS).permutation(num_clients)
    )
    assigned = np.empty(num_clients)
    assigned[order] = np.repeat(rates, counts)
    return assigned


class WidthParams(StrictModel):
    capacities: dict[float, float] = Field(
        default_factory=lambda: {1.0: 0.2, 0.5: 0.4, 0.25: 0.4},
        description="width in (0, 1] -> share of the clients at it, summing to 1 (default {1: .2, .5: .4, .25: .4})",
    )
    assign: Literal["random", "speed"] = Field(
        "random", description="random: a seeded draw; speed: the fastest clients of the system: profile get the widest"
    )
    scaler: bool = Field(
        False,
        description="divide a narrower model's hidden outputs by its width, as the paper (default false: "
        "without BatchNorm it diverged here, docs/model_level.md)",
    )
    min_capacity: float = Field(
        0.0, ge=0, le=1, description="clients narrower than this sit out (default 0: everyone trains)"
    )

    @field_validator("capacities")
    @classmethod
    def _shares(cls, value: dict[float, float]) -> dict[float, float]:
        if not value:
            raise ValueError("give at least one width")
        for rate, share in value.items():
            if not 0 < rate <= 1 or share < 0:
                raise ValueError(f"width {rate:g} with share {share:g}: widths lie in (0, 1], shares are >= 0")
        if not math.isclose(sum(value.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"the shares sum to {sum(value.values()):g}, not 1")
        return value


@register("heterofl")
class HeteroFL(Algorithm):
    """Clients train the first ceil(r*C) channels of every layer; positions averaged over their holders."""

    Params: ClassVar[type[WidthParams]] = WidthParams
    uploads_parts = True
    rolling: ClassVar[bool] = False  # FedRolex: the window of channels moves with the round

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slowness: np.ndarray | None = None
        self.rates: np.ndarray | None = None
        self._positions: dict[tuple[float, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._eval_roles: dict[int, WidthRole] = {}

    def observe_system(self, slowness: np.ndarray | None) -> None:
        self.slowness = slowness

    def client_role(self, flat: FlatModel, data: FederatedDataset) -> WidthRole:
        return WidthRole(WidthPlan.of(flat.model, data.input_shape), flat.model, self.params.scaler)

    # -- server side ----------------------------------------------------------------------
    def init_server(self, flat: FlatModel, data: FederatedDataset) -> ServerState:
        self.plan = WidthPlan.of(flat.model, data.input_shape)
        self.num_clients = data.num_clients
        state = super().init_server(flat, data)
        state.extras.update(round=0, stats={})
        return state

    def client_rates(self) -> np.ndarray:
        if self.rates is None:
            if self.params.assign == "speed" and self.slowness is None:
                raise ConfigError("algorithm.assign=speed needs the system: section's client speeds")
            slowness = self.slowness if self.params.assign == "speed" else None
            self.rates = assign_capacities(self.params.capacities, self.num_clients, self.seed, slowness)
        return self.rates

    def window(self, round_index: int) -> int:
        """Where round `round_index`'s channel window starts (FedRolex rolls it; HeteroFL's is fixed)."""
        return round_index if self.rolling else 0

    def positions(self, rate: float, offset: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(parameter positions, statistics positions) in the flat vector of the width-`rate` sub-model
        whose window starts at channel `offset`; kept for the current window only."""
        key = (rate, offset)
        if key not in self._positions:
            if all(k[1] != offset for k in self._positions):
                self._positions = {k: v for k, v in self._positions.items() if k[1] == 0}  # the full width's stay
            layout: Layout = self.layout  # type: ignore[assignment]
            params = self.plan.positions([e for e in layout.entries if e.is_param], rate, offset)
            stats = self.plan.positions([e for e in layout.entries if not e.is_param], rate, offset)
            self._positions[key] = params.to(device), stats.to(device)
        return self._positions[key]

    def sub_weights(self, state: ServerState, rate: float, offset: int) -> torch.Tensor:
        """The width-`rate` sub-model's weights (its window from `offset`) and that width's statistics."""
        params, stats = self.positions(rate, offset, state.weights.device)
        own = state.extras["stats"].get(f"{rate:g}")
        return torch.cat([state.weights[params], own if own is not None else state.weights[stats]])

    def client_job(self, state: ServerState, client_id: int, round_index: int) -> ClientJob:
        rate = float(self.client_rates()[client_id])
        if rate < self.params.min_capacity:
            return ClientJob(client_id, round_index, {MODEL: torch.zeros(0), RATE: torch.zeros(1)})  # sits out
        sub = self.sub_weights(state, rate, self.window(round_index))
        return ClientJob(client_id, round_index, {MODEL: sub, RATE: torch.tensor([rate])})

    def upload_specs(self, state: ServerState) -> dict[str, UploadSpec]:
        rates = self.client_rates()
        round_index = int(state.extras["round"])
        specs = {MODEL: dataclasses.replace(UploadSpec.of(state.weights), required=False)}
        for rate in sorted(set(rates.tolist())):
            if rate < self.params.min_capacity:
                continue
            params, stats = self.positions(rate, self.window(round_index), state.weights.device)
            senders = frozenset(int(c) for c in np.nonzero(rates == rate)[0])
            reference = state.weights[params]
            specs[part_name(rate)] = UploadSpec(
                (len(params),), reference, required=False, positions=params,
                reference_norm=float(torch.linalg.vector_norm(reference)), senders=senders,
            )  # fmt: skip
            if len(stats):
                specs[stats_name(rate)] = UploadSpec((len(stats),), required=False, senders=senders)
        return specs

    def apply(self, state: ServerState, reduced: dict[str, torch.Tensor], round_index: int) -> ServerState:
        """MODEL is the per-position mean over the parts; each width's statistics are its clients' mean,
        and the full width's are the full model's."""
        weights = reduced.get(MODEL, state.weights)
        stats = dict(state.extras["stats"])
        for name, value in reduced.items():
            if name.startswith("stats/w"):
                rate = float(name.removeprefix("stats/w"))
                stats[f"{rate:g}"] = value
                if rate == 1.0:
                    _, positions = self.positions(1.0, 0, weights.device)
                    weights = weights.clone()
                    weights[positions] = value
        return ServerState(weights, {**state.extras, "round": round_index + 1, "stats": stats})

    def summary(self, state: ServerState) -> dict[str, Any]:
        rates = self.client_rates()
        return {"widths": {f"{r:g}": int((rates == r).sum()) for r in sorted(set(rates.tolist()), reverse=True)}}

    def eval_variants(self, state: ServerState, flat: FlatModel) -> dict[str, tuple[FlatModel, torch.Tensor]]:
        """Every narrower width's sub-model alone, with that width's statistics: the window its clients
        trained last (HeteroFL's is always the first channels)."""
        if id(flat) not in self._eval_roles:
            self._eval_roles = {id(flat): WidthRole(self.plan, flat.model, self.params.scaler)}
        role = self._eval_roles[id(flat)]
        variants = {}
        for rate in sorted(r for r, share in self.params.capacities.items() if share > 0):
            if rate >= 1 or rate < self.params.min_capacity:
                continue
            sub = role.sub(rate)
            vector = torch.zeros_like(sub.flat.vector)
            last = self.window(max(int(state.extras["round"]) - 1, 0))
            vector[sub.compact] = self.sub_weights(state, rate, last).to(vector)
            variants[f"width_{rate:g}"] = (sub.flat, vector)
        return variants

    # -- client side ----------------------------------------------------------------------
    def local_update(self, ctx: ClientContext, job: ClientJob) -> ClientResult:
        rate = float(job.payload[RATE][0])
        if rate == 0:
            return ClientResult(job.client_id, {}, 0, {"sat_out": 1.0})
        sub = ctx.role.sub(rate)
        sub.load(job.model)
        inner = dataclasses.replace(ctx, flat=sub.flat)
        loss = inner.run_sgd(self.train.local_epochs)
        recompute_statistics(inner)
        ctx.steps = inner.steps
        update = {part_name(rate): sub.params()}
        if sub.num_params < len(sub.compact):
            update[stats_name(rate)] = sub.stats()
        return ClientResult(job.client_id, update, ctx.num_samples, {"train_loss": loss, "width": rate})


@register("fedrolex")
class FedRolex(HeteroFL):
    """HeteroFL whose sub-model window rolls one channel per round, so all channels get trained."""

    rolling = True
