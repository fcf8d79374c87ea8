"""Checkpoints: after each round, everything needed to continue the run bit for bit.

A checkpoint holds the server state, the client store, the tracker totals and the global
RNG states. Files are written to a temporary name and renamed, so a crash leaves either
the old or the new file, never half of one; each file starts with a magic tag and a
SHA-256 of its payload, so truncation or corruption is detected on load and resume
falls back to the previous good checkpoint.

Client sampling and local training draw from streams keyed by (seed, round, client)
(see seeding.py), so no stream position needs saving; the global RNG states are saved
anyway for user code that draws from them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedforge.algorithms.base import ServerState
from fedforge.engine.client_store import ClientStore, to_cpu
from fedforge.errors import CheckpointError

log = logging.getLogger(__name__)

MAGIC = b"FEDFORGE-CKPT-1\n"
NAME = re.compile(r"^round-(\d{6})\.ckpt$")


@dataclass
class Checkpoint:
    round: int  # the last completed round (0-based)
    state: ServerState
    clients: dict[Any, Any]  # the client store's snapshot (ClientStore.snapshot)
    extras: dict[str, Any]
    path: Path

    @property
    def client_folder(self) -> Path:
        """Where a client store wrote files beside this checkpoint (the disk store's slots)."""
        return client_folder(self.path)


def client_folder(path: Path) -> Path:
    return path.with_suffix(".clients")


def rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, *rest = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_as_tuple(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


class Checkpointer:
    """Writes `round-NNNNNN.ckpt` files into `folder`, keeping the newest `keep`."""

    def __init__(self, folder: str | Path, keep: int = 2, every: int = 1) -> None:
        self.folder, self.keep, self.every = Path(folder), keep, every

    def due(self, round_index: int, last_round: int) -> bool:
        return self.every > 0 and ((round_index + 1) % self.every == 0 or round_index == last_round)

    def save(self, round_index: int, state: ServerState, clients: ClientStore, extras: dict[str, Any]) -> Path:
        path = self.folder / f"round-{round_index + 1:06d}.ckpt"  # named by the 1-based round it follows
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = io.BytesIO()
        torch.save(
            {
                "round": round_index,
                "weights": state.weights.cpu(),
                "server_extras": to_cpu(state.extras),
                "server_opt": to_cpu(state.server_opt),
                "clients": clients.snapshot(client_folder(path)),
                "rng": rng_states(),
                "extras": extras,
            },
            payload,
        )
        data = payload.getvalue()
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(MAGIC + hashlib.sha256(data).digest() + data)
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
        for old in self.files()[self.keep :]:
            old.unlink(missing_ok=True)
            shutil.rmtree(client_folder(old), ignore_errors=True)
        return path

    def last_round(self) -> int | None:
        """The 1-based round the newest checkpoint file follows (None: none written yet)."""
        files = self.files()
        match = NAME.match(files[0].name) if files else None
        return int(match.group(1)) if match else None

    def files(self) -> list[Path]:
        """Checkpoint files, newest round first."""
        if not self.folder.is_dir():
            return []
        return sorted((p for p in self.folder.iterdir() if NAME.match(p.name)), reverse=True)

    @staticmethod
    def read(path: Path, device: torch.device | str = "cpu", expected_size: int | None = None) -> Checkpoint:
        """Load and verify one checkpoint; CheckpointError says what is wrong with the file."""
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise CheckpointError(f"checkpoint '{path}' cannot be read: {err}") from None
        head = len(MAGIC) + 32
        if len(raw) < head or not raw.startswith(MAGIC):
            raise CheckpointError(f"checkpoint '{path}' is truncated or not a fedforge checkpoint")
        if hashlib.sha256(raw[head:]).digest() != raw[len(MAGIC) : head]:
            raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated (checksum mismatch)")
        try:
            blob = torch.load(io.BytesIO(raw[head:]), map_location=device, weights_only=True)
        except Exception as err:  # torch raises several types for unreadable archives
            raise CheckpointError(f"checkpoint '{path}' cannot be decoded: {err}") from None
        _check_contents(path, blob, expected_size)
        return Checkpoint(
            round=int(blob["round"]),
            state=ServerState(blob["weights"], blob["server_extras"], blob.get("server_opt", {})),
            clients=blob["clients"],
            extras={**blob["extras"], "rng": blob["rng"]},
            path=path,
        )

    def latest(
        self, device: torch.device | str = "cpu", expected_size: int | None = None
    ) -> tuple[Checkpoint, list[str]]:
        """The newest valid checkpoint (holding `expected_size` weights, when given), and why each
        newer one was skipped."""
        problems: list[str] = []
        for path in self.files():
            try:
                return self.read(path, device, expected_size), problems
            except CheckpointError as err:
                log.warning("%s; falling back to the previous checkpoint", err)
                problems.append(str(err))
        found = "; ".join(problems) if problems else "none was written yet"
        raise CheckpointError(f"no usable checkpoint in '{self.folder}': {found}")


CONTENTS = {"round": int, "weights": torch.Tensor, "server_extras": dict, "clients": dict, "rng": dict, "extras": dict}


def _check_contents(path: Path, blob: Any, expected_size: int | None) -> None:
    """A checksum only proves the file is the one written; this proves it fits this run."""
    if not isinstance(blob, dict):
        raise CheckpointError(f"checkpoint '{path}' does not hold a fedforge checkpoint's fields")
    missing = [key for key, kind in CONTENTS.items() if not isinstance(blob.get(key), kind)]
    if not isinstance(blob.get("server_opt", {}), dict):  # absent in checkpoints written before server optimizers
        missing.append("server_opt")
    if missing:
        raise CheckpointError(f"checkpoint '{path}' lacks or has malformed fields: {', '.join(missing)}")
    weights = blob["weights"]
    if weights.dtype != torch.float32 or weights.ndim != 1:
        raise CheckpointError(f"checkpoint '{path}' holds {weights.dtype} weights of shape {tuple(weights.shape)}")
    if expected_size is not None and weights.numel() != expected_size:
        raise CheckpointError(
            f"checkpoint '{path}' holds {weights.numel()} weights but this run's model has {expected_size}: "
            "it was written by another model or fedforge version"
        )
