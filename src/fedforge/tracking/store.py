"""SQLite run store: `<runs_dir>/runs.db`, shared by every run stored in that folder.

Schema (version 4; `meta.schema_version` says which one a file has; older files are upgraded
in place on open: the tables they lack are added, and version 1-3 round numbers, 0-based then,
are shifted to today's 1-based ones):

Every `round` column holds the 1-based round number users see in the progress bar, events,
reports and plots (round 1 is the first).

- `runs`: one row per run. `run_id` (= the run directory's name), `name`, `run_dir`,
  `algorithm`, `dataset`, `model`, `seed`, `config` (resolved config, JSON), `status`
  (running | finished | failed | interrupted), `started_at`, `finished_at` (Unix seconds), `summary`
  (summary.json's content, JSON).
- `rounds`: one row per completed round. `global_accuracy`, `global_loss`,
  `personalized_mean`, `personalized_worst10` (NULL on rounds without evaluation),
  `train_loss`, `num_clients` (reporting), `num_rejected`, `bytes_down`, `bytes_up`,
  `train_seconds`, `seconds`.
- `client_rounds`: one row per (round, client) that trained (`trained` = 1: samples,
  loss, seconds, bytes) or was evaluated (`test_accuracy` on its local test split).
- `domain_rounds`: multi-domain sets, one row per (evaluated round, domain): `domain`,
  `accuracy` (mean over the domain's clients of their model's accuracy on its test set).
- `metrics`: further named scalars, one row per (round, client or NULL, name): global ones
  from evaluation (e.g. `knn_accuracy`, `finetune_0.01_accuracy` for SSL; `client_id`
  NULL) and per-client ones a method reports (e.g. FedEMA's `divergence`, `ema_decay`).
- `events`: `round`, `client_id`, `kind` (rejected_update | client_failed | dropout |
  resume | checkpoint_skipped), `reason`, `at`.

The database runs in WAL mode; each round is written in one transaction, so a crash
leaves whole rounds only. On resume, rows after the restored checkpoint are deleted
before those rounds run again, so every round is stored exactly once.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from fedforge.engine.federation import RoundRecord
from fedforge.errors import RunStoreError

SCHEMA_VERSION = 4
UPGRADABLE = {1, 2, 3}  # older versions that an upgrade brings to SCHEMA_VERSION
ZERO_BASED = {1, 2, 3}  # versions whose round columns counted from 0
ROUND_TABLES = ("rounds", "client_rounds", "domain_rounds", "metrics", "events")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, name TEXT NOT NULL, run_dir TEXT NOT NULL,
    algorithm TEXT, dataset TEXT, model TEXT, seed INTEGER, config TEXT NOT NULL,
    status TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL, summary TEXT
);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL, round INTEGER NOT NULL,
    global_accuracy REAL, global_loss REAL, personalized_mean REAL, personalized_worst10 REAL,
    train_loss REAL, num_clients INTEGER, num_rejected INTEGER,
    bytes_down INTEGER, bytes_up INTEGER, train_seconds REAL, seconds REAL,
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS client_rounds (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, client_id INTEGER NOT NULL,
    trained INTEGER NOT NULL, num_samples INTEGER, train_loss REAL, seconds REAL,
    bytes_down INTEGER, bytes_up INTEGER, test_accuracy REAL,
    PRIMARY KEY (run_id, round, client_id)
);
CREATE TABLE IF NOT EXISTS domain_rounds (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, domain TEXT NOT NULL, accuracy REAL,
    PRIMARY KEY (run_id, round, domain)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, round INTEGER NOT NULL, client_id INTEGER, name TEXT NOT NULL, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, round);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, round INTEGER, client_id INTEGER, kind TEXT NOT NULL,
    reason TEXT, at REAL NOT NULL
);
"""


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def connect(path: str | Path, create: bool = False, wait_seconds: float = 60.0) -> sqlite3.Connection:
    """Open runs.db, checking that it is an intact fedforge store of a known schema.

    Several runs may share one runs.db (parallel experiments): while another process holds
    the lock (e.g. both create the file at once), opening waits and retries instead of
    failing; only a real format problem is reported as corruption.
    """
    path = Path(path)
    if not create and not path.is_file():
        raise RunStoreError(f"run store '{path}' does not exist; is this the runs folder of a fedforge run?")
    deadline, delay = time.monotonic() + wait_seconds, 0.02
    while True:
        try:
            return _open(path, create)
        except sqlite3.OperationalError as err:
            busy = "locked" in str(err) or "busy" in str(err)
            if not busy or time.monotonic() > deadline:
                raise RunStoreError(f"run store '{path}' cannot be opened ({err})") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except sqlite3.DatabaseError as err:
            raise RunStoreError(
                f"run store '{path}' is not a readable SQLite database ({err}); restore it from a copy or delete it"
            ) from None


