"""`backend: remote`: the round loop sends each selected client its job over gRPC and waits.

The server owns the rounds; clients pull jobs (`NextJob`, a long poll) and push results
(`SubmitResult`), so they can sit behind NAT and reconnect at will. Every call carries a
token when the server has a token file. A client that stops sending heartbeats, misses the
round deadline, or sends a malformed upload is dropped from that round with a recorded
event; the round closes once every selected client answered, or at the deadline with at
least `min_results` results.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Literal

import grpc
import yaml
from pydantic import Field

from fedforge.algorithms.base import ClientJob, ClientResult
from fedforge.deploy import fedforge_pb2 as pb
from fedforge.deploy import fedforge_pb2_grpc as rpc
from fedforge.deploy.codec import (
    PROTOCOL,
    Kind,
    MalformedPayload,
    Payload,
    decode,
    encode,
    job_payload,
    result_from,
)
from fedforge.deploy.security import TokenBook, bearer, server_credentials, warn_if_exposed
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.executors import EXECUTORS, ClientFailure, Executor
from fedforge.plugins import StrictModel


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
    max_upload_mb: float = Field(1024.0, gt=0, description="largest upload accepted, in MiB (default 1024)")
    compression: Literal["none", "gzip"] = Field("none", description="compress what the server sends (default none)")


COMPRESSION = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip}


class ClientGone(RuntimeError):
    """The client disconnected, missed the deadline, or was never connected (a recorded failure)."""


class RemoteClientError(RuntimeError):
    """The client's local update raised on its machine."""


@dataclass
class Connection:
    client_id: int
    session: str
    last_seen: float
    job: Payload | None = None  # waiting to be fetched


class ClientHub:
    """The server's view of its clients: sessions, jobs waiting to be fetched, results (thread-safe)."""

    def __init__(self, num_clients: int, heartbeat_timeout: float) -> None:
        self.num_clients, self.heartbeat_timeout = num_clients, heartbeat_timeout
        self.changed = threading.Condition()
        self.sessions: dict[str, Connection] = {}
        self.clients: dict[int, Connection] = {}
        self.awaited: dict[int, int] = {}  # client id -> round whose result is awaited
        self.results: dict[int, ClientResult | ClientFailure] = {}
        self.finished = False

    def alive(self, client_id: int) -> bool:
        conn = self.clients.get(client_id)
        return conn is not None and time.monotonic() - conn.last_seen <= self.heartbeat_timeout

    def connected(self) -> int:
        with self.changed:
            return sum(self.alive(cid) for cid in self.clients)

    def join(self, requested: int, allowed: set[int] | None) -> Connection:
        """A new session for `requested` (or the lowest free id); it replaces an older one (a reconnect)."""
        with self.changed:
            if requested >= 0:
                if requested >= self.num_clients:
                    raise ValueError(f"client id {requested} is outside 0..{self.num_clients - 1}")
                if allowed is not None and requested not in allowed:
                    raise PermissionError(f"this token may not act as client {requested}")
                client_id = requested
            else:
                free = [
                    cid
                    for cid in range(self.num_clients)
                    if not self.alive(cid) and (allowed is None or cid in allowed)
                ]
                if not free:
                    raise ValueError("every client id this token may use is taken; pass --client-id")
                client_id = free[0]
            old = self.clients.get(client_id)
            conn = Connection(client_id, uuid.uuid4().hex, time.monotonic(), job=old.job if old else None)
            if old is not None:
                self.sessions.pop(old.session, None)
            self.sessions[conn.session] = conn
            self.clients[client_id] = conn
            self.changed.notify_all()
            return conn

    def touch(self, session: str) -> Connection | None:
        with self.changed:
            conn = self.sessions.get(session)
            if conn is not None:
                conn.last_seen = time.monotonic()
            return conn

    def dispatch(self, jobs: list[ClientJob]) -> None:
        with self.changed:
            for job in jobs:
                conn = self.clients[job.client_id]
                conn.job = job_payload(job, conn.session)
                self.awaited[job.client_id] = job.round
            self.changed.notify_all()

    def next_job(self, session: str, wait: float) -> Payload:
        deadline = time.monotonic() + wait
        with self.changed:
            while True:
                conn = self.sessions.get(session)
                if conn is None:
                    return Payload(Kind.WAIT, session)
                conn.last_seen = time.monotonic()
                if conn.job is not None:
                    job, conn.job = conn.job, None
                    job.session = session
                    return job
                if self.finished:  # told once; it no longer counts as connected
                    self.sessions.pop(session, None)
                    self.clients.pop(conn.client_id, None)
                    return Payload(Kind.DONE, session)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return Payload(Kind.WAIT, session)
                self.changed.wait(remaining)

    def submit(self, session: str, client_id: int, round_index: int, outcome: ClientResult | ClientFailure) -> str:
        """Store a result; the reason it is refused, or '' when accepted."""
        with self.changed:
            conn = self.sessions.get(session)
            if conn is None or conn.client_id != client_id:
                return "unknown session for this client: join again"
            if self.awaited.get(client_id) != round_index:
                return f"no job of round {round_index} is open for client {client_id} (late or duplicate)"
            conn.last_seen = time.monotonic()
            del self.awaited[client_id]
            self.results[client_id] = outcome
            self.changed.notify_all()
            return ""

    def close_round(self) -> None:
        with self.changed:
            self.awaited.clear()
            self.results.clear()
            for conn in self.clients.values():
                conn.job = None

    def finish(self) -> None:
        with self.changed:
            self.finished = True
            self.changed.notify_all()


