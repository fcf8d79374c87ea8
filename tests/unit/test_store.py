import sqlite3

import pytest

from fedforge.engine.evaluation import EvalMetrics
from fedforge.engine.federation import ClientRecord, RoundRecord
from fedforge.errors import RunDirError, RunStoreError
from fedforge.tracking.query import load_client_rounds, load_events, load_metrics, load_rounds, load_runs
from fedforge.tracking.store import SCHEMA_VERSION, RunStore

CONFIG = {"algorithm": {"name": "fedavg"}, "data": {"name": "digits"}, "model": {"name": "cnn"}, "seed": 0}


def record(r, acc=0.5):
    clients = [ClientRecord(c, 10, 0.3, 0.01, 100, 100, {"ema_decay": 0.5 + c / 10}) for c in (0, 2)]
    ev = EvalMetrics(acc, 1.0, [0.1, 0.2, 0.3], extra={"knn_accuracy": acc - 0.1})
    return RoundRecord(r, clients, [], 0.3, 200, 200, 0.02, 0.03, ev, [(2, "dropout", "simulated")])


def make_run(tmp_path, run_id="r1", rounds=3):
    (tmp_path / run_id).mkdir(parents=True)
    (tmp_path / run_id / "config.yaml").write_text("seed: 0\n")
    store = RunStore(tmp_path / "runs.db", run_id)
    store.start(run_id, str(tmp_path / run_id), CONFIG)
    for r in range(rounds):
        store.log_round(record(r, 0.5 + r / 10))
    return store


def test_rounds_clients_events_and_summary_are_stored(tmp_path):
    store = make_run(tmp_path)
    store.finish({"final_accuracy": 0.7, "rounds": 3})
    store.close()
    runs = load_runs(tmp_path)
    assert len(runs) == 1 and runs[0]["status"] == "finished" and runs[0]["final_accuracy"] == 0.7
    assert runs[0]["config"] == CONFIG
    rounds = load_rounds(tmp_path / "r1")
    assert [r["round"] for r in rounds] == [1, 2, 3] and rounds[2]["global_accuracy"] == pytest.approx(0.7)
    clients = load_client_rounds(tmp_path, "r1")
    trained = [(c["round"], c["client_id"]) for c in clients if c["trained"]]
    assert trained == [(r, c) for r in (1, 2, 3) for c in (0, 2)]  # stored 1-based, as users see them
    assert [c["test_accuracy"] for c in clients if c["round"] == 1] == [0.1, 0.2, 0.3]
    assert [e["kind"] for e in load_events(tmp_path)] == ["dropout"] * 3
    metrics = [(m["round"], m["client_id"], m["name"], round(m["value"], 6)) for m in load_metrics(tmp_path, "r1")]
    assert metrics[:3] == [(1, None, "knn_accuracy", 0.4), (1, 0, "ema_decay", 0.5), (1, 2, "ema_decay", 0.7)]
    assert len(metrics) == 9


def test_resume_forgets_later_rounds_and_records_the_resume(tmp_path):
    store = make_run(tmp_path, rounds=4)
    store.resume(2, "resumed after round 2")
    assert [r["round"] for r in load_rounds(tmp_path)] == [1, 2]
    assert {c["round"] for c in load_client_rounds(tmp_path)} == {1, 2}
    assert {m["round"] for m in load_metrics(tmp_path)} == {1, 2}
    kinds = [(e["round"], e["kind"]) for e in load_events(tmp_path)]
    assert kinds == [(1, "dropout"), (2, "dropout"), (3, "resume")]
    store.log_round(record(2))  # the re-run round (index 2, round 3) fits again: no duplicate key
    assert [r["round"] for r in load_rounds(tmp_path)] == [1, 2, 3]


