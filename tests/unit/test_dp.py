"""Differential privacy: the RDP accountant against Opacus, central DP-FedAvg, local DP-SGD."""

import math
import warnings

import pytest
import torch
from torch import nn

import fedforge
from fedforge.config import PrivacyConfig
from fedforge.engine.validation import UpdateValidator
from fedforge.errors import ConfigError
from fedforge.privacy import accountant
from fedforge.privacy.central import CLIP, UNCLIPPED, CentralDP, clip_result, clip_update
from fedforge.privacy.local import SampleDP
from fedforge.records import MODEL, ClientJob, ClientResult, ServerState, UploadSpec
from fedforge.tracking.query import load_metrics

GRID = [(q, z, steps) for q in (0.01, 0.1, 0.6) for z in (0.5, 1.0, 2.5) for steps in (1, 50, 1000)]


def test_epsilon_equals_opacus_rdp_accountant_over_a_grid():
    rdp = pytest.importorskip("opacus.accountants.analysis.rdp")
    from opacus.accountants.rdp import RDPAccountant

    orders = RDPAccountant.DEFAULT_ALPHAS
    assert tuple(float(a) for a in orders) == accountant.DEFAULT_ORDERS
    for q, z, steps in GRID:
        curve = rdp.compute_rdp(q=q, noise_multiplier=z, steps=steps, orders=orders)
        with warnings.catch_warnings():  # Opacus notes when the best order is at the grid's edge
            warnings.simplefilter("ignore", UserWarning)
            theirs, _ = rdp.get_privacy_spent(orders=orders, rdp=curve, delta=1e-5)
        assert accountant.epsilon(q, z, steps, 1e-5) == pytest.approx(theirs, abs=1e-3), (q, z, steps)


def test_the_accountant_edges_and_its_inverses():
    assert accountant.epsilon(0.1, 1.0, 0, 1e-5) == 0.0
    assert accountant.epsilon(0.1, 0.0, 10, 1e-5) == math.inf
    assert accountant.epsilon(0.1, 1.0, 100, 1e-5) < accountant.epsilon(0.1, 1.0, 200, 1e-5)
    assert accountant.epsilon(0.1, 2.0, 100, 1e-5) < accountant.epsilon(0.1, 1.0, 100, 1e-5)
    z = accountant.noise_for_budget(0.1, 100, 1e-5, 3.0)
    assert accountant.epsilon(0.1, z, 100, 1e-5) <= 3.0 < accountant.epsilon(0.1, z - 0.01, 100, 1e-5)
    steps = accountant.steps_within_budget(0.1, 1.0, 1e-5, 3.0, limit=1000)
    assert accountant.epsilon(0.1, 1.0, steps, 1e-5) <= 3.0 < accountant.epsilon(0.1, 1.0, steps + 1, 1e-5)


def test_clipping_bounds_the_update_and_leaves_small_ones_alone():
    reference = torch.ones(100)
    small, within = clip_update(reference + 0.01, reference, 1.0)
    assert within and torch.equal(small, reference + 0.01)
    big, within = clip_update(reference + torch.randn(100), reference, 0.5)
    assert not within and float(torch.linalg.vector_norm(big - reference)) == pytest.approx(0.5, rel=1e-5)


def central(**privacy) -> CentralDP:
    cfg = PrivacyConfig.model_validate({"clip": 0.5, "noise_multiplier": 0.0, **privacy})
    return CentralDP(cfg, num_clients=100, clients_per_round=10, rounds=50, seed=0)


def test_the_release_divides_the_clipped_sum_by_the_expected_cohort():
    dp, reference = central(), torch.zeros(4)
    state = ServerState(reference)
    mean_of_three = torch.tensor([0.3, 0.0, 0.0, 0.0])  # three clients reported, mean update 0.3
    reduced, kept, metrics = dp.release(state, {MODEL: mean_of_three}, 3.0, [], 0)
    assert torch.allclose(reduced[MODEL], torch.tensor([0.09, 0.0, 0.0, 0.0]))  # 3 x 0.3 / 10
    assert kept == {"clip": 0.5} and "epsilon" not in metrics  # z=0: no privacy, no epsilon


def test_the_noise_is_z_times_the_clip_over_the_cohort_and_epsilon_is_the_accountants():
    dp = central(noise_multiplier=1.0)
    reference = torch.zeros(200_000)
    reduced, _, metrics = dp.release(ServerState(reference), {MODEL: reference.clone()}, 10.0, [], 4)
    assert float(reduced[MODEL].std()) == pytest.approx(1.0 * 0.5 / 10, rel=0.02)
    assert metrics["epsilon"] == pytest.approx(accountant.epsilon(0.1, 1.0, 5, 1e-5))
    again, _, _ = dp.release(ServerState(reference), {MODEL: reference.clone()}, 10.0, [], 4)
    assert torch.equal(again[MODEL], reduced[MODEL])  # seeded by (seed, round)


