"""Heterogeneous widths: sub-model slicing (models/width.py), per-position averaging of parts of the
model (engine/aggregation.py) and HeteroFL / FedRolex (algorithms/heterofl.py)."""

import numpy as np
import pytest
import torch
from torch import nn

import fedforge
from fedforge.algorithms.heterofl import SubModel, assign_capacities, part_name, recompute_statistics
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.validation import UpdateValidator
from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError
from fedforge.models import MODELS
from fedforge.models.width import WidthPlan
from fedforge.records import MODEL, ClientResult, UploadSpec

SHAPE = (1, 8, 8)


def cnn(norm="batch"):
    torch.manual_seed(0)
    return MODELS.get("cnn")(SHAPE, 10, width=8, hidden=16, norm=norm)


def test_a_sub_model_is_the_first_channels_of_every_hidden_layer():
    model = cnn()
    flat = FlatModel(model)
    plan = WidthPlan.of(model, SHAPE)
    assert plan.group_sizes == (1, 8, 16, 16, 10)  # input, conv1, conv2, fc1, classes
    sub = SubModel.build(plan, model, 0.5, scaler=False)
    params = plan.positions([e for e in flat.layout.entries if e.is_param], 0.5)
    stats = plan.positions([e for e in flat.layout.entries if not e.is_param], 0.5)
    sub.load(torch.cat([flat.vector[params], flat.vector[stats]]))
    small = dict(sub.flat.model.named_parameters())
    full = dict(model.named_parameters())
    assert torch.equal(small["0.weight"], full["0.weight"][:4])  # conv1: 4 of 8 outputs, the one input
    assert torch.equal(small["4.weight"], full["4.weight"][:8, :4])  # conv2: 8 of 16 outputs, 4 inputs
    spread = full["9.weight"].view(16, 16, 2, 2)[:8, :8].reshape(8, 32)  # fc1 after Flatten: 8 channels x 2x2
    assert torch.equal(small["9.weight"], spread)
    assert torch.equal(small["11.weight"], full["11.weight"][:, :8])  # the classifier keeps all 10 outputs
    assert torch.equal(sub.flat.model.get_submodule("1").running_var, model.get_submodule("1").running_var[:4])
    assert sub.flat.model(torch.randn(3, *SHAPE)).shape == (3, 10)
    assert sub.num_params == len(params) and sub.flat.layout.num_params < flat.layout.num_params / 3


def test_the_full_width_covers_every_position_once_and_a_rolling_window_wraps():
    model = cnn()
    flat = FlatModel(model)
    plan = WidthPlan.of(model, SHAPE)
    every = plan.positions(flat.layout.entries, 1.0)
    assert torch.equal(every.sort().values, flat.layout.indices(lambda _: True))
    assert plan.channels(0.5, offset=6)[1].tolist() == [0, 1, 6, 7]  # conv1's 8 channels, window of 4 from 6
    assert plan.channels(0.5, offset=6)[2].tolist() == [6, 7, 8, 9, 10, 11, 12, 13]
    assert plan.channels(0.25, offset=0)[1].tolist() == [0, 1]  # ceil(0.25 * 8)
    assert plan.channels(0.3, offset=0)[1].tolist() == [0, 1, 2]  # ceil(2.4)
    rolled = plan.positions(flat.layout.entries, 0.5, offset=3)
    assert len(rolled) == len(plan.positions(flat.layout.entries, 0.5)) and len(set(rolled.tolist())) == len(rolled)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(x + self.conv(x))


def test_a_model_with_branches_is_refused_naming_the_layer():
    with pytest.raises(ConfigError, match="one chain of layers.*head.0"):
        WidthPlan.of(Residual(), SHAPE)


def test_the_scaler_divides_hidden_outputs_in_training_and_at_inference():
    model = cnn(norm="none")
    plan = WidthPlan.of(model, SHAPE)
    plain, scaled = SubModel.build(plan, model, 0.5, scaler=False), SubModel.build(plan, model, 0.5, scaler=True)
    scaled.flat.load(plain.flat.vector)
    x = torch.rand(2, *SHAPE)
    first = plain.flat.model[:2](x)  # conv1 + relu
    assert torch.allclose(scaled.flat.model[:2](x), first / 0.5)
    scaled.flat.model.eval()
    assert torch.allclose(scaled.flat.model[:2](x), first / 0.5)


def test_static_batch_norm_recomputes_exact_statistics_of_the_final_weights(tmp_path):
    class Ctx:  # the part of ClientContext the statistics pass reads
        model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
        images = torch.randint(0, 255, (12, 1, 4, 4), dtype=torch.uint8)
        generator = torch.Generator().manual_seed(0)

        class data:
            @staticmethod
            def transform(images, generator):
                return images.float() / 255

        def batches(self, epochs):
            return [(self.images[:6], None), (self.images[6:], None)]  # equal batches: the average is exact

    ctx = Ctx()
    recompute_statistics(ctx)
    conv_out = ctx.model[0](ctx.images.float() / 255).detach()
    norm = ctx.model[1]
    assert torch.allclose(norm.running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-6)
    assert norm.momentum == 0.1  # restored


