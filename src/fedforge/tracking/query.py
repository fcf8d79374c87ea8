"""Read runs back: `load_runs(folder)` for tables of runs, `load_rounds` for their curves.

Works on a runs folder (holding runs.db) or on one run directory inside it. Results are
plain lists of dicts; `frame=True` returns pandas DataFrames when pandas is installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedforge.errors import RunDirError
from fedforge.tracking.store import connect


def locate(path: str | Path) -> tuple[Path, str | None]:
    """(runs.db path, run id or None) for a runs folder or a run directory."""
    path = Path(path)
    if (path / "runs.db").is_file():
        return path / "runs.db", None
    if (path / "config.yaml").is_file() and (path.parent / "runs.db").is_file():
        return path.parent / "runs.db", path.name
    raise RunDirError(
        f"'{path}' is neither a runs folder (with runs.db) nor a run directory (with config.yaml next to "
        "../runs.db); pass the folder given as tracking.runs_dir or one of its run directories"
    )


def _frame(rows: list[dict[str, Any]], frame: bool) -> Any:
    if not frame:
        return rows
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("frame=True needs pandas: pip install pandas") from None
    return pd.DataFrame(rows)


def load_runs(path: str | Path, *, frame: bool = False) -> Any:
    """Every run (or the one run) stored at `path`, newest first, with config and summary parsed.

    Each row also carries the summary's headline numbers at top level (final_accuracy,
    best_accuracy, rounds, wall_seconds, ...) for easy sorting and tabulating.
    """
    db_path, run_id = locate(path)
    db = connect(db_path)
    try:
        query = "SELECT * FROM runs" + (" WHERE run_id = ?" if run_id else "") + " ORDER BY started_at DESC"
        rows = [dict(r) for r in db.execute(query, (run_id,) if run_id else ())]
    finally:
        db.close()
    for row in rows:
        row["config"] = json.loads(row["config"])
        row["summary"] = json.loads(row["summary"]) if row["summary"] else {}
        for key in ("final_accuracy", "best_accuracy", "rounds", "wall_seconds", "bytes_up", "bytes_down"):
            row[key] = row["summary"].get(key)
    return _frame(rows, frame)


def _rows(path: str | Path, table: str, run_id: str | None, frame: bool) -> Any:
    db_path, dir_run = locate(path)
    run_id = run_id or dir_run
    db = connect(db_path)
    try:
        where = " WHERE run_id = ?" if run_id else ""
        order = {
            "rounds": " ORDER BY run_id, round",
            "client_rounds": " ORDER BY run_id, round, client_id",
            "domain_rounds": " ORDER BY run_id, round, domain",
            "metrics": " ORDER BY run_id, round, client_id, name",
        }.get(table, " ORDER BY at")
        rows = [dict(r) for r in db.execute(f"SELECT * FROM {table}{where}{order}", (run_id,) if run_id else ())]
    finally:
        db.close()
    return _frame(rows, frame)


def load_rounds(path: str | Path, run_id: str | None = None, *, frame: bool = False) -> Any:
    """Per-round metrics (one row per run and round)."""
    return _rows(path, "rounds", run_id, frame)


def load_client_rounds(path: str | Path, run_id: str | None = None, *, frame: bool = False) -> Any:
    """Per-client, per-round rows (training and local-test accuracy)."""
    return _rows(path, "client_rounds", run_id, frame)


def load_domain_rounds(path: str | Path, run_id: str | None = None, *, frame: bool = False) -> Any:
    """Per-domain accuracy at evaluated rounds (multi-domain datasets)."""
    return _rows(path, "domain_rounds", run_id, frame)


def load_metrics(path: str | Path, run_id: str | None = None, *, frame: bool = False) -> Any:
    """Further named metrics: global (client_id None, e.g. knn_accuracy) and per client (e.g. ema_decay)."""
    return _rows(path, "metrics", run_id, frame)


def load_events(path: str | Path, run_id: str | None = None, *, frame: bool = False) -> Any:
    """Events: rejected or failed updates, dropouts, resumes, skipped checkpoints."""
    return _rows(path, "events", run_id, frame)
