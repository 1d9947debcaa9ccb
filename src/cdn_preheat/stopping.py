"""Stopping on Ctrl-C and SIGTERM: one process-wide event that every wait honours.

The CLI turns the first SIGINT or SIGTERM into :data:`STOP`; the scheduler, the
tracker, the rate limiter and the ledger's reconnect backoff all wait on an
event instead of sleeping, so the run winds down at once: batches in flight are
settled, nothing more is claimed, and the command prints its summary and exits
130. A second signal ends the process at once (``os._exit(130)``: what is still
in flight stays reserved until its lease expires; the next run reconciles it).

A library caller stops a run with an event of its own (``Preheater.drain(stop=)``).
While the run lasts it is *bound* (:func:`bound`): setting :data:`STOP` (a
signal) sets it too, and the waits that are not handed a stop (the rate
limiter's, a provider's page retries, the ledger's reconnect backoff) wake on
the run's event, found through :func:`current` (a context variable, so that a
worker thread binds the run it works for). Every wait thus ends on both the
caller's stop and the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from types import FrameType
from typing import TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)

# How often an async wait looks at a threading.Event it cannot await.
ASYNC_POLL_SECONDS = 0.05


class _Signal(threading.Event):
    """:data:`STOP`: setting it also sets every event bound to a run (see :func:`bound`)."""

    def __init__(self) -> None:
        super().__init__()
        self._bound: dict[threading.Event, int] = {}
        self._bound_lock = threading.Lock()  # never taken by set(): it runs in signal handlers

    def set(self) -> None:
        super().set()
        for event in list(self._bound):  # a copy: binding may go on in other threads
            event.set()

    def _bind(self, event: threading.Event) -> None:
        with self._bound_lock:
            self._bound[event] = self._bound.get(event, 0) + 1

    def _unbind(self, event: threading.Event) -> None:
        with self._bound_lock:
            left = self._bound.pop(event, 1) - 1
            if left:
                self._bound[event] = left


STOP = _Signal()
_CURRENT: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "cdn_preheat_stop", default=None
)


class Stopped(Exception):
    """The stop was set while :func:`until_stopped` waited."""


def current() -> threading.Event:
    """The stop of the run this thread (or task) works for (:func:`bound`), else :data:`STOP`."""
    return _CURRENT.get() or STOP


@contextlib.contextmanager
def bound(
    stop: threading.Event | None = None, *, also: Iterable[threading.Event | None] = ()
) -> Iterator[threading.Event]:
    """Work for the run that ``stop`` ends, within the block; yields the run's event.

    ``stop`` None: the run already bound here (:func:`current`), else a new
    event. A signal (:data:`STOP`) sets the event (and each event of ``also``,
    such as a worker's wake-up) while the block lasts, and waits that are
    given no stop wake on it.
    """
    event = stop or _CURRENT.get() or threading.Event()
    linked = [e for e in dict.fromkeys([event, *also]) if e is not None and e is not STOP]
    token = _CURRENT.set(event)
    for each in linked:
        STOP._bind(each)
    try:
        yield event
    finally:
        for each in linked:
            STOP._unbind(each)
        _CURRENT.reset(token)


def sleep(seconds: float, stop: threading.Event | None = None) -> bool:
    """Sleep up to ``seconds``; True (at once) when ``stop`` (default :func:`current`) is set."""
    return (stop or current()).wait(max(0.0, seconds))


async def until_stopped(awaitable: Awaitable[T], stop: threading.Event | None = None) -> T:
    """``awaitable``'s result; once ``stop`` (default :func:`current`) is set it is
    cancelled and :class:`Stopped` raised (the event is looked at every 50 ms)."""
    event = stop or current()
    task = asyncio.ensure_future(awaitable)
    try:
        while not event.is_set():
            done, _ = await asyncio.wait({task}, timeout=ASYNC_POLL_SECONDS)
            if done:
                return task.result()
        if task.done():
            return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    raise Stopped


async def each_until_stopped(
    stream: AsyncIterator[T], stop: threading.Event | None = None
) -> AsyncIterator[T]:
    """The items of ``stream``; once ``stop`` is set, :class:`Stopped` (see
    :func:`until_stopped`). ``stream`` is closed either way (an async generator's
    ``aclose``: its clients and tasks are released)."""
    try:
        while True:
            try:
                item = await until_stopped(anext(stream), stop)
            except StopAsyncIteration:
                return
            yield item
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


@contextlib.contextmanager
def on_signals(notice: str | None = None) -> Iterator[threading.Event]:
    """Within the block, SIGINT/SIGTERM set :data:`STOP` (cleared on entry and exit), which
    it yields.

    ``notice`` is written to stderr at the first signal. Outside the main thread
    signals cannot be caught: the block then runs with :data:`STOP` alone.
    """
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        try:
            yield STOP
        finally:
            STOP.clear()
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if STOP.is_set():
            # The second signal: quit now. A KeyboardInterrupt would not: the
            # interpreter still joins the pushing threads, whose calls may take a
            # whole API deadline. What they hold stays reserved until its lease
            # expires, and the next run reconciles it.
            with contextlib.suppress(Exception):
                if sys.stderr.isatty():
                    sys.stderr.write("\x1b[?25h\n")  # a progress bar hid the cursor
            sys.stderr.write(
                "interrupted again: quitting now; the batches in flight stay reserved until"
                " their lease (CDN_PREHEAT_LEASE_SECONDS) expires.\n"
            )
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(130)
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
        # A stop outlives no block: a later run in this process starts afresh.
        STOP.clear()
