"""Hand-written hostile peers for the security tests: raw gRPC calls a real client never makes.

Every helper is bounded: calls carry deadlines, loops a count, and stalled streams end when
their `release` event is set or the server cuts them off."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from fedforge.deploy import fedforge_pb2 as pb

SERVICE = "/fedforge.v1.Federation/"


def silent(release: threading.Event, first: object | None = None) -> Iterator[object]:
    """A request stream that sends `first` (if any) and then nothing until released."""
    if first is not None:
        yield first
    release.wait(timeout=120)


def stalled_call(channel: grpc.Channel, method: str, release: threading.Event, first=None, metadata=()):
    """Open `method` and never finish sending its request: the call's future."""
    reply = {"Join": pb.JoinReply, "Heartbeat": pb.HeartbeatReply, "SubmitResult": pb.SubmitReply}[method]
    call = channel.stream_unary(
        SERVICE + method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=reply.FromString
    )
    return call.future(silent(release, first), metadata=metadata, timeout=120)


# How the server ends a hostile call: cut at the deadline, refused over the cap, or the stream refused.
CUT_OFF = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}


def code_of(future: grpc.Future, timeout: float = 120) -> grpc.StatusCode:
    try:
        future.result(timeout=timeout)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


class RssWatch:
    """Peak resident memory of a process, sampled from /proc until stopped."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self.stop.wait(self.every):
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            except OSError:
                return  # the process ended

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(timeout=5)
        return self.peak


def rss_of_this_process() -> int:
    return int(Path(f"/proc/{os.getpid()}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
