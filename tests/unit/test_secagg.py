"""Secure aggregation: exact sums under masks, dropouts, hostile messages, and the threshold."""

import pytest
import torch
from scipy import stats

import fedforge
from fedforge.config import SecureAggregationConfig
from fedforge.privacy.secagg import ring, shamir
from fedforge.privacy.secagg.protocol import SecAggAborted, SecAggClient, SecAggServer, simulate
from fedforge.tracking.query import load_events

CFG = SecureAggregationConfig()


def inputs(n: int = 10, d: int = 3000, seed: int = 0) -> dict[int, tuple[torch.Tensor, float]]:
    g = torch.Generator().manual_seed(seed)
    return {3 * i: (torch.randn(d, generator=g) * 0.1, float(i + 1)) for i in range(n)}


def weighted_sum(values, keep=None) -> torch.Tensor:
    return sum(w * x.double() for c, (x, w) in values.items() if keep is None or c in keep)


def flat(result) -> torch.Tensor:
    return torch.cat([t.flatten().float() for t in result.model.state_dict().values()])


def max_error(values: dict) -> float:
    """n quantization steps: the bound on the decoded sum's error."""
    total = sum(w for _, w in values.values())
    return len(values) * ring.round_step(1.0, total, CFG.bits)


def test_the_unmasked_sum_equals_the_plain_weighted_sum_within_quantization():
    values = inputs()
    for cfg in (CFG, SecureAggregationConfig(neighbours=6), SecureAggregationConfig(bits=62)):
        out = simulate(values, cfg, 1.0, round_index=0, seed=0)
        assert out.survivors == sorted(values) and out.weight == 55.0
        bound = len(values) * ring.round_step(1.0, 55.0, cfg.bits) + 1e-12  # + float64 rounding at 62 bits
        assert float((out.total - weighted_sum(values)).abs().max()) <= bound
        assert out.bytes_up > 0 and out.bytes_down > 0


def test_a_masked_upload_is_indistinguishable_from_uniform():
    client = SecAggClient(0, torch.zeros(20_000), 1.0, CFG, 1.0, torch.Generator().manual_seed(0))
    server = SecAggServer(CFG, 0, 0, 20_000, 1.0)
    peers = [SecAggClient(i, torch.zeros(20_000), 1.0, CFG, 1.0, torch.Generator()) for i in (1, 2)]
    everyone = [client, *peers]
    setups = server.advertisements({c.id: c.advertise() for c in everyone})
    routed = server.route({c.id: c.share_keys(setups[c.id]) for c in everyone})
    masked = client.masked_input(routed[0])["masked"]  # the input is all zeros: only the masks show
    y = ring.unpack(masked, CFG.bits).double() / 2**CFG.bits
    assert stats.kstest(y.numpy(), "uniform").pvalue > 1e-3
    counts = torch.histc(y, bins=64, min=0, max=1).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3


def test_with_30_percent_dropping_after_sharing_keys_the_round_equals_fedavg_over_survivors():
    values = inputs()
    gone = frozenset({0, 12, 27})
    out = simulate(values, CFG, 1.0, 0, 0, dropouts=gone)
    assert out.survivors == sorted(set(values) - gone) and out.weight == 55.0 - (1 + 5 + 10)
    assert float((out.total - weighted_sum(values, out.survivors)).abs().max()) <= max_error(values)


def test_clients_that_drop_after_masking_are_still_counted_from_their_shares():
    values = inputs(n=6)
    clients = {c: SecAggClient(c, x, w, CFG, 1.0, torch.Generator().manual_seed(c)) for c, (x, w) in values.items()}
    server = SecAggServer(CFG, 0, 0, 3000, 1.0)
    setups = server.advertisements({c: k.advertise() for c, k in clients.items()})
    routed = server.route({c: clients[c].share_keys(setups[c]) for c in setups})
    survivors = server.masked_inputs({c: clients[c].masked_input(routed[c]) for c in routed})
    responses = {c: clients[c].unmask(survivors) for c in survivors if c not in (0, 3)}  # two go silent now
    total, weight = server.unmask(responses)
    assert weight == 21.0 and float((total - weighted_sum(values)).abs().max()) <= max_error(values)


def test_a_malformed_key_is_refused_with_an_event_and_the_round_completes_without_it():
    values = inputs(n=6)
    clients = {c: SecAggClient(c, x, w, CFG, 1.0, torch.Generator()) for c, (x, w) in values.items()}
    ads = {c: k.advertise() for c, k in clients.items()}
    ads[3] = {**ads[3], "mask_key": b"\x00" * 32}  # a low-order point: every agreement with it is zero
    ads[6] = {**ads[6], "share_key": b"short"}
    ads[9] = {**ads[9], "share_key": ads[0]["share_key"]}  # a replayed key
    server = SecAggServer(CFG, 0, 0, 3000, 1.0)
    setups = server.advertisements(ads)
    assert sorted(setups) == [0, 12, 15] and [e[0] for e in server.events] == [3, 6, 9]
    routed = server.route({c: clients[c].share_keys(setups[c]) for c in setups})
    survivors = server.masked_inputs({c: clients[c].masked_input(routed[c]) for c in routed})
    total, _ = server.unmask({c: clients[c].unmask(survivors) for c in survivors})
    assert float((total - weighted_sum(values, {0, 12, 15})).abs().max()) <= max_error(values)