def _open(path: Path, create: bool) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: atomic rounds, no fsync per round
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise RunStoreError(f"run store '{path}' is corrupt ({check}); restore it from a copy or delete it")
        if create:
            with db:
                db.executescript(SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) in UPGRADABLE:
            with db:  # the new tables; then, in one transaction, renumbered rounds and the new version
                db.executescript(SCHEMA)
                if int(row[0]) in ZERO_BASED:
                    _renumber_rounds(db)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            row = (str(SCHEMA_VERSION),)
    except BaseException:
        db.close()
        raise
    version = int(row[0]) if row else None
    if version != SCHEMA_VERSION:
        db.close()
        raise RunStoreError(f"run store '{path}' has schema version {version}; this fedforge reads {SCHEMA_VERSION}")
    return db


def _renumber_rounds(db: sqlite3.Connection) -> None:
    """Shift 0-based round numbers to 1-based; through negatives, so no (run, round) key collides."""
    for table in ROUND_TABLES:
        db.execute(f"UPDATE {table} SET round = -(round + 1) WHERE round IS NOT NULL")
        db.execute(f"UPDATE {table} SET round = -round WHERE round IS NOT NULL")


class RunStore:
    """Writes one run's rows; a RoundSink."""

    def __init__(self, path: str | Path, run_id: str) -> None:
        self.path, self.run_id = Path(path), run_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.path, create=True)

    def start(self, name: str, run_dir: str, config: dict[str, Any]) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO runs (run_id, name, run_dir, algorithm, dataset, model, seed, config, status, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                (
                    self.run_id,
                    name,
                    run_dir,
                    config["algorithm"]["name"],
                    config["data"]["name"],
                    config["model"]["name"],
                    config["seed"],
                    json.dumps(config),
                    time.time(),
                ),
            )

    def resume(self, last_round: int, reason: str) -> None:
        """Forget rounds after round number `last_round` (they will run again) and record the
        resume at the first of them."""
        with self.db:
            if self.db.execute("SELECT 1 FROM runs WHERE run_id = ?", (self.run_id,)).fetchone() is None:
                raise RunStoreError(f"run store '{self.path}' has no run '{self.run_id}' to resume")
            for table in ("rounds", "client_rounds", "domain_rounds", "metrics"):
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ? AND round > ?", (self.run_id, last_round))
            self.db.execute(
                "DELETE FROM events WHERE run_id = ? AND round > ? AND kind != 'resume'", (self.run_id, last_round)
            )
            self.db.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = ?", (self.run_id,))
            self.db.execute(
                "INSERT INTO events VALUES (?, ?, NULL, 'resume', ?, ?)",
                (self.run_id, last_round + 1, reason, time.time()),
            )

    def log_event(self, round_index: int | None, client_id: int | None, kind: str, reason: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                (self.run_id, round_index, client_id, kind, reason, time.time()),
            )

    def log_round(self, record: RoundRecord) -> None:
        ev = record.eval
        with self.db:
            self.db.execute(
                "INSERT INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.run_id,
                    record.number,
                    _num(ev.accuracy) if ev else None,
                    _num(ev.loss) if ev else None,
                    ev.personalized_mean if ev else None,
                    ev.personalized_worst10 if ev else None,
                    _num(record.train_loss),
                    len(record.clients),
                    len(record.rejected),
                    record.bytes_down,
                    record.bytes_up,
                    record.train_seconds,
                    record.seconds,
                ),
            )
            accuracy = (ev.client_accuracy if ev else None) or []
            rows = {
                c.client_id: [
                    self.run_id,
                    record.number,
                    c.client_id,
                    int(c.trained),
                    c.num_samples,
                    _num(c.train_loss),
                    c.seconds,
                    c.bytes_down,
                    c.bytes_up,
                    None,
                ]
                for c in record.clients
            }
            for cid, acc in enumerate(accuracy):
                blank = [self.run_id, record.number, cid, 0, None, None, None, None, None, None]
                rows.setdefault(cid, blank)[9] = _num(acc)
            self.db.executemany("INSERT INTO client_rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(rows.values()))
            domains = (ev.domain_accuracy if ev else None) or {}
            self.db.executemany(
                "INSERT INTO domain_rounds VALUES (?, ?, ?, ?)",
                [(self.run_id, record.number, name, _num(acc)) for name, acc in domains.items()],
            )
            metrics = [(None, name, value) for name, value in ((ev.extra if ev else None) or {}).items()]
            metrics += [(None, name, value) for name, value in record.metrics.items()]
            metrics += [(c.client_id, name, value) for c in record.clients for name, value in c.metrics.items()]
            self.db.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
                [(self.run_id, record.number, cid, name, _num(float(value))) for cid, name, value in metrics],
            )
            self.db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                [(self.run_id, record.number, cid, kind, reason, time.time()) for cid, kind, reason in record.events],
            )

    def finish(self, summary: dict[str, Any], status: str = "finished") -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE run_id = ?",
                (status, time.time(), json.dumps(summary), self.run_id),
            )

    def close(self) -> None:
        self.db.close()
