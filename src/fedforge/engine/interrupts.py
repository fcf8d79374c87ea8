"""Keep a round's bookkeeping whole under Ctrl-C.

A round is logged (runs.db, sinks) and then checkpointed. A SIGINT between the two would leave
the store saying the round completed while the newest checkpoint holds the one before, so the
resume command and the run's record would disagree. Inside `deferred_interrupt()` a SIGINT is
noted and delivered to the previous handler when the block ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold SIGINT until the block ends (a no-op off the main thread, where no signal arrives)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, FrameType | None]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])
        elif caught and previous == signal.SIG_DFL:
            raise KeyboardInterrupt
