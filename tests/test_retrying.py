"""One retry library: the tenacity policies, their give-up, and backoffs that wake on a stop.

"Woke on the stop" is shown by what happened (how many attempts ran, which
failure came out, that the wait was on the stop event), never by a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx
import mongomock
import pytest
from pymongo.errors import AutoReconnect

from cdn_preheat.clock import utcnow
from cdn_preheat.errors import LedgerError, PlaylistError, RateLimited, Transient
from cdn_preheat.hls import ExpandOptions, fetch_playlist
from cdn_preheat.ledger.mongo import MongoLedger
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers.base import Limits, Provider, Quota, SubmitResult, TaskEntry
from cdn_preheat.ratelimit import RateLimiter, call_with_retries
from cdn_preheat.retrying import backoff_delay, jittered, retry_async, retry_call
from cdn_preheat.tracker import Tracker, TrackerOptions

BACKOFF = 0.5  # long enough that a wake-up that did not happen means another attempt


class StopDuringWait(threading.Event):
    """A stop that is set while the caller waits on it (a signal arriving mid-backoff);
    ``waited`` records every wait asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(timeout)
        self.set()
        return True


class Failing:
    """Raises ``errors`` in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _no_wait(_state: object) -> float:
    return 0.0


def test_retries_until_the_call_succeeds() -> None:
    call = Failing(Transient("a"), Transient("b"))
    assert retry_call(call, attempts=3, retry_on=Transient, wait=_no_wait) == "ok"
    assert call.calls == 3


def test_gives_up_with_the_last_failure_when_attempts_run_out() -> None:
    first, last = Transient("first"), Transient("last")
    call = Failing(first, last, Transient("never reached"))
    with pytest.raises(Transient) as caught:
        retry_call(call, attempts=2, retry_on=Transient, wait=_no_wait)
    assert caught.value is last
    assert call.calls == 2


def test_a_failure_it_does_not_retry_leaves_at_once() -> None:
    call = Failing(ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        retry_call(call, attempts=5, retry_on=Transient, wait=_no_wait)
    assert call.calls == 1


def test_a_stop_during_the_backoff_ends_the_retry_with_the_last_failure() -> None:
    stop = StopDuringWait()
    first = Transient("first")
    call = Failing(first, Transient("second"))
    with pytest.raises(Transient) as caught:
        retry_call(call, attempts=5, retry_on=Transient, wait=lambda _: BACKOFF, stop=stop)
    # The backoff waited on the stop, the stop came, and no second attempt ran.
    assert stop.waited == [BACKOFF]
    assert call.calls == 1
    assert caught.value is first


def test_a_stop_set_before_the_retry_means_no_retry() -> None:
    stop = threading.Event()
    call = Failing(Transient("first"), Transient("second"))
    retried: list[int] = []

    def before_retry(exc: BaseException, attempt: int) -> None:
        retried.append(attempt)

    stop.set()
    with pytest.raises(Transient, match="first"):
        retry_call(call, attempts=5, retry_on=Transient, wait=_no_wait, stop=stop,
                   before_retry=before_retry)  # fmt: skip
    assert (call.calls, retried) == (1, [])


def test_the_async_backoff_wakes_on_the_stop() -> None:
    stop = threading.Event()
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise Transient(f"attempt {calls}")

    def before_retry(exc: BaseException, attempt: int) -> None:
        stop.set()  # Ctrl-C arrives as the backoff begins

    async def main() -> None:
        await retry_async(call, attempts=5, retry_on=Transient, wait=lambda _: 3600.0,
                          stop=stop, before_retry=before_retry)  # fmt: skip

    with pytest.raises(Transient, match="attempt 1"):
        asyncio.run(main())
    assert calls == 1


def test_call_with_retries_takes_a_callers_own_stop() -> None:
    stop = StopDuringWait()
    call = Failing(Transient("502"), Transient("502 again"))
    with pytest.raises(Transient, match=r"^502$"):
        call_with_retries(call, RateLimiter(1000), attempts=8, stop=stop)
    assert call.calls == 1
    assert len(stop.waited) == 1 and (stop.waited[0] or 0) >= 0


def test_call_with_retries_does_not_back_off_after_a_rate_limit() -> None:
    stop = StopDuringWait()  # any wait longer than nothing would be visible here
    call = Failing(RateLimited("slow down", retry_after=0.01))
    assert call_with_retries(call, RateLimiter(1000), attempts=3, stop=stop) == "ok"
    assert call.calls == 2
    assert stop.waited == []  # the limiter holds back; the policy adds no sleep


def test_backoff_delay_is_the_jittered_policy() -> None:
    for attempt in (1, 2, 5, 12):
        bound = min(10.0, 0.2 * 2 ** (attempt - 1))
        assert all(0 <= backoff_delay(attempt) <= bound for _ in range(50))
    assert jittered(1.0, 2.0) is not jittered(1.0, 2.0)  # a fresh policy each time


def test_a_playlist_fetch_backoff_wakes_on_the_stop() -> None:
    stop = threading.Event()
    requests = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        stop.set()  # the stop comes while the first answer is on its way
        return httpx.Response(503)

    options = ExpandOptions(retries=3, retry_backoff=3600.0, stop=stop)

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            await fetch_playlist(client, "https://origin.example.com/v.m3u8", options)

    with pytest.raises(PlaylistError, match=r"HTTP 503 after 1 attempt$"):
        asyncio.run(main())
    assert requests == 1


def test_a_playlist_fetch_still_retries_without_a_stop() -> None:
    requests = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        return httpx.Response(503)

    options = ExpandOptions(retries=2, retry_backoff=0.0, stop=threading.Event())

    async def main() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            await fetch_playlist(client, "https://origin.example.com/v.m3u8", options)

    with pytest.raises(PlaylistError, match=r"HTTP 503 after 3 attempts$"):
        asyncio.run(main())
    assert requests == 3


def test_the_mongo_reconnect_backoff_wakes_on_the_ledgers_stop() -> None:
    stop = StopDuringWait()
    ledger = MongoLedger(mongomock.MongoClient(), retries=3, backoff=BACKOFF, stop=stop)
    calls = 0

    def dropped(*args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        raise AutoReconnect("connection closed")

    ledger.videos.find_one = dropped  # type: ignore[method-assign]
    with pytest.raises(LedgerError, match="unreachable after 1 attempt "):
        ledger.get_video("v1")
    assert stop.waited == [BACKOFF]
    assert calls == 1


def test_a_tracker_status_backoff_wakes_on_the_followers_stop(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    provider = ProviderDown()
    ledger.record_task(
        "t-1", provider.name, provider.area, "push", 1, utcnow() - dt.timedelta(minutes=5)
    )
    stop = StopDuringWait()
    tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=0.01))
    try:
        # Whether a status API that stays down ends the follow is the tracker's own rule.
        with contextlib.suppress(Transient):
            tracker.follow(stop=stop)
    finally:
        ledger.close()
    # One status call, then its retry backoff waited on the follower's stop, which came:
    # no second call (without the stop the status call is retried STATUS_ATTEMPTS times).
    assert provider.status_calls == 1
    assert stop.waited and stop.waited[0] is not None and stop.waited[0] > 0


class ProviderDown(Provider):
    """A provider whose status API answers nothing but transient failures."""

    name, area = "down", "everywhere"
    limits = Limits(batch_size=1, requests_per_second=1000, purge_batch_size=1,
                    purge_dir_batch_size=1)  # fmt: skip

    def __init__(self) -> None:
        self.status_calls = 0

    def quota(self) -> Quota:
        return Quota(self.area, None, None)

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        raise NotImplementedError

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        self.status_calls += 1
        raise Transient("the status API is down")

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        return {}

    def purge_urls(self, urls: Sequence[str]) -> str:
        raise NotImplementedError

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        raise NotImplementedError

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        raise NotImplementedError
