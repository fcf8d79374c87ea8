"""FedSSL: SSL task pieces, the shared upload/keep mechanism, FedU's and FedEMA's rules."""

import pytest
import torch
from torch import nn

from fedforge.algorithms.base import ClientContext
from fedforge.algorithms.fedema import FedEMA, ema_decay, ema_merge
from fedforge.algorithms.fedssl import FedBYOL, FedSimCLR, LayerDistance
from fedforge.algorithms.fedu import FedU
from fedforge.api import Experiment, resolve_config
from fedforge.config import Config
from fedforge.engine.client_store import ClientStore
from fedforge.engine.executors import SequentialExecutor
from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError
from fedforge.models import MODELS
from fedforge.records import MODEL
from fedforge.tasks.probe import knn_accuracy, labeled_subset, linear_probe
from fedforge.tasks.ssl import SSLNetwork, SSLTask, byol_loss, nt_xent, strip_classifier
from fedforge.tasks.views import ViewAugment
from tests.rounds import aggregate

SETTING = {"data": {"num_clients": 5, "partition": {"kind": "shards", "classes_per_client": 2}}}


# -- the EMA rule and the divergence, against hand-computed values ------------------------
def test_ema_decay_is_lambda_times_divergence_capped_at_one():
    assert ema_decay(2.0, 0.2) == pytest.approx(0.4)
    assert ema_decay(0.7 / 0.35, 0.35) == pytest.approx(0.7)  # lambda = tau / first divergence -> mu = tau
    assert ema_decay(5.0, 0.3) == 1.0


def test_ema_merge_weights_local_by_mu_and_global_by_one_minus_mu():
    local, global_ = torch.tensor([1.0, 1.0]), torch.tensor([3.0, 5.0])
    assert torch.allclose(ema_merge(local, global_, 0.25), torch.tensor([2.5, 4.0]))  # .25*1+.75*3, .25*1+.75*5
    assert torch.equal(ema_merge(local, global_, 0.0), global_)
    assert torch.equal(ema_merge(local, global_, 1.0), local)


def test_layer_distance_is_the_mean_of_per_weight_tensor_l2_distances():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(2, 2)  # weight: 4 values, bias: 2 (ignored)
            self.projector = nn.Linear(2, 1)  # weight: 2 values, bias: 1 (ignored)
            self.predictor = nn.Linear(1, 1)  # not part of "online"

    flat = FlatModel(Tiny())
    distance = LayerDistance.for_modules(flat.layout, ("encoder", "projector"))
    assert distance.count == 2
    a = torch.zeros(9)  # compact online part: enc.weight(4) enc.bias(2) proj.weight(2) proj.bias(1)
    b = torch.tensor([1.0, 1.0, 1.0, 1.0, 7.0, 7.0, 3.0, 4.0, 9.0])
    # encoder.weight: ||(1,1,1,1)|| = 2; projector.weight: ||(3,4)|| = 5; biases ignored -> (2 + 5) / 2
    assert distance(a, b) == pytest.approx(3.5)


# -- the SSL task ---------------------------------------------------------------------------
def test_losses_and_target_update_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(byol_loss(x, 3 * x), torch.zeros(2), atol=1e-6)  # same direction
    assert torch.allclose(byol_loss(x, -x), torch.full((2,), 4.0))
    matched = nt_xent(x, x, 0.1)
    assert matched < nt_xent(x, x.flip(0), 0.1)  # the positive pair is each view's own image
    encoder, dim = strip_classifier(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 10)))
    net = SSLNetwork(encoder, dim, "byol", 8, 4, 0.5)
    with torch.no_grad():
        for p in net.target_encoder.parameters():
            p.fill_(1.0)
        for p in net.encoder.parameters():
            p.fill_(3.0)
    net.update_target(0.75)  # 0.75 * 1 + 0.25 * 3
    assert all(torch.allclose(p, torch.full_like(p, 1.5)) for p in net.target_encoder.parameters())


def test_network_parts_follow_the_loss():
    def net(loss):
        encoder, dim = strip_classifier(MODELS.get("cnn")((1, 8, 8), 10))
        return SSLNetwork(encoder, dim, loss, 16, 8, 0.5)

    assert net("simclr").predictor is None and not net("simclr").has_target
    assert net("simsiam").predictor is not None and not net("simsiam").has_target
    assert net("byol").has_target and net("moco").has_target
    feats = net("byol")(torch.randn(3, 1, 8, 8))
    assert feats.shape == (3, 128)  # the cnn's hidden layer, its classifier removed
    resnet, dim = strip_classifier(MODELS.get("resnet18")((3, 32, 32), 10))
    assert dim == 512 and isinstance(resnet.fc, nn.Identity)
    with pytest.raises(ConfigError, match="Linear classifier"):
        strip_classifier(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_views_are_seeded_per_image_and_stay_in_range():
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    aug = ViewAugment()
    a = aug(images, torch.Generator().manual_seed(3))
    b = aug(images, torch.Generator().manual_seed(3))
    assert a.shape == (16, 3, 16, 16) and torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    same = aug(images[:1].expand(16, -1, -1, -1).contiguous(), torch.Generator().manual_seed(3))
    assert not torch.allclose(same[0], same[1])  # each image draws its own crop, flip, jitter
    gray = ViewAugment(flip=False)(images[:, :1], torch.Generator().manual_seed(0))
    assert gray.shape == (16, 1, 16, 16)


def test_probes_on_separable_features():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 8, generator=gen) * 5
    labels = torch.arange(3).repeat(40)
    feats = centers[labels] + 0.1 * torch.randn(120, 8, generator=gen)
    acc, loss = linear_probe(feats, labels, feats, labels, 3, epochs=50, lr=0.05, seed=0)
    assert acc == 1.0 and loss < 0.1
    assert knn_accuracy(feats, labels, feats, labels, 3, k=5, temperature=0.1) == 1.0
    subset = labeled_subset(labels, 0.1, seed=0)
    assert torch.bincount(labels[subset]).tolist() == [4, 4, 4]
    assert torch.equal(subset, labeled_subset(labels, 0.1, seed=0))


