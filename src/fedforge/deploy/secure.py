"""Secure aggregation over gRPC: the SecAgg stages as extra jobs on the same channel.

Round r's training job is stage 1: a client trains, keeps its update, and answers with its
advertisement (public keys, a commitment, its weight) instead of the model. The server then
sends each client stage 2 (its neighbours' keys), 3 (the encrypted shares addressed to it) and
4 (the survivors), each answered by the protocol's next message (privacy/secagg/protocol.py).
The server only ever holds masked vectors; a client that stops answering is a dropout the
protocol recovers from. The sum lands in `RoundOutcome.masked`, where a simulated round would
compute it in process.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from fedforge.config import SecureAggregationConfig
from fedforge.engine.aggregation import MaskedSum, RoundOutcome
from fedforge.engine.weights import payload_bytes
from fedforge.privacy.central import CLIP
from fedforge.privacy.secagg import ring, wire
from fedforge.privacy.secagg.protocol import SecAggAborted, SecAggClient, SecAggServer
from fedforge.records import MODEL, ClientJob, ClientResult
from fedforge.seeding import SECAGG, torch_generator


def clip_range(job: ClientJob, cfg: SecureAggregationConfig) -> float:
    """The per-coordinate range of the round's updates: the DP clip when the job carries one."""
    return float(job.payload[CLIP][0]) if CLIP in job.payload else cfg.clip_range


class SecureClient:
    """A remote client's side: the protocol state of the round it trained in, and its stage answers."""

    def __init__(self, cfg: SecureAggregationConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self.open: dict[int, SecAggClient] = {}  # round -> its protocol state (one round at a time)

    @staticmethod
    def is_stage(job: ClientJob) -> bool:
        return wire.STAGE in job.payload

    def advertise(self, job: ClientJob, result: ClientResult) -> ClientResult:
        """Keep the trained update; answer the training job with the advertisement."""
        delta = (result.update[MODEL] - job.model).detach().cpu()
        generator = torch_generator(self.seed, SECAGG, job.round, job.client_id)
        client = SecAggClient(
            job.client_id, delta, result.weight(MODEL), self.cfg, clip_range(job, self.cfg), generator
        )
        self.open = {job.round: client}
        return ClientResult(
            job.client_id, wire.advert_to_tensors(client.advertise()), result.num_samples, result.metrics
        )

    def answer(self, job: ClientJob) -> dict[str, torch.Tensor]:
        client = self.open.get(job.round)
        if client is None:
            raise ValueError(f"no secure aggregation is open for round {job.round + 1} on this client")
        stage = int(job.payload[wire.STAGE][0])
        if stage == 2:
            return wire.pack_map("secagg/to", client.share_keys(wire.setup_from_tensors(job.payload, job.round)))
        if stage == 3:
            return wire.masked_to_tensors(client.masked_input(wire.unpack_map("secagg/from", job.payload)))
        if stage == 4:
            del self.open[job.round]
            return wire.pack_map("secagg/of", client.unmask(wire.survivors_from_tensors(job.payload)))
        raise ValueError(f"unknown secure aggregation stage {stage}")


def screen_advertisement(outcome: RoundOutcome, result: ClientResult) -> str | None:
    """A stage-1 answer: byte fields only, and claims (samples, weight) that pass the round's validator."""
    names = {f"secagg/{k}" for k in wire.ADVERT_KEYS}
    if set(result.update) != names:
        return f"a secure aggregation round takes the advertisement {sorted(names)}, not {sorted(result.update)[:5]}"
    if any(t.dtype != torch.uint8 or t.dim() != 1 or t.numel() > 64 for t in result.update.values()):
        return "an advertisement field is not a short byte string"
    try:
        weight = float.fromhex(wire._bytes(result.update["secagg/weight"]).decode())
    except (ValueError, UnicodeDecodeError):
        return "the advertised weight is not a number"
    specs = {**outcome.specs, MODEL: dataclasses.replace(outcome.specs[MODEL], required=False)}
    claim = ClientResult(result.client_id, {}, result.num_samples, result.metrics, {MODEL: weight})
    rejection = outcome.validator.verdict(claim, specs)
    return None if rejection is None else rejection.reason


def secure_round(executor: Any, jobs: list[ClientJob], outcome: RoundOutcome, cfg: SecureAggregationConfig) -> None:
    """Stages 1-4 with the remote clients; the unmasked sum goes to `outcome.masked`."""
    r = jobs[0].round if jobs else 0
    reference = outcome.reference
    adverts: dict[int, dict[str, bytes]] = {}

    def on_advert(cid: int, result: ClientResult) -> None:
        outcome.admit(ClientResult(cid, {}, result.num_samples, result.metrics), screened=True)
        adverts[cid] = wire.advert_from_tensors(result.update)

    executor.gather(jobs, outcome, lambda result: screen_advertisement(outcome, result), on_advert)
    bound = clip_range(jobs[0], cfg) if jobs else cfg.clip_range
    server = SecAggServer(cfg, r, executor.seed, reference.numel(), bound)
    started, up, down = time.perf_counter(), 0, 0

    def stage(messages: dict[int, dict[str, torch.Tensor]], reply_bytes: int | None = None) -> dict[int, Any]:
        nonlocal up, down
        stage_jobs = [ClientJob(cid, r, payload) for cid, payload in sorted(messages.items())]
        down += sum(payload_bytes(job.payload) for job in stage_jobs)
        replies: dict[int, dict[str, torch.Tensor]] = {}
        executor.exchange(stage_jobs, lambda cid, result: replies.__setitem__(cid, result.update), reply_bytes)
        up += sum(payload_bytes(update) for update in replies.values())
        return replies

    def decoded(replies: dict[int, Any], decode: Any, what: str) -> dict[int, Any]:
        out = {}
        for cid, update in replies.items():
            try:
                out[cid] = decode(update)
            except (KeyError, ValueError, TypeError) as err:
                server.events.append((cid, "secagg_rejected", f"{what}: {err}"))
        return out

    up += sum(sum(len(v) for v in ad.values()) for ad in adverts.values())
    total, weight = None, 0.0
    try:
        setups = server.advertisements(adverts)
        shares = decoded(stage({c: wire.setup_to_tensors(s) for c, s in setups.items()}),
                         lambda u: wire.unpack_map("secagg/to", u), "share keys")  # fmt: skip
        routed = server.route(shares)
        masked_bytes = ring.packed_size(reference.numel(), cfg.bits)
        masked = decoded(stage({c: wire.routed_to_tensors(m) for c, m in routed.items()}, masked_bytes),
                         wire.masked_from_tensors, "masked input")  # fmt: skip
        survivors = server.masked_inputs(masked)
        responses = decoded(stage({c: wire.survivors_to_tensors(survivors) for c in survivors}),
                            lambda u: wire.unpack_map("secagg/of", u), "unmask")  # fmt: skip
        total, weight = server.unmask(responses)
    except SecAggAborted as err:
        server.events.append((None, "secagg_aborted", str(err)))
    metrics = {
        "secagg_bytes_up": float(up),
        "secagg_bytes_down": float(down),
        "secagg_seconds": time.perf_counter() - started,
        "secagg_survivors": float(len(server.masked)),
    }
    mean = None
    if total is not None and weight > 0:
        mean = reference + (total / weight).to(reference.dtype).to(reference.device)
    outcome.masked = MaskedSum(mean, weight, metrics, server.events)
