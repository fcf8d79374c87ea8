"""`backend: remote` settings, importable without gRPC (an extra: `pip install 'fedforge[deploy]'`).

Config validation reads these before anything is served; without the extra the backend still
validates its name and says which extra to install, instead of failing as an unknown backend.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import Field, model_validator

from fedforge.engine.executors import Executor
from fedforge.plugins import StrictModel

INSTALL_HINT = "install it with: pip install 'fedforge[deploy]'"


def grpc_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("grpc", "google.protobuf"))


class RemoteParams(StrictModel):
    address: str = Field("127.0.0.1:50051", description="host:port to serve on (port 0: any free port)")
    min_clients: int | None = Field(
        None, ge=1, description="connected clients needed to start a round (default: all of data.num_clients)"
    )
    min_results: int = Field(1, ge=1, description="results needed to close a round at its deadline (default 1)")
    round_timeout: float = Field(600.0, gt=0, description="seconds a round waits for results (default 600)")
    connect_timeout: float = Field(600.0, gt=0, description="seconds to wait for min_clients (default 600)")
    heartbeat_seconds: float = Field(2.0, gt=0, description="how often clients send a heartbeat (default 2)")
    heartbeat_timeout: float = Field(10.0, gt=0, description="silence after which a client is dropped (default 10)")
    token_file: str | None = Field(None, description="tokens clients must present: TOKEN or ID:TOKEN per line")
    tls_cert: str | None = Field(None, description="PEM certificate chain for TLS (with tls_key)")
    tls_key: str | None = Field(None, description="PEM private key for TLS (with tls_cert)")
    max_upload_mb: float | None = Field(
        None, gt=0, description="largest upload accepted, in MiB (default: 4x what the client was sent, plus 1 MiB)"
    )
    max_inflight_upload_mb: float = Field(
        2048.0, gt=0, description="uploads being received at once may declare at most this many MiB (default 2048)"
    )
    max_samples: int | None = Field(
        None,
        ge=1,
        description="largest num_samples an upload may claim; more is rejected (default: the largest training "
        "shard of the server's own partition; set it for clients on their own data)",
    )
    request_timeout: float = Field(
        10.0, gt=0, description="seconds a call may take to send its request, or an upload its next chunk (default 10)"
    )
    max_concurrent_rpcs: int = Field(
        512, ge=8, description="calls served at once; more are refused with RESOURCE_EXHAUSTED (default 512)"
    )
    max_streams_per_connection: int = Field(
        8, ge=3, description="calls one connection may have open at once (HTTP/2 streams; default 8)"
    )
    shutdown_timeout: float = Field(10.0, gt=0, description="seconds the server waits for calls to end at exit")
    compression: Literal["none", "gzip"] = Field("none", description="compress what the server sends (default none)")

    @model_validator(mode="after")
    def _grpc_installed(self) -> RemoteParams:
        if not grpc_installed():
            raise ValueError(f"backend.kind=remote needs gRPC; {INSTALL_HINT}")
        return self


class RemoteWithoutGrpc(Executor):
    """Clients over gRPC (`fedforge serve` / `join`); needs the deploy extra, which is not installed."""

    Params = RemoteParams  # its validation refuses the config with the install hint, so this never runs