# -- configuration ------------------------------------------------------------------------
def test_task_follows_the_algorithm_and_mismatches_are_explained():
    assert Config().task.name == "classification"
    cfg = Config.model_validate({"algorithm": {"name": "fedema"}})
    assert cfg.task.name == "ssl" and cfg.task.params.loss == "byol" and cfg.to_dict()["task"]["loss"] == "byol"
    assert Config.model_validate({"algorithm": {"name": "fedsimclr"}}).task.params.loss == "simclr"
    assert Config.model_validate({"algorithm": {"name": "fedema"}, "task": {"loss": "moco"}}).task.params.loss == "moco"
    with pytest.raises(ConfigError, match=r"task: algorithm 'fedbyol' trains with task.loss byol, not 'simclr'"):
        resolve_config(None, {"algorithm": {"name": "fedbyol"}, "task": {"loss": "simclr"}})
    with pytest.raises(ConfigError, match=r"task.name: algorithm 'fedavg' trains the 'classification' task"):
        resolve_config(None, {"task": {"name": "ssl"}})
    with pytest.raises(ConfigError, match=r"task.crop_scale"):
        SSLTask(SSLTask.Params(crop_scale=(0.9, 0.1)))


# -- the shared mechanism and the methods' rules ---------------------------------------------
def setup(name, **params):
    cfg = resolve_config(None, {**SETTING, "algorithm": {"name": name, **params}, "train": {"local_epochs": 1}})
    exp = Experiment(cfg)
    algo = cfg.algorithm.resolve()(cfg.algorithm.params, cfg.train)
    server = FlatModel(exp.build_model())
    state = algo.init_server(server, exp.data)
    store = ClientStore()
    executor = SequentialExecutor(
        algo, exp.data, exp.build_model, cfg.train, store, cfg.seed, torch.device("cpu"), task=exp.task
    )
    return algo, state, executor, store


def context(algo, executor, store, cid, r):
    return ClientContext(
        cid,
        r,
        executor.flat,
        executor.data,
        executor.task,
        executor.train,
        torch.Generator(),
        store.get(cid),
        role=executor.role,
    )


def run_round(algo, state, executor, r, clients=(0, 1, 2, 3, 4)):
    results = [executor.run_one(algo.client_job(state, cid, r)) for cid in clients]
    return aggregate(algo, state, results, r), results


def test_uploads_hold_only_the_declared_parts():
    algo, state, executor, _ = setup("fedsimclr")
    online = algo.parts.index["online"]
    assert set(algo.parts.index) == {"online"} and len(algo.parts.upload) == len(online)
    new_state, results = run_round(algo, state, executor, 0)
    assert results[0].update[MODEL].shape == (len(online),)
    rest = torch.ones(len(state.weights), dtype=torch.bool)
    rest[algo.parts.upload] = False
    assert torch.equal(new_state.weights[rest], state.weights[rest])  # nothing else changes on the server
    assert not torch.equal(new_state.weights[online], state.weights[online])


def test_fedbyol_starts_each_round_with_the_target_equal_to_the_global_online_network():
    algo, state, executor, store = setup("fedbyol")
    state, _ = run_round(algo, state, executor, 0)
    ctx = context(algo, executor, store, 2, 1)
    algo.receive(ctx, algo.client_job(state, 2, 1))
    assert torch.equal(algo.part(ctx, "target"), state.weights[algo.parts.index["online"]])
    assert store.peek(2) == {}  # FedBYOL keeps nothing between rounds


@pytest.mark.parametrize("threshold,takes_global", [(1e9, True), (0.0, False)])
def test_fedu_takes_the_global_predictor_only_below_the_threshold(threshold, takes_global):
    algo, state, executor, store = setup("fedu", predictor_threshold=threshold)
    state, _ = run_round(algo, state, executor, 0)
    kept = store.peek(1)
    assert set(kept) >= {"online", "predictor", "target"}
    ctx = context(algo, executor, store, 1, 1)
    algo.receive(ctx, algo.client_job(state, 1, 1))
    expected = state.weights[algo.parts.index["predictor"]] if takes_global else kept["predictor"]
    assert torch.equal(algo.part(ctx, "predictor"), expected)
    assert torch.equal(algo.part(ctx, "online"), state.weights[algo.parts.index["online"]])
    assert torch.equal(algo.part(ctx, "target"), kept["target"])  # FedU's target stays local
    assert ctx.metrics["global_predictor"] == float(takes_global)


