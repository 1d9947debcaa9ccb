"""The pacing limiter: no one-second window ever holds more than ``rate`` calls.

These check an upper bound on how many calls are released, which a slow
machine can only make easier to meet (a sleep never returns early); nothing
asserts how fast anything ran.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from pathlib import Path

import pytest

from cdn_preheat.errors import RateLimited, Transient
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.ratelimit import (
    SPREAD,
    Budget,
    Pacing,
    RateLimiter,
    RateShare,
    call_with_retries,
)


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
    # The hold runs from the penalty, so the clock starts before it (after it,
    # the few microseconds penalise takes would count against the hold).
    before = time.monotonic()
    limiter.penalise(0.3)
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


def test_units_count_against_the_window() -> None:
    # A budget counted in URLs (Qiniu: 240 a second): 60 + 60 do not fit in 100.
    limiter = RateLimiter(100)
    limiter.acquire(60)
    first = time.monotonic()
    limiter.acquire(60)
    assert time.monotonic() - first >= 0.9


def test_lowering_the_rate_keeps_what_already_went_out_in_the_window() -> None:
    limiter = RateLimiter(10)
    stamps = []
    for _ in range(10):
        limiter.acquire()
        stamps.append(time.monotonic())
    limiter.set_rate(2)  # a second worker joined: half of 4 is 2 a second each
    for _ in range(2):
        limiter.acquire()
        stamps.append(time.monotonic())
    # The calls of the last second still count: the next ones wait a window.
    assert stamps[10] - stamps[8] >= 1.0
    assert limiter.rate == 2


def test_a_late_answer_moves_the_call_later_in_the_window() -> None:
    limiter = RateLimiter(2)
    for _ in range(2):  # warm: two quick answers make the fastest round trip ~0
        limiter.acquire()()
    time.sleep(1.1)
    limiter.acquire()()
    late = limiter.acquire()
    time.sleep(0.5)  # this request left the client (and was answered) late
    late()
    answered = time.monotonic()
    limiter.acquire()
    limiter.acquire()
    # The late call counts from its answer, not its release: the second call
    # after it waits a whole window from there.
    assert time.monotonic() - answered >= 1.0


def test_pacing_keeps_one_limiter_per_budget_and_applies_cap_and_share() -> None:
    pacing = Pacing(
        {"push": Budget(20), "status": Budget(20), "urls": Budget(240, units_per_call=20)},
        {"prefetch": "urls", "refresh": "urls"},
    )
    assert pacing.limiter("push") is not pacing.limiter("status")
    assert pacing.limiter("prefetch") is pacing.limiter("refresh")
    pacing.set_cap(5)
    assert (pacing.rate("push"), pacing.rate("prefetch")) == (5, 100)
    pacing.set_share(4)
    assert (pacing.rate("push"), pacing.rate("status"), pacing.rate("refresh")) == (1.25, 1.25, 25)
    with pytest.raises(KeyError):
        pacing.acquire("nope")


def test_rate_share_divides_the_budgets_by_the_live_workers(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    joined = threading.Event()
    joined.set()  # skip the join wait: this test drives the heartbeats itself
    first = Pacing({"push": Budget(20)})
    second = Pacing({"push": Budget(20)})
    a = RateShare(ledger, "tencent", "a", first, interval=3600, settle=0).start(joined)
    assert first.rate("push") == 20
    b = RateShare(ledger, "tencent", "b", second, interval=3600, settle=0).start(joined)
    assert second.rate("push") == 10
    a._beat()
    assert first.rate("push") == 10  # slowed down at once
    b.stop()
    a._beat()
    assert first.rate("push") == 10  # b's last calls may still be in the window
    a._beat()
    assert first.rate("push") == 20
    a.stop()
    assert set(
        ledger.heartbeat("tencent", "probe", dt.datetime.now(dt.UTC), dt.timedelta(seconds=5))
    ) == {"probe"}


def test_a_stop_ends_a_limiter_wait_at_once() -> None:
    import threading

    from cdn_preheat import stopping
    from cdn_preheat.ratelimit import RateLimiter

    limiter = RateLimiter(10)
    limiter.penalise(3600)  # an hour: only the stop ends this wait
    timer = threading.Timer(0.05, stopping.STOP.set)
    timer.start()
    try:
        done = limiter.acquire()
        done()
        assert stopping.STOP.is_set()
    finally:
        timer.join()
        stopping.STOP.clear()


def test_call_with_retries_stops_retrying_once_stopped() -> None:
    import pytest

    from cdn_preheat import stopping
    from cdn_preheat.errors import Transient
    from cdn_preheat.ratelimit import call_with_retries

    calls = []

    def failing() -> None:
        calls.append(1)
        stopping.STOP.set()
        raise Transient("dropped")

    try:
        with pytest.raises(Transient):
            call_with_retries(failing, attempts=8)
    finally:
        stopping.STOP.clear()
    assert len(calls) == 1


class FakeTime:
    """A clock that moves only when the limiter sleeps: tests count windows, not seconds."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return False


def test_a_smaller_call_spends_less_of_a_budget_counted_in_units() -> None:
    pacing = Pacing({"urls": Budget(40, units_per_call=20)}, {"prefetch": "urls"})
    limiter = pacing.limiter("prefetch")
    fake = FakeTime()
    limiter._clock, limiter._sleep = fake.clock, fake.sleep
    start = fake.now
    pacing.acquire("prefetch", 5)  # a batch of 5 URLs spends 5 of the 40 a second
    pacing.acquire("prefetch", 20)
    pacing.acquire("prefetch", 15)  # 5 + 20 + 15 fit in the 40 a second
    # Only spread (SPREAD of an even spacing per unit), never a window's wait.
    assert sum(fake.sleeps) == pytest.approx(SPREAD * (20 + 15) / 40)
    pacing.acquire("prefetch", 1)
    assert fake.now - start >= limiter._window - 1e-9  # the 41st URL waits for the window


def test_a_windows_calls_are_spread_not_released_at_one_instant() -> None:
    # Released together, a window's calls arrive together: a busy API answers the
    # burst late, and the limiter, counting each late answer as a late arrival,
    # started every window that much later (4 workers lost 10-15 % of the rate).
    limiter = RateLimiter(20)
    fake = FakeTime()
    limiter._clock, limiter._sleep = fake.clock, fake.sleep
    stamps = []
    for _ in range(60):
        limiter.acquire()()
        stamps.append(fake.now)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= SPREAD / 20 - 1e-9
    assert min(gaps) >= 0.02  # an even spacing is 50 ms: never a burst
    # The spread does not set the pace: the window rule does, 20 calls a window.
    spans = [stamps[i + 20] - stamps[i] for i in range(len(stamps) - 20)]
    assert min(spans) >= limiter._window - 1e-9
    assert stamps[19] - stamps[0] == pytest.approx(19 * SPREAD / 20)  # the first window
    assert stamps[40] - stamps[0] == pytest.approx(2 * limiter._window)
