"""The SecAgg(+) stages between clients and a server that sees only masked vectors.

1. advertise: each client sends two X25519 public keys (one to encrypt shares, one for masks), a
   commitment SHA-256(b) to its self-mask seed b, and its weight (in the clear, as its sample
   count always is). The server checks each key, picks the neighbour graph (everyone, or a
   seeded ring of `neighbours` for SecAgg+) and the quantization step, and tells each client its
   neighbours' keys.
2. share keys: each client Shamir-shares b and its mask secret key among its neighbours, each
   share encrypted (AES-GCM under an HKDF key from X25519) for its recipient; the server routes them.
3. masked input: y_i = q(w_i d_i) + PRG(b_i) + sum_j +-PRG(s_ij) mod 2^bits, with + for j > i and
   - for j < i, over the neighbours whose shares arrived; pairwise masks cancel in the sum.
4. unmask: each survivor sends, per neighbour, the share of b (it survived) or of the mask key
   (it dropped), never both. The server rebuilds each secret from `threshold` shares, checks it
   against its commitment or public key (a bad share is found and another set tried), and
   removes the masks. With fewer valid shares than the threshold it learns nothing and the round
   is aborted.

Messages are dicts of bytes, so any transport can carry them; `simulate` carries them in process.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from fedforge.config import SecureAggregationConfig
from fedforge.privacy.secagg import SecAggAborted, keys, ring, shamir
from fedforge.seeding import SECAGG, derive_seed

MASK_INFO = b"fedforge secagg mask"
SHARE_INFO = b"fedforge secagg share"
MAX_SUBSETS = 64  # share sets tried per secret when a bad share spoils the first


@dataclass
class Setup:
    """What the server tells one client after the advertisements."""

    round: int
    step: float
    threshold: int
    neighbours: dict[int, tuple[bytes, bytes]]  # neighbour id -> (share key, mask key), both public


def _context(round_index: int) -> bytes:
    return round_index.to_bytes(8, "big")


def _sign(i: int, j: int) -> int:
    return 1 if i < j else -1


class SecAggClient:
    """One client's side of a round: its secrets, its masked input and the shares it holds for others."""

    def __init__(
        self,
        client_id: int,
        delta: torch.Tensor,
        weight: float,
        cfg: SecureAggregationConfig,
        clip_range: float,
        generator: torch.Generator,
    ) -> None:
        self.id, self.delta, self.weight, self.cfg = client_id, delta, float(weight), cfg
        self.clip_range, self.generator = clip_range, generator
        self.share_key, self.mask_key = keys.KeyPair.generate(), keys.KeyPair.generate()
        self.seed = keys.random_seed()
        self.setup: Setup | None = None
        self.held: dict[int, tuple[bytes, bytes]] = {}  # neighbour -> (share of its b, share of its mask key)
        self.masked_with: list[int] = []
        self.clipped = 0  # coordinates clipped to clip_range before quantization

    def advertise(self) -> dict[str, bytes]:
        return {
            "share_key": self.share_key.public,
            "mask_key": self.mask_key.public,
            "commitment": hashlib.sha256(self.seed).digest(),
            "weight": float(self.weight).hex().encode(),
        }

    def share_keys(self, setup: Setup) -> dict[int, bytes]:
        """One encrypted pair of shares (of b, of the mask key) per neighbour."""
        self.setup = setup
        holders = sorted(setup.neighbours)
        of_seed = shamir.split(self.seed, holders, setup.threshold)
        of_key = shamir.split(self.mask_key.secret, holders, setup.threshold)
        context = _context(setup.round)
        out = {}
        for j in holders:
            key = self.share_key.agree(setup.neighbours[j][0], SHARE_INFO + context)
            plain = self.id.to_bytes(8, "big") + j.to_bytes(8, "big") + of_seed[j] + of_key[j]
            out[j] = keys.encrypt(key, plain, context)
        return out

    def masked_input(self, ciphertexts: dict[int, bytes]) -> dict[str, bytes]:
        """The masked vector; `bad` lists neighbours whose share did not decrypt (reported, not held)."""
        assert self.setup is not None
        setup, context = self.setup, _context(self.setup.round)
        bad = []
        for j, ciphertext in sorted(ciphertexts.items()):
            if j not in setup.neighbours:
                continue  # not a neighbour: nothing it sent is used
            try:
                key = self.share_key.agree(setup.neighbours[j][0], SHARE_INFO + context)
                plain = keys.decrypt(key, ciphertext, context)
                pair = j.to_bytes(8, "big") + self.id.to_bytes(8, "big")  # from j to this client
                if len(plain) != 16 + 2 * shamir.SHARE_BYTES or plain[:16] != pair:
                    raise ValueError("the shares are addressed to another pair")
            except ValueError:
                bad.append(j)
                continue
            self.held[j] = (plain[16 : 16 + shamir.SHARE_BYTES], plain[16 + shamir.SHARE_BYTES :])
        self.masked_with = sorted(j for j in ciphertexts if j in setup.neighbours)
        levels, self.clipped = ring.quantize(
            self.delta, self.weight, setup.step, self.clip_range, self.cfg.bits, self.generator
        )
        y = levels + keys.mask(self.seed, len(levels), self.cfg.bits)
        for j in self.masked_with:
            pair = self.mask_key.agree(setup.neighbours[j][1], MASK_INFO + context)
            y = y + _sign(self.id, j) * keys.mask(pair, len(levels), self.cfg.bits)
        y = y & ring.mask_of(self.cfg.bits)
        return {"masked": ring.pack(y, self.cfg.bits), "bad": b",".join(str(j).encode() for j in bad)}

    def unmask(self, survivors: list[int]) -> dict[int, bytes]:
        """Per neighbour it holds shares of: b's share if the neighbour survived, else the mask key's."""
        assert self.setup is not None
        alive = set(survivors)
        if len(alive & set(self.setup.neighbours)) + 1 < self.setup.threshold:
            raise SecAggAborted(f"client {self.id}: too few survivors to unmask safely")
        return {j: (held[0] if j in alive else held[1]) for j, held in self.held.items() if j in self.masked_with}


