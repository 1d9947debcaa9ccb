"""A thread-safe pacing limiter and a backoff schedule."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from cdn_preheat.errors import ProviderError, RateLimited, Transient

T = TypeVar("T")


class RateLimiter:
    """Spaces calls at least ``1/rate`` seconds apart across all threads.

    Pacing (rather than a bursty bucket) keeps every one-second window under
    the provider's limit, so a well-behaved run never earns a rate-limit
    answer.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        delay = start - now
        if delay > 0:
            time.sleep(delay)

    def penalise(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the provider said slow down)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def backoff_delay(attempt: int, *, base: float = 0.2, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter for the ``attempt``-th retry (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def call_with_retries(
    call: Callable[[], T],
    limiter: RateLimiter,
    *,
    attempts: int,
    on_retry: Callable[[ProviderError], None] | None = None,
) -> T:
    """Pace ``call`` and retry it on rate-limit and transient answers.

    Only for calls that are safe to repeat (queries, not submissions).
    """
    for attempt in range(1, attempts + 1):
        limiter.acquire()
        try:
            return call()
        except (RateLimited, Transient) as exc:
            if attempt == attempts:
                raise
            if on_retry is not None:
                on_retry(exc)
            if isinstance(exc, RateLimited):
                limiter.penalise(exc.retry_after or backoff_delay(attempt))
            else:
                time.sleep(backoff_delay(attempt))
    raise AssertionError("unreachable: attempts must be >= 1")
