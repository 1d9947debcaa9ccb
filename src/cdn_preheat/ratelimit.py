"""A thread-safe pacing limiter and a backoff schedule."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from cdn_preheat.errors import ProviderError, RateLimited, Transient

T = TypeVar("T")

MAX_MARGIN = 0.25  # how far penalise() widens the window


class RateLimiter:
    """At most ``rate`` calls in any one-second window, across all threads.

    Providers count requests in a sliding second (the sandbox emulators do
    exactly that), so this keeps a log of the last ``rate`` release times and
    lets a call go when the call ``rate`` places before it went out more than
    ``1 + margin`` seconds ago. Compared with spacing calls exactly ``1/rate``
    apart, which it replaced:

    - the window is checked against when calls *actually* went out (a thread
      that woke late pushes the calls a second after it back), so a late
      wake-up can no longer put ``rate + 1`` requests into one of the
      provider's windows and earn a rate-limit answer;
    - ``margin`` (4 % by default) absorbs what happens between release and
      arrival (request signing, the network, the server's own scheduling);
      every :meth:`penalise` widens it by 2 points, up to 25 %, so a link
      with more jitter than that stops earning rate-limit answers;
    - the first ``rate`` calls need not wait, which wins back on a run of
      any length what the margin costs in steady state.

    A fractional ``rate`` (``2.5``) allows ``floor(rate)`` calls per
    ``floor(rate) / rate`` seconds.
    """

    def __init__(self, rate: float, *, margin: float = 0.04) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if margin < 0:
            raise ValueError("margin must not be negative")
        self._burst = max(1, int(rate))
        self._period = self._burst / rate
        self._margin = margin
        self._window = self._period * (1.0 + margin)
        # Release times, oldest first; each a one-item list so the thread that
        # owns it can correct it to when it really woke up.
        self._log: deque[list[float]] = deque(maxlen=self._burst)
        self._hold_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._hold_until)
            if len(self._log) == self._burst:
                start = max(start, self._log[0][0] + self._window)
            slot = [start]
            self._log.append(slot)
        delay = start - now
        if delay > 0:
            time.sleep(delay)
            woke = time.monotonic()
            if woke > start:
                with self._lock:
                    slot[0] = woke

    def penalise(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the provider said slow down)."""
        with self._lock:
            self._hold_until = max(self._hold_until, time.monotonic() + seconds)
            self._margin = min(self._margin + 0.02, MAX_MARGIN)
            self._window = self._period * (1.0 + self._margin)


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