def test_a_failed_round_write_leaves_no_partial_round(tmp_path):
    store = make_run(tmp_path, rounds=1)
    bad = record(1)
    bad.events = [(0, None, "x")]  # kind NOT NULL violation after the round row was inserted
    with pytest.raises(sqlite3.IntegrityError):
        store.log_round(bad)
    assert [r["round"] for r in load_rounds(tmp_path)] == [1]
    assert {c["round"] for c in load_client_rounds(tmp_path)} == {1}


def test_frames_when_pandas_is_installed(tmp_path):
    pd = pytest.importorskip("pandas")
    make_run(tmp_path).close()
    frame = load_rounds(tmp_path, frame=True)
    assert isinstance(frame, pd.DataFrame) and list(frame["round"]) == [1, 2, 3]


def test_corrupt_or_truncated_database_is_named(tmp_path):
    make_run(tmp_path).close()
    db = tmp_path / "runs.db"
    (tmp_path / "runs.db-wal").unlink(missing_ok=True)
    raw = db.read_bytes()
    db.write_bytes(raw[:100] + b"\x00" * 50 + raw[150:1500])
    with pytest.raises(RunStoreError, match=str(db)):
        load_runs(tmp_path)
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RunStoreError, match="not a readable SQLite database"):
        load_runs(tmp_path)


def test_unknown_schema_version_and_wrong_paths(tmp_path):
    make_run(tmp_path).close()
    con = sqlite3.connect(tmp_path / "runs.db")
    with con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    con.close()
    with pytest.raises(RunStoreError, match="schema version"):
        load_runs(tmp_path)
    with pytest.raises(RunDirError, match="neither a runs folder"):
        load_runs(tmp_path / "nowhere")


def _as_old_store(path, version: str) -> None:
    """Turn a store into what an older fedforge wrote: 0-based rounds, an older schema number."""
    con = sqlite3.connect(path)
    with con:
        for table in ("rounds", "client_rounds", "domain_rounds", "metrics", "events"):
            con.execute(f"UPDATE {table} SET round = round - 1 WHERE round IS NOT NULL")
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    con.close()


def test_version_one_stores_are_upgraded_in_place(tmp_path):
    make_run(tmp_path).close()
    _as_old_store(tmp_path / "runs.db", "1")
    con = sqlite3.connect(tmp_path / "runs.db")
    with con:
        con.execute("DROP TABLE domain_rounds")
    con.close()
    assert [r["round"] for r in load_rounds(tmp_path)] == [1, 2, 3]  # old rows readable, renumbered
    con = sqlite3.connect(tmp_path / "runs.db")
    assert con.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    assert con.execute("SELECT COUNT(*) FROM domain_rounds").fetchone()[0] == 0
    con.close()


def test_version_three_rounds_become_one_based_once(tmp_path):
    make_run(tmp_path).close()
    _as_old_store(tmp_path / "runs.db", "3")
    for _ in range(2):  # the second open finds version 4 and shifts nothing
        assert [r["round"] for r in load_rounds(tmp_path)] == [1, 2, 3]
        assert {(e["round"], e["kind"]) for e in load_events(tmp_path)} == {
            (1, "dropout"),
            (2, "dropout"),
            (3, "dropout"),
        }
        assert {m["round"] for m in load_metrics(tmp_path)} == {1, 2, 3}


def test_runs_sharing_a_new_store_can_open_it_at_the_same_time(tmp_path):
    """Parallel runs racing to create one runs.db wait for the lock instead of failing."""
    import threading

    errors = []

    def open_and_write(folder, i):
        try:
            store = RunStore(folder / "runs.db", f"r{i}")
            store.start(f"r{i}", str(folder / f"r{i}"), CONFIG)
            store.log_round(record(0))
            store.close()
        except Exception as err:  # collected, asserted below
            errors.append(err)

    for attempt in range(5):  # the race is timing-dependent: try it on several fresh stores
        folder = tmp_path / str(attempt)
        threads = [threading.Thread(target=open_and_write, args=(folder, i)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(load_runs(folder)) == 8
