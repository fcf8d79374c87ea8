"""The wire format and the server's gatekeeping, without a network."""

import pytest
import torch

from fedforge.algorithms.base import ClientJob, ClientResult
from fedforge.deploy import fedforge_pb2 as pb
from fedforge.deploy.codec import (
    CHUNK_BYTES,
    Kind,
    MalformedPayload,
    Payload,
    decode,
    encode,
    job_from,
    job_payload,
    result_from,
    result_payload,
)
from fedforge.deploy.security import TokenBook, read_token, warn_if_exposed
from fedforge.deploy.server import ClientHub, client_config
from fedforge.errors import ConfigError
from fedforge.records import MODEL


def test_jobs_and_results_roundtrip_exactly_in_chunks_under_grpcs_limit():
    weights = torch.randn(2_000_000)  # 8 MB: several chunks
    entries = {"control": torch.arange(5, dtype=torch.int64), "mask": torch.tensor([True, False])}
    job = ClientJob(3, 7, {MODEL: weights, **entries}, attack="label_flip")
    chunks = list(encode(job_payload(job, "s1")))
    assert chunks[0].WhichOneof("part") == "header" and len(chunks) == 1 + 8 + 2
    assert max(len(c.data) for c in chunks[1:]) <= CHUNK_BYTES < 4 * 2**20
    back = job_from(decode(chunks, max_bytes=2**30))
    assert (back.client_id, back.round, back.attack) == (3, 7, "label_flip") and torch.equal(back.model, weights)
    assert torch.equal(back.payload["control"], entries["control"]) and back.payload["mask"].dtype == torch.bool

    update = {MODEL: weights[:10], "fisher": torch.ones(3)}
    result = ClientResult(3, update, 42, {"train_loss": 0.25, "seconds": 1.5}, entry_weights={"fisher": 2.0})
    again = result_from(decode(encode(result_payload(result, "s1", 7)), max_bytes=2**20))
    assert again.num_samples == 42 and again.metrics == {"train_loss": 0.25, "seconds": 1.5}
    assert set(again.update) == {MODEL, "fisher"} and all(torch.equal(again.update[k], v) for k, v in update.items())
    assert again.weight("fisher") == 2.0 and again.weight(MODEL) == 42


def test_only_tensors_cross_the_network():
    with pytest.raises(TypeError, match="payload entry 'note' is a str"):
        list(encode(job_payload(ClientJob(0, 0, {MODEL: torch.zeros(2), "note": "hi"}), "s")))


def header(*specs, **fields):
    h = pb.PayloadHeader(kind=Kind.RESULT, **fields)
    for name, dtype, shape in specs:
        h.tensors.add(name=name, dtype=dtype, shape=shape)
    return pb.Chunk(header=h)


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([], "does not start with a header"),
        ([pb.Chunk(data=b"1234")], "does not start with a header"),
        ([header(("weights", "float32", [2])), pb.Chunk(data=b"1234")], "ended after 4 of 8"),
        ([header(("weights", "float32", [1])), pb.Chunk(data=b"12345678")], "more data than the header declares"),
        ([header(("weights", "object", [1]))], "unknown dtype 'object'"),
        ([header(("weights", "float32", [-1]))], "negative dimension"),
        ([header(("weights", "float32", [10**9]))], "more than 1048576 bytes"),
        ([header(("weights", "float32", [0, 2**62, 2**62]))], "more than 1048576 bytes"),  # overflowing shape
        ([header(("weights", "float32", [1] * 9))], "at most 8"),
        ([header(("w", "float32", [1]), ("w", "float32", [1]))], "unique"),
        ([header(metrics={f"m{i}": 0.0 for i in range(300)})], "at most 256 metrics"),
        ([header(), header()], "a second header"),
    ],
)
def test_malformed_streams_are_refused_before_memory_is_spent(chunks, message):
    with pytest.raises(MalformedPayload, match=message):
        decode(chunks, max_bytes=2**20)


def test_token_book_shared_and_per_client(tmp_path):
    file = tmp_path / "tokens"
    file.write_text("# comment\nshared-secret\n\n2:two-only\n")
    book = TokenBook.load(str(file))
    assert book.clients_for("shared-secret") is None  # any client id
    assert book.clients_for("two-only") == {2}
    assert book.clients_for("guess") == set()  # refused
    client_file = tmp_path / "client"
    client_file.write_text("2:two-only\n")
    assert read_token(str(client_file)) == "two-only"
    with pytest.raises(ConfigError, match="does not exist"):
        TokenBook.load(str(tmp_path / "missing"))
    (tmp_path / "blank").write_text("0:\n")
    with pytest.raises(ConfigError, match="line 1.*empty token"):
        TokenBook.load(str(tmp_path / "blank"))
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="holds no token"):
        TokenBook.load(str(tmp_path / "empty"))


