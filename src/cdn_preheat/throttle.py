"""An async token bucket for request pacing and bandwidth caps.

The bucket is thread-safe and loop-agnostic: taking tokens is a short
critical section that returns how long to wait, and each caller sleeps on
its own event loop. One bucket can so cap several threads, each running its
own event loop (the scheduler calls providers from a thread pool).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full.

    Taking more than is available goes into debt, and the taker waits until
    the debt is paid, so over any span ``t`` at most ``burst + rate * t``
    tokens are granted. ``consumed`` counts every token granted.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self.consumed = 0.0
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, amount: float) -> float:
        """Take ``amount`` tokens now; the seconds to wait before using them."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            self.consumed += amount
            return max(0.0, -self._tokens / self.rate)

    async def take(self, amount: float = 1.0) -> None:
        """Take ``amount`` tokens, waiting until the bucket allows it."""
        delay = self.reserve(amount)
        if delay > 0:
            await self._sleep(delay)
