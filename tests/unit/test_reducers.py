"""Each aggregator against hand-made inputs: ties, even and odd counts, f at its bound, equal inputs."""

import pytest
import torch

from fedforge.aggregation import AGGREGATORS
from fedforge.aggregation.reducers import (
    CenteredClip,
    GeometricMedian,
    Krum,
    Mean,
    Median,
    MultiKrum,
    TrimmedMean,
    krum_scores,
)
from fedforge.api import resolve_config
from fedforge.errors import ConfigError


def rows(*values):
    return torch.tensor(values, dtype=torch.float32)


def ones(n):
    return torch.ones(n, dtype=torch.float64)


def reduce(aggregator, uploads, weights=None, reference=None):
    uploads = rows(*uploads)
    weights = ones(len(uploads)) if weights is None else torch.tensor(weights, dtype=torch.float64)
    reference = torch.zeros(uploads.shape[1]) if reference is None else rows(*reference)
    return aggregator.reduce(uploads, weights, reference)


def test_the_registry_lists_every_aggregator():
    assert AGGREGATORS.names() == sorted(
        ["mean", "median", "trimmed_mean", "krum", "multikrum", "geometric_median", "centered_clip"]
    )
    assert Mean.streams and not any(AGGREGATORS.get(n).streams for n in AGGREGATORS.names() if n != "mean")


def test_mean_is_sample_weighted():
    assert torch.allclose(reduce(Mean(), [[1, 1], [4, 0]], [10, 30]), rows(3.25, 0.25))


def test_median_odd_even_and_ties():
    assert torch.equal(reduce(Median(), [[1, 5], [3, 1], [2, 2]]), rows(2, 2))  # odd: the middle value
    assert torch.equal(reduce(Median(), [[1, 5], [3, 1], [2, 2], [10, 0]]), rows(2.5, 1.5))  # even: middle pair
    assert torch.equal(reduce(Median(), [[1], [1], [3]]), rows(1))  # a tie at the middle
    assert torch.equal(reduce(Median(), [[7, -2]] * 4), rows(7, -2))  # all equal


def test_median_ignores_sample_counts():
    assert torch.equal(reduce(Median(), [[0], [1], [100]], [1, 1, 1000]), rows(1))


def test_trimmed_mean_cuts_floor_beta_n_at_each_end():
    values = [[1, 5], [3, 1], [2, 2], [10, 0]]
    beta = TrimmedMean.Params
    assert torch.allclose(reduce(TrimmedMean(beta(beta=0.25)), values), rows(2.5, 1.5))  # n=4: one cut per end
    assert torch.allclose(reduce(TrimmedMean(beta(beta=0.2)), values), rows(4, 2))  # floor(0.8)=0: the plain mean
    five = [[0], [1], [2], [3], [100]]
    assert torch.allclose(reduce(TrimmedMean(beta(beta=0.2)), five), rows(2))  # (1+2+3)/3
    assert torch.allclose(reduce(TrimmedMean(beta(beta=0.49)), [[4], [4], [4]]), rows(4))  # all equal


def test_krum_scores_and_selection_with_a_tie():
    points = [[0], [1], [2], [3], [100]]
    # n=5, f=1: each point's 2 nearest: 0 -> 1+4, 1 -> 1+1, 2 -> 1+1, 3 -> 1+4, 100 -> 97^2+98^2
    scores = krum_scores(rows(*points), 1)
    assert scores.tolist() == [5.0, 2.0, 2.0, 5.0, 97.0**2 + 98.0**2]
    assert torch.equal(reduce(Krum(Krum.Params(f=1)), points), rows(1))  # tie between 1 and 2: the earlier
    assert torch.equal(reduce(MultiKrum(MultiKrum.Params(f=1, m=3)), points), rows(1))  # (1 + 2 + 0) / 3
    assert torch.equal(reduce(MultiKrum(MultiKrum.Params(f=1)), points), rows(1.5))  # m = n - f: 1, 2, 0, 3
    assert torch.equal(reduce(Krum(Krum.Params(f=1)), [[3, 3]] * 5), rows(3, 3))  # all equal


