"""`backend: remote`: the round loop sends each selected client its job over gRPC and waits.

The server owns the rounds; clients pull jobs (`NextJob`, a long poll) and push results
(`SubmitResult`), so they can sit behind NAT and reconnect at will. Every call carries a
token when the server has a token file. A client that stops sending heartbeats, misses the
round deadline, or sends a malformed upload is dropped from that round with a recorded
event; the round closes once every selected client answered, or at the deadline with at
least `min_results` results.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import yaml

from fedforge.algorithms.base import ClientJob, ClientResult
from fedforge.config import SecureAggregationConfig
from fedforge.deploy import fedforge_pb2 as pb
from fedforge.deploy.codec import (
    MAX_MESSAGE_BYTES,
    PROTOCOL,
    Kind,
    MalformedPayload,
    Payload,
    PayloadReader,
    encode,
    job_payload,
    result_from,
)
from fedforge.deploy.remote import RemoteParams
from fedforge.deploy.security import TokenBook, bearer, server_credentials, warn_if_exposed
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.executors import EXECUTORS, ClientFailure, Executor
from fedforge.engine.weights import payload_bytes

COMPRESSION = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip}


class ClientGone(RuntimeError):
    """The client disconnected, missed the deadline, or was never connected (a recorded failure)."""


class RemoteClientError(RuntimeError):
    """The client's local update raised on its machine."""


@dataclass
class Rejected:
    """An upload that arrived well formed but failed validation at the door (recorded as rejected)."""

    result: ClientResult
    reason: str


@dataclass
class Connection:
    client_id: int
    session: str
    last_seen: float
    job: Payload | None = None  # waiting to be fetched
    job_bytes: int = 0  # the size of the last job sent: what its upload is measured against
    poll: int = 0  # the newest NextJob call of this session; older ones step aside
    uploading: bool = False


