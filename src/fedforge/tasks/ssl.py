"""Self-supervised learning with Siamese networks: BYOL, SimSiam, SimCLR and MoCo (v3 style).

The configured model (minus its classifier) is the encoder. SSLNetwork adds a projector,
a predictor (BYOL, SimSiam, MoCo) and a momentum target copy of encoder + projector
(BYOL, MoCo). Its parts have fixed names (`encoder`, `projector`, `predictor`,
`target_encoder`, `target_projector`) so federated methods can choose which ones are
uploaded, averaged or kept local by name (algorithms/fedssl.py).
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fedforge.data.transforms import BatchTransform
from fedforge.errors import ConfigError
from fedforge.models.split import last_linear
from fedforge.plugins import StrictModel
from fedforge.tasks.base import TASKS, Headline, Task
from fedforge.tasks.views import ViewAugment

SSLLoss = Literal["byol", "simsiam", "simclr", "moco"]
WITH_PREDICTOR = {"byol", "simsiam", "moco"}
WITH_TARGET = {"byol", "moco"}

# Named groups of SSLNetwork's submodules, as federated methods refer to them.
PARTS: dict[str, tuple[str, ...]] = {
    "online": ("encoder", "projector"),
    "predictor": ("predictor",),
    "target": ("target_encoder", "target_projector"),
}


def mlp_head(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear, the projector/predictor shape of BYOL and SimSiam."""
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d_out)
    )


def strip_classifier(backbone: nn.Module) -> tuple[nn.Module, int]:
    """Replace the backbone's head (its last Linear layer) by Identity; returns it and the feature size."""
    name, linear = last_linear(backbone)
    owner, _, attr = name.rpartition(".")
    setattr(backbone.get_submodule(owner) if owner else backbone, attr, nn.Identity())
    return backbone, linear.in_features