class FederationService(rpc.FederationServicer):
    """The gRPC face of a ClientHub: checks the token on every call, never unpickles anything."""

    def __init__(self, hub: ClientHub, tokens: TokenBook | None, config_yaml: str, params: RemoteParams) -> None:
        self.hub, self.tokens, self.config_yaml, self.params = hub, tokens, config_yaml, params

    def _allowed(self, context: grpc.ServicerContext) -> set[int] | None:
        if self.tokens is None:
            return None
        allowed = self.tokens.clients_for(bearer(context.invocation_metadata()))
        if allowed is not None and not allowed:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")
        return allowed

    def _session(self, session: str, context: grpc.ServicerContext) -> Connection:
        allowed = self._allowed(context)
        conn = self.hub.touch(session)
        if conn is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown session: join again")
        if allowed is not None and conn.client_id not in allowed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token may not act for that session")
        return conn

    def Join(self, request: pb.JoinRequest, context: grpc.ServicerContext) -> pb.JoinReply:
        allowed = self._allowed(context)
        if request.protocol != PROTOCOL:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol {request.protocol} != server protocol {PROTOCOL}: use the same fedforge version",
            )
        try:
            conn = self.hub.join(request.client_id, allowed)
        except PermissionError as err:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
        except ValueError as err:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        print(f"client {conn.client_id} joined", flush=True)
        return pb.JoinReply(
            client_id=conn.client_id,
            session=conn.session,
            config_yaml=self.config_yaml,
            heartbeat_seconds=self.params.heartbeat_seconds,
        )

    def Heartbeat(self, request: pb.SessionRef, context: grpc.ServicerContext) -> pb.HeartbeatReply:
        self._allowed(context)
        return pb.HeartbeatReply(known=self.hub.touch(request.session) is not None)

    def NextJob(self, request: pb.SessionRef, context: grpc.ServicerContext) -> Iterator[pb.Chunk]:
        self._session(request.session, context)
        yield from encode(self.hub.next_job(request.session, wait=min(10.0, self.params.heartbeat_timeout / 2)))

    def SubmitResult(self, request_iterator: Iterator[pb.Chunk], context: grpc.ServicerContext) -> pb.SubmitReply:
        self._allowed(context)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            return pb.SubmitReply(accepted=False, reason="the stream does not start with a header")
        header = first.header
        conn = self._session(header.session, context)
        limit = int(self.params.max_upload_mb * 2**20)
        try:
            payload = decode(_prepend(first, request_iterator), max_bytes=limit)
            if payload.error:
                outcome: ClientResult | ClientFailure = ClientFailure(conn.client_id, RemoteClientError(payload.error))
            else:
                outcome = result_from(payload)
                outcome.client_id = conn.client_id  # the session says who it is, not the payload
        except MalformedPayload as err:
            outcome = ClientFailure(conn.client_id, MalformedPayload(f"malformed upload: {err}"))
        reason = self.hub.submit(header.session, conn.client_id, header.round, outcome)
        return pb.SubmitReply(accepted=not reason, reason=reason)