class ClientHub:
    """The server's view of its clients: sessions, jobs waiting to be fetched, results (thread-safe).

    Ids are unambiguous: an id handed out stays with the session that holds it while that session
    keeps its heartbeat; a reconnecting client proves it is the holder with its previous session."""

    def __init__(
        self,
        num_clients: int,
        heartbeat_timeout: float,
        inflight_budget: int = 2**62,
        upload_limit: Callable[[int], int] | None = None,
    ) -> None:
        self.num_clients, self.heartbeat_timeout = num_clients, heartbeat_timeout
        self.inflight_budget, self.inflight = inflight_budget, 0
        self.upload_limit = upload_limit or (lambda job_bytes: 2**62)
        self.changed = threading.Condition()
        self.sessions: dict[str, Connection] = {}
        self.clients: dict[int, Connection] = {}
        self.awaited: dict[int, int] = {}  # client id -> round whose result is awaited
        self.results: dict[int, ClientResult | ClientFailure | Rejected] = {}
        self.screen: Callable[[ClientResult], str | None] = lambda result: None
        self.listeners: list[Callable[[], None]] = []  # woken on every change (the async service)
        self.finished = False

    def _notify(self) -> None:
        self.changed.notify_all()
        for wake in self.listeners:
            wake()

    def alive(self, client_id: int) -> bool:
        conn = self.clients.get(client_id)
        return conn is not None and time.monotonic() - conn.last_seen <= self.heartbeat_timeout

    def connected(self) -> int:
        with self.changed:
            return sum(self.alive(cid) for cid in self.clients)

    def join(self, requested: int, allowed: set[int] | None, previous: str = "") -> Connection:
        """A session for `requested` (or the lowest id never handed out or abandoned).

        PermissionError: the token may not act as that id; ValueError: no such id, or it is held
        by a live session that `previous` does not prove to be the caller's own."""
        with self.changed:
            if requested >= 0:
                if requested >= self.num_clients:
                    raise ValueError(f"client id {requested} is outside 0..{self.num_clients - 1}")
                if allowed is not None and requested not in allowed:
                    raise PermissionError(f"this token may not act as client {requested}")
                holder = self.clients.get(requested)
                if holder is not None and self.alive(requested) and holder.session != previous:
                    raise ValueError(f"client id {requested} is held by a live session; pick another id")
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
            conn = Connection(client_id, uuid.uuid4().hex, time.monotonic())
            if old is not None:
                conn.job, conn.job_bytes = old.job, old.job_bytes
                self.sessions.pop(old.session, None)
            self.sessions[conn.session] = conn
            self.clients[client_id] = conn
            self._notify()
            return conn

    def touch(self, session: str) -> Connection | None:
        with self.changed:
            conn = self.sessions.get(session)
            if conn is not None:
                conn.last_seen = time.monotonic()
            return conn

    def dispatch(self, jobs: list[ClientJob], reply_bytes: int | None = None) -> None:
        """Queue each job for its client; `reply_bytes` sizes the answer's limit where the job's own
        size does not (a secure aggregation stage whose answer is a masked model)."""
        with self.changed:
            for job in jobs:
                conn = self.clients[job.client_id]
                conn.job = job_payload(job, conn.session)
                conn.job_bytes = reply_bytes if reply_bytes is not None else payload_bytes(job.payload)
                self.awaited[job.client_id] = job.round
            self._notify()

    def start_poll(self, session: str) -> int:
        """A NextJob call begins; only the newest one of a session waits (a client has one)."""
        with self.changed:
            conn = self.sessions.get(session)
            if conn is None:
                return -1
            conn.poll += 1
            self._notify()
            return conn.poll

    def take_job(self, session: str, poll: int) -> Payload | None:
        """The session's job, DONE, WAIT (unknown session or a newer poll), or None: nothing yet."""
        with self.changed:
            conn = self.sessions.get(session)
            if conn is None or conn.poll != poll:
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
            return None

    def open_upload(self, session: str, round_index: int) -> tuple[int, str]:
        """Admit an upload before any of its data is read: (byte limit, '') or (0, why it is refused)."""
        with self.changed:
            conn = self.sessions.get(session)
            if conn is None:
                return 0, "unknown session for this client: join again"
            if self.awaited.get(conn.client_id) != round_index:
                return 0, f"no job of round {round_index + 1} is open for client {conn.client_id} (late or duplicate)"
            if conn.uploading:
                return 0, f"client {conn.client_id} is already uploading its result"
            limit = self.upload_limit(conn.job_bytes)
            if self.inflight + limit > self.inflight_budget:
                return 0, "the server is receiving too many uploads at once (backend.max_inflight_upload_mb)"
            conn.uploading, conn.last_seen = True, time.monotonic()
            self.inflight += limit
            return limit, ""

    def close_upload(self, session: str, limit: int) -> None:
        with self.changed:
            self.inflight -= limit
            conn = self.sessions.get(session)
            if conn is not None:
                conn.uploading = False

    def submit(self, session: str, client_id: int, round_index: int, outcome: ClientResult | ClientFailure) -> str:
        """Store a result; the reason it is refused, or '' when accepted.

        A well-formed result that fails the round's screen is stored as Rejected (the round records
        it) and its reason returned, so the client is told the truth."""
        with self.changed:
            conn = self.sessions.get(session)
            if conn is None or conn.client_id != client_id:
                return "unknown session for this client: join again"
            if self.awaited.get(client_id) != round_index:
                return f"no job of round {round_index + 1} is open for client {client_id} (late or duplicate)"
            conn.last_seen = time.monotonic()
            del self.awaited[client_id]
            verdict = self.screen(outcome) if isinstance(outcome, ClientResult) else None
            self.results[client_id] = outcome if verdict is None else Rejected(outcome, verdict)
            self._notify()
            return verdict or ""

    def close_round(self) -> None:
        with self.changed:
            self.awaited.clear()
            self.results.clear()
            self.screen = lambda result: None
            for conn in self.clients.values():
                conn.job = None

    def finish(self) -> None:
        with self.changed:
            self.finished = True
            self._notify()


def _stream_unary(behavior: Callable[..., Any], request: Any, reply: Any) -> grpc.RpcMethodHandler:
    return grpc.stream_unary_rpc_method_handler(
        behavior, request_deserializer=request.FromString, response_serializer=reply.SerializeToString
    )


