"""Exception hierarchy: every error a user can cause derives from FedforgeError.

The CLI turns a FedforgeError into a one-paragraph message and exit code 2, so each
message must say what is wrong (naming the field or file) and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FedforgeError(Exception):
    """Base class for errors caused by input (config, data, updates), not by bugs."""


class ConfigError(FedforgeError):
    """A configuration value is missing, unknown, of the wrong type or inconsistent."""


class UnknownNameError(ConfigError):
    """A registry lookup (dataset, model, algorithm, ...) named something not registered."""


class DatasetNotFound(FedforgeError):
    """A dataset's files are not where the config says they are."""


class DatasetFormatError(FedforgeError):
    """A dataset file exists but does not have the expected on-disk format."""


class PartitionError(ConfigError):
    """The requested partition cannot be built from this dataset."""


class InvalidUpdate(FedforgeError):
    """A client update failed validation (shape, dtype, non-finite values, norm bound)."""


class CheckpointError(FedforgeError):
    """No usable checkpoint: every candidate is missing, truncated or corrupt."""


class RunStoreError(FedforgeError):
    """The SQLite run store (runs.db) is unreadable, corrupt or of an unknown schema."""


class RunDirError(FedforgeError):
    """A path given as a run directory is not one (no config.yaml, or unreadable files)."""


class RunInterrupted(KeyboardInterrupt):
    """The user stopped a run (Ctrl-C): it is stored as `interrupted` and can be resumed.

    A KeyboardInterrupt, so code that stops on Ctrl-C (notebooks, scripts) still stops; it
    also says how far the run got and the command that continues it."""

    def __init__(self, run_dir: str, completed: int, rounds: int, checkpointed: int | None) -> None:
        self.run_dir, self.completed, self.rounds, self.checkpointed = run_dir, completed, rounds, checkpointed
        super().__init__(self.message())

    def message(self) -> str:
        import shlex

        where = f"interrupted during round {self.completed + 1} of {self.rounds} ({self.completed} completed)"
        if self.checkpointed is None:
            saved = "no checkpoint was written yet, so resuming starts again from round 1"
        else:
            saved = f"the last checkpoint holds round {self.checkpointed}"
        return f"{where}; {saved}.\nresume with: fedforge resume {shlex.quote(str(self.run_dir))}"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