def _prepend(first: pb.Chunk, rest: Iterator[pb.Chunk]) -> Iterator[pb.Chunk]:
    yield first
    yield from rest


@EXECUTORS.register("remote")
class RemoteExecutor(Executor):
    """Clients are other processes or machines that joined over gRPC (`fedforge join`)."""

    Params = RemoteParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p: RemoteParams = self.params
        tokens = TokenBook.load(p.token_file)
        credentials = server_credentials(p.tls_cert, p.tls_key)
        self.hub = ClientHub(self.data.num_clients, p.heartbeat_timeout)
        self.min_clients = min(p.min_clients or self.data.num_clients, self.data.num_clients)
        service = FederationService(self.hub, tokens, yaml.safe_dump(client_config(self.experiment)), p)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max(16, 2 * self.data.num_clients + 4)),
            compression=COMPRESSION[p.compression],
        )
        rpc.add_FederationServicer_to_server(service, self.server)
        port = (
            self.server.add_secure_port(p.address, credentials)
            if credentials
            else self.server.add_insecure_port(p.address)
        )
        self.address = f"{p.address.rpartition(':')[0]}:{port}"
        warn_if_exposed(self.address, credentials is not None)
        self.server.start()
        print(f"serving on {self.address} ({'TLS' if credentials else 'no TLS'})", flush=True)

    def wait_for_clients(self) -> None:
        deadline = time.monotonic() + self.params.connect_timeout
        while self.hub.connected() < self.min_clients:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {self.hub.connected()} of backend.min_clients={self.min_clients} clients joined within "
                    f"backend.connect_timeout={self.params.connect_timeout:g} s"
                )
            with self.hub.changed:
                self.hub.changed.wait(0.5)

    def execute(self, jobs: list[ClientJob], outcome: RoundOutcome) -> None:
        p, hub = self.params, self.hub
        self.wait_for_clients()
        reachable = []
        for job in jobs:
            if hub.alive(job.client_id):
                reachable.append(job)
            else:
                outcome.add(ClientFailure(job.client_id, ClientGone("not connected when the round started")))
        hub.dispatch(reachable)
        pending = {job.client_id for job in reachable}
        deadline, results = time.monotonic() + p.round_timeout, 0
        try:
            while pending:
                with hub.changed:
                    hub.changed.wait(0.2)
                    arrived = {cid: hub.results.pop(cid) for cid in list(hub.results) if cid in pending}
                for cid, item in arrived.items():
                    pending.discard(cid)
                    results += isinstance(item, ClientResult)
                    outcome.add(item)
                for cid in [cid for cid in pending if not hub.alive(cid)]:
                    pending.discard(cid)
                    silent = f"disconnected: no heartbeat for {p.heartbeat_timeout:g} s"
                    outcome.add(ClientFailure(cid, ClientGone(silent)))
                if pending and time.monotonic() > deadline and results >= p.min_results:
                    for cid in pending:
                        late = f"missed the round deadline (backend.round_timeout={p.round_timeout:g} s)"
                        outcome.add(ClientFailure(cid, ClientGone(late)))
                    pending.clear()
        finally:
            hub.close_round()

    def close(self) -> None:
        """Tell every client the federation is over, give them a moment to hear it, stop serving."""
        self.hub.finish()
        deadline = time.monotonic() + 2 * self.params.heartbeat_seconds
        while time.monotonic() < deadline and self.hub.connected():
            time.sleep(0.1)
        self.server.stop(grace=1.0).wait()
        print("server stopped", file=sys.stderr, flush=True)


def client_config(experiment: dict[str, Any] | None) -> dict[str, Any]:
    """What a client needs to rebuild the experiment: everything but where and how the server runs."""
    config = dict(experiment or {})
    for server_only in ("backend", "tracking", "checkpoint"):
        config.pop(server_only, None)
    # Sampling is the server's job; a client on its own data (data.num_clients=1) must not inherit it.
    if "train" in config:
        config["train"] = {k: v for k, v in config["train"].items() if k != "clients_per_round"}
    return config
