"""Attacks on a real `fedforge serve` over loopback while honest `fedforge join` processes train.

Under each attack the run must finish all its rounds, the honest clients' model must end
within 1 point of a clean run, the server's memory must stay under SERVER_RSS_BOUND
(docs/deployment.md) and `serve` must exit by itself. Every attacker is bounded in calls and
time, and only ever talks to 127.0.0.1."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
import torch

import fedforge
from fedforge.algorithms.base import ClientContext, ClientJob, ClientResult
from fedforge.algorithms.fedavg import FedAvg
from fedforge.deploy import fedforge_pb2 as pb
from fedforge.deploy import fedforge_pb2_grpc as rpc
from fedforge.deploy.client import OWN_CONNECTION
from fedforge.deploy.codec import PROTOCOL, Kind, decode, encode, result_payload
from fedforge.records import MODEL
from fedforge.tracking import load_events, load_runs
from tests.loopback import free_port, wait_until_listening

from .peers import RssWatch, stalled_call

ROOT = Path(__file__).resolve().parents[2]
SERVER_RSS_BOUND = 1536 * 2**20  # documented in docs/deployment.md ("Limits")
ROUNDS = 4
pytestmark = pytest.mark.slow


def cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fedforge", *map(str, args)], cwd=ROOT, text=True, **kwargs)


def settings(runs_dir: Path, clients: int) -> list[str]:
    return [
        "configs/digits_fedavg.yaml",
        f"data.num_clients={clients}",
        f"train.rounds={ROUNDS}",
        f"tracking.runs_dir={runs_dir}",
        "backend.device=cpu",
    ]


class WithoutSeat(FedAvg):
    """FedAvg whose client `seat` never counts: the honest clients' federation when that seat is an attacker's."""

    name = "fedavg-without-seat"
    seat = -1

    def local_update(self, ctx: ClientContext, job: ClientJob) -> ClientResult:
        if ctx.client_id == self.seat:
            raise RuntimeError("this seat belongs to the attacker")
        return super().local_update(ctx, job)


def clean_accuracy(runs_dir: Path, clients: int, attacker: int | None = None) -> float:
    """The same federation in simulation with only the honest clients (served runs match it exactly)."""
    overrides = dict(item.split("=", 1) for item in settings(runs_dir / "clean", clients)[1:])
    if attacker is not None:
        WithoutSeat.seat = attacker
        overrides["algorithm"] = WithoutSeat
    return fedforge.run("configs/digits_fedavg.yaml", quiet=True, **overrides).final_accuracy


def serve(runs_dir: Path, clients: int, port: int, *extra: str) -> tuple[subprocess.Popen, RssWatch]:
    server = cli(
        "serve", *settings(runs_dir, clients), *extra, "--address", f"127.0.0.1:{port}", "--quiet",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return server, RssWatch(server.pid)


def join(port: int, *extra: str) -> subprocess.Popen:
    return cli("join", "--server", f"127.0.0.1:{port}", "--device", "cpu", "--quiet", *extra, stdout=subprocess.DEVNULL)


def finish(server: subprocess.Popen, watch: RssWatch, honest: list[subprocess.Popen]) -> tuple[str, int]:
    """Wait (bounded) for serve to exit on its own and the honest clients to finish."""
    out, errors = server.communicate(timeout=900)
    peak = watch.finish()
    assert server.returncode == 0, errors
    assert all(client.wait(timeout=60) == 0 for client in honest)
    return out, peak


def served_accuracy(out: str) -> float:
    return float(out.split("final accuracy: ")[1].split()[0])


def flood(port: int, stop: threading.Event, connections: int = 64, max_calls: int = 3000) -> dict[str, int]:
    """Unauthenticated denial of service: `connections` connections, each keeping a Join open that
    never sends its request (re-opened whenever the server cuts it), plus upload streams that never
    send a header. Bounded: at most `max_calls` calls, and it stops with the federation."""
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}", OWN_CONNECTION) for _ in range(connections)]
    release = threading.Event()
    seen: dict[str, int] = {}
    opened = 0
    try:
        calls = {}
        while not stop.is_set() and opened < max_calls:
            for i, channel in enumerate(channels):
                if i not in calls or calls[i].done():
                    if i in calls:
                        code = calls[i].exception()
                        name = code.code().name if code is not None else "OK"
                        seen[name] = seen.get(name, 0) + 1
                    method = "Join" if i % 4 else "SubmitResult"
                    calls[i] = stalled_call(channel, method, release)
                    opened += 1
            stop.wait(0.05)
    finally:
        release.set()
        for channel in channels:
            channel.close()
    return seen


def test_an_unauthenticated_flood_of_stalled_calls_does_not_stop_the_federation(runs_dir):
    """Sends: 64 connections holding Join and SubmitResult calls that never send a request, re-opened
    as soon as the server cuts them, for the whole run (no token file: every peer may call).
    Server: cuts each at backend.request_timeout, answers honest heartbeats meanwhile, finishes
    every round with the clean run's accuracy, and exits."""
    port = free_port()
    server, watch = serve(runs_dir, 3, port)
    wait_until_listening(port)
    stop = threading.Event()
    seen: dict[str, int] = {}
    attacker = threading.Thread(target=lambda: seen.update(flood(port, stop)), daemon=True)
    attacker.start()
    honest = [join(port, "--client-id", cid) for cid in range(3)]
    out, peak = finish(server, watch, honest)
    stop.set()
    attacker.join(timeout=60)
    assert seen.get("OK", 0) == 0 and sum(seen.values()) > 64  # every stalled call was cut, and reopened
    run = load_runs(runs_dir)[0]
    assert run["status"] == "finished" and run["summary"]["rounds"] == ROUNDS
    assert not [e for e in load_events(Path(run["run_dir"])) if e["kind"] == "client_failed"]
    assert abs(served_accuracy(out) - clean_accuracy(runs_dir, 3)) <= 0.01
    print(f"serve's peak RSS under the flood: {peak / 2**20:.0f} MiB")
    assert peak < SERVER_RSS_BOUND