def test_parts_are_averaged_over_the_clients_holding_each_position():
    reference = torch.zeros(6)
    narrow, wide = torch.tensor([0, 1]), torch.arange(6)
    specs = {
        MODEL: UploadSpec((6,), reference, required=False),
        "model/w0.5": UploadSpec((2,), reference[narrow], required=False, positions=narrow, senders=frozenset({0})),
        "model/w1": UploadSpec((6,), reference, required=False, positions=wide, senders=frozenset({1, 2})),
    }
    outcome = RoundOutcome(UpdateValidator(), specs, streaming=True)
    outcome.add(ClientResult(0, {"model/w0.5": torch.tensor([3.0, 3.0])}, 1))
    outcome.add(ClientResult(1, {"model/w1": torch.ones(6)}, 2))
    outcome.add(ClientResult(2, {"model/w0.5": torch.tensor([9.0, 9.0])}, 5))  # not its width: rejected
    assert [r.client_id for r in outcome.rejected] == [2] and "not asked of client 2" in outcome.rejected[0].reason
    mean = outcome.reduce(None)[MODEL]  # a streaming mean needs no aggregator
    assert torch.allclose(mean, torch.tensor([5 / 3, 5 / 3, 1, 1, 1, 1]))
    assert outcome.weight_of(MODEL) == 3


def test_a_position_nobody_holds_keeps_the_global_value_and_worker_sums_merge():
    reference = torch.arange(4.0)
    part = torch.tensor([1, 2])
    specs = {
        MODEL: UploadSpec((4,), reference, required=False),
        "p": UploadSpec((2,), reference[part], required=False, positions=part),
    }
    halves = [RoundOutcome(UpdateValidator(), specs, streaming=True) for _ in range(2)]
    halves[0].add(ClientResult(0, {"p": torch.tensor([10.0, 10.0])}, 1))
    halves[1].add(ClientResult(1, {"p": torch.tensor([20.0, 20.0])}, 3))
    halves[0].merge(halves[1])
    assert torch.allclose(halves[0].reduce(None)[MODEL], torch.tensor([0.0, 17.5, 17.5, 3.0]))


def test_capacities_become_exact_counts_by_a_seeded_draw_or_by_speed():
    capacities = {1.0: 0.2, 0.5: 0.4, 0.25: 0.4}
    rates = assign_capacities(capacities, 10, seed=0, slowness=None)
    assert sorted(rates.tolist()).count(1.0) == 2 and rates.tolist().count(0.25) == 4
    assert np.array_equal(rates, assign_capacities(capacities, 10, seed=0, slowness=None))
    assert not np.array_equal(rates, assign_capacities(capacities, 10, seed=1, slowness=None))
    slowness = np.array([5.0, 1.0, 3.0, 0.5, 9.0, 2.0, 7.0, 4.0, 6.0, 8.0])
    by_speed = assign_capacities(capacities, 10, seed=0, slowness=slowness)
    assert set(np.nonzero(by_speed == 1.0)[0]) == {3, 1}  # the two fastest
    assert set(np.nonzero(by_speed == 0.25)[0]) == {4, 9, 6, 8}  # the four slowest
    assert assign_capacities({1.0: 1 / 3, 0.5: 2 / 3}, 7, 0, None).tolist().count(1.0) == 2  # largest remainder


def run(tmp_path, **overrides):
    base = {
        "data": {"num_clients": 6},
        "train": {"rounds": 2, "local_epochs": 1},
        "model": {"name": "cnn", "width": 8, "hidden": 32},
        "eval": {"personalized": False},
        "tracking": {"runs_dir": str(tmp_path), "database": False},
        "checkpoint": {"every": 0},
        "backend": {"threads": 1},
    }
    return fedforge.run(quiet=True, **{**base, **overrides})


def weights(result):
    return torch.cat([p.detach().flatten() for p in result.model.state_dict().values() if p.is_floating_point()])


def test_heterofl_with_every_client_at_full_width_is_fedavg_bit_for_bit(tmp_path):
    hetero = run(
        tmp_path, algorithm={"name": "heterofl", "capacities": {1.0: 1.0}}, model={"name": "cnn", "norm": "none"}
    )
    fedavg = run(tmp_path, algorithm={"name": "fedavg"}, model={"name": "cnn", "norm": "none"})
    assert torch.equal(weights(hetero), weights(fedavg))


