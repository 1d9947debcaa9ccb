"""One way to retry: tenacity policies whose backoff wakes on the stop signal.

Every retry loop of cdn-preheat (provider queries, playlist fetches, the
MongoDB reconnects) is a :mod:`tenacity` policy built here. Their sleeps wait
on a stop event (the caller's ``threading.Event``, else the run's,
:func:`cdn_preheat.stopping.current`, which a signal sets too), so Ctrl-C,
SIGTERM or a library caller's stop never waits out a backoff: the retry gives
up at once with the last failure, as if its attempts had run out.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from cdn_preheat import stopping

T = TypeVar("T")
RetryOn = type[BaseException] | tuple[type[BaseException], ...]
Wait = Callable[[RetryCallState], float]

# How often an async backoff looks at a threading.Event it cannot await.
ASYNC_STOP_POLL_SECONDS = 0.05


def jittered(base: float = 0.2, cap: float = 10.0) -> wait_base:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(n-1))) after try n."""
    return wait_random_exponential(multiplier=base, max=cap)


def doubling(first: float, cap: float = 3600.0) -> wait_base:
    """``first`` seconds after the first failure, doubled after each (no jitter)."""
    return wait_exponential(multiplier=first, exp_base=2, max=cap)


def backoff_delay(attempt: int, *, base: float = 0.2, cap: float = 10.0) -> float:
    """The :func:`jittered` wait after the ``attempt``-th failure (1-based), for loops that
    pace themselves (the scheduler's push, the worker's pauses)."""
    state = cast("RetryCallState", _Attempt(attempt))
    return float(jittered(base, cap)(state))


class _Attempt:
    """The one field tenacity's wait strategies read."""

    def __init__(self, attempt_number: int) -> None:
        self.attempt_number = attempt_number


class _Woken(Exception):
    """The stop was set while a backoff waited (private: never leaves this module)."""


def _sleeper(stop: threading.Event) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        if stop.is_set() if seconds <= 0 else stopping.sleep(seconds, stop):
            raise _Woken

    return sleep


def _async_sleeper(stop: threading.Event) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, seconds)
        while not stop.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, ASYNC_STOP_POLL_SECONDS))
        raise _Woken

    return sleep


def _policy(
    *,
    attempts: int,
    retry_on: RetryOn,
    wait: Wait,
    stop: threading.Event,
    before_retry: Callable[[BaseException, int], None] | None,
    last: list[BaseException],
) -> dict[str, Any]:
    if attempts < 1:
        raise ValueError("attempts must be >= 1")

    def before_sleep(state: RetryCallState) -> None:
        assert state.outcome is not None
        exc = state.outcome.exception()
        assert exc is not None
        last[:] = [exc]
        if before_retry is not None:
            before_retry(exc, state.attempt_number)

    return {
        # Give up after ``attempts``, or as soon as the stop is set after a failure.
        "stop": stop_after_attempt(attempts) | stop_when_event_set(stop),
        "wait": wait,
        "retry": retry_if_exception_type(retry_on),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def retry_call(
    call: Callable[[], T],
    *,
    attempts: int,
    retry_on: RetryOn,
    wait: Wait,
    stop: threading.Event | None = None,
    before_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """``call()``, retried on ``retry_on`` up to ``attempts`` tries in all, ``wait`` apart.

    Anything else ``call`` raises leaves at once. When the attempts run out, or
    ``stop`` (default :func:`stopping.current`: the run's, or the signal) is set
    after a failure or during a backoff, the last failure is raised.
    ``before_retry(exc, attempt)`` runs before each backoff (1-based: the
    attempt that just failed).
    """
    last: list[BaseException] = []
    event = stop or stopping.current()
    policy = _policy(attempts=attempts, retry_on=retry_on, wait=wait, stop=event,
                     before_retry=before_retry, last=last)  # fmt: skip
    try:
        return Retrying(sleep=_sleeper(event), **policy)(call)
    except _Woken:
        pass
    raise last[0]  # woken during the backoff that followed this failure


async def retry_async(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    retry_on: RetryOn,
    wait: Wait,
    stop: threading.Event | None = None,
    before_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """:func:`retry_call` for a coroutine function; the backoff never blocks the loop."""
    last: list[BaseException] = []
    event = stop or stopping.current()
    policy = _policy(attempts=attempts, retry_on=retry_on, wait=wait, stop=event,
                     before_retry=before_retry, last=last)  # fmt: skip
    try:
        return await AsyncRetrying(sleep=_async_sleeper(event), **policy)(call)
    except _Woken:
        pass
    raise last[0]
