"""The pacing limiter: no one-second window ever holds more than ``rate`` calls.

These check an upper bound on how many calls are released, which a slow
machine can only make easier to meet (a sleep never returns early); nothing
asserts how fast anything ran.
"""

from __future__ import annotations

import threading
import time

import pytest

from cdn_preheat.errors import RateLimited, Transient
from cdn_preheat.ratelimit import RateLimiter, call_with_retries


def _release_times(limiter: RateLimiter, calls: int, threads: int) -> list[float]:
    stamps: list[float] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        for _ in range(count):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    pool = [threading.Thread(target=worker, args=(calls // threads,)) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sorted(stamps)


@pytest.mark.parametrize("rate", [20, 200])
def test_no_window_of_a_second_holds_more_than_rate_calls(rate: int) -> None:
    stamps = _release_times(RateLimiter(rate), calls=2 * rate + rate // 2, threads=4)
    # Any rate+1 consecutive releases span at least a second.
    spans = [stamps[i + rate] - stamps[i] for i in range(len(stamps) - rate)]
    assert min(spans) >= 1.0


def test_penalise_holds_every_caller_back() -> None:
    limiter = RateLimiter(1000)
    limiter.penalise(0.3)
    before = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - before >= 0.3


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)


def test_call_with_retries_retries_rate_limits_and_transients_then_gives_up() -> None:
    answers: list[Exception | str] = [RateLimited("slow", retry_after=0.01), Transient("502"), "ok"]
    seen: list[str] = []

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    result = call_with_retries(
        call, RateLimiter(1000), attempts=3, on_retry=lambda exc: seen.append(type(exc).__name__)
    )
    assert result == "ok"
    assert seen == ["RateLimited", "Transient"]

    def always_down() -> str:
        raise Transient("still down")

    with pytest.raises(Transient, match="still down"):
        call_with_retries(always_down, RateLimiter(1000), attempts=2)
