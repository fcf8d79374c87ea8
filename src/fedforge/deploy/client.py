"""`fedforge join`: one client of a remote federation, training on data that never leaves it.

The server sends the experiment's config at join time; the client rebuilds the same model,
method and task from it (its own data settings on top), then pulls jobs and pushes results
until the server says the federation is done. It runs jobs with the sequential executor,
so local training is exactly the simulation's code. Lost connections are retried: a client
that comes back rejoins under its id and takes part in later rounds.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import yaml

from fedforge.api import Experiment
from fedforge.config import build_config, merge
from fedforge.deploy import fedforge_pb2 as pb
from fedforge.deploy import fedforge_pb2_grpc as rpc
from fedforge.deploy.codec import PROTOCOL, Kind, Payload, decode, encode, job_from, result_payload
from fedforge.deploy.server import COMPRESSION
from fedforge.engine.client_store import ClientStore
from fedforge.engine.executors import ClientFailure, SequentialExecutor
from fedforge.engine.weights import FlatModel
from fedforge.errors import FedforgeError
from fedforge.privacy.secagg import SecAggAborted
from fedforge.records import ClientJob, ClientResult

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.NOT_FOUND}
# gRPC shares one connection among a process's channels to the same address; a client keeps its
# own, so clients run as threads of one process never exceed the server's per-connection stream cap.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
HELD = "held by a live session"  # the server's word for an id another live session holds


class JoinRefused(FedforgeError):
    """The server refused this client (wrong token, id taken or out of range, other protocol)."""


class ServerLost(FedforgeError):
    """The server stayed unreachable for longer than the client retries."""


class RemoteClient:
    def __init__(
        self,
        server: str,
        overrides: dict | None = None,
        client_id: int = -1,
        token: str = "",
        ca: str | None = None,
        max_download_mb: float = 4096.0,
        retry_seconds: float = 60.0,
        quiet: bool = False,
        compression: str = "none",
    ) -> None:
        self.server, self.overrides, self.requested_id = server, overrides or {}, client_id
        self.chosen_id = client_id >= 0  # an id given by the operator is kept; one the server picked may change
        self.previous_session = ""  # proves, on a reconnect, that the id is this client's
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.ca = Path(ca).read_bytes() if ca else None
        self.max_download = int(max_download_mb * 2**20)
        self.retry_seconds, self.quiet = retry_seconds, quiet
        self.compression = COMPRESSION[compression]
        self.rounds_served = 0
        self.executor: SequentialExecutor | None = None
        self.local_shard: int | None = None
        self.secure: Any = None  # a SecureClient (deploy/secure.py) under secure aggregation

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)

    def channel(self) -> grpc.Channel:
        if self.ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.ca)
            return grpc.secure_channel(self.server, credentials, OWN_CONNECTION, compression=self.compression)
        return grpc.insecure_channel(self.server, OWN_CONNECTION, compression=self.compression)

    def run(self) -> int:
        """Serve jobs until the server is done; reconnects on transient errors. Returns rounds served."""
        last_contact = time.monotonic()
        while True:
            try:
                with self.channel() as channel:
                    if self.session(rpc.FederationStub(channel)):
                        return self.rounds_served
                last_contact = time.monotonic()
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED and HELD in (err.details() or ""):
                    if not self.chosen_id:  # our old id went to another client while we were away
                        self.requested_id, self.previous_session = -1, ""
                    code = grpc.StatusCode.UNAVAILABLE  # an operator's id: wait until its old session expires
                if code not in RETRYABLE:
                    raise JoinRefused(f"{self.server} refused this client: {code.name}: {err.details()}") from None
                if time.monotonic() - last_contact > self.retry_seconds:
                    raise ServerLost(f"lost {self.server} for over {self.retry_seconds:g} s: {err.details()}") from None
                self.log(f"connection problem ({code.name}); retrying")
                time.sleep(1.0)

    def session(self, stub: rpc.FederationStub) -> bool:
        """One session: join, then jobs until DONE (True) or until the server forgets us (False)."""
        request = pb.JoinRequest(protocol=PROTOCOL, client_id=self.requested_id, session=self.previous_session)
        reply = stub.Join(request, metadata=self.metadata, timeout=30)
        self.requested_id, self.previous_session = reply.client_id, reply.session  # a reconnect rejoins as us
        # Heartbeat from the moment of joining: rebuilding the experiment can take a minute on a busy
        # machine, and a silent client would be declared dead and its id handed to another.
        stop = threading.Event()
        beat = threading.Thread(target=self.heartbeat, args=(stub, reply, stop), daemon=True)
        beat.start()
        try:
            if self.executor is None:
                self.prepare(reply.config_yaml)
            self.log(f"joined {self.server} as client {reply.client_id}")
            while True:
                job = decode(
                    stub.NextJob(pb.SessionRef(session=reply.session), metadata=self.metadata), self.max_download
                )
                if job.kind == Kind.DONE:
                    self.log(f"federation finished; served {self.rounds_served} rounds")
                    return True
                if job.kind == Kind.JOB:
                    self.work(stub, reply.session, job)
        finally:
            stop.set()
            beat.join(timeout=15)  # no RPC may still be in flight when the channel closes

    def answer_stage(self, stub: rpc.FederationStub, session: str, job: ClientJob) -> None:
        """One secure aggregation stage of the round this client trained in."""
        assert self.secure is not None
        try:
            update = self.secure.answer(job)
        except (ValueError, KeyError, SecAggAborted) as err:
            answer = Payload(Kind.RESULT, session, job.client_id, job.round, error=f"secure aggregation: {err}")
        else:
            answer = result_payload(ClientResult(job.client_id, update, 0), session, job.round)
        reply = stub.SubmitResult(encode(answer), metadata=self.metadata)
        if not reply.accepted:
            self.log(f"round {job.round + 1}: server refused a secure aggregation answer: {reply.reason}")

    def heartbeat(self, stub: rpc.FederationStub, reply: pb.JoinReply, stop: threading.Event) -> None:
        while not stop.wait(reply.heartbeat_seconds):
            try:
                stub.Heartbeat(pb.SessionRef(session=reply.session), metadata=self.metadata, timeout=10)
            except grpc.RpcError:
                pass  # the main loop notices a lost server and reconnects

    def prepare(self, config_yaml: str) -> None:
        """Rebuild the experiment from the server's config, with this client's data settings on top."""
        raw = merge(yaml.safe_load(config_yaml), self.overrides)
        cfg = build_config({**raw, "backend": {"kind": "sequential", **raw.get("backend", {})}})
        exp = Experiment(cfg)
        algorithm = cfg.algorithm.resolve()(cfg.algorithm.params, cfg.train, seed=cfg.seed)
        algorithm.init_server(FlatModel(exp.build_model()), exp.data)  # index structures methods keep
        self.executor = SequentialExecutor(
            algorithm, exp.data, exp.model_factory(), cfg.train, ClientStore(), cfg.seed, exp.device, task=exp.task
        )
        if cfg.secure_aggregation is not None:
            from fedforge.deploy.secure import SecureClient  # needs the cryptography extra

            self.secure = SecureClient(cfg.secure_aggregation, cfg.seed)
        if exp.data.num_clients == 1:  # the client's own data (e.g. a local folder): one shard, used for any id
            self.local_shard = 0

    def work(self, stub: rpc.FederationStub, session: str, payload: Payload) -> None:
        assert self.executor is not None
        job = job_from(payload)
        if self.secure is not None and self.secure.is_stage(job):
            self.answer_stage(stub, session, job)
            return
        local = dataclasses.replace(job, client_id=self.local_shard) if self.local_shard is not None else job
        self.log(f"round {job.round + 1}: training")
        outcome = self.executor.run_one(local)
        if isinstance(outcome, ClientFailure):
            answer = Payload(Kind.RESULT, session, job.client_id, job.round, error=outcome.reason)
        else:
            outcome.client_id = job.client_id
            if self.secure is not None:  # the update stays here; the server gets keys, then a masked vector
                outcome = self.secure.advertise(job, outcome)
            answer = result_payload(outcome, session, job.round)
        reply = stub.SubmitResult(encode(answer), metadata=self.metadata)
        if not reply.accepted:
            self.log(f"round {job.round + 1}: server refused the result: {reply.reason}")
        else:
            self.rounds_served += 1
            self.log(f"round {job.round + 1}: result sent")
