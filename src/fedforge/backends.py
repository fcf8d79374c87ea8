"""Every executor, registered: the engine's own and the optional backends of the layers above it.

The engine defines the registry and `sequential`; Ray's executor registers itself when imported,
and gRPC's `remote` lives in deploy/, which the engine may not import. This module, above both,
is what config validation and `fedforge list` read.
"""

from __future__ import annotations

from fedforge.deploy.remote import RemoteWithoutGrpc, grpc_installed
from fedforge.engine import ray_executor  # noqa: F401  (registers "ray"; Ray itself is imported only when used)
from fedforge.engine.executors import EXECUTORS

if grpc_installed():
    from fedforge.deploy import server  # noqa: F401  (registers "remote")
else:
    EXECUTORS.add("remote", RemoteWithoutGrpc)

__all__ = ["EXECUTORS"]
