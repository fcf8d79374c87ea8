"""Per-client persistent state (FedBN's local norms, control variates, local models).

Virtual clients are rebuilt every round; what must survive lives here, keyed by id. An executor
reads a client's state with `get` before its update and hands it back with `put` after. The
in-memory store keeps every dict; the disk store (`engine.client_store: disk`) keeps each tensor
entry in a fixed-size slot of one file per entry name, so memory stays flat however many
stateful clients there are: a round holds only its cohort's states.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fedforge.errors import CheckpointError, ConfigError


def to_cpu(value: Any) -> Any:
    """`value` with every tensor inside (dicts, lists, tuples) detached on the CPU, for saving."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value


class ClientStore:
    """In-memory store: one dict per client, created on first use."""

    def __init__(self) -> None:
        self._states: dict[int, dict[str, Any]] = {}

    def get(self, client_id: int) -> dict[str, Any]:
        return self._states.setdefault(client_id, {})

    def put(self, client_id: int, state: dict[str, Any]) -> None:
        """Replace one client's state (after its update, or as it comes back from a worker)."""
        self._states[client_id] = state

    def peek(self, client_id: int) -> dict[str, Any]:
        """The client's state without creating it (empty if it never trained)."""
        return self._states.get(client_id, {})

    def items(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return iter(sorted(self._states.items()))

    def snapshot(self, folder: Path) -> dict[Any, Any]:
        """What a checkpoint stores of the clients (`folder`: where a store may write files beside it)."""
        return {cid: to_cpu(state) for cid, state in self.items()}

    def restore(self, snapshot: dict[Any, Any], folder: Path | None = None) -> None:
        """Replace every client's state with a checkpoint's."""
        if "disk_store" in snapshot:
            raise CheckpointError("this checkpoint was written with engine.client_store: disk; resume with it")
        self._states = {int(cid): dict(state) for cid, state in snapshot.items()}

    def close(self) -> None:
        """Release what the store holds outside memory (the run is over)."""


class _Slots:
    """One entry name's tensors: client i's in bytes [i * size, (i + 1) * size) of one file."""

    def __init__(self, path: Path, name: str, like: torch.Tensor, num_clients: int) -> None:
        self.path, self.name = path, name
        self.shape, self.dtype = tuple(like.shape), like.dtype
        self.size = like.numel() * like.element_size()
        self.present = torch.zeros(num_clients, dtype=torch.bool)
        self.file = path.open("w+b")  # sparse: only written slots take disk space
        self.file.truncate(self.size * num_clients)

    def write(self, client_id: int, tensor: torch.Tensor) -> None:
        if tuple(tensor.shape) != self.shape or tensor.dtype != self.dtype:
            raise ConfigError(
                f"client state '{self.name}' of client {client_id} is {tensor.dtype} {tuple(tensor.shape)}, but "
                f"the disk client store holds it as {self.dtype} {self.shape} for every client; a method whose "
                "per-client state changes shape needs engine.client_store: memory"
            )
        self.file.seek(client_id * self.size)
        self.file.write(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        self.present[client_id] = True

    def read(self, client_id: int) -> torch.Tensor:
        buffer = bytearray(self.size)
        self.file.seek(client_id * self.size)
        self.file.readinto(buffer)
        return torch.frombuffer(buffer, dtype=self.dtype).view(self.shape)


class DiskClientStore(ClientStore):
    """Tensor entries in slot files under `folder`; small non-tensor entries (floats) in memory."""

    def __init__(self, folder: Path, num_clients: int) -> None:
        super().__init__()
        self.folder, self.num_clients = Path(folder), num_clients
        self.folder.mkdir(parents=True, exist_ok=True)
        self._slots: dict[str, _Slots] = {}
        self._values: dict[int, dict[str, Any]] = {}

    def get(self, client_id: int) -> dict[str, Any]:
        state = dict(self._values.get(client_id, {}))
        for name, slots in self._slots.items():
            if slots.present[client_id]:
                state[name] = slots.read(client_id)
        return state

    peek = get

    def put(self, client_id: int, state: dict[str, Any]) -> None:
        for name, slots in self._slots.items():
            if name not in state:
                slots.present[client_id] = False
        values = {}
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                self._slot(name, value).write(client_id, value)
            else:
                values[name] = value
        self._values[client_id] = values

    def close(self) -> None:
        for slots in self._slots.values():
            slots.file.close()
        self._slots = {}
        shutil.rmtree(self.folder, ignore_errors=True)

    def _slot(self, name: str, like: torch.Tensor) -> _Slots:
        if name not in self._slots:
            safe = hashlib.sha256(name.encode()).hexdigest()[:16]  # entry names may hold any character
            self._slots[name] = _Slots(self.folder / f"{safe}.slots", name, like, self.num_clients)
        return self._slots[name]

    def client_ids(self) -> list[int]:
        ids = {cid for cid, values in self._values.items() if values}
        for slots in self._slots.values():
            ids.update(torch.nonzero(slots.present).flatten().tolist())
        return sorted(ids)

    def items(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for cid in self.client_ids():
            yield cid, self.get(cid)

    def snapshot(self, folder: Path) -> dict[Any, Any]:
        """Each entry's present slots, streamed one client at a time into `folder`/<n>.bin (the
        checkpoint records their ids and SHA-256); memory stays flat while a checkpoint is written."""
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        entries = {}
        for index, (name, slots) in enumerate(self._slots.items()):
            ids = torch.nonzero(slots.present).flatten()
            digest = hashlib.sha256()
            with (folder / f"{index}.bin").open("wb") as out:
                for cid in ids.tolist():
                    chunk = slots.read(cid).view(torch.uint8).numpy().tobytes()
                    digest.update(chunk)
                    out.write(chunk)
            dtype = str(slots.dtype).removeprefix("torch.")
            entries[name] = {"file": f"{index}.bin", "ids": ids, "shape": list(slots.shape), "dtype": dtype}
            entries[name]["sha256"] = digest.hexdigest()
        return {"disk_store": {"entries": entries, "values": {c: v for c, v in self._values.items() if v}}}

    def restore(self, snapshot: dict[Any, Any], folder: Path | None = None) -> None:
        """Refill the slots from a snapshot written by `snapshot` into `folder`, checking each file."""
        if "disk_store" not in snapshot or folder is None:
            raise CheckpointError(
                "this checkpoint holds in-memory client states; resume with engine.client_store: memory"
            )
        for slots in self._slots.values():
            slots.file.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._slots, saved = {}, snapshot["disk_store"]
        self._values = {int(cid): dict(values) for cid, values in saved["values"].items()}
        for name, entry in saved["entries"].items():
            self._refill(name, entry, folder / entry["file"])

    def _refill(self, name: str, entry: dict[str, Any], path: Path) -> None:
        """Stream one entry's snapshot back into its slots, one client at a time."""
        dtype = getattr(torch, entry["dtype"])
        shape = tuple(entry["shape"])
        size = torch.empty(shape, dtype=dtype).numel() * torch.empty((), dtype=dtype).element_size()
        digest = hashlib.sha256()
        try:
            with path.open("rb") as source:
                for cid in entry["ids"].tolist():
                    chunk = bytearray(source.read(size))
                    if len(chunk) != size:
                        raise CheckpointError(f"client states '{path}' are truncated")
                    digest.update(chunk)
                    tensor = torch.frombuffer(chunk, dtype=dtype).view(shape)
                    self._slot(name, tensor).write(cid, tensor)
        except OSError as err:
            raise CheckpointError(f"client states '{path}' cannot be read: {err}") from None
        if digest.hexdigest() != entry["sha256"]:
            raise CheckpointError(f"client states '{path}' are corrupt (checksum mismatch)")


def build_client_store(kind: str, folder: Path, num_clients: int) -> ClientStore:
    """The store `engine.client_store` names; a disk store keeps its slot files in `folder`."""
    return DiskClientStore(folder, num_clients) if kind == "disk" else ClientStore()