def test_hub_assigns_ids_unambiguously_and_refuses_late_results():
    hub = ClientHub(num_clients=2, heartbeat_timeout=10)
    first = hub.join(-1, None)
    second = hub.join(-1, None)
    assert (first.client_id, second.client_id) == (0, 1)
    with pytest.raises(ValueError, match="taken"):
        hub.join(-1, None)
    with pytest.raises(PermissionError):
        hub.join(0, {1})
    with pytest.raises(ValueError, match="held by a live session"):  # a second process claiming a live id
        hub.join(0, None)
    again = hub.join(0, None, previous=first.session)  # a reconnect proves the id is its own
    assert again.session != first.session and hub.touch(first.session) is None
    hub.dispatch([ClientJob(0, 4, {MODEL: torch.zeros(2)})])
    poll = hub.start_poll(again.session)
    assert hub.take_job(again.session, poll).kind == Kind.JOB
    result = ClientResult(0, {MODEL: torch.zeros(2)}, 1)
    assert "round 4" in hub.submit(again.session, 0, 3, result)  # not the open round (index 3 is round 4)
    assert hub.submit(again.session, 0, 4, result) == ""
    assert "late or duplicate" in hub.submit(again.session, 0, 4, result)
    hub.finish()
    assert hub.take_job(second.session, hub.start_poll(second.session)).kind == Kind.DONE


def test_a_dead_session_frees_its_id_and_only_the_newest_poll_waits():
    hub = ClientHub(num_clients=1, heartbeat_timeout=10)
    old = hub.join(-1, None)
    hub.clients[0].last_seen -= 60  # silent for a minute
    new = hub.join(0, None)  # an operator restarting the client process
    assert new.client_id == 0 and hub.touch(old.session) is None
    stale, fresh = hub.start_poll(new.session), hub.start_poll(new.session)
    assert hub.take_job(new.session, stale).kind == Kind.WAIT  # an older NextJob steps aside
    assert hub.take_job(new.session, fresh) is None  # the newest one keeps waiting


def test_uploads_are_admitted_before_any_byte_is_read():
    hub = ClientHub(num_clients=2, heartbeat_timeout=10, inflight_budget=3000, upload_limit=lambda sent: 2 * sent)
    a, b = hub.join(0, None), hub.join(1, None)
    assert "no job of round 1" in hub.open_upload(a.session, 0)[1]  # not selected: refused, nothing allocated
    hub.dispatch([ClientJob(0, 0, {MODEL: torch.zeros(100)}), ClientJob(1, 0, {MODEL: torch.zeros(100)})])
    limit, refused = hub.open_upload(a.session, 0)
    assert (limit, refused) == (2 * 400, "")
    assert "already uploading" in hub.open_upload(a.session, 0)[1]  # one stream per client
    hub.inflight_budget = 1000
    assert "too many uploads at once" in hub.open_upload(b.session, 0)[1]
    hub.close_upload(a.session, limit)
    assert hub.open_upload(b.session, 0) == (800, "")


def test_a_result_that_fails_the_rounds_screen_is_refused_and_recorded_as_rejected():
    hub = ClientHub(num_clients=1, heartbeat_timeout=10)
    conn = hub.join(0, None)
    hub.dispatch([ClientJob(0, 0, {MODEL: torch.zeros(2)})])
    hub.screen = lambda result: "num_samples too large" if result.num_samples > 10 else None
    assert hub.submit(conn.session, 0, 0, ClientResult(0, {MODEL: torch.zeros(2)}, 10**9)) == "num_samples too large"
    assert hub.results[0].reason == "num_samples too large"


def test_clients_get_the_experiment_without_server_settings():
    config = {"data": {"name": "digits"}, "backend": {"token_file": "/secret"}, "tracking": {}, "checkpoint": {}}
    config["train"] = {"lr": 0.1, "clients_per_round": 8}  # sampling stays on the server
    assert client_config(config) == {"data": {"name": "digits"}, "train": {"lr": 0.1}}


def test_payload_defaults_are_an_empty_wait():
    assert list(decode(encode(Payload(Kind.WAIT)), max_bytes=0).tensors) == []


def test_serving_without_tls_beyond_loopback_warns_loudly(capsys):
    warn_if_exposed("127.0.0.1:50051", tls=False)
    warn_if_exposed("0.0.0.0:50051", tls=True)
    assert capsys.readouterr().err == ""
    warn_if_exposed("0.0.0.0:50051", tls=False)
    assert "WITHOUT TLS" in capsys.readouterr().err
