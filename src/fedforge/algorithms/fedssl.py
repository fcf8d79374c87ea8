"""The FedSSL framework (Zhuang et al., ICLR 2022): federated Siamese-network SSL.

Every method here trains the `ssl` task's SSLNetwork and differs only in declared choices:
which parts (`online` = encoder + projector, `predictor`, `target`) a client uploads for
averaging, which it keeps between rounds, and how it merges what it kept with the global
model when a round starts (`merge_local`). FedBYOL, FedSimSiam, FedSimCLR and FedMoCo are
plain FedAvg of their shared parts; FedU and FedEMA (own modules) override `merge_local`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from fedforge.algorithms.base import MODEL, ClientContext, ClientJob, ServerState, register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.data.federated import FederatedDataset
from fedforge.engine.weights import FlatModel, Layout
from fedforge.errors import ConfigError
from fedforge.plugins import StrictModel
from fedforge.tasks.ssl import PARTS, SSLNetwork


@dataclass(frozen=True)
class LayerDistance:
    """Mean over weight tensors (conv and linear kernels) of the L2 distance ||a_l - b_l||.

    Works on a part's compact vector (`vector[part_index]`); per-layer distances make the
    value comparable across model sizes, which is what FedU's fixed threshold relies on.
    """

    positions: torch.Tensor  # where weight-tensor elements sit in the compact vector
    segments: torch.Tensor  # which weight tensor each of them belongs to
    count: int

    @classmethod
    def for_modules(cls, layout: Layout, modules: tuple[str, ...]) -> LayerDistance:
        positions, segments, offset, count = [], [], 0, 0
        for entry in layout.entries:
            if entry.name.split(".")[0] not in modules:
                continue
            if entry.is_param and len(entry.shape) >= 2:
                positions.append(torch.arange(offset, offset + entry.numel))
                segments.append(torch.full((entry.numel,), count))
                count += 1
            offset += entry.numel
        if not count:
            return cls(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64), 0)
        return cls(torch.cat(positions), torch.cat(segments), count)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> float:
        if not self.count:
            return 0.0
        pos = self.positions.to(a.device)
        diff = (a[pos] - b[pos]).pow(2)
        sums = torch.zeros(self.count, device=a.device).index_add_(0, self.segments.to(a.device), diff)
        return float(sums.sqrt().mean())


@dataclass(frozen=True)
class SSLParts:
    """Where each part of the SSLNetwork sits in the flat vector: what server and clients of a
    FedSSL method both derive from the model (`FedSSL.client_role`)."""

    index: dict[str, torch.Tensor]  # part name -> its positions (only the parts the network has)
    upload: torch.Tensor  # positions of the uploaded parts, in upload order
    online_distance: LayerDistance
    initial: torch.Tensor  # the seeded initial model: parts a client never received start from it


class DivergenceParams(StrictModel):
    divergence: Literal["global_local", "local_change"] = Field(
        "global_local",
        description="global_local: distance of the global to the client's last local online network (the papers); "
        "local_change: how far local training moved it last time (EasyFL's code)",
    )


class FedSSL(FedAvg):
    """Shared mechanism: upload and average the declared parts; keep the declared ones locally."""

    task = "ssl"
    any_supervised_task = False
    ssl_losses: ClassVar[tuple[str, ...]] = ("byol",)  # accepted task.loss values; the first is the default
    uploads: ClassVar[tuple[str, ...]] = ("online", "predictor")  # sent to the server and averaged
    keeps: ClassVar[tuple[str, ...]] = ()  # stored in the client's state between its rounds

    @classmethod
    def configure_task(cls, task: Any) -> None:
        loss = task.params.loss
        if loss is None:
            task.set_param("loss", cls.ssl_losses[0])
        elif loss not in cls.ssl_losses:
            raise ValueError(
                f"algorithm '{cls.name}' trains with task.loss {' or '.join(cls.ssl_losses)}, not '{loss}' "
                "(fedbyol: byol, fedsimsiam: simsiam, fedsimclr: simclr, fedmoco: moco)"
            )

    def client_role(self, flat: FlatModel, data: FederatedDataset) -> SSLParts:
        if not isinstance(flat.model, SSLNetwork):
            raise ConfigError(f"algorithm '{self.name}' needs task.name=ssl (its model is an SSLNetwork)")
        layout = flat.layout
        index = {
            part: idx
            for part, modules in PARTS.items()
            if len(idx := layout.indices(lambda key, m=modules: key.split(".")[0] in m))
        }
        upload = torch.cat([index[p] for p in self.uploads if p in index])
        return SSLParts(index, upload, LayerDistance.for_modules(layout, PARTS["online"]), flat.read())

    def init_server(self, flat: FlatModel, data: FederatedDataset) -> ServerState:
        self.parts = self.client_role(flat, data)
        self._reference: tuple[torch.Tensor | None, torch.Tensor] = (None, torch.empty(0))
        return super().init_server(flat, data)

    @staticmethod
    def part(ctx: ClientContext, name: str) -> torch.Tensor:
        """A copy of one part of the client's current model (compact vector)."""
        return ctx.flat.vector[ctx.role.index[name].to(ctx.flat.vector.device)]

    @staticmethod
    def set_part(ctx: ClientContext, name: str, values: torch.Tensor) -> None:
        ctx.flat.vector[ctx.role.index[name].to(ctx.flat.vector.device)] = values.to(ctx.flat.vector.device)

    # -- server ---------------------------------------------------------------------------
    def client_job(self, state: ServerState, client_id: int, round_index: int) -> ClientJob:
        return ClientJob(client_id, round_index, {MODEL: self.upload_reference(state)})

    def upload_reference(self, state: ServerState) -> torch.Tensor:
        """The global values of the uploaded parts, gathered once per global state: every job of
        a round shares one copy (a gather per client would hold clients x parts in memory)."""
        held, shared = self._reference
        if held is not state.weights:
            shared = state.weights[self.parts.upload.to(state.weights.device)]
            self._reference = (state.weights, shared)
        return shared

    def trainable_upload(self, state: ServerState) -> torch.Tensor | None:
        assert self.layout is not None
        return self.parts.upload.to(state.weights.device) < self.layout.num_params

    def apply_mean(self, state: ServerState, mean: torch.Tensor, round_index: int) -> ServerState:
        weights = state.weights.clone()
        weights[self.parts.upload.to(weights.device)] = mean
        return ServerState(weights, state.extras)

    # -- client ---------------------------------------------------------------------------
    def receive(self, ctx: ClientContext, job: ClientJob) -> None:
        parts: SSLParts = ctx.role
        ctx.flat.load(parts.initial)
        ctx.flat.vector[parts.upload.to(ctx.flat.vector.device)] = job.model
        if "target" in parts.index:  # BYOL's initialization: the target starts as the online network
            self.set_part(ctx, "target", self.part(ctx, "online"))
        if any(name in ctx.state for name in self.keeps):  # it has trained before
            self.merge_local(ctx)
        if "online" in self.keeps:
            ctx.state["online_start"] = self.part(ctx, "online")

    def merge_local(self, ctx: ClientContext) -> None:
        """Combine the received global parts with what this client kept.

        Default: each kept part replaces the global one (it is purely local)."""
        for name in self.keeps:
            self.restore_kept(ctx, name)

    def restore_kept(self, ctx: ClientContext, name: str) -> None:
        """Put back the client's own copy of a part, where the network has it and the client kept it."""
        if name in ctx.role.index and name in ctx.state:
            self.set_part(ctx, name, ctx.state[name])

    def finish(self, ctx: ClientContext, job: ClientJob) -> None:
        for name in self.keeps:
            if name in ctx.role.index:
                ctx.state[name] = self.part(ctx, name).clone()
        if "online_start" in ctx.state:  # how far local training moved the online network
            ctx.state["local_change"] = ctx.role.online_distance(ctx.state.pop("online_start"), ctx.state["online"])

    def upload(self, ctx: ClientContext, job: ClientJob) -> torch.Tensor:
        return ctx.flat.vector[ctx.role.upload.to(ctx.flat.vector.device)].clone()

    def divergence(self, ctx: ClientContext) -> float:
        """How far this client is from the global model, by the configured measure."""
        if self.params.divergence == "local_change":
            return float(ctx.state["local_change"])
        return ctx.role.online_distance(self.part(ctx, "online"), ctx.state["online"])


@register("fedbyol")
class FedBYOL(FedSSL):
    """BYOL per client; online encoder, projector and predictor averaged; target reset to the global online."""


@register("fedsimsiam")
class FedSimSiam(FedSSL):
    """SimSiam per client (stop-gradient, no target); encoder, projector and predictor averaged."""

    ssl_losses = ("simsiam",)


@register("fedsimclr")
class FedSimCLR(FedSSL):
    """SimCLR per client (contrastive, no predictor); encoder and projector averaged."""

    ssl_losses = ("simclr",)
    uploads = ("online",)


@register("fedmoco")
class FedMoCo(FedSSL):
    """MoCo v3 per client; the key (target) encoder restarts from the global online one each round."""

    ssl_losses = ("moco",)
