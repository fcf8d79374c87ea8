"""Judging a learned representation: linear probe, kNN monitor, semi-supervised fine-tuning.

All three read the encoder frozen or copied, never the federated weights themselves, and
draw randomness only from the seed they are given, so an evaluation is reproducible.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fedforge.data.transforms import BatchTransform
from fedforge.tasks.classification import ClassificationTask


@torch.no_grad()
def extract_features(
    encoder: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, transform: BatchTransform, batch_size: int
) -> torch.Tensor:
    """Encoder outputs of uint8 `images` (eval transform), float32 [N, D]."""
    parts = [encoder(transform(images[start : start + batch_size])) for start in range(0, len(images), batch_size)]
    return torch.cat(parts).float() if parts else torch.empty(0)


def linear_probe(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = 256,
) -> tuple[float, float]:
    """Logistic regression on standardized frozen features; returns (test accuracy, test loss)."""
    mean, std = train_f.mean(0), train_f.std(0).clamp_min(1e-6)
    train_f, test_f = (train_f - mean) / std, (test_f - mean) / std
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(train_f.shape[1], num_classes).to(train_f.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-5)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(train_f), generator=generator).to(train_f.device)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(head(train_f[batch]), train_y[batch]).backward()
                optimizer.step()
    with torch.no_grad():
        logits = head(test_f)
        accuracy = float((logits.argmax(1) == test_y).float().mean())
        return accuracy, float(F.cross_entropy(logits, test_y))


@torch.no_grad()
def knn_accuracy(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    *,
    k: int,
    temperature: float,
    chunk: int = 1024,
) -> float:
    """Weighted kNN on cosine similarity (votes exp(sim / T)), as in InstDisc/BYOL monitors."""
    bank = F.normalize(train_f, dim=1)
    k = min(k, len(bank))
    correct = 0
    for start in range(0, len(test_f), chunk):
        sims = F.normalize(test_f[start : start + chunk], dim=1) @ bank.T
        top_sim, top_idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(sims), num_classes, device=sims.device)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
        correct += int((votes.argmax(1) == test_y[start : start + chunk]).sum())
    return correct / max(len(test_f), 1)


def labeled_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """A class-balanced random share of the labeled set (at least one sample per class)."""
    generator = torch.Generator().manual_seed(seed)
    cpu = labels.cpu()
    chosen = []
    for c in torch.unique(cpu):
        idx = torch.nonzero(cpu == c).squeeze(1)
        take = max(1, round(fraction * len(idx)))
        chosen.append(idx[torch.randperm(len(idx), generator=generator)[:take]])
    return torch.sort(torch.cat(chosen)).values.to(labels.device)


def finetune(
    encoder: nn.Module,
    feature_dim: int,
    num_classes: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    transform: BatchTransform,
    *,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = 64,
) -> float:
    """Fine-tune a copy of the encoder plus a new linear head on `images`; test accuracy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(copy.deepcopy(encoder), nn.Linear(feature_dim, num_classes)).to(images.device)
    for p in model.parameters():  # own storage: the encoder's weights may be views of a flat vector
        p.data = p.data.clone()
        p.grad = None
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=generator).to(images.device)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                if len(batch) < 2:  # BatchNorm needs two samples
                    continue
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(transform(images[batch], generator)), labels[batch]).backward()
                optimizer.step()
    return ClassificationTask().outcomes(model, test_images, test_labels, transform, 1024).accuracy()
