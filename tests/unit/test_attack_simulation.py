"""Attack simulation: who attacks is seeded, and each kind turns an honest result as documented."""

import pytest
import torch

from fedforge.aggregation.attacks import Attack, AttackConfig, alie_z
from fedforge.aggregation.reducers import Mean
from fedforge.algorithms.base import ClientContext
from fedforge.api import Experiment, resolve_config
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.validation import UpdateValidator
from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError
from fedforge.records import MODEL, UploadSpec
from tests.rounds import result


def attack(kind, **kw):
    return Attack(AttackConfig(kind=kind, **kw), seed=3)


def test_attackers_are_a_seeded_share_of_the_reporting_clients():
    a = attack("sign_flip", fraction=0.2)
    ids = list(range(100, 120))
    first = a.choose(0, ids)
    assert len(first) == 4 and first <= set(ids)
    assert a.choose(0, ids) == first and a.choose(1, ids) != first  # fixed per round, new each round
    assert Attack(a.config, seed=4).choose(0, ids) != first
    assert len(a.choose(0, [7, 8])) == 1  # at least one whenever anyone reports
    assert a.choose(0, []) == frozenset()


def test_sign_flip_scale_and_gaussian_by_hand():
    x = torch.tensor([1.0, 1.0])
    honest = [result(0, [2.0, 0.0], 5)]
    (flipped,) = attack("sign_flip", strength=5).corrupt(honest, x, 0, 10)
    assert torch.equal(flipped.update[MODEL], torch.tensor([-4.0, 6.0]))  # x - 5 (u - x)
    assert flipped.num_samples == 5 and torch.equal(honest[0].update[MODEL], torch.tensor([2.0, 0.0]))
    (scaled,) = attack("scale").corrupt(honest, x, 0, 10)
    assert torch.equal(scaled.update[MODEL], torch.tensor([11.0, -9.0]))  # default s = 10
    (noisy,) = attack("gaussian", strength=0.5).corrupt(honest, x, 0, 10)
    (again,) = attack("gaussian", strength=0.5).corrupt(honest, x, 0, 10)
    assert torch.equal(noisy.update[MODEL], again.update[MODEL])  # seeded by (seed, round, client)
    assert not torch.equal(
        noisy.update[MODEL], attack("gaussian", strength=0.5).corrupt(honest, x, 1, 10)[0].update[MODEL]
    )


def test_alie_sends_the_attackers_mean_minus_z_std():
    assert alie_z(20, 4) == pytest.approx(0.38532, abs=1e-4)  # s = 11 - 4 = 7; Phi^-1(13/20)
    assert alie_z(10, 2) == pytest.approx(0.25335, abs=1e-4)  # s = 6 - 2 = 4; Phi^-1(6/10)
    honest = [result(0, [1.0, 0.0], 5), result(1, [3.0, 0.0], 5)]  # mean (2, 0), std (1, 0)
    turned = attack("alie", strength=1.5).corrupt(honest, torch.zeros(2), 0, 10)
    assert all(torch.allclose(r.update[MODEL], torch.tensor([0.5, 0.0])) for r in turned)
    default = attack("alie").corrupt(honest, torch.zeros(2), 0, 10)
    assert torch.allclose(default[0].update[MODEL], torch.tensor([2 - alie_z(10, 2), 0.0]))


def test_held_results_are_turned_then_validated_like_any_other():
    outcome = RoundOutcome(
        UpdateValidator(max_update_norm=3.0), {MODEL: UploadSpec.of(torch.zeros(2))}, True, frozenset({1})
    )
    outcome.add(result(0, [1.0, 1.0], 1))
    outcome.add(result(1, [1.0, 1.0], 1))
    assert [r.client_id for r in outcome.held] == [1] and len(outcome.receipts) == 1
    outcome.release_held(lambda held: attack("scale", strength=10).corrupt(held, torch.zeros(2), 0, 2))
    assert [r.client_id for r in outcome.rejected] == [1] and "max_update_norm" in outcome.rejected[0].reason
    assert torch.equal(outcome.reduce(Mean())[MODEL], torch.ones(2))


def test_label_flip_needs_labels_and_the_section_is_validated():
    with pytest.raises(ConfigError, match="attack.kind: label_flip flips class labels"):
        resolve_config("configs/digits_fedssl.yaml", {"attack": {"kind": "label_flip"}})
    with pytest.raises(ConfigError, match="attack.fraction"):
        resolve_config(None, {"attack": {"kind": "alie", "fraction": 1.0}})
    with pytest.raises(ConfigError, match="attack.kind"):
        resolve_config(None, {"attack": {"kind": "backdoor"}})
    assert resolve_config(None, {"attack": {"kind": "label_flip"}}).attack.fraction == 0.2


def test_a_label_flipping_client_trains_on_c_minus_1_minus_y():
    exp = Experiment(resolve_config(None, {"backend": {"device": "cpu"}}))
    flat = FlatModel(exp.build_model())

    def labels(flip):
        ctx = ClientContext(
            0, 0, flat, exp.data, exp.task, exp.cfg.train, torch.Generator().manual_seed(0), {}, flip_labels=flip
        )
        return torch.cat([y for _, y in ctx.batches(1)])

    assert torch.equal(labels(True), 9 - labels(False))