def test_fedema_lambda_is_set_once_and_mu_follows_the_divergence():
    algo, state, executor, store = setup("fedema", tau=0.7)
    state, results = run_round(algo, state, executor, 0)
    assert "ema_decay" not in results[0].metrics  # first participation: plain global model
    local = {k: v.clone() for k, v in store.peek(0).items() if isinstance(v, torch.Tensor)}
    ctx = context(algo, executor, store, 0, 1)
    algo.receive(ctx, algo.client_job(state, 0, 1))
    g_online = state.weights[algo.parts.index["online"]]
    d1 = algo.parts.online_distance(g_online, local["online"])
    assert store.peek(0)["lambda"] == pytest.approx(0.7 / d1)
    assert ctx.metrics["ema_decay"] == pytest.approx(0.7) and ctx.metrics["divergence"] == pytest.approx(d1)
    assert torch.allclose(algo.part(ctx, "online"), 0.7 * local["online"] + 0.3 * g_online, atol=1e-6)
    g_pred = state.weights[algo.parts.index["predictor"]]
    assert torch.allclose(algo.part(ctx, "predictor"), 0.7 * local["predictor"] + 0.3 * g_pred, atol=1e-6)
    assert torch.equal(algo.part(ctx, "target"), local["target"])
    # two rounds later the same lambda scales a new divergence
    state, _ = run_round(algo, state, executor, 1)
    state, results = run_round(algo, state, executor, 2)
    assert store.peek(0)["lambda"] == pytest.approx(0.7 / d1)
    mu = results[0].metrics["ema_decay"]
    assert mu == pytest.approx(min(0.7 / d1 * results[0].metrics["divergence"], 1.0))


def test_fedema_local_change_variant_measures_how_far_training_moved_the_client():
    algo, state, executor, store = setup("fedema", divergence="local_change")
    state, _ = run_round(algo, state, executor, 0)
    change = store.peek(3)["local_change"]
    assert change > 0 and store.peek(3).get("lambda") is None
    _, results = run_round(algo, state, executor, 1)
    assert results[3].metrics["divergence"] == pytest.approx(change)
    assert results[3].metrics["ema_decay"] == pytest.approx(0.7) and store.peek(3)["lambda"] == pytest.approx(
        0.7 / change
    )


def test_ssl_methods_refuse_a_classification_model():
    algo = FedEMA()
    with pytest.raises(ConfigError, match="task.name=ssl"):
        algo.init_server(FlatModel(MODELS.get("cnn")((1, 8, 8), 10)), None)
    assert FedBYOL.task == FedSimCLR.task == FedU.task == "ssl"


def test_finetuning_runs_on_a_copy_and_leaves_the_federated_weights_alone():
    from fedforge.engine.evaluation import RepresentationEvaluator

    cfg = resolve_config(
        None,
        {
            **SETTING,
            "algorithm": {"name": "fedsimclr"},
            "task": {"finetune_fractions": [0.1], "finetune_epochs": 2, "probe_epochs": 5},
        },
    )
    exp = Experiment(cfg)
    flat = FlatModel(exp.build_model())
    before = flat.read()
    evaluator = RepresentationEvaluator(exp.data, flat, exp.task, 1024, cfg.seed)
    metrics = evaluator.judge(flat.model, final=True)
    assert torch.equal(flat.vector, before)
    assert set(metrics.extra) == {"knn_accuracy", "finetune_0.1_accuracy"}
    assert 0.1 < metrics.extra["finetune_0.1_accuracy"] <= 1.0 and 0.5 < metrics.accuracy <= 1.0
    assert evaluator.judge(flat.model).extra.keys() == {"knn_accuracy"}  # fine-tuning only after the last round


def test_a_declared_local_part_never_leaves_the_client():
    from fedforge.algorithms.fedssl import FedSSL

    class LocalPredictorBYOL(FedSSL):  # a new variant is a declaration, not a fork
        uploads = ("online",)
        keeps = ("predictor",)

    cfg = resolve_config(None, {**SETTING, "algorithm": {"name": "fedbyol"}, "train": {"local_epochs": 1}})
    exp = Experiment(cfg)
    algo = LocalPredictorBYOL(None, cfg.train)
    server = FlatModel(exp.build_model())
    state = algo.init_server(server, exp.data)
    store = ClientStore()
    executor = SequentialExecutor(
        algo, exp.data, exp.build_model, cfg.train, store, 0, torch.device("cpu"), task=exp.task
    )
    state, _ = run_round(algo, state, executor, 0)
    ctx = context(algo, executor, store, 4, 1)
    algo.receive(ctx, algo.client_job(state, 4, 1))
    assert torch.equal(algo.part(ctx, "predictor"), store.peek(4)["predictor"])
    assert torch.equal(algo.part(ctx, "online"), state.weights[algo.parts.index["online"]])