def test_adaptive_clipping_moves_the_bound_toward_the_target_quantile():
    dp = central(adaptive_clip={"target_quantile": 0.5, "lr": 0.2})
    state = ServerState(torch.zeros(3), extras={"privacy": {"clip": 0.5}})
    _, kept, metrics = dp.release(state, {MODEL: torch.zeros(3), UNCLIPPED: torch.tensor([10.0])}, 10, [], 0)
    assert metrics["unclipped_fraction"] == 1.0 and kept["clip"] == pytest.approx(0.5 * math.exp(-0.2 * 0.5))
    _, kept, _ = dp.release(state, {MODEL: torch.zeros(3), UNCLIPPED: torch.tensor([0.0])}, 10, [], 0)
    assert kept["clip"] == pytest.approx(0.5 * math.exp(0.2 * 0.5))  # every update clipped: the bound grows


def test_adaptive_clipping_raises_the_update_noise_so_the_total_is_z():
    dp = central(noise_multiplier=1.0, adaptive_clip={"count_stddev": 2.0})
    assert dp.update_noise == pytest.approx((1.0 - 1 / 16) ** -0.5)
    with pytest.raises(ConfigError, match="count_stddev"):
        central(noise_multiplier=1.0, adaptive_clip={"count_stddev": 0.4})


def test_the_server_refuses_an_upload_over_the_clip_or_claiming_more_weight():
    dp, reference = central(), torch.zeros(10)
    state = ServerState(reference)
    specs = dp.specs({MODEL: UploadSpec.of(reference)}, state)
    job = ClientJob(0, 0, {MODEL: reference})
    dp.dress(job, state)
    honest = clip_result(ClientResult(0, {MODEL: reference + 1.0}, 50), job)
    validator = UpdateValidator(max_update_ratio=None)
    assert validator.verdict(honest, specs) is None and honest.weight(MODEL) == 1.0
    unclipped = ClientResult(1, {MODEL: reference + 1.0}, 50, entry_weights={MODEL: 1.0})
    assert "over the clip" in validator.verdict(unclipped, specs).reason
    heavy = ClientResult(2, {MODEL: reference + 0.01}, 50)  # claims its 50 samples
    assert "claims weight 50" in validator.verdict(heavy, specs).reason
    assert job.payload[CLIP].tolist() == [0.5, 0.0]


def test_per_sample_clipping_equals_clipping_each_sample_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
    x, y = torch.randn(6, 12), torch.randint(0, 3, (6,))
    dp = SampleDP(clip=0.1, noise_multiplier=0.0, delta=1e-5, target_epsilon=None)
    dp.backward(model, x, y, torch.Generator().manual_seed(0))
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    expected = torch.zeros_like(got)
    for i in range(6):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        g = torch.cat([p.grad.flatten() for p in model.parameters()])
        expected += g * min(1.0, 0.1 / float(g.norm()))
    assert torch.allclose(got, expected / 6, atol=1e-6)
    with pytest.raises(ValueError, match="BatchNorm"):
        dp.backward(nn.Sequential(nn.Flatten(), nn.Linear(12, 3), nn.BatchNorm1d(3)), x, y, torch.Generator())


def test_central_dp_reports_epsilon_every_round_and_stops_at_its_budget(quick, runs_dir):
    privacy = {"clip": 1.0, "noise_multiplier": 1.0, "target_epsilon": 7.0}  # 6.48 after 3 rounds, 7.41 after 4
    overrides = {**quick, "train": {"rounds": 6, "clients_per_round": 5}, "model": {"name": "cnn", "norm": "none"}}
    result = fedforge.run(quiet=True, **overrides, privacy=privacy)
    rounds = accountant.steps_within_budget(0.5, 1.0, 1e-5, 7.0, 6)
    assert rounds == 3 and result.summary["rounds"] == rounds
    assert result.summary["privacy"]["epsilon"] == pytest.approx(accountant.epsilon(0.5, 1.0, rounds, 1e-5))
    spent = [m["value"] for m in load_metrics(result.run_dir) if m["name"] == "epsilon" and m["client_id"] is None]
    assert spent == sorted(spent) and len(spent) == rounds and spent[-1] <= 7.0

    calibrated = fedforge.run(quiet=True, **overrides, privacy={**privacy, "on_budget": "calibrate"})
    assert calibrated.summary["rounds"] == 6 and calibrated.summary["privacy"]["epsilon"] <= 7.0
    assert calibrated.summary["privacy"]["noise_multiplier"] > 1.0


