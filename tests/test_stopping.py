"""A library caller's stop ends every wait of a run, as a signal does (issue 10, item 4).

``Preheater.drain(stop=event)`` / ``preheat`` / ``work``: the event is set from
another thread while the CDN answers 5xx or rate-limit errors (or while an
origin is slow). That the run returned on the stop, and did not wait out its
retry schedule, is shown by counts: the emulator received at most the call in
flight at the stop after it, fewer than the schedule makes; never by a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdn_preheat import Preheater, stopping
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import SchedulerOptions
from scripted_origin import Reply, ScriptedOrigin

ATTEMPTS = SchedulerOptions().max_retries  # the retry schedule of a provider query


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=1, segments=20, task_delay=0.05) as sandbox:
        yield sandbox


def preheater(box: Sandbox, ledger: Path) -> Preheater:
    env = box.client_env("tencent")
    return Preheater(
        "tencent",
        credentials={
            "secret_id": env["TENCENT_SECRET_ID"],
            "secret_key": env["TENCENT_SECRET_KEY"],
        },
        ledger=str(ledger),
        cdn_host=env["CDN_HOST"],
        endpoint=env["TENCENT_ENDPOINT"],
    )


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``condition`` (a safety bound only: the tests synchronise on what happened)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.002)


class InThread:
    """``call()`` in a thread of its own; ``result()`` joins it and returns (or raises)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._outcome.append(call())
            except BaseException as exc:
                self._error.append(exc)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join(120)
        assert not self._thread.is_alive(), "the call did not return after its stop"
        if self._error:
            raise self._error[0]
        return self._outcome[0]


def test_a_stop_during_the_quota_querys_5xx_backoff_ends_the_drain(
    box: Sandbox, tmp_path: Path
) -> None:
    with preheater(box, tmp_path / "ledger.sqlite3") as engine:
        engine.queue([("demo-1", box.video_url("demo-1"))])
        box.tencent.inject("InternalError", times=10_000)  # every call from now on: a 5xx
        stop = threading.Event()
        run = InThread(lambda: engine.drain(stop=stop, follow=False))
        wait_for(lambda: box.tencent.outcomes["invalid"] >= 2)  # retrying the quota query
        stop.set()
        at_stop = box.tencent.outcomes["invalid"]
        result = run.result()

    assert result.interrupted
    assert result.submitted == 0 and result.pending > 0 and result.reserved == 0
    # The jittered backoff woke on the caller's stop: no retry after it (the call
    # in flight at most), where the schedule makes ATTEMPTS calls in all.
    calls = box.tencent.outcomes["invalid"]
    assert calls <= at_stop + 1
    assert calls < ATTEMPTS
    assert box.tencent.received() == []


def test_a_stop_while_pushes_are_refused_for_rate_ends_the_drain(
    box: Sandbox, tmp_path: Path
) -> None:
    with preheater(box, tmp_path / "ledger.sqlite3") as engine:
        engine.queue([("demo-1", box.video_url("demo-1"))])
        box.tencent.inject("RequestLimitExceeded", times=10_000)
        stop = threading.Event()
        run = InThread(lambda: engine.drain(stop=stop, follow=False))
        wait_for(lambda: box.tencent.outcomes["rate_limited"] >= 2)
        stop.set()
        at_stop = box.tencent.outcomes["rate_limited"]
        result = run.result()
        status = engine.status()

    assert result.interrupted
    # The rate limiter's hold and the retries woke on the caller's stop.
    refused = box.tencent.outcomes["rate_limited"]
    assert refused <= at_stop + 1
    assert refused < ATTEMPTS
    assert status.total.get("reserved", 0) == 0  # nothing left claimed
    assert box.tencent.received() == []


def test_a_stop_ends_the_workers_rate_limited_round_and_the_worker(
    box: Sandbox, tmp_path: Path
) -> None:
    with preheater(box, tmp_path / "ledger.sqlite3") as engine:
        engine.queue([("demo-1", box.video_url("demo-1"))])
        box.tencent.inject("RequestLimitExceeded", times=10_000)
        stop = threading.Event()
        run = InThread(lambda: engine.work(stop=stop, idle=3600))
        wait_for(lambda: box.tencent.outcomes["rate_limited"] >= 2)
        stop.set()
        at_stop = box.tencent.outcomes["rate_limited"]
        code = run.result()

    assert code == 0
    assert box.tencent.outcomes["rate_limited"] <= at_stop + 1
    assert box.tencent.received() == []


