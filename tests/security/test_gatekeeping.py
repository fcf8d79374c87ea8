"""The server's gates against hostile peers, on a real gRPC server over loopback but without a
federation: stalled calls, floods, stolen sessions, uploads that declare more than they send."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
import torch

from fedforge.algorithms.base import ClientJob, ClientResult
from fedforge.deploy import fedforge_pb2 as pb
from fedforge.deploy import fedforge_pb2_grpc as rpc
from fedforge.deploy.client import OWN_CONNECTION
from fedforge.deploy.codec import PROTOCOL, Kind, encode, result_payload
from fedforge.deploy.security import TokenBook
from fedforge.deploy.server import ClientHub, FederationService, RemoteParams, ServingThread
from fedforge.engine.executors import ClientFailure
from fedforge.records import MODEL

from .peers import CUT_OFF, code_of, rss_of_this_process, stalled_call

TOKENS = "0:token-zero\n1:token-one\n"


@pytest.fixture
def server(tmp_path):
    """A hub of 2 clients behind per-client tokens, served with short request deadlines."""
    (tmp_path / "tokens").write_text(TOKENS)
    params = RemoteParams(
        address="127.0.0.1:0", request_timeout=1.0, heartbeat_timeout=60, max_concurrent_rpcs=24, shutdown_timeout=5
    )
    hub = ClientHub(2, params.heartbeat_timeout, inflight_budget=8 * 2**20, upload_limit=lambda sent: 4 * sent + 2**20)
    service = FederationService(hub, TokenBook.load(str(tmp_path / "tokens")), "{}\n", params)
    serving = ServingThread(service, params, None)
    yield hub, f"127.0.0.1:{serving.port}"
    started = time.monotonic()
    serving.stop()
    assert time.monotonic() - started < 3 * params.shutdown_timeout  # bounded, whatever is still open


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


ZERO = bearer("token-zero")


def join(stub, client_id: int, token: str) -> pb.JoinReply:
    return stub.Join(pb.JoinRequest(protocol=PROTOCOL, client_id=client_id), metadata=bearer(token), timeout=10)


def test_calls_that_never_send_their_request_are_cut_off_and_never_starve_heartbeats(server):
    """Sends: 16 connections, each opening Join with a valid token and never sending the request.
    Server: keeps answering an honest client's Join and heartbeats at once, then cuts every
    stalled call at backend.request_timeout with DEADLINE_EXCEEDED."""
    hub, address = server
    release = threading.Event()
    channels = [grpc.insecure_channel(address, OWN_CONNECTION) for _ in range(16)]
    try:
        stalled = [stalled_call(ch, "Join", release, metadata=bearer("token-zero")) for ch in channels]
        with grpc.insecure_channel(address, OWN_CONNECTION) as honest:
            stub = rpc.FederationStub(honest)
            reply = join(stub, 1, "token-one")
            for _ in range(5):
                beat = stub.Heartbeat(pb.SessionRef(session=reply.session), metadata=bearer("token-one"), timeout=10)
                assert beat.known
        codes = [code_of(call) for call in stalled]
        assert set(codes) <= CUT_OFF and codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) >= 8
    finally:
        release.set()
        for ch in channels:
            ch.close()
    assert hub.alive(1) and not hub.alive(0)  # no stalled Join ever became a session


def test_a_flood_beyond_the_call_cap_is_refused_at_once_and_the_server_recovers(server):
    """Sends: 40 stalled calls on 40 connections (the cap is 24). Server: refuses what is over the
    cap, cuts the rest at the deadline, then serves an honest Join normally."""
    _, address = server
    release = threading.Event()
    channels = [grpc.insecure_channel(address, OWN_CONNECTION) for _ in range(40)]
    try:
        stalled = [stalled_call(ch, "Heartbeat", release, metadata=bearer("token-zero")) for ch in channels]
        codes = [code_of(call) for call in stalled]
        assert set(codes) <= CUT_OFF  # none is ever served; how each ends depends on when it arrived
    finally:
        release.set()
        for ch in channels:
            ch.close()
    with grpc.insecure_channel(address, OWN_CONNECTION) as honest:
        assert join(rpc.FederationStub(honest), 0, "token-zero").client_id == 0


def test_a_wrong_token_is_refused_before_the_request_is_read(server):
    """Sends: a Join without a token that never sends its request. Server: UNAUTHENTICATED at once
    (from the metadata), not after the request deadline."""
    _, address = server
    release = threading.Event()
    with grpc.insecure_channel(address, OWN_CONNECTION) as channel:
        started = time.monotonic()
        call = stalled_call(channel, "Join", release, metadata=bearer("guessed"))
        assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED
        release.set()
    assert time.monotonic() - started < 60  # generous: the point is it does not wait for a message forever


def test_one_clients_token_cannot_keep_anothers_session_alive(server):
    """Sends: client 1's token on a Heartbeat of client 0's session. Server: PERMISSION_DENIED."""
    hub, address = server
    with grpc.insecure_channel(address, OWN_CONNECTION) as channel:
        stub = rpc.FederationStub(channel)
        zero = join(stub, 0, "token-zero")
        hub.clients[0].last_seen -= 120  # client 0 went quiet
        with pytest.raises(grpc.RpcError) as refused:
            stub.Heartbeat(pb.SessionRef(session=zero.session), metadata=bearer("token-one"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert not hub.alive(0)
        with pytest.raises(grpc.RpcError) as taken:  # and it cannot take client 0's id either
            join(stub, 0, "token-one")
        assert taken.value.code() == grpc.StatusCode.PERMISSION_DENIED


def upload_header(session: str, round_index: int, floats: int, **fields) -> pb.Chunk:
    header = pb.PayloadHeader(kind=Kind.RESULT, session=session, round=round_index, **fields)
    header.tensors.add(name="weights", dtype="float32", shape=[floats])
    return pb.Chunk(header=header)


def test_uploads_are_refused_before_any_memory_is_spent_on_them(server):
    """Sends: a 1 GiB upload header from a client with no open job, then one from a selected client,
    then a small upload that stops after its header. Server: refuses the first without reading it,
    fails the second on its declared size, cuts the third at the deadline; this process's memory
    does not grow by the declared gigabytes."""
    hub, address = server
    gib = 2**28  # floats: 1 GiB
    with grpc.insecure_channel(address, OWN_CONNECTION) as channel:
        stub = rpc.FederationStub(channel)
        zero = join(stub, 0, "token-zero")
        before = rss_of_this_process()
        reply = stub.SubmitResult(iter([upload_header(zero.session, 0, gib)]), metadata=ZERO, timeout=30)
        assert not reply.accepted and "no job of round 1" in reply.reason
        hub.dispatch([ClientJob(0, 0, {MODEL: torch.zeros(1000)})])
        reply = stub.SubmitResult(iter([upload_header(zero.session, 0, gib)]), metadata=ZERO, timeout=30)
        assert not reply.accepted
        with hub.changed:
            failure = hub.results.pop(0)
        assert isinstance(failure, ClientFailure) and "declares more than" in str(failure.error)
        hub.dispatch([ClientJob(0, 1, {MODEL: torch.zeros(1000)})])
        release = threading.Event()
        call = stalled_call(channel, "SubmitResult", release, upload_header(zero.session, 1, 1000), ZERO)
        assert not call.result(timeout=60).accepted
        release.set()
        with hub.changed:
            failure = hub.results.pop(0)
        assert "stalled" in str(failure.error)
        assert rss_of_this_process() - before < 256 * 2**20
        assert hub.inflight == 0  # every reservation was returned


def test_a_result_that_fails_validation_is_answered_as_refused(server):
    """Sends: a well-formed upload claiming a billion samples. Server: replies accepted=False with
    the validator's reason, so a client never believes a rejected result counted."""
    hub, address = server
    hub.screen = lambda result: "num_samples too large" if result.num_samples > 1000 else None
    with grpc.insecure_channel(address, OWN_CONNECTION) as channel:
        stub = rpc.FederationStub(channel)
        zero = join(stub, 0, "token-zero")
        hub.dispatch([ClientJob(0, 0, {MODEL: torch.zeros(10)})])
        lie = ClientResult(0, {MODEL: torch.zeros(10)}, 10**9, {"train_loss": 0.1})
        reply = stub.SubmitResult(encode(result_payload(lie, zero.session, 0)), metadata=ZERO, timeout=30)
        assert not reply.accepted and reply.reason == "num_samples too large"
