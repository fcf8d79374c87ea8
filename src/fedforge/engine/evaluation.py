"""Evaluation of the global model (global test set) and of each client (its local test split).

Classification: clients whose evaluated weights equal the global model share one batched
pass over the union of their test splits; only personalized clients (e.g. FedBN) get a
pass each. Representation learning (task ssl): the global encoder is judged by a linear
probe and a kNN monitor on the labeled train/test split, and optionally by fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from fedforge.algorithms.base import Algorithm, ServerState
from fedforge.data.federated import FederatedDataset
from fedforge.data.sources import DatasetTensors
from fedforge.engine.client_store import ClientStore
from fedforge.engine.weights import FlatModel
from fedforge.seeding import EVAL, derive_seed
from fedforge.tasks import ClassificationTask, DenseTask, Outcomes, SSLNetwork, SSLTask, Task
from fedforge.tasks.probe import extract_features, finetune, knn_accuracy, labeled_subset, linear_probe


def mean_of(values: dict[str, float] | None) -> float | None:
    """The mean of a name -> value mapping; None when there is none (e.g. no domains)."""
    return sum(values.values()) / len(values) if values else None


@dataclass
class EvalMetrics:
    accuracy: float
    loss: float
    client_accuracy: list[float] | None = None  # NaN for clients without local test data
    domain_accuracy: dict[str, float] | None = None  # multi-domain sets: accuracy on each domain's test set
    extra: dict[str, float] = field(default_factory=dict)  # further named metrics (e.g. knn_accuracy)

    @property
    def domain_mean(self) -> float | None:
        return mean_of(self.domain_accuracy)

    @property
    def personalized_mean(self) -> float | None:
        accs = self._valid()
        return sum(accs) / len(accs) if accs else None

    @property
    def personalized_worst10(self) -> float | None:
        """Mean accuracy of the worst 10% of clients (at least one client)."""
        accs = sorted(self._valid())
        if not accs:
            return None
        k = max(1, math.ceil(0.1 * len(accs)))
        return sum(accs[:k]) / k

    def _valid(self) -> list[float]:
        return [a for a in (self.client_accuracy or []) if not math.isnan(a)]


class RoundEvaluator(Protocol):
    def evaluate(
        self,
        algorithm: Algorithm,
        state: ServerState,
        clients: ClientStore,
        final: bool = False,
        round_index: int | None = None,
    ) -> EvalMetrics: ...


def build_evaluator(
    task: Task, data: FederatedDataset, flat: FlatModel, batch_size: int, personalized: bool, seed: int
) -> RoundEvaluator:
    """The evaluator that judges `task` (its `evaluation` kind)."""
    if task.evaluation == "representation":
        assert isinstance(task, SSLTask)
        return RepresentationEvaluator(data, flat, task, batch_size, seed)
    if task.evaluation == "dense":
        assert isinstance(task, DenseTask)
        return DenseEvaluator(data, flat, task, batch_size, personalized)
    if data.stream is not None:
        return ContinualEvaluator(data, flat, batch_size, personalized=False)
    return Evaluator(data, flat, batch_size, personalized)


def per_domain(
    algorithm: Algorithm,
    state: ServerState,
    clients: ClientStore,
    members: dict[int, list[int]],
    src: DatasetTensors,
    global_score: Callable[[torch.Tensor], float],
    own_score: Callable[[torch.Tensor, torch.Tensor], float],
) -> dict[str, float]:
    """Per domain: the mean, over that domain's clients, of their (personalized) model's score on
    the domain's test samples (`own_score(weights, index)`); the global model's
    (`global_score(index)`) for clients that do not personalize, and for a domain without clients."""
    assert src.domain_names is not None and src.test_domain is not None
    test_domain = src.test_domain.cpu()
    result = {}
    for d, name in enumerate(src.domain_names):
        idx = torch.nonzero(test_domain == d).squeeze(1)
        if len(idx) == 0:
            result[name] = float("nan")
            continue
        shared = global_score(idx)
        scores = []
        for cid in members.get(d, []):
            own = algorithm.personalized_weights(state, clients.peek(cid))
            scores.append(shared if own is None else own_score(own, idx))
        result[name] = sum(scores) / len(scores) if scores else shared
    return result


def domain_members(data: FederatedDataset) -> dict[int, list[int]]:
    """Which clients belong to each domain (multi-domain sets only); fixed by the partition."""
    members: dict[int, list[int]] = {}
    for cid in range(data.num_clients):
        d = data.client_domain(cid)
        if d is not None:
            members.setdefault(d, []).append(cid)
    return members


class Evaluator:
    def __init__(self, data: FederatedDataset, flat: FlatModel, batch_size: int, personalized: bool) -> None:
        self.data, self.flat, self.batch_size, self.personalized = data, flat, batch_size, personalized
        self.task = ClassificationTask()
        self.domain_members = domain_members(data)

    def _outcomes(self, weights: torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> Outcomes:
        self.flat.load(weights)
        return self.task.outcomes(self.flat.model, images, labels, self.data.transform, self.batch_size)

    def evaluate(
        self,
        algorithm: Algorithm,
        state: ServerState,
        clients: ClientStore,
        final: bool = False,
        round_index: int | None = None,
    ) -> EvalMetrics:
        src = self.data.source
        glob = self._outcomes(state.weights, src.test_x, src.test_y)
        metrics = EvalMetrics(accuracy=glob.accuracy(), loss=glob.mean_loss())
        if self.personalized:
            metrics.client_accuracy = self._client_accuracy(algorithm, state, clients)
        if src.domain_names is not None and src.test_domain is not None:
            metrics.domain_accuracy = self._domain_accuracy(algorithm, state, clients, glob)
        for name, (flat, weights) in algorithm.eval_variants(state, self.flat).items():
            flat.load(weights)
            outcomes = self.task.outcomes(flat.model, src.test_x, src.test_y, self.data.transform, self.batch_size)
            metrics.extra[f"{name}_accuracy"] = outcomes.accuracy()
        return metrics

    def _domain_accuracy(
        self, algorithm: Algorithm, state: ServerState, clients: ClientStore, glob: Outcomes
    ) -> dict[str, float]:
        src = self.data.source

        def own(weights: torch.Tensor, idx: torch.Tensor) -> float:
            idx = idx.to(src.test_x.device)
            return self._outcomes(weights, src.test_x[idx], src.test_y[idx]).accuracy()

        return per_domain(
            algorithm, state, clients, self.domain_members, src,
            lambda idx: float(glob.correct[idx].float().mean()), own,
        )  # fmt: skip

    def _client_accuracy(self, algorithm: Algorithm, state: ServerState, clients: ClientStore) -> list[float]:
        src = self.data.source
        accuracy = [float("nan")] * self.data.num_clients
        shared: list[int] = []
        for cid, idx in enumerate(self.data.client_test):
            if len(idx) == 0:
                continue
            own = algorithm.personalized_weights(state, clients.peek(cid))
            if own is None:
                shared.append(cid)
            else:
                accuracy[cid] = self._outcomes(own, src.train_x[idx], src.train_y[idx]).accuracy()
        if shared:
            idx = torch.cat([self.data.client_test[c] for c in shared])
            correct = self._outcomes(state.weights, src.train_x[idx], src.train_y[idx]).correct
            for cid, part in zip(shared, correct.split([len(self.data.client_test[c]) for c in shared]), strict=True):
                accuracy[cid] = float(part.float().mean())
        return accuracy


class ContinualEvaluator(Evaluator):
    """Class-continual runs: the global model on the test samples of every class seen so far.

    `accuracy` is the accuracy over all seen classes (what forgetting lowers); `extra` holds
    each seen task's accuracy (`task_J_accuracy`), and from the second task on the accuracy
    on the old tasks' classes and on the current task's. Clients hold only the current task,
    so there is no personalized score."""

    def evaluate(
        self,
        algorithm: Algorithm,
        state: ServerState,
        clients: ClientStore,
        final: bool = False,
        round_index: int | None = None,
    ) -> EvalMetrics:
        stream, src = self.data.stream, self.data.source
        assert stream is not None
        current = stream.plan.task_of(round_index) if round_index is not None else stream.plan.num_tasks - 1
        parts = stream.test[: current + 1]
        idx = torch.cat(parts)
        seen = self._outcomes(state.weights, src.test_x[idx], src.test_y[idx])
        metrics = EvalMetrics(accuracy=seen.accuracy(), loss=seen.mean_loss(), extra={"task": float(current)})
        per_task = seen.correct.split([len(p) for p in parts])
        for task, correct in enumerate(per_task):
            metrics.extra[f"task_{task}_accuracy"] = float(correct.float().mean()) if len(correct) else float("nan")
        if current > 0:
            old = torch.cat(per_task[:current])
            metrics.extra["old_accuracy"] = float(old.float().mean()) if len(old) else float("nan")
            metrics.extra["new_accuracy"] = metrics.extra[f"task_{current}_accuracy"]
        return metrics


class DenseEvaluator:
    """Detection and segmentation: the headline (mAP@0.5, mIoU) of the global model on the test
    set, per domain and per client, like classification's accuracy.

    Each model predicts each image once; a domain's or a client's score is its subset of those
    predictions. Per domain: the mean over that domain's clients of their (personalized) model's
    score on the domain's test images; the global model's where nobody personalizes."""

    def __init__(
        self, data: FederatedDataset, flat: FlatModel, task: DenseTask, batch_size: int, personalized: bool
    ) -> None:
        self.data, self.flat, self.task, self.batch_size, self.personalized = data, flat, task, batch_size, personalized
        self.domain_members = domain_members(data)
        src = data.source
        self.test_targets = task.split_targets(src.targets("test", task.target, torch.arange(len(src.test_x))))

    def _predict(self, weights: torch.Tensor, images: torch.Tensor) -> list:
        self.flat.load(weights)
        model = self.flat.model
        was_training = model.training
        model.eval()
        try:
            out = []
            for start in range(0, len(images), self.batch_size):
                out += self.task.predict(model, images[start : start + self.batch_size], self.data.transform)
        finally:
            model.train(was_training)
        return out

    def _score(self, predictions: list, targets: list) -> dict[str, float]:
        return self.task.score(predictions, targets, self.data.num_classes)

    def evaluate(
        self,
        algorithm: Algorithm,
        state: ServerState,
        clients: ClientStore,
        final: bool = False,
        round_index: int | None = None,
    ) -> EvalMetrics:
        src, headline = self.data.source, self.task.headline.name
        glob = self._predict(state.weights, src.test_x)
        scores = self._score(glob, self.test_targets)
        metrics = EvalMetrics(accuracy=scores[headline], loss=float("nan"), extra=scores)
        if self.personalized:
            metrics.client_accuracy = self._client_scores(algorithm, state, clients)
        if src.domain_names is not None and src.test_domain is not None:
            metrics.domain_accuracy = self._domain_scores(algorithm, state, clients, glob)
        return metrics

    def _domain_scores(self, algorithm: Algorithm, state: ServerState, clients: ClientStore, glob: list) -> dict:
        src, headline = self.data.source, self.task.headline.name

        def score(predictions: list, idx: torch.Tensor) -> float:
            return self._score(predictions, [self.test_targets[i] for i in idx.tolist()])[headline]

        return per_domain(
            algorithm, state, clients, self.domain_members, src,
            lambda idx: score([glob[i] for i in idx.tolist()], idx),
            lambda weights, idx: score(self._predict(weights, src.test_x[idx.to(src.test_x.device)]), idx),
        )  # fmt: skip

    def _client_scores(self, algorithm: Algorithm, state: ServerState, clients: ClientStore) -> list[float]:
        src, headline = self.data.source, self.task.headline.name
        scores = [float("nan")] * self.data.num_clients
        for cid, idx in enumerate(self.data.client_test):
            if len(idx) == 0:
                continue
            own = algorithm.personalized_weights(state, clients.peek(cid))
            predictions = self._predict(own if own is not None else state.weights, src.train_x[idx])
            targets = self.task.split_targets(src.targets("train", self.task.target, idx))
            scores[cid] = self._score(predictions, targets)[headline]
        return scores


class RepresentationEvaluator:
    """Linear probe (the reported accuracy) and kNN accuracy of the global encoder, frozen;
    after the last round also fine-tuning on the configured label shares."""

    def __init__(self, data: FederatedDataset, flat: FlatModel, task: SSLTask, batch_size: int, seed: int) -> None:
        self.data, self.flat, self.task, self.batch_size = data, flat, task, batch_size
        self.seed = derive_seed(seed, EVAL)

    def evaluate(
        self,
        algorithm: Algorithm,
        state: ServerState,
        clients: ClientStore,
        final: bool = False,
        round_index: int | None = None,
    ) -> EvalMetrics:
        self.flat.load(state.weights)
        network = self.flat.model
        assert isinstance(network, SSLNetwork)
        return self.judge(network, final)

    def judge(self, network: SSLNetwork, final: bool = False) -> EvalMetrics:
        """Probe `network`'s encoder (also usable on a network outside any federation)."""
        src, p = self.data.source, self.task.params
        was_training = network.training
        network.eval()
        try:
            train_f = extract_features(network, src.train_x, self.data.transform, self.batch_size)
            test_f = extract_features(network, src.test_x, self.data.transform, self.batch_size)
            acc, loss = linear_probe(
                train_f, src.train_y, test_f, src.test_y, src.num_classes,
                epochs=p.probe_epochs, lr=p.probe_lr, seed=self.seed,
            )  # fmt: skip
            knn = knn_accuracy(
                train_f, src.train_y, test_f, src.test_y, src.num_classes, k=p.knn_k, temperature=p.knn_temperature
            )
            metrics = EvalMetrics(accuracy=acc, loss=loss, extra={"knn_accuracy": knn})
            if final:
                for fraction in p.finetune_fractions:
                    idx = labeled_subset(src.train_y, fraction, self.seed)
                    metrics.extra[f"finetune_{fraction:g}_accuracy"] = finetune(
                        network.encoder, network.feature_dim, src.num_classes,
                        src.train_x[idx], src.train_y[idx], src.test_x, src.test_y, self.data.transform,
                        epochs=p.finetune_epochs, lr=p.finetune_lr, seed=self.seed,
                    )  # fmt: skip
        finally:
            network.train(was_training)
        return metrics
