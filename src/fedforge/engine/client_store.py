"""Per-client persistent state (FedBN's local norms, control variates, local models).

Virtual clients are rebuilt every round; what must survive lives here, keyed by id.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class ClientStore:
    """In-memory store: one dict per client, created on first use."""

    def __init__(self) -> None:
        self._states: dict[int, dict[str, Any]] = {}

    def get(self, client_id: int) -> dict[str, Any]:
        return self._states.setdefault(client_id, {})

    def put(self, client_id: int, state: dict[str, Any]) -> None:
        """Replace one client's state (as it comes back from a worker process)."""
        self._states[client_id] = state

    def peek(self, client_id: int) -> dict[str, Any]:
        """The client's state without creating it (empty if it never trained)."""
        return self._states.get(client_id, {})

    def items(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return iter(sorted(self._states.items()))

    def restore(self, states: dict[int, dict[str, Any]]) -> None:
        """Replace every client's state (from a checkpoint)."""
        self._states = {int(cid): dict(state) for cid, state in states.items()}