def test_a_stop_while_the_credentials_check_retries_a_5xx_ends_preheat(
    box: Sandbox, tmp_path: Path
) -> None:
    with preheater(box, tmp_path / "ledger.sqlite3") as engine:
        box.tencent.inject("InternalError", times=10_000)
        stop = threading.Event()
        run = InThread(lambda: engine.preheat("demo-1", box.video_url("demo-1"), stop=stop))
        wait_for(lambda: box.tencent.outcomes["invalid"] >= 2)  # the quota query, again
        stop.set()
        at_stop = box.tencent.outcomes["invalid"]
        result = run.result()
        status = engine.status()

    assert result.video.interrupted and result.run is not None and result.run.interrupted
    calls = box.tencent.outcomes["invalid"]
    assert calls <= at_stop + 1
    assert calls < ATTEMPTS
    assert status.videos == ()  # nothing was written


def test_a_stop_while_the_playlist_trickles_in_ends_preheat_and_queue_and_drain(
    box: Sandbox, tmp_path: Path
) -> None:
    body = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n" + "#EXTINF:4,\ns.ts\n" * 40
    with ScriptedOrigin() as origin, preheater(box, tmp_path / "ledger.sqlite3") as engine:
        origin.script("/slow.m3u8", Reply(body, drip=1.0))  # minutes to read
        slow = origin.url("/slow.m3u8")
        stop = threading.Event()
        run = InThread(lambda: engine.preheat("slow", slow, stop=stop))
        wait_for(lambda: origin.hits("/slow.m3u8") >= 1)
        stop.set()
        pushed = run.result()

        again = threading.Event()
        catalog = [("demo-1", box.video_url("demo-1")), ("slow", slow)]
        both = InThread(lambda: engine.queue_and_drain(catalog, stop=again, follow=False))
        wait_for(lambda: origin.hits("/slow.m3u8") >= 2 and len(box.tencent.received()) >= 1)
        again.set()
        videos, drained = both.result()

    assert pushed.video.interrupted and pushed.run is not None and pushed.run.interrupted
    by_id = {video.video_id: video for video in videos}
    assert by_id["slow"].interrupted and by_id["slow"].queued == 0
    assert not by_id["demo-1"].interrupted and by_id["demo-1"].queued > 0
    assert drained.interrupted
    assert drained.submitted == len(box.tencent.received_urls())


def test_a_signal_sets_the_stop_a_library_caller_passed_while_its_run_lasts(
    box: Sandbox, tmp_path: Path
) -> None:
    with preheater(box, tmp_path / "ledger.sqlite3") as engine:
        engine.queue([("demo-1", box.video_url("demo-1"))])
        box.tencent.inject("InternalError", times=10_000)
        stop = threading.Event()
        run = InThread(lambda: engine.drain(stop=stop, follow=False))
        wait_for(lambda: box.tencent.outcomes["invalid"] >= 2)
        try:
            stopping.STOP.set()  # what the CLI's handler does on SIGINT/SIGTERM
            at_stop = box.tencent.outcomes["invalid"]
            result = run.result()
        finally:
            stopping.STOP.clear()

    assert result.interrupted and stop.is_set()
    assert box.tencent.outcomes["invalid"] <= at_stop + 1


def test_a_bound_stop_is_what_unhanded_waits_wake_on() -> None:
    mine = threading.Event()
    assert stopping.current() is stopping.STOP
    with stopping.bound(mine) as run:
        assert run is mine and stopping.current() is mine
        with stopping.bound() as inner:
            assert inner is mine  # a nested run without its own stop is the same run
        seen: list[threading.Event] = []
        other = threading.Thread(target=lambda: seen.append(stopping.current()))
        other.start()
        other.join()
        assert seen == [stopping.STOP]  # a thread binds the run it works for itself
    assert stopping.current() is stopping.STOP
    stopping.STOP.set()
    try:
        assert not mine.is_set()  # no longer bound: a later signal is not this run's
    finally:
        stopping.STOP.clear()
