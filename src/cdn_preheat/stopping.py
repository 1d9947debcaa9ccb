"""Stopping on Ctrl-C and SIGTERM: one process-wide event that every wait honours.

The CLI turns the first SIGINT or SIGTERM into :data:`STOP`; the scheduler, the
tracker, the rate limiter and the ledger's reconnect backoff all wait on an
event instead of sleeping, so the run winds down at once: batches in flight are
settled, nothing more is claimed, and the command prints its summary and exits
130. A second signal raises ``KeyboardInterrupt`` at once (what is still in
flight stays reserved until its lease expires; the next run reconciles it).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

STOP = threading.Event()
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def sleep(seconds: float, stop: threading.Event | None = None) -> bool:
    """Sleep up to ``seconds``; True (at once) when ``stop`` (default :data:`STOP`) is set."""
    return (stop or STOP).wait(max(0.0, seconds))


@contextlib.contextmanager
def on_signals(notice: str | None = None) -> Iterator[threading.Event]:
    """Within the block, SIGINT/SIGTERM set :data:`STOP` (cleared on entry), which it yields.

    ``notice`` is written to stderr at the first signal. Outside the main thread
    signals cannot be caught: the block then runs with :data:`STOP` alone.
    """
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if STOP.is_set():
            raise KeyboardInterrupt
        STOP.set()
        if notice:
            sys.stderr.write(f"{notice}\n")
            sys.stderr.flush()

    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield STOP
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
