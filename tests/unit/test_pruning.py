"""Sparse training: masks (algorithms/masks.py), saved-activation pruning (activation_pruning.py) and
FedMef end to end (fedmef.py)."""

import pytest
import torch
from torch import nn

import fedforge
from fedforge.algorithms.activation_pruning import SavedActivations, prune_activation
from fedforge.algorithms.fedmef import FedMef
from fedforge.algorithms.masks import (
    PrunableLayer,
    erk_densities,
    lowest_active,
    pack_bits,
    prune_and_grow,
    random_mask,
    unpack_bits,
)
from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError
from fedforge.tracking import load_metrics

LAYERS = [
    PrunableLayer("conv", 0, (8, 1, 3, 3)),
    PrunableLayer("fc", 80, (64, 128)),
    PrunableLayer("out", 8300, (10, 64)),
]


def test_erk_densities_average_to_the_target_and_favour_small_layers():
    densities = erk_densities(LAYERS, 0.2)
    sizes = [layer.numel for layer in LAYERS]
    assert sum(d * n for d, n in zip(densities, sizes, strict=True)) / sum(sizes) == pytest.approx(0.2)
    assert densities[0] == 1.0  # the 72-weight conv would exceed 1: kept dense, the rest re-scaled
    assert densities[2] > densities[1]
    mask = random_mask(LAYERS, densities, torch.Generator().manual_seed(0))
    assert int(mask[72 : 72 + 8192].sum()) == round(densities[1] * 8192)


def test_bit_sets_round_trip_in_an_eighth_of_the_bytes_and_a_wrong_size_is_refused():
    mask = torch.rand(1001, generator=torch.Generator().manual_seed(1)) > 0.7
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and len(packed) == 126
    assert torch.equal(unpack_bits(packed, 1001), mask)
    with pytest.raises(ValueError, match="packs into 126 uint8 bytes"):
        unpack_bits(packed[:-1], 1001)


def test_prune_and_grow_swaps_the_smallest_active_for_the_steepest_inactive_per_layer():
    layers = [PrunableLayer("a", 0, (2, 4)), PrunableLayer("b", 8, (2, 4))]
    mask = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0] * 2, dtype=torch.bool)
    weights = torch.tensor([0.1, -5.0, 0.3, 2.0, 0, 0, 0, 0, 1.0, 2.0, -0.01, 3.0, 0, 0, 0, 0])
    marked = lowest_active(mask, weights, layers, share=0.5)
    assert torch.nonzero(marked).squeeze(1).tolist() == [0, 2, 8, 10]
    gradient = torch.tensor([9.0, 0, 0, 0, 0.1, -4.0, 3.0, 0.2] * 2)
    new = prune_and_grow(mask, marked, gradient, layers)
    assert torch.nonzero(new).squeeze(1).tolist() == [1, 3, 5, 6, 9, 11, 13, 14]  # not position 0 back: just pruned
    assert int(new[:8].sum()) == int(mask[:8].sum()) and int(new[8:].sum()) == int(mask[8:].sum())
    dense = torch.ones(16, dtype=torch.bool)
    assert not lowest_active(dense, weights, layers, share=0.5).any()  # nothing to grow: nothing pruned


def test_a_pruned_activation_keeps_its_largest_entries_and_its_l1_norm():
    x = torch.tensor([[0.1, -3.0, 0.2, 4.0], [0.0, 1.0, -0.5, 0.05]])
    shape, bits, values = prune_activation(x, keep=0.25)
    kept = unpack_bits(bits, 8)
    assert shape == (2, 4) and kept.nonzero().squeeze(1).tolist() == [1, 3]
    assert values.abs().sum() == pytest.approx(float(x.abs().sum()))


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 16, 10)
    )


def step(flat, keep, x, y):
    flat.zero_grad()
    with SavedActivations(flat.model, flat.vector, keep) as meter:
        nn.functional.cross_entropy(flat.model(x), y).backward()
    return meter.peak, flat.grad.clone()


