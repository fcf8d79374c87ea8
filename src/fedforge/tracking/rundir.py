"""The run directory `runs/<name>/`: resolved config, partition, summary and final model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from fedforge.errors import RunDirError


def create_run_dir(runs_dir: str | Path, name: str | None, default_name: str) -> Path:
    """A fresh directory; an existing name gets a numeric suffix instead of being overwritten."""
    base = Path(runs_dir)
    for parent in (base, *base.parents):
        if parent.exists() and not parent.is_dir():
            raise RunDirError(
                f"tracking.runs_dir='{runs_dir}': '{parent}' is a file, not a folder; point runs_dir at a folder"
            )
    stem = name or f"{default_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1000):
        path = base / (stem if attempt == 0 else f"{stem}-{attempt + 1}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise RunDirError(f"tracking.runs_dir='{runs_dir}': cannot create '{path}' ({err.strerror})") from None
    raise RunDirError(f"1000 runs named '{stem}' exist under '{base}'; pick another tracking.name")


def write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file + rename), so readers never see half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