class FederationService:
    """The gRPC face of a ClientHub on an asyncio server: a stalled or idle call costs a coroutine,
    never a thread, so no number of them can starve honest heartbeats.

    Unary methods are served as client-streams so the server reads the one request message
    itself, with a deadline (`request_timeout`): a peer that opens a call and never sends its
    request is cut off. The token is checked from the call's metadata before any message is read.
    Nothing is unpickled."""

    def __init__(self, hub: ClientHub, tokens: TokenBook | None, config_yaml: str, params: RemoteParams) -> None:
        self.hub, self.tokens, self.config_yaml, self.params = hub, tokens, config_yaml, params
        self._wake: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "fedforge.v1.Federation",
            {
                "Join": _stream_unary(self.Join, pb.JoinRequest, pb.JoinReply),
                "Heartbeat": _stream_unary(self.Heartbeat, pb.SessionRef, pb.HeartbeatReply),
                "NextJob": grpc.stream_stream_rpc_method_handler(
                    self.NextJob,
                    request_deserializer=pb.SessionRef.FromString,
                    response_serializer=pb.Chunk.SerializeToString,
                ),
                "SubmitResult": _stream_unary(self.SubmitResult, pb.Chunk, pb.SubmitReply),
            },
        )

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake waiting NextJob calls (on `loop`) whenever the hub changes (from any thread)."""
        self._loop, self._wake = loop, loop.create_future()
        self.hub.listeners.append(lambda: loop.call_soon_threadsafe(self._pulse))

    def _pulse(self) -> None:
        assert self._loop is not None and self._wake is not None
        if not self._wake.done():
            self._wake.set_result(None)
        self._wake = self._loop.create_future()

    async def _changed(self, timeout: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._wake), timeout)

    async def _allowed(self, context: grpc.aio.ServicerContext) -> set[int] | None:
        if self.tokens is None:
            return None
        allowed = self.tokens.clients_for(bearer(context.invocation_metadata()))
        if allowed is not None and not allowed:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")
        return allowed

    async def _read(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        """The next message, or abort if the peer takes longer than request_timeout to send it."""
        try:
            return await asyncio.wait_for(anext(requests), self.params.request_timeout)
        except asyncio.TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no message within backend.request_timeout={self.params.request_timeout:g} s",
            )
        except StopAsyncIteration:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call ended before its request")

    async def _session(self, session: str, allowed: set[int] | None, context: grpc.aio.ServicerContext) -> Connection:
        conn = self.hub.sessions.get(session)
        if conn is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown session: join again")
        if allowed is not None and conn.client_id not in allowed:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token may not act for that session")
        self.hub.touch(session)
        return conn

    async def Join(self, requests: AsyncIterator[pb.JoinRequest], context: grpc.aio.ServicerContext) -> pb.JoinReply:
        allowed = await self._allowed(context)
        request = await self._read(requests, context)
        if request.protocol != PROTOCOL:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"protocol {request.protocol} != server protocol {PROTOCOL}: use the same fedforge version",
            )
        try:
            conn = self.hub.join(request.client_id, allowed, request.session)
        except PermissionError as err:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(err))
        except ValueError as err:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        print(f"client {conn.client_id} joined", flush=True)
        return pb.JoinReply(
            client_id=conn.client_id,
            session=conn.session,
            config_yaml=self.config_yaml,
            heartbeat_seconds=self.params.heartbeat_seconds,
        )

    async def Heartbeat(
        self, requests: AsyncIterator[pb.SessionRef], context: grpc.aio.ServicerContext
    ) -> pb.HeartbeatReply:
        allowed = await self._allowed(context)
        request = await self._read(requests, context)
        conn = self.hub.sessions.get(request.session)
        if conn is not None and allowed is not None and conn.client_id not in allowed:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this token may not act for that session")
        return pb.HeartbeatReply(known=self.hub.touch(request.session) is not None)

    async def NextJob(
        self, requests: AsyncIterator[pb.SessionRef], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Chunk]:
        allowed = await self._allowed(context)
        request = await self._read(requests, context)
        await self._session(request.session, allowed, context)
        poll = self.hub.start_poll(request.session)
        deadline = time.monotonic() + min(10.0, self.params.heartbeat_timeout / 2)
        while (payload := self.hub.take_job(request.session, poll)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                payload = Payload(Kind.WAIT, request.session)
                break
            await self._changed(remaining)
        for chunk in encode(payload):
            yield chunk

    async def SubmitResult(
        self, requests: AsyncIterator[pb.Chunk], context: grpc.aio.ServicerContext
    ) -> pb.SubmitReply:
        allowed = await self._allowed(context)
        first = await self._read(requests, context)
        if first.WhichOneof("part") != "header":
            return pb.SubmitReply(accepted=False, reason="the stream does not start with a header")
        header = first.header
        conn = await self._session(header.session, allowed, context)
        limit, refused = self.hub.open_upload(header.session, header.round)
        if refused:  # nothing of the upload has been read or allocated
            return pb.SubmitReply(accepted=False, reason=refused)
        try:
            outcome = await self._receive(first, requests, limit, conn.client_id)
        finally:
            self.hub.close_upload(header.session, limit)
        reason = await asyncio.get_running_loop().run_in_executor(
            None, self.hub.submit, header.session, conn.client_id, header.round, outcome
        )  # validation scans the whole upload: off the event loop
        if not reason and isinstance(outcome, ClientFailure):
            reason = outcome.reason  # recorded as this client's failure; the client is told it did not count
        return pb.SubmitReply(accepted=not reason, reason=reason)

    async def _receive(
        self, first: pb.Chunk, requests: AsyncIterator[pb.Chunk], limit: int, client_id: int
    ) -> ClientResult | ClientFailure:
        """The upload's chunks as they come, each within request_timeout; a bad stream is a failure."""
        try:
            reader = PayloadReader(first, max_bytes=limit)
            while True:
                try:
                    chunk = await asyncio.wait_for(anext(requests), self.params.request_timeout)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise MalformedPayload(
                        f"stalled: no data for backend.request_timeout={self.params.request_timeout:g} s"
                    ) from None
                reader.feed(chunk)
            payload = reader.finish()
        except MalformedPayload as err:
            return ClientFailure(client_id, MalformedPayload(f"malformed upload: {err}"))
        if payload.error:
            return ClientFailure(client_id, RemoteClientError(payload.error))
        result = result_from(payload)
        result.client_id = client_id  # the session says who it is, not the payload
        return result


