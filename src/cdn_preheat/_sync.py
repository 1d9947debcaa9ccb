"""The one place synchronous code runs a coroutine: the sync boundary.

Expansion, queueing, verification, bucket discovery and the http provider
are async at their core. Synchronous callers (the sync :class:`Preheater`,
the CLI through it, and the sync conveniences such as ``hls.expand``) go
through :func:`run_coroutine`, which also works when the calling thread
already runs an event loop (a sync API called from async code): the
coroutine then runs on a loop of its own in a worker thread, never on the
caller's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion and return its result (or raise its error)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Inside a running loop: blocking it is the caller's choice (they called a
    # sync function), but a second loop cannot run on this thread.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cdn-preheat-sync") as pool:
        return pool.submit(asyncio.run, coroutine).result()


class LoopThread:
    """An event loop of its own in a daemon thread, for a sync object with an async core.

    The http provider keeps one ``httpx.AsyncClient`` (one connection pool)
    for its lifetime: the client belongs to this loop, and every sync call,
    from any thread, runs its coroutine here (:meth:`call`). A daemon thread,
    so that an object never closed cannot keep the process from exiting;
    :meth:`close` stops it.
    """

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (or its error)."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("LoopThread.call from its own loop would wait forever")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        """Stop the loop and its thread (what is still scheduled is cancelled)."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.close()
