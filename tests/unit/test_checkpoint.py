import random

import numpy as np
import pytest
import torch

from fedforge.algorithms import ServerState
from fedforge.engine.checkpoint import Checkpointer, restore_rng_states, rng_states
from fedforge.engine.client_store import ClientStore
from fedforge.errors import CheckpointError


def save_rounds(ckpt: Checkpointer, rounds):
    store = ClientStore()
    for r in rounds:
        store.get(r)["local"] = torch.full((3,), float(r))
        ckpt.save(r, ServerState(torch.full((5,), float(r)), {"v": torch.ones(2) * r}), store, {"totals": {"r": r}})
    return store


def test_roundtrip_keeps_newest_and_restores_everything(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    save_rounds(ckpt, [0, 1, 2, 3])
    assert [p.name for p in ckpt.files()] == ["round-000004.ckpt", "round-000003.ckpt"]  # 1-based round numbers
    assert ckpt.last_round() == 4
    latest, skipped = ckpt.latest()
    assert skipped == [] and latest.round == 3
    assert torch.equal(latest.state.weights, torch.full((5,), 3.0))
    assert torch.equal(latest.state.extras["v"], torch.full((2,), 3.0))
    assert set(latest.clients) == {0, 1, 2, 3} and torch.equal(latest.clients[2]["local"], torch.full((3,), 2.0))
    assert latest.extras["totals"] == {"r": 3}
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_damaged_latest_falls_back_to_previous(tmp_path, damage):
    ckpt = Checkpointer(tmp_path, keep=2)
    save_rounds(ckpt, [0, 1])
    newest = ckpt.files()[0]
    raw = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        newest.write_bytes(raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:])
    elif damage == "empty":
        newest.write_bytes(b"")
    else:
        newest.write_bytes(b"PK\x03\x04 not a checkpoint at all")
    latest, skipped = ckpt.latest()
    assert latest.round == 0
    assert len(skipped) == 1 and str(newest) in skipped[0]


def test_no_usable_checkpoint_names_every_file(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    with pytest.raises(CheckpointError, match="none was written yet"):
        ckpt.latest()
    save_rounds(ckpt, [0, 1])
    for path in ckpt.files():
        path.write_bytes(b"x")
    with pytest.raises(CheckpointError) as info:
        ckpt.latest()
    assert "round-000002.ckpt" in str(info.value) and "round-000001.ckpt" in str(info.value)


def test_due_every_n_rounds_and_at_the_end(tmp_path):
    ckpt = Checkpointer(tmp_path, every=3)
    assert [r for r in range(10) if ckpt.due(r, 9)] == [2, 5, 8, 9]
    assert not any(Checkpointer(tmp_path, every=0).due(r, 9) for r in range(10))


def test_rng_states_roundtrip():
    states = rng_states()
    expected = (torch.rand(2), np.random.rand(2), random.random())
    restore_rng_states(states)
    assert torch.equal(torch.rand(2), expected[0])
    assert np.array_equal(np.random.rand(2), expected[1])
    assert random.random() == expected[2]