def test_krum_at_its_bound_and_past_it():
    five = [[0], [1], [2], [3], [100]]
    Krum(Krum.Params(f=1)).check_clients(5)  # n = 2f + 3 exactly
    with pytest.raises(ValueError, match="aggregation.f=2 needs at least 2f \\+ 3 = 7"):
        Krum(Krum.Params(f=2)).check_clients(5)
    # A round thinned by dropouts below 2f + 3 lowers f for that round instead of failing.
    assert torch.equal(reduce(Krum(Krum.Params(f=3)), five), reduce(Krum(Krum.Params(f=1)), five))


def test_too_large_f_m_or_beta_is_a_config_error_naming_the_field():
    with pytest.raises(ConfigError, match="aggregation: aggregation.f=4 needs at least 2f \\+ 3 = 11"):
        resolve_config(None, {"aggregation": {"name": "krum", "f": 4}})
    with pytest.raises(ConfigError, match="aggregation.m=11 exceeds the 10 clients"):
        resolve_config(None, {"aggregation": {"name": "multikrum", "f": 1, "m": 11}})
    with pytest.raises(ConfigError, match="aggregation.beta"):
        resolve_config(None, {"aggregation": {"name": "trimmed_mean", "beta": 0.5}})
    with pytest.raises(ConfigError, match="aggregation.name: unknown aggregator 'krumm' \\(did you mean 'krum'"):
        resolve_config(None, {"aggregation": {"name": "krumm"}})
    cfg = resolve_config(None, {"aggregation": {"name": "krum", "f": 3}, "train": {"clients_per_round": 9}})
    assert cfg.aggregation.params.f == 3


def test_geometric_median_is_the_weighted_median_on_a_line_and_the_centre_of_a_square():
    gm = GeometricMedian()
    assert torch.allclose(reduce(gm, [[0], [1], [10]]), rows(1), atol=1e-4)
    assert torch.allclose(reduce(gm, [[0], [1], [10]], [1, 1, 3]), rows(10), atol=1e-4)  # 3 of 5 votes at 10
    square = [[0, 0], [2, 0], [0, 2], [2, 2]]
    assert torch.allclose(reduce(gm, square), rows(1, 1), atol=1e-5)
    assert torch.equal(reduce(gm, [[5, 5]] * 3), rows(5, 5))  # all equal: every distance is the smoothing eps


def test_centered_clip_moves_by_clipped_offsets_from_the_global_model():
    one = CenteredClip(CenteredClip.Params(tau=1.0, iterations=1))
    assert torch.allclose(reduce(one, [[1], [2], [100]]), rows(1))  # offsets 1, 2, 100 clipped to 1
    two = CenteredClip(CenteredClip.Params(tau=1.0, iterations=2))
    assert torch.allclose(reduce(two, [[1], [2], [100]]), rows(1 + 2 / 3))  # from 1: offsets 0, 1, 99 -> 0, 1, 1
    median_radius = CenteredClip(CenteredClip.Params(iterations=1))
    assert torch.allclose(reduce(median_radius, [[1], [2], [100]]), rows(5 / 3))  # tau = median(1, 2, 100) = 2
    around = reduce(one, [[11], [12], [110]], reference=[[10]])
    assert torch.allclose(around, rows(11))  # it clips around the global model, wherever that is
    assert torch.allclose(reduce(median_radius, [[4, 4]] * 3), rows(4, 4))  # all equal


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "krum", "multikrum", "geometric_median", "centered_clip"])
def test_robust_aggregators_shrug_off_one_absurd_upload_among_five(name):
    honest = torch.randn(4, 20, generator=torch.Generator().manual_seed(0)) * 0.1 + 1.0
    uploads = torch.cat([honest, torch.full((1, 20), -1e4)])
    entry = AGGREGATORS.get(name)
    reduced = entry().reduce(uploads, ones(5), torch.ones(20))
    assert float((reduced - 1.0).abs().max()) < 0.5
    assert float((Mean().reduce(uploads, ones(5), torch.ones(20)) - 1.0).abs().max()) > 1000