@pytest.mark.parametrize("method", ["heterofl", "fedrolex"])
def test_every_width_is_evaluated_alone_and_narrow_clients_send_fewer_bytes(tmp_path, method):
    result = run(tmp_path, algorithm={"name": method}, train={"rounds": 5, "local_epochs": 1})
    final = result.summary["final_metrics"]
    assert set(final) == {"width_0.5_accuracy", "width_0.25_accuracy"} and all(0 <= v <= 1 for v in final.values())
    assert result.summary["widths"] == {"1": 1, "0.5": 3, "0.25": 2}
    full = run(tmp_path, algorithm={"name": "fedavg"}, train={"rounds": 5, "local_epochs": 1})
    assert result.summary["bytes_up"] < 0.6 * full.summary["bytes_up"]  # 1 x 1 + 3 x 1/4 + 2 x 1/16 of 6 models
    assert result.final_accuracy > 0.3  # 10 classes: it learned


def test_fedrolex_rolls_its_window_over_the_channels_while_heterofl_trains_the_first_ones(tmp_path):
    """Nobody runs the full width here: HeteroFL never touches the last half of the channels, FedRolex's
    window (from channel r in round r) reaches them."""
    model = {"name": "cnn", "width": 8, "hidden": 32, "norm": "none"}
    widths = {"capacities": {1.0: 0.0, 0.5: 1.0}}
    init = weights(run(tmp_path, algorithm={"name": "heterofl", **widths, "min_capacity": 1.0}, model=model))
    hetero = weights(run(tmp_path, train={"rounds": 3, "local_epochs": 1}, algorithm={"name": "heterofl", **widths},
                         model=model))  # fmt: skip
    rolex = weights(run(tmp_path, train={"rounds": 3, "local_epochs": 1}, algorithm={"name": "fedrolex", **widths},
                        model=model))  # fmt: skip
    conv1 = slice(0, 8 * 9)  # the first conv's weight: 8 output channels x 1 input x 3x3
    assert (hetero[conv1] != init[conv1]).view(8, 9).any(dim=1).tolist() == [True] * 4 + [False] * 4
    assert (rolex[conv1] != init[conv1]).view(8, 9).any(dim=1).tolist() == [True] * 6 + [False] * 2  # 0-3, 1-4, 2-5


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"aggregation": {"name": "median"}}, "aggregation.name"),
        ({"attack": {"kind": "sign_flip", "fraction": 0.2}}, "attack"),
        ({"algorithm": {"name": "heterofl", "assign": "speed"}}, "system"),
        ({"algorithm": {"name": "heterofl", "capacities": {1.0: 0.5, 0.5: 0.4}}}, "sum to 0.9"),
        ({"algorithm": {"name": "heterofl", "capacities": {1.5: 1.0}}}, r"widths lie in \(0, 1\]"),
    ],
)
def test_what_widths_cannot_combine_with_is_refused_naming_the_field(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        run(tmp_path, **{"algorithm": {"name": "heterofl"}, **override})


def test_a_client_uploading_a_width_it_was_not_given_is_rejected_every_round(tmp_path):
    from fedforge.algorithms.base import register
    from fedforge.algorithms.heterofl import HeteroFL, WidthParams

    rates = assign_capacities(WidthParams().capacities, 6, seed=0, slowness=None)
    liar = int(np.nonzero(rates < 1)[0][0])

    @register("lying_widths", replace=True)
    class LyingWidths(HeteroFL):
        def local_update(self, ctx, job):
            result = super().local_update(ctx, job)
            if job.client_id == liar:  # claims the full model in place of the narrow one it was given
                result.update = {part_name(1.0): torch.zeros(ctx.flat.layout.num_params)}
            return result

    result = run(tmp_path, algorithm={"name": "lying_widths"}, tracking={"runs_dir": str(tmp_path), "database": True})
    rejected = [e for e in fedforge.tracking.load_events(result.run_dir) if e["kind"] == "rejected_update"]
    assert [e["client_id"] for e in rejected] == [liar, liar]
    assert f"not asked of client {liar}" in rejected[0]["reason"]


def test_widths_follow_the_system_profiles_speeds_with_assign_speed(tmp_path, monkeypatch):
    from fedforge.algorithms.heterofl import HeteroFL
    from fedforge.config import SystemConfig
    from fedforge.engine.system import draw_slowness
    from fedforge.seeding import SYSTEM, numpy_rng

    system = {"profile": {"kind": "lognormal", "sigma": 1.0}}
    seen = {}
    rates_of = HeteroFL.client_rates

    def recording(self):
        seen["rates"] = rates_of(self)
        return seen["rates"]

    monkeypatch.setattr(HeteroFL, "client_rates", recording)
    run(tmp_path, algorithm={"name": "heterofl", "assign": "speed"}, system=system)
    slowness = draw_slowness(SystemConfig(**system), 6, numpy_rng(0, SYSTEM))
    fastest_first = np.argsort(slowness, kind="stable")
    assert seen["rates"][fastest_first].tolist() == [1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
