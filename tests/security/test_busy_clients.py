"""Honest clients on a slow, busy machine: a join that takes long to rebuild the experiment keeps
its id and its place in round 0, and auto-assigned ids are never shared."""

from __future__ import annotations

import threading
import time

import pytest

import fedforge
from fedforge.deploy.client import RemoteClient
from tests.loopback import free_port, wait_until_listening

pytestmark = pytest.mark.slow


class SlowToPrepare(RemoteClient):
    """Rebuilding the experiment takes `delay` seconds, as on a loaded machine."""

    delay = 0.0

    def prepare(self, config_yaml: str) -> None:
        time.sleep(self.delay)
        super().prepare(config_yaml)


def test_a_client_that_prepares_slowly_keeps_its_id_and_trains_round_zero(runs_dir):
    """Client A needs 3 heartbeat timeouts to get ready; B joins (server-picked id) meanwhile.
    Server: A is never declared dead, B gets the other id, both train every round."""
    port = free_port()
    backend = {"kind": "remote", "address": f"127.0.0.1:{port}", "device": "cpu"}
    backend |= {"heartbeat_seconds": 0.5, "heartbeat_timeout": 5}
    holder: dict = {}

    def serve() -> None:
        holder["result"] = fedforge.run(
            quiet=True,
            data={"num_clients": 2},
            train={"rounds": 2, "local_epochs": 1},
            tracking={"runs_dir": str(runs_dir)},
            backend=backend,
        )

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    wait_until_listening(port)
    slow = SlowToPrepare(f"127.0.0.1:{port}", {"backend": {"device": "cpu"}}, quiet=True)
    slow.delay = 16.0
    served: dict[str, int] = {}
    first = threading.Thread(target=lambda: served.update(slow=slow.run()), daemon=True)
    first.start()
    while slow.previous_session == "":  # A has joined (and is now busy preparing)
        time.sleep(0.05)
    quick = RemoteClient(f"127.0.0.1:{port}", {"backend": {"device": "cpu"}}, quiet=True)
    served["quick"] = quick.run()
    first.join(timeout=120)
    server.join(timeout=120)
    assert {slow.requested_id, quick.requested_id} == {0, 1}
    assert served == {"slow": 2, "quick": 2}
    events = fedforge.tracking.load_events(holder["result"].run_dir)
    assert not [e for e in events if e["kind"] == "client_failed"]
