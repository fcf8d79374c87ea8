"""Class-continual parts: the task stream, the metrics, the shared losses, FedEWC's Fisher, synthesis."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedforge.algorithms.continual import TaskView, distillation, frozen_logits, new_task_cross_entropy
from fedforge.algorithms.fedewc import FedEWC
from fedforge.algorithms.synthesis import BNStatistics, Generator, SynthesisBudget, Synthesizer, fresh_copy
from fedforge.api import Experiment, resolve_config
from fedforge.data.continual import TaskPlan
from fedforge.data.transforms import BatchTransform
from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError
from fedforge.tracking.continual import average_accuracy, continual_markdown, forgetting
from tests.rounds import aggregate, result

STREAM = {"continual": {"tasks": 5, "rounds_per_task": 3}, "data": {"local_test_fraction": 0.0}}


def experiment(**overrides):
    return Experiment(resolve_config(None, {**STREAM, "backend": {"device": "cpu"}, **overrides}))


def test_each_task_brings_its_classes_and_every_sample_is_held_once():
    exp = experiment()
    stream, labels = exp.data.stream, exp.data.source.train_y
    plan = stream.plan
    assert exp.cfg.train.rounds == 15 and plan.num_tasks == 5
    assert sorted(c for task in plan.classes for c in task) == list(range(10))
    held = []
    for task, shards in enumerate(stream.client_train):
        for shard in shards:
            assert set(labels[shard].tolist()) <= set(plan.classes[task])
            held += shard.tolist()
        test_labels = exp.data.source.test_y[stream.test[task]]
        assert set(test_labels.tolist()) == set(plan.classes[task])
    assert sorted(held) == list(range(len(labels)))  # every training sample, in exactly one task and client
    assert [plan.task_of(r) for r in (0, 2, 3, 14)] == [0, 0, 1, 4]
    assert exp.data.at_round(4).client_train is stream.client_train[1]


def test_the_class_order_follows_the_seed():
    orders = {experiment(seed=s).data.stream.plan.classes for s in (0, 1)}
    assert len(orders) == 2
    natural = experiment(continual={"tasks": 5, "rounds_per_task": 3, "class_order": "natural"})
    assert natural.data.stream.plan.classes[0] == (0, 1)


def test_inconsistent_stream_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"train\.rounds.*continual asks for 5 tasks x 3 rounds = 15"):
        resolve_config(None, {**STREAM, "train": {"rounds": 7}})
    with pytest.raises(ConfigError, match="4 tasks of 3 classes need 12 classes"):
        experiment(continual={"tasks": 4, "classes_per_task": 3, "rounds_per_task": 1})
    with pytest.raises(ConfigError, match="add a continual section"):
        Experiment(resolve_config(None, {"algorithm": {"name": "target"}, "backend": {"device": "cpu"}})).run(True)


def test_forgetting_and_average_accuracy_follow_the_standard_definitions():
    matrix = [[0.9], [0.6, 0.8], [0.5, 0.7, 0.9]]
    # task 0: best before the end 0.9, now 0.5; task 1: best 0.8, now 0.7
    assert forgetting(matrix) == pytest.approx((0.4 + 0.1) / 2)
    assert forgetting([[0.9]]) is None
    assert average_accuracy([0.9, 0.7, 0.6]) == pytest.approx(0.7333333)
    summary = {"continual": {"accuracy_matrix": matrix, "seen_accuracy": [0.9, 0.7, 0.6], "average_accuracy": 0.73,
                             "final_accuracy": 0.6, "final_old_accuracy": 0.55, "forgetting": 0.25}}  # fmt: skip
    table = continual_markdown([("run-a", summary), ("plain", {})])
    assert "| run-a | 0.7300 | 0.6000 | 0.5500 | 0.2500 |" in table and "plain" not in table
    assert "| 2 | 0.5000 | 0.7000 | 0.9000 | 0.6000 |" in table


class Ctx:
    """What TaskView and frozen_logits read of a ClientContext."""

    def __init__(self, exp, round_index):
        self.flat = FlatModel(exp.build_model())
        self.data = exp.data.at_round(round_index)
        self.round = round_index

    @property
    def model(self):
        return self.flat.model


def test_new_task_loss_sees_only_the_current_columns_and_kd_matches_its_formula():
    exp = experiment()
    ctx = Ctx(exp, 4)  # task 1
    view = TaskView.of(ctx)
    plan = exp.data.stream.plan
    assert view.task == 1 and view.new.tolist() == list(plan.classes[1]) and view.old.tolist() == list(plan.classes[0])
    logits = torch.randn(6, 10)
    labels = torch.tensor([plan.classes[1][i % 2] for i in range(6)])
    expected = F.cross_entropy(logits[:, list(plan.classes[1])], torch.tensor([i % 2 for i in range(6)]))
    assert torch.allclose(new_task_cross_entropy(logits, labels, view), expected)
    other = logits.clone()
    other[:, list(plan.classes[0])] += 100.0  # old columns do not enter the new-task loss
    assert torch.allclose(new_task_cross_entropy(other, labels, view), expected)
    teacher = torch.randn(6, 4)
    soft = F.softmax(teacher / 2, dim=1)
    manual = -(soft * F.log_softmax(logits[:, :4] / 2, dim=1)).sum(1).mean()
    assert torch.allclose(distillation(logits[:, :4], teacher, 2.0), manual)


def test_frozen_logits_use_other_weights_without_touching_the_model():
    exp = experiment()
    ctx = Ctx(exp, 0)
    other = FlatModel(experiment(seed=5).build_model())
    before = ctx.flat.read()
    x = exp.data.transform(exp.data.source.train_x[:8])
    ctx.model.train()
    out = frozen_logits(ctx, other.read(), x)
    other.model.eval()
    assert torch.allclose(out, other.model(x), atol=1e-5)
    assert torch.equal(ctx.flat.read(), before) and ctx.model.training


def test_fedewc_accumulates_the_sample_weighted_fisher_and_rejects_malformed_ones():
    exp = experiment(algorithm={"name": "fedewc"})
    algo = FedEWC()
    state = algo.init_server(FlatModel(exp.build_model()), exp.data)
    n = algo.layout.num_params
    ok = [result(0, state.weights, 10, fisher=torch.ones(n)),
          result(1, state.weights, 30, fisher=torch.full((n,), 3.0)),
          result(2, state.weights, 50, fisher=torch.full((n,), float("nan"))),  # rejected whole
          result(3, state.weights, 50, fisher=torch.ones(3))]  # fmt: skip
    after = aggregate(algo, state, ok, 2)  # the last round of task 0
    assert torch.allclose(after.extras["fisher"], torch.ones(n))  # (10*1 + 30*3) / 40 = 2.5, scaled to max 1
    assert torch.equal(after.extras["teacher"], after.weights)
    again = aggregate(algo, after, ok[:1], 5)
    assert torch.allclose(again.extras["fisher"], torch.full((n,), 2.0))  # online EWC: added up
    assert set(algo.client_job(again, 0, 6).payload) == {"model", "teacher", "fisher"}


def test_bn_statistics_vanish_when_the_batch_matches_the_running_statistics():
    bn = nn.BatchNorm2d(3).eval()
    x = torch.randn(64, 3, 5, 5) * 2 + 1
    bn.running_mean.copy_(x.mean((0, 2, 3)))
    bn.running_var.copy_(x.var((0, 2, 3), unbiased=False))
    stats = BNStatistics(bn)
    bn(x)
    assert float(stats.take(torch.device("cpu"))) < 1e-4
    bn(x + 1)
    assert float(stats.take(torch.device("cpu"))) == pytest.approx(3**0.5, rel=1e-3)  # ||mean shift|| = sqrt(3)
    stats.remove()


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 30, 30)])
def test_the_generator_makes_images_of_the_dataset_shape(shape):
    images = Generator(16, 8, shape)(torch.randn(4, 16)).detach()
    assert images.shape == (4, *shape) and float(images.min()) >= 0 and float(images.max()) <= 1


def test_synthesis_is_seeded_and_returns_uint8_images_of_the_budget_size():
    exp = experiment()
    teacher = exp.build_model().eval()
    budget = SynthesisBudget(synthesis_rounds=3, synthesis_batch_size=8, generator_steps=2, warmup=1,
                             student_steps=2, latent_dim=8, generator_width=4, ce_weight=1, bn_weight=1,
                             student_lr=0.1)  # fmt: skip

    def synthesize():
        return Synthesizer(teacher, fresh_copy(teacher, 1), [3, 7], exp.data.input_shape, exp.data.transform,
                           budget, torch.Generator().manual_seed(0), torch.device("cpu")).run()  # fmt: skip

    first, second = synthesize(), synthesize()
    assert first.images.dtype == torch.uint8 and first.images.shape == (24, 1, 8, 8)
    assert torch.equal(first.images, second.images)
    assert isinstance(exp.data.transform, BatchTransform)
    assert TaskPlan(((0, 1), (2, 3)), 2).old_classes(1) == [0, 1]