@dataclass
class Advertised:
    share_key: bytes
    mask_key: bytes
    commitment: bytes
    weight: float


@dataclass
class SecAggServer:
    """The server's side of one round: it routes and checks messages and sees only masked vectors."""

    cfg: SecureAggregationConfig
    round: int
    seed: int
    length: int  # entries in each client's vector
    clip_range: float
    events: list[tuple[int | None, str, str]] = field(default_factory=list)
    advertised: dict[int, Advertised] = field(default_factory=dict)
    graph: dict[int, list[int]] = field(default_factory=dict)
    thresholds: dict[int, int] = field(default_factory=dict)
    routed_to: dict[int, list[int]] = field(default_factory=dict)  # recipient -> senders whose shares it got
    masked: dict[int, torch.Tensor] = field(default_factory=dict)
    step: float = 0.0

    def _reject(self, client_id: int, stage: str, why: str) -> None:
        self.events.append((client_id, "secagg_rejected", f"{stage}: {why}"))

    def advertisements(self, messages: dict[int, dict[str, bytes]]) -> dict[int, Setup]:
        probe = keys.KeyPair.generate()
        seen: set[bytes] = set()
        for cid, message in sorted(messages.items()):
            try:
                got = Advertised(message["share_key"], message["mask_key"], message["commitment"],
                                 float.fromhex(message["weight"].decode()))  # fmt: skip
                for key in (got.share_key, got.mask_key):
                    probe.agree(key, b"check")  # a malformed or low-order key raises
                if len(got.commitment) != 32 or not (math.isfinite(got.weight) and got.weight >= 0):
                    raise ValueError("the commitment or weight is malformed")
                if {got.share_key, got.mask_key} & seen or got.share_key == got.mask_key:
                    raise ValueError("a public key repeats another client's (a replay)")
            except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError) as err:
                self._reject(cid, "advertise", str(err) or type(err).__name__)
                continue
            seen |= {got.share_key, got.mask_key}
            self.advertised[cid] = got
        if len(self.advertised) < 2:  # a lone client's "sum" is its update
            raise SecAggAborted(f"{len(self.advertised)} valid advertisement(s): a sum needs at least 2 clients")
        self.graph = neighbour_graph(sorted(self.advertised), self.cfg.neighbours, self.seed, self.round)
        self.step = ring.round_step(self.clip_range, sum(a.weight for a in self.advertised.values()), self.cfg.bits)
        setups = {}
        for cid, neighbours in self.graph.items():
            threshold = min(len(neighbours), math.floor(self.cfg.threshold * len(neighbours)) + 1)
            self.thresholds[cid] = threshold
            public = {j: (self.advertised[j].share_key, self.advertised[j].mask_key) for j in neighbours}
            setups[cid] = Setup(self.round, self.step, threshold, public)
        return setups

    def route(self, messages: dict[int, dict[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """Each recipient's encrypted shares; a sender missing any neighbour's is out of the round."""
        complete = {}
        for cid, message in sorted(messages.items()):
            if cid not in self.graph:
                continue
            wanted = set(self.graph[cid])
            if (
                not isinstance(message, dict)
                or set(message) != wanted
                or not all(isinstance(v, bytes) for v in message.values())
            ):
                self._reject(cid, "share keys", "the shares do not match the client's neighbours")
                continue
            complete[cid] = message
        routed: dict[int, dict[int, bytes]] = {cid: {} for cid in complete}
        for sender, message in complete.items():
            for recipient, ciphertext in message.items():
                if recipient in routed:
                    routed[recipient][sender] = ciphertext
        self.routed_to = {cid: sorted(shares) for cid, shares in routed.items()}
        return routed

    def masked_inputs(self, messages: dict[int, dict[str, bytes]]) -> list[int]:
        """Admit each well-formed masked vector; returns the survivors (sorted)."""
        top = 1 << self.cfg.bits
        for cid, message in sorted(messages.items()):
            if cid not in self.routed_to:
                continue
            raw = message.get("masked") if isinstance(message, dict) else None
            if not isinstance(raw, bytes) or len(raw) != ring.packed_size(self.length, self.cfg.bits):
                self._reject(cid, "masked input", f"the vector is not {self.length} ring elements")
                continue
            y = ring.unpack(raw, self.cfg.bits)
            if bool(((y < 0) | (y >= top)).any()):
                self._reject(cid, "masked input", f"an element lies outside Z_(2^{self.cfg.bits})")
                continue
            self.masked[cid] = y
            for bad in message.get("bad", b"").split(b","):
                if bad.strip().isdigit():
                    self.events.append((int(bad), "secagg_bad_share", f"client {cid} could not decrypt its shares"))
        return sorted(self.masked)

    def unmask(self, responses: dict[int, dict[int, bytes]]) -> tuple[torch.Tensor, float]:
        """The float64 sum of the survivors' weighted updates and their total weight."""
        survivors = sorted(self.masked)
        if not survivors:
            raise SecAggAborted("no masked input arrived")
        shares: dict[int, dict[int, bytes]] = {}  # owner -> holder -> share
        for holder, message in responses.items():
            if holder not in self.masked or not isinstance(message, dict):
                continue
            for owner, share in message.items():
                if owner in self.routed_to.get(holder, []):
                    shares.setdefault(owner, {})[holder] = share
        bits = self.cfg.bits
        total = torch.zeros(self.length, dtype=torch.int64)
        for cid in survivors:
            total += self.masked[cid]
        context = _context(self.round)
        senders = [cid for cid in self.routed_to if cid in self.graph]
        for owner in senders:
            held = shares.get(owner, {})
            if owner in self.masked:
                seed = self._rebuild(
                    owner, held, lambda s, o=owner: hashlib.sha256(s).digest() == self.advertised[o].commitment
                )
                total -= keys.mask(seed, self.length, bits)
            elif any(owner in self.routed_to.get(i, []) for i in survivors):
                secret = self._rebuild(owner, held, lambda s, o=owner: _public_of(s) == self.advertised[o].mask_key)
                dropped = keys.KeyPair.from_secret(secret)
                for i in survivors:
                    if owner in self.routed_to.get(i, []):  # i masked with the dropped client
                        pair = dropped.agree(self.advertised[i].mask_key, MASK_INFO + context)
                        total -= _sign(i, owner) * keys.mask(pair, self.length, bits)
            total &= ring.mask_of(bits)
        weight = sum(self.advertised[cid].weight for cid in survivors)
        return ring.decode(total, self.step, bits), weight

    def _rebuild(self, owner: int, held: dict[int, bytes], verify) -> bytes:
        """`owner`'s secret from the held shares: the first set of `threshold` that checks out."""
        threshold = self.thresholds[owner]
        valid = {}
        for holder, share in held.items():
            try:
                shamir.parse_share(share)
                valid[holder] = share
            except ValueError as err:
                self.events.append((holder, "secagg_bad_share", f"its share of client {owner}'s secret: {err}"))
        if len(valid) < threshold:
            raise SecAggAborted(f"client {owner}: {len(valid)} valid shares, {threshold} needed to unmask")
        for subset in itertools.islice(itertools.combinations(sorted(valid), threshold), MAX_SUBSETS):
            try:
                secret = shamir.combine({h: valid[h] for h in subset}, threshold)
            except ValueError:
                continue
            if verify(secret):
                return secret
        raise SecAggAborted(f"client {owner}: no {threshold} of its {len(valid)} shares rebuild its secret")


def _public_of(secret: bytes) -> bytes:
    try:
        return keys.KeyPair.from_secret(secret).public
    except ValueError:
        return b""


def neighbour_graph(clients: list[int], neighbours: int | None, seed: int, round_index: int) -> dict[int, list[int]]:
    """Who masks with whom: everyone (SecAgg), or the nearest on a seeded ring of the cohort (SecAgg+,
    a Harary graph of degree `neighbours` rounded up to even)."""
    if neighbours is None or neighbours >= len(clients) - 1:
        return {c: [o for o in clients if o != c] for c in clients}
    order = np.random.default_rng(derive_seed(seed, SECAGG, round_index)).permutation(clients).tolist()
    half, n = math.ceil(neighbours / 2), len(order)
    graph: dict[int, list[int]] = {}
    for pos, c in enumerate(order):
        graph[c] = sorted({order[(pos + d) % n] for d in range(-half, half + 1) if d != 0})
    return graph


@dataclass
class SecAggRound:
    """What one simulated round produced and cost."""

    total: torch.Tensor | None  # float64 sum of the survivors' weighted updates (None: aborted)
    weight: float
    survivors: list[int]
    events: list[tuple[int | None, str, str]]
    bytes_up: int
    bytes_down: int
    client_seconds: float
    server_seconds: float
    clipped: int


def _size(message: object) -> int:
    if isinstance(message, bytes):
        return len(message)
    if isinstance(message, dict):
        return sum(_size(v) for v in message.values()) + 8 * len(message)
    return 8


def simulate(
    inputs: dict[int, tuple[torch.Tensor, float]],
    cfg: SecureAggregationConfig,
    clip_range: float,
    round_index: int,
    seed: int,
    dropouts: frozenset[int] = frozenset(),
) -> SecAggRound:
    """Run the four stages in process; `dropouts` leave after sharing keys, before their masked input."""
    length = len(next(iter(inputs.values()))[0])
    clients = {
        cid: SecAggClient(cid, delta, weight, cfg, clip_range,
                          torch.Generator().manual_seed(derive_seed(seed, SECAGG, round_index, cid)))
        for cid, (delta, weight) in sorted(inputs.items())
    }  # fmt: skip
    server = SecAggServer(cfg, round_index, seed, length, clip_range)
    up = down = 0
    client_time = server_time = 0.0

    def on_clients(stage, ids):
        nonlocal client_time, up
        start = time.perf_counter()
        out = {cid: stage(cid) for cid in ids}
        client_time += time.perf_counter() - start
        up += sum(_size(m) for m in out.values())
        return out

    def on_server(stage, arg):
        nonlocal server_time, down
        start = time.perf_counter()
        out = stage(arg)
        server_time += time.perf_counter() - start
        if isinstance(out, dict):  # per client: its setup (step, threshold, neighbours' keys) or routed shares
            down += sum(16 + 72 * len(m.neighbours) if isinstance(m, Setup) else _size(m) for m in out.values())
        elif isinstance(out, list) and stage == server.masked_inputs:  # the survivor list, to each survivor
            down += 8 * len(out) * len(out)
        return out

    total, weight, survivors = None, 0.0, []
    try:
        ads = on_clients(lambda cid: clients[cid].advertise(), list(clients))
        setups = on_server(server.advertisements, ads)
        shares = on_clients(lambda cid: clients[cid].share_keys(setups[cid]), list(setups))
        routed = on_server(server.route, shares)
        staying = [c for c in routed if c not in dropouts]
        masked = on_clients(lambda cid: clients[cid].masked_input(routed[cid]), staying)
        survivors = on_server(server.masked_inputs, masked)
        server.events += [
            (cid, "secagg_dropout", "simulated: left after sharing keys") for cid in sorted(dropouts & set(routed))
        ]
        responses = on_clients(lambda cid: clients[cid].unmask(survivors), survivors)
        total, weight = on_server(server.unmask, responses)
    except SecAggAborted as err:
        server.events.append((None, "secagg_aborted", str(err)))
    clipped = sum(c.clipped for cid, c in clients.items() if cid in survivors)
    return SecAggRound(total, weight, survivors, server.events, up, down, client_time, server_time, clipped)
