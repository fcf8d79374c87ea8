"""The in-memory and disk-backed client stores keep the same states; the disk one survives a checkpoint."""

import pytest
import torch

from fedforge.engine.client_store import ClientStore, DiskClientStore, build_client_store
from fedforge.errors import CheckpointError, ConfigError


def fill(store):
    store.put(3, {"control": torch.arange(4.0), "change": 0.5})
    store.put(7, {"control": torch.ones(4), "mask": torch.tensor([1, 0], dtype=torch.int64)})
    store.put(3, {"control": torch.arange(4.0) * 2, "change": 0.25})  # replaced whole


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_both_stores_hold_the_same_states(tmp_path, kind):
    store = build_client_store(kind, tmp_path / "states", num_clients=10)
    fill(store)
    assert torch.equal(store.get(3)["control"], torch.arange(4.0) * 2) and store.get(3)["change"] == 0.25
    assert store.get(7)["mask"].dtype == torch.int64 and torch.equal(store.get(7)["mask"], torch.tensor([1, 0]))
    assert [cid for cid, _ in store.items()] == [3, 7]
    assert store.peek(5) == {}
    store.put(7, {"mask": torch.tensor([0, 1])})  # an entry the method dropped is gone
    assert set(store.get(7)) == {"mask"}


def test_disk_states_are_copies_and_live_in_files(tmp_path):
    store = DiskClientStore(tmp_path / "states", num_clients=10_000)
    state = {"control": torch.zeros(1000)}
    store.put(9_999, state)
    got = store.get(9_999)
    got["control"].add_(1)  # editing a read state changes nothing until it is put back
    assert torch.equal(store.get(9_999)["control"], torch.zeros(1000))
    (slot_file,) = (tmp_path / "states").iterdir()
    assert slot_file.stat().st_size == 10_000 * 1000 * 4  # one fixed slot per client (sparse on disk)


def test_disk_store_refuses_a_state_that_changes_shape(tmp_path):
    store = DiskClientStore(tmp_path, num_clients=4)
    store.put(0, {"control": torch.zeros(3)})
    with pytest.raises(ConfigError, match="engine.client_store: memory"):
        store.put(1, {"control": torch.zeros(5)})


def test_disk_snapshot_round_trips_and_detects_corruption(tmp_path):
    store = DiskClientStore(tmp_path / "live", num_clients=10)
    fill(store)
    snapshot = store.snapshot(tmp_path / "ckpt.clients")
    store.put(3, {"control": torch.full((4,), 9.0)})  # later rounds change the live slots

    restored = DiskClientStore(tmp_path / "live2", num_clients=10)
    restored.restore(snapshot, tmp_path / "ckpt.clients")
    assert torch.equal(restored.get(3)["control"], torch.arange(4.0) * 2) and restored.get(3)["change"] == 0.25
    assert [cid for cid, _ in restored.items()] == [3, 7]

    victim = next(p for p in (tmp_path / "ckpt.clients").iterdir() if p.stat().st_size > 0)
    raw = bytearray(victim.read_bytes())
    raw[0] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        DiskClientStore(tmp_path / "live3", num_clients=10).restore(snapshot, tmp_path / "ckpt.clients")


def test_a_checkpoint_resumes_only_with_the_store_kind_that_wrote_it(tmp_path):
    memory = ClientStore()
    fill(memory)
    with pytest.raises(CheckpointError, match="client_store: memory"):
        DiskClientStore(tmp_path, 10).restore(memory.snapshot(tmp_path / "x"), tmp_path / "x")
    disk = DiskClientStore(tmp_path / "d", 10)
    fill(disk)
    with pytest.raises(CheckpointError, match="client_store: disk"):
        ClientStore().restore(disk.snapshot(tmp_path / "y"), tmp_path / "y")


def test_closing_the_disk_store_removes_its_live_slots(tmp_path):
    store = DiskClientStore(tmp_path / "live", num_clients=3)
    fill_small = {"control": torch.zeros(2)}
    store.put(0, fill_small)
    store.close()
    assert not (tmp_path / "live").exists()