class ServingThread:
    """A grpc.aio server on an event loop of its own thread; the round loop stays synchronous."""

    def __init__(self, service: FederationService, params: RemoteParams, credentials: Any) -> None:
        self.service, self.params, self.credentials = service, params, credentials
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name="fedforge-grpc", daemon=True)
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as err:  # reported to the constructor
            self.error = err
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        p = self.params
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_concurrent_streams", p.max_streams_per_connection),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=p.max_concurrent_rpcs,
            compression=COMPRESSION[p.compression],
        )
        self.server.add_generic_rpc_handlers((self.service.handlers(),))
        self.service.bind(self.loop)
        if self.credentials is not None:
            self.port = self.server.add_secure_port(p.address, self.credentials)
        else:
            self.port = self.server.add_insecure_port(p.address)
        await self.server.start()

    def stop(self) -> None:
        """Stop within shutdown_timeout whatever peers do (calls still open are cancelled)."""
        grace = min(1.0, self.params.shutdown_timeout / 2)
        stopping = asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)
        with contextlib.suppress(Exception):
            stopping.result(timeout=self.params.shutdown_timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=self.params.shutdown_timeout)


@EXECUTORS.register("remote")
class RemoteExecutor(Executor):
    """Clients are other processes or machines that joined over gRPC (`fedforge join`)."""

    Params = RemoteParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p: RemoteParams = self.params
        tokens = TokenBook.load(p.token_file)
        credentials = server_credentials(p.tls_cert, p.tls_key)
        self.hub = ClientHub(
            self.data.num_clients,
            p.heartbeat_timeout,
            inflight_budget=int(p.max_inflight_upload_mb * 2**20),
            upload_limit=self.upload_limit,
        )
        self.min_clients = min(p.min_clients or self.data.num_clients, self.data.num_clients)
        secure = (self.experiment or {}).get("secure_aggregation")
        self.secure = SecureAggregationConfig.model_validate(secure) if secure is not None else None
        service = FederationService(self.hub, tokens, yaml.safe_dump(client_config(self.experiment)), p)
        self.serving = ServingThread(service, p, credentials)
        self.address = f"{p.address.rpartition(':')[0]}:{self.serving.port}"
        warn_if_exposed(self.address, credentials is not None)
        print(f"serving on {self.address} ({'TLS' if credentials else 'no TLS'})", flush=True)

    def upload_limit(self, job_bytes: int) -> int:
        """Bytes an upload may declare: backend.max_upload_mb, else 4x its job plus 1 MiB (a model
        and a few model-sized extras such as a Fisher or a control variate)."""
        if self.params.max_upload_mb is not None:
            return int(self.params.max_upload_mb * 2**20)
        return 4 * job_bytes + 2**20

    @property
    def max_samples(self) -> int:
        """The largest sample count an upload may claim (its weight in the mean)."""
        if self.params.max_samples is not None:
            return self.params.max_samples
        stream = self.data.stream
        shards = self.data.client_train if stream is None else [s for task in stream.client_train for s in task]
        return max(len(shard) for shard in shards)

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
        if self.secure is not None:
            from fedforge.deploy.secure import secure_round  # needs the cryptography extra

            secure_round(self, jobs, outcome, self.secure)
            return
        self.gather(jobs, outcome, outcome.screen, lambda cid, result: outcome.add(result, screened=True))

    def gather(
        self,
        jobs: list[ClientJob],
        outcome: RoundOutcome,
        screen: Callable[[ClientResult], str | None],
        on_result: Callable[[int, ClientResult], None],
    ) -> None:
        """Run a round's jobs: each accepted result goes to `on_result` as it arrives (screened at the
        door); rejections, failures and clients that vanish or miss the deadline go to `outcome`."""
        p, hub = self.params, self.hub
        self.wait_for_clients()
        reachable = []
        for job in jobs:
            if hub.alive(job.client_id):
                reachable.append(job)
            else:
                outcome.add(ClientFailure(job.client_id, ClientGone("not connected when the round started")))
        hub.screen = screen

        def arrived(cid: int, item: Any) -> None:
            if isinstance(item, Rejected):
                outcome.reject(item.result, item.reason)
            elif isinstance(item, ClientResult):
                on_result(cid, item)
            else:
                outcome.add(item)

        self._collect(reachable, arrived, outcome.add, p.min_results)

    def exchange(
        self, jobs: list[ClientJob], on_reply: Callable[[int, ClientResult], None], reply_bytes: int | None = None
    ) -> None:
        """One secure aggregation stage: its answers to `on_reply`; a client that fails, vanishes or misses
        the deadline simply does not answer (the protocol treats it as a dropout)."""
        reachable = [job for job in jobs if self.hub.alive(job.client_id)]
        self.hub.screen = lambda result: None  # the protocol checks every field itself

        def arrived(cid: int, item: Any) -> None:
            if isinstance(item, ClientResult):
                on_reply(cid, item)

        self._collect(reachable, arrived, lambda failure: None, 0, reply_bytes)

    def _collect(
        self,
        jobs: list[ClientJob],
        arrived: Callable[[int, Any], None],
        failed: Callable[[ClientFailure], None],
        min_results: int,
        reply_bytes: int | None = None,
    ) -> None:
        """Dispatch `jobs` and hand each answer to `arrived` until all are in, gone, or past the deadline
        with at least `min_results` results."""
        p, hub = self.params, self.hub
        hub.dispatch(jobs, reply_bytes)
        pending = {job.client_id for job in jobs}
        deadline, results = time.monotonic() + p.round_timeout, 0
        try:
            while pending:
                with hub.changed:
                    hub.changed.wait(0.2)
                    got = {cid: hub.results.pop(cid) for cid in list(hub.results) if cid in pending}
                for cid, item in got.items():
                    pending.discard(cid)
                    results += isinstance(item, ClientResult)
                    arrived(cid, item)
                for cid in [cid for cid in pending if not hub.alive(cid)]:
                    pending.discard(cid)
                    failed(ClientFailure(cid, ClientGone(f"disconnected: no heartbeat for {p.heartbeat_timeout:g} s")))
                if pending and time.monotonic() > deadline and results >= min_results:
                    for cid in pending:
                        late = f"missed the round deadline (backend.round_timeout={p.round_timeout:g} s)"
                        failed(ClientFailure(cid, ClientGone(late)))
                    pending.clear()
        finally:
            hub.close_round()

    def close(self) -> None:
        """Tell every client the federation is over, give them a moment to hear it, stop serving
        (bounded by backend.shutdown_timeout whatever the peers do)."""
        self.hub.finish()
        deadline = time.monotonic() + 2 * self.params.heartbeat_seconds
        while time.monotonic() < deadline and self.hub.connected():
            time.sleep(0.1)
        self.serving.stop()
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