class SSLNetwork(nn.Module):
    """Online encoder + projector (+ predictor), optionally a momentum target; `forward` gives features."""

    def __init__(
        self,
        encoder: nn.Module,
        feature_dim: int,
        loss: SSLLoss,
        hidden_dim: int,
        projection_dim: int,
        temperature: float,
    ) -> None:
        super().__init__()
        self.loss_kind, self.temperature, self.feature_dim = loss, temperature, feature_dim
        self.encoder = encoder
        self.projector = mlp_head(feature_dim, hidden_dim, projection_dim)
        self.predictor = mlp_head(projection_dim, hidden_dim, projection_dim) if loss in WITH_PREDICTOR else None
        self.target_encoder = self.target_projector = None
        if loss in WITH_TARGET:
            self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    @property
    def has_target(self) -> bool:
        return self.target_encoder is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representation (encoder output) that probes and downstream tasks use."""
        return self.encoder(x)

    def ssl_loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """The configured objective on two views of the same images (one pass for both views)."""
        n = len(view1)
        both = torch.cat([view1, view2])
        z = self.projector(self.encoder(both))
        if self.loss_kind == "simclr":
            return nt_xent(z[:n], z[n:], self.temperature)
        assert self.predictor is not None
        p = self.predictor(z)
        if self.loss_kind == "simsiam":
            z = z.detach()
            return -(F.cosine_similarity(p[:n], z[n:]).mean() + F.cosine_similarity(p[n:], z[:n]).mean()) / 2
        assert self.target_encoder is not None and self.target_projector is not None
        with torch.no_grad():
            t = self.target_projector(self.target_encoder(both))
        if self.loss_kind == "byol":
            return (byol_loss(p[:n], t[n:]) + byol_loss(p[n:], t[:n])).mean()
        return infonce(p[:n], t[n:], self.temperature) + infonce(p[n:], t[:n], self.temperature)

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """target <- decay * target + (1 - decay) * online (BYOL's momentum encoder)."""
        assert self.target_encoder is not None and self.target_projector is not None
        target = [*self.target_encoder.parameters(), *self.target_projector.parameters()]
        online = [*self.encoder.parameters(), *self.projector.parameters()]
        torch._foreach_lerp_(target, online, 1.0 - decay)


def byol_loss(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(p, t) per sample."""
    return 2 - 2 * F.cosine_similarity(p, t, dim=-1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalized-temperature cross entropy; each view's positive is its pair."""
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def infonce(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's contrastive loss with in-batch keys, scaled by 2 * temperature."""
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device)) * 2 * temperature


class SSLParams(StrictModel):
    loss: SSLLoss | None = Field(
        None, description="byol | simsiam | simclr | moco (default: the algorithm's, e.g. byol for fedema)"
    )
    hidden_dim: int = Field(512, ge=1, description="hidden width of projector and predictor (default 512)")
    projection_dim: int = Field(128, ge=1, description="output size of projector and predictor (default 128)")
    target_decay: float = Field(0.99, ge=0, le=1, description="momentum of the target network (default 0.99)")
    temperature: float = Field(0.2, gt=0, description="softmax temperature of simclr/moco (default 0.2)")
    crop_scale: tuple[float, float] = Field((0.2, 1.0), description="area share range of random crops (default 0.2-1)")
    flip: bool = Field(True, description="random horizontal flips (default true; off for digits)")
    jitter: float = Field(0.4, ge=0, lt=1, description="colour jitter strength (default 0.4)")
    jitter_prob: float = Field(0.8, ge=0, le=1, description="chance of colour jitter per view (default 0.8)")
    grayscale_prob: float = Field(0.2, ge=0, le=1, description="chance of grayscale on colour images (default 0.2)")
    blur_prob: float = Field(0.5, ge=0, le=1, description="chance of Gaussian blur per view (default 0.5)")
    probe_epochs: int = Field(100, ge=1, description="epochs of the linear probe on frozen features (default 100)")
    probe_lr: float = Field(0.01, gt=0, description="Adam learning rate of the linear probe (default 0.01)")
    knn_k: int = Field(20, ge=1, description="neighbours of the kNN monitor (default 20)")
    knn_temperature: float = Field(0.1, gt=0, description="temperature of the kNN vote weights (default 0.1)")
    finetune_fractions: list[float] = Field(
        default_factory=list,
        description="after the last round, fine-tune encoder + linear head on these label shares, e.g. [0.01, 0.1]",
    )
    finetune_epochs: int = Field(30, ge=1, description="epochs of semi-supervised fine-tuning (default 30)")
    finetune_lr: float = Field(0.01, gt=0, description="SGD learning rate of fine-tuning (default 0.01)")


@TASKS.register("ssl")
class SSLTask(Task):
    """Self-supervised representation learning on unlabeled client data; judged by probes."""

    name = "ssl"
    Params = SSLParams
    evaluation = "representation"
    supervised = False
    headline = Headline("linear_probe", label="linear-probe accuracy")  # EvalMetrics.accuracy holds the probe

    def __init__(self, params: SSLParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        self.loss: SSLLoss = p.loss or "byol"
        lo, hi = p.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"task.crop_scale={list(p.crop_scale)} must satisfy 0 < low <= high <= 1")
        self.views = ViewAugment(p.crop_scale, p.flip, p.jitter, p.jitter_prob, p.grayscale_prob, p.blur_prob)

    def adapt_model(self, backbone: nn.Module) -> nn.Module:
        encoder, dim = strip_classifier(backbone)
        p = self.params
        return SSLNetwork(encoder, dim, self.loss, p.hidden_dim, p.projection_dim, p.temperature)

    def train_loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: BatchTransform,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Labels are ignored: the loss compares two random views of each image."""
        assert isinstance(model, SSLNetwork)
        v1 = transform.from_unit(self.views(images, generator))
        v2 = transform.from_unit(self.views(images, generator))
        return model.ssl_loss(v1, v2)

    def after_step(self, model: nn.Module) -> None:
        assert isinstance(model, SSLNetwork)
        if model.has_target:
            model.update_target(self.params.target_decay)
