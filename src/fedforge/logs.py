"""Console logging: fedforge's own lines at the chosen level, third-party INFO chatter off.

Libraries such as MLflow attach their own INFO handlers when imported (table migrations,
"Creating initial MLflow database tables..."): by default those never reach the console;
`--log-level debug` lets everything through.
"""

from __future__ import annotations

import logging

LEVELS = ("debug", "info", "warning", "error")
THIRD_PARTY = ("mlflow", "alembic", "urllib3", "ray", "grpc", "PIL", "matplotlib")
_third_party_level = logging.WARNING


def configure(level: str = "warning") -> None:
    """Set up the console once for the CLI: `level` for fedforge, at least WARNING for others
    (unless debug)."""
    global _third_party_level
    numeric = getattr(logging, level.upper())
    _third_party_level = logging.DEBUG if numeric == logging.DEBUG else max(numeric, logging.WARNING)
    logging.basicConfig(level=_third_party_level, format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("fedforge").setLevel(numeric)
    quiet_third_party()


def quiet_third_party() -> None:
    """Re-apply the third-party level; called after importing a library that configures its own
    loggers on import (MLflow does)."""
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(_third_party_level)