def test_local_dp_sgd_clients_account_for_themselves(quick):
    overrides = {**quick, "train": {"rounds": 2, "clients_per_round": 4}, "model": {"name": "cnn", "norm": "none"}}
    privacy = {"mechanism": "local", "clip": 1.0, "noise_multiplier": 1.0}
    result = fedforge.run(quiet=True, **overrides, privacy=privacy)
    per_client = [m for m in load_metrics(result.run_dir) if m["name"] == "epsilon" and m["client_id"] is not None]
    assert per_client and result.summary["privacy"]["epsilon"] == pytest.approx(max(m["value"] for m in per_client))
    assert result.summary["final_accuracy"] > 0.1


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"aggregation": {"name": "median"}}, "aggregation.name"),
        ({"algorithm": {"name": "fedbuff"}}, "algorithm.name"),
        ({"privacy": {"mechanism": "local", "adaptive_clip": {}}}, "privacy.adaptive_clip"),
        ({"privacy": {"mechanism": "local", "target_epsilon": 1, "on_budget": "calibrate"}}, "privacy.on_budget"),
        ({"privacy": {"noise_multiplier": 0, "target_epsilon": 1}}, "privacy.noise_multiplier"),
    ],
)
def test_what_dp_cannot_compose_with_is_refused_naming_the_field(overrides, where):
    raw = {"privacy": {}, "data": {"num_clients": 20}, "train": {"clients_per_round": 5}, **overrides}
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        fedforge.config.build_config(raw)


def test_methods_and_models_dp_cannot_protect_are_refused(quick):
    with pytest.raises(ConfigError, match="scaffold also uploads"):
        fedforge.run(quiet=True, **quick, algorithm={"name": "scaffold"}, model={"name": "cnn", "norm": "none"},
                     privacy={})  # fmt: skip
    with pytest.raises(ConfigError, match="BatchNorm"):
        fedforge.run(quiet=True, **quick, model={"name": "cnn"}, privacy={})


def test_the_report_plots_accuracy_against_epsilon_and_lists_it(tmp_path):
    from fedforge.tracking.report import write_report

    common = {"train.rounds": 2, "data.num_clients": 4, "model.norm": "none", "tracking.runs_dir": str(tmp_path)}
    private = fedforge.run(quiet=True, privacy={"noise_multiplier": 1.0}, **common, **{"tracking.name": "dp"})
    plain = fedforge.run(quiet=True, **common, **{"tracking.name": "plain"})
    report = write_report([private.run_dir, plain.run_dir], tmp_path / "report")
    assert (tmp_path / "report" / "accuracy_vs_epsilon.png") in report.files
    table = (tmp_path / "report" / "report.md").read_text()
    assert f"| {private.summary['privacy']['epsilon']:.2f} (delta 1e-05) |" in table
    only_plain = write_report([plain.run_dir], tmp_path / "report2")
    assert not any(p.name == "accuracy_vs_epsilon.png" for p in only_plain.files)


def test_a_budget_below_one_round_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="below what one round spends"):
        central(noise_multiplier=1.0, target_epsilon=0.01)


def test_clients_past_their_budget_decline_and_the_rounds_go_on_without_them(quick):
    from fedforge.tracking.query import load_events, load_rounds

    privacy = {"mechanism": "local", "clip": 1.0, "noise_multiplier": 1.0, "target_epsilon": 6.0}
    overrides = {**quick, "train": {"rounds": 3, "local_epochs": 1}, "model": {"name": "cnn", "norm": "none"}}
    result = fedforge.run(quiet=True, **overrides, privacy=privacy)  # ~4-5 steps a round at q ~ 0.2-0.3
    spent = [m for m in load_metrics(result.run_dir) if m["name"] == "epsilon" and m["client_id"] is not None]
    declined = [e for e in load_events(result.run_dir) if "privacy budget spent" in e["reason"]]
    assert {m["round"] for m in spent} >= {1} and declined and min(e["round"] for e in declined) >= 2
    assert max(m["value"] for m in spent) <= 6.0 and result.summary["privacy"]["epsilon"] <= 6.0
    assert len(load_rounds(result.run_dir)) == 3
    nobody = fedforge.run(quiet=True, **overrides, privacy={**privacy, "target_epsilon": 1.0})  # too little for one
    assert len(load_rounds(nobody.run_dir)) == 3  # a round everyone declined is an empty round, not AllClientsFailed