def test_a_malformed_or_lying_share_is_rejected_and_the_others_rebuild_the_secret():
    values = inputs(n=8)
    clients = {c: SecAggClient(c, x, w, CFG, 1.0, torch.Generator()) for c, (x, w) in values.items()}
    server = SecAggServer(CFG, 0, 0, 3000, 1.0)
    setups = server.advertisements({c: k.advertise() for c, k in clients.items()})
    shares = {c: clients[c].share_keys(setups[c]) for c in setups}
    shares[3][0] = b"garbage" * 10  # client 0 cannot decrypt what 3 sent it
    routed = server.route(shares)
    survivors = server.masked_inputs({c: clients[c].masked_input(routed[c]) for c in routed})
    assert (3, "secagg_bad_share") in [(e[0], e[1]) for e in server.events]
    responses = {c: clients[c].unmask(survivors) for c in survivors}
    responses[6][0] = b"\xff" * shamir.SHARE_BYTES  # not a field element
    real = responses[9][0]
    responses[9][0] = (int.from_bytes(real, "big") ^ 1).to_bytes(shamir.SHARE_BYTES, "big")  # a wrong one
    total, _ = server.unmask(responses)
    assert float((total - weighted_sum(values)).abs().max()) <= max_error(values)
    assert (6, "secagg_bad_share") in [(e[0], e[1]) for e in server.events]


def test_fewer_shares_than_the_threshold_give_the_server_nothing():
    secret = bytes(range(32))
    held = shamir.split(secret, list(range(10)), threshold=6)
    assert shamir.combine({h: held[h] for h in range(6)}, 6) == secret
    with pytest.raises(ValueError, match="cannot rebuild"):
        shamir.combine({h: held[h] for h in range(5)}, 6)
    with pytest.raises(ValueError):  # five shares read as a lower threshold rebuild something else
        assert shamir.combine({h: held[h] for h in range(5)}, 5) != secret

    values = inputs(n=6)
    clients = {c: SecAggClient(c, x, w, CFG, 1.0, torch.Generator()) for c, (x, w) in values.items()}
    server = SecAggServer(CFG, 0, 0, 3000, 1.0)
    setups = server.advertisements({c: k.advertise() for c, k in clients.items()})
    routed = server.route({c: clients[c].share_keys(setups[c]) for c in setups})
    survivors = server.masked_inputs({c: clients[c].masked_input(routed[c]) for c in routed})
    few = {c: clients[c].unmask(survivors) for c in survivors[:2]}  # threshold is 3 of 5 neighbours
    with pytest.raises(SecAggAborted, match="3 needed"):
        server.unmask(few)
    out = simulate(values, CFG, 1.0, 0, 0, dropouts=frozenset({0, 3, 6, 9}))  # 2 survivors, threshold 3
    assert out.total is None and any(e[1] == "secagg_aborted" for e in out.events)


def test_a_run_with_secure_aggregation_ends_where_fedavg_does(quick, runs_dir):
    overrides = {**quick, "train": {"rounds": 3, "clients_per_round": 6}}
    plain = fedforge.run(quiet=True, **overrides)
    secure = fedforge.run(quiet=True, **overrides, secure_aggregation={})
    assert torch.allclose(flat(plain), flat(secure), atol=1e-6)
    dropping = fedforge.run(quiet=True, **overrides, secure_aggregation={"dropout_rate": 0.34})
    events = load_events(dropping.run_dir)
    assert sum(e["kind"] == "secagg_dropout" for e in events) == 3 * 2  # 2 of 6 per round
    assert not any(e["kind"] == "secagg_aborted" for e in events)


def test_messages_survive_the_wire_and_malformed_ones_are_refused():
    from fedforge.privacy.secagg import wire

    shares = {4: b"abc", 1: b"", 9: bytes(range(200))}
    assert wire.unpack_map("secagg/to", wire.pack_map("secagg/to", shares)) == shares
    packed = wire.pack_map("secagg/to", shares)
    for name, bad in [
        ("secagg/to/offsets", torch.tensor([0, 3, 2, 203])),  # not increasing
        ("secagg/to/offsets", torch.tensor([0, 3, 3, 999])),  # past the blob
        ("secagg/to/ids", torch.tensor([1, 1, 9])),  # an id twice
        ("secagg/to/blob", torch.zeros(203, dtype=torch.float32)),  # not bytes
    ]:
        with pytest.raises(ValueError):
            wire.unpack_map("secagg/to", {**packed, name: bad})
    with pytest.raises(ValueError, match="lacks"):
        wire.unpack_map("secagg/to", {})


def test_a_cohort_of_one_is_never_unmasked():
    out = simulate(inputs(n=1), CFG, 1.0, 0, 0)
    assert out.total is None and [e[1] for e in out.events] == ["secagg_aborted"]
    with pytest.raises(fedforge.errors.ConfigError, match="train.clients_per_round"):
        fedforge.config.build_config({"secure_aggregation": {}, "train": {"clients_per_round": 1}})