def test_saved_activations_are_measured_once_each_and_sap_stores_a_fraction_with_a_close_gradient():
    flat = FlatModel(small_net())
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    flat.zero_grad()
    nn.functional.cross_entropy(flat.model(x), y).backward()
    plain = flat.grad.clone()
    dense, measured = step(flat, None, x, y)
    assert torch.equal(measured, plain)  # measuring changes nothing
    # input 16x1x8x8, ReLU output 16x8x8x8 (saved by ReLU and the pool: once), pool indices (int64),
    # the Linear's input 16x128, the loss's log-probabilities 16x10, its int64 targets and one scalar
    expected = 4 * 1024 + 4 * 8192 + 8 * 2048 + 4 * 2048 + 4 * 160 + 8 * 16 + 4
    assert dense == expected
    sparse, approx = step(flat, 0.3, x, y)
    assert sparse < 0.6 * dense
    cosine = torch.nn.functional.cosine_similarity(approx, plain, dim=0)
    assert cosine > 0.8


def run(tmp_path, rounds=4, **algorithm):
    return fedforge.run(
        quiet=True,
        data={"num_clients": 5},
        model={"name": "cnn", "width": 8, "hidden": 32, "norm": "none"},
        train={"rounds": rounds, "local_epochs": 1},
        algorithm={"name": "fedmef", **algorithm},
        eval={"personalized": False},
        tracking={"runs_dir": str(tmp_path), "database": True},
        checkpoint={"every": 0},
        backend={"threads": 1},
    )


def prunable_weights(result):
    return [m.weight.detach() for m in result.model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def test_fedmef_holds_its_density_every_round_sends_only_active_weights_and_adjusts_its_mask(tmp_path):
    adjusted = run(tmp_path, rounds=6, adjust_every=2, adjust_until=1.0, density=0.3)
    densities = [m["value"] for m in load_metrics(adjusted.run_dir) if m["name"] == "density"]
    assert len(densities) == 30 and all(abs(d - 0.3) / 0.3 < 0.01 for d in densities)
    weights = torch.cat([w.flatten() for w in prunable_weights(adjusted)])
    assert abs(float((weights != 0).float().mean()) - 0.3) < 0.01  # the rest exactly 0
    static = run(tmp_path, rounds=6, adjust_every=0, density=0.3)
    static_mask = torch.cat([w.flatten() != 0 for w in prunable_weights(static)])
    assert int((static_mask != (weights != 0)).sum()) > 0.05 * len(weights)  # the mask moved
    dense = run(tmp_path, rounds=6, density=1.0, adjust_every=0)
    assert static.summary["bytes_up"] < 0.45 * dense.summary["bytes_up"]  # 30 % of weights, the biases, gradients
    up = {m["name"]: m["value"] for m in load_metrics(static.run_dir) if m["client_id"] == 0 and m["round"] == 1}
    up_dense = {m["name"]: m["value"] for m in load_metrics(dense.run_dir) if m["client_id"] == 0 and m["round"] == 1}
    assert up["model_bytes"] < 0.45 * up_dense["model_bytes"]


def test_extrusion_drives_the_weights_marked_for_pruning_toward_zero_before_they_go(tmp_path, monkeypatch):
    seen = {}
    apply = FedMef.apply

    def watching(self, state, reduced, round_index):
        if self.adjusts(round_index):
            marked = self.role.positions[state.extras["marked"]]
            seen["before"] = float(state.weights[marked].abs().mean())
            seen["after"] = float(reduced["model"][marked].abs().mean())
        return apply(self, state, reduced, round_index)

    monkeypatch.setattr(FedMef, "apply", watching)
    run(tmp_path, rounds=3, adjust_every=2, adjust_until=1.0, extrusion_strength=5.0, activation_keep=None)
    assert seen["after"] < 0.3 * seen["before"]


def test_fedmef_with_sap_learns_with_fewer_saved_bytes(tmp_path):
    with_sap = run(tmp_path, rounds=10)
    without = run(tmp_path, rounds=10, activation_keep=None)

    def saved(result):
        return max(m["value"] for m in load_metrics(result.run_dir) if m["name"] == "activation_bytes")

    assert saved(with_sap) < 0.6 * saved(without)
    assert with_sap.final_accuracy > 0.25  # 10 classes, 10 rounds of a 20 %-dense cnn on digits


def test_fedmef_refuses_a_robust_aggregator(tmp_path):
    with pytest.raises(ConfigError, match="aggregation.name"):
        fedforge.run(quiet=True, algorithm={"name": "fedmef"}, aggregation={"name": "median"},
                     tracking={"runs_dir": str(tmp_path)})  # fmt: skip