def liar(port: int, token: str, client_id: int) -> list[str]:
    """An authenticated client that lies differently in each round; returns the server's replies.

    Round 0: a billion samples. 1: every weight 3e38. 2: a header declaring 1 GiB, then nothing.
    3: an overflowing shape. Every round also: a second upload for the same job."""
    metadata = (("authorization", f"Bearer {token}"),)
    replies: list[str] = []
    with grpc.insecure_channel(f"127.0.0.1:{port}", OWN_CONNECTION) as channel:
        stub = rpc.FederationStub(channel)
        reply = stub.Join(pb.JoinRequest(protocol=PROTOCOL, client_id=client_id), metadata=metadata, timeout=30)
        session = pb.SessionRef(session=reply.session)
        served = 0
        while served < ROUNDS:
            stub.Heartbeat(session, metadata=metadata, timeout=30)
            job = decode(stub.NextJob(session, metadata=metadata, timeout=60), max_bytes=2**30)
            if job.kind != Kind.JOB:
                continue
            weights = job.tensors[MODEL]
            result = ClientResult(
                client_id, {MODEL: weights.clone()}, 10**9 if served == 0 else 100, {"train_loss": 0.1}
            )
            if served == 1:
                result.update[MODEL] = torch.full_like(weights, 3e38)
            chunks = list(encode(result_payload(result, reply.session, job.round)))
            if served in (2, 3):
                shape = [2**28] if served == 2 else [0, 2**62, 2**62]
                del chunks[0].header.tensors[:]
                chunks[0].header.tensors.add(name=MODEL, dtype="float32", shape=shape)
                chunks = chunks[:1]
            for _ in range(2):  # the second is a duplicate
                answer = stub.SubmitResult(iter(chunks), metadata=metadata, timeout=60)
                replies.append("accepted" if answer.accepted else answer.reason)
            served += 1
    return replies


def test_a_lying_authenticated_client_cannot_decide_or_wreck_the_model(runs_dir, tmp_path):
    """Sends (client 3 of 4, with its own token): a billion-sample claim, an all-3e38 upload, a
    1 GiB header with no data, an overflowing shape, and a duplicate of each. Server: refuses each
    with the reason (the client is told), records it as rejected or failed, never as trained,
    keeps the honest clients' model within 1 point of a clean run and its memory bounded."""
    tokens = tmp_path / "tokens"
    tokens.write_text("".join(f"{cid}:token-{cid}\n" for cid in range(4)))
    port = free_port()
    server, watch = serve(runs_dir, 4, port, "--token-file", tokens)
    wait_until_listening(port)
    replies: list[str] = []
    attacker = threading.Thread(target=lambda: replies.extend(liar(port, "token-3", 3)), daemon=True)
    attacker.start()
    honest = []
    for cid in range(3):
        (tmp_path / f"token-{cid}").write_text(f"{cid}:token-{cid}\n")
        honest.append(join(port, "--client-id", cid, "--token-file", tmp_path / f"token-{cid}"))
    out, peak = finish(server, watch, honest)
    attacker.join(timeout=60)
    assert "accepted" not in replies and len(replies) == 2 * ROUNDS
    assert "exceeds the" in replies[0] and "max_update_ratio" in replies[2]
    assert "declares more than" in replies[4] and "declares more than" in replies[6]
    assert all("late or duplicate" in reason for reason in replies[1::2])

    run = load_runs(runs_dir)[0]
    assert run["status"] == "finished" and run["summary"]["rounds"] == ROUNDS
    events = {(e["round"], e["kind"]) for e in load_events(Path(run["run_dir"])) if e["client_id"] == 3}
    assert events == {(1, "rejected_update"), (2, "rejected_update"), (3, "client_failed"), (4, "client_failed")}
    with sqlite3.connect(runs_dir / "runs.db") as db:
        trained = db.execute("SELECT SUM(trained), MAX(num_samples) FROM client_rounds WHERE client_id = 3").fetchone()
        stored_metrics = db.execute("SELECT COUNT(*) FROM metrics WHERE client_id = 3").fetchone()[0]
    assert trained == (0, 0) and stored_metrics == 0
    assert abs(served_accuracy(out) - clean_accuracy(runs_dir, 4, attacker=3)) <= 0.01
    print(f"serve's peak RSS under the lying client: {peak / 2**20:.0f} MiB")
    assert peak < SERVER_RSS_BOUND
