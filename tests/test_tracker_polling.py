"""Status polling by time window: few status calls per URL pushed, pages retried alone.

Against the Tencent emulator, which counts every call per API; the figures
asserted are the emulator's counts, never how long anything took.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdn_preheat.config import Settings
from cdn_preheat.ledger.base import QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.pipeline import RunOptions, run_queue
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.ratelimit import RateShare
from cdn_preheat.sandbox.core import RATE_COUNTINGS, RateCounting
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import Scheduler, SchedulerOptions
from cdn_preheat.tracker import FOLLOWER_PAUSE, Tracker, TrackerOptions, TrackReport

URLS = 2000


@pytest.fixture
def box(rate_counting: RateCounting) -> Iterator[Sandbox]:
    # The origin has every URL queued: a prefetch of a missing file ends "invalid",
    # which Tencent also says of a passing 5xx, so it would be pushed once more.
    with Sandbox(
        videos=1, variants=1, segments=2600, task_delay=0.2, rate_counting=rate_counting
    ) as sandbox:
        yield sandbox


def provider_for(box: Sandbox) -> TencentProvider:
    env = {name.lower(): value for name, value in box.client_env("tencent").items()}
    return TencentProvider(Settings(_env_file=None, **env))  # type: ignore[call-arg]


def queue(box: Sandbox, ledger: SqliteLedger, count: int) -> list[str]:
    urls = [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(count)]
    now = dt.datetime.now(dt.UTC)
    items = [QueuedUrl(url, "segment") for url in urls]
    ledger.enqueue("v", "tencent", "mainland", items, now, dt.timedelta(days=1))
    return urls


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_polling_asks_at_most_one_status_call_per_500_urls(box: Sandbox, tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    queue(box, ledger, URLS)
    options = RunOptions(scheduler=SchedulerOptions(batch_size=100))
    report = run_queue(ledger, provider_for(box), options)

    counts = ledger.counts()
    assert counts.get(UrlState.SUBMITTED, 0) == 0
    assert counts.get(UrlState.DONE, 0) + counts.get(UrlState.INVALID, 0) == URLS
    assert report.submitted == URLS
    assert box.tencent.actions["PushUrlsCache"] == URLS // 100
    # 20 tasks; asked one by one, each round would cost 20 calls.
    assert box.tencent.actions["DescribePushTasks"] <= math.ceil(URLS / 500)
    assert box.tencent.rate_refusals == {}


def test_tasks_the_window_misses_are_asked_by_id(box: Sandbox, tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    queue(box, ledger, 300)
    provider = provider_for(box)
    run_queue(ledger, provider, RunOptions(wait=False, scheduler=SchedulerOptions(batch_size=100)))
    # Tencent's clock an hour off ours: every window comes back empty.
    box.clock.advance(dt.timedelta(hours=1))
    tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=0.1))
    tracked = tracker.follow()
    assert tracked.done + tracked.invalid == 300
    assert not ledger.open_tasks("tencent", "mainland")


def test_a_failed_page_is_retried_alone_not_the_whole_scan(box: Sandbox, tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    queue(box, ledger, 2500)
    provider = provider_for(box)
    run_queue(ledger, provider, RunOptions(wait=False, scheduler=SchedulerOptions(batch_size=500)))
    box.tencent.settle()
    real = provider._client.call_json
    offsets: list[int] = []
    # The emulator's injected answer goes to whichever request arrives next; with a
    # window's pages asked side by side that could be page 3. One call at a time
    # here, so the injection is page 2's (the retry rule is what is tested).
    one_at_a_time = threading.Lock()

    def second_page_fails_once(action: str, params: dict[str, Any], **kwargs: Any) -> Any:
        if action != "DescribePushTasks":
            return real(action, params, **kwargs)
        with one_at_a_time:
            offsets.append(params["Offset"])
            if params["Offset"] == 1000 and offsets.count(1000) == 1:
                box.tencent.inject("RequestLimitExceeded")
            return real(action, params, **kwargs)

    provider._client.call_json = second_page_fails_once  # type: ignore[method-assign]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    entries = provider.window_status(start, dt.datetime.now(dt.UTC))
    assert entries is not None and len(entries) == 2500
    # Page 2 again, pages 1 and 3 once (after the first, a window's pages are asked
    # side by side, so page 3 may go out before page 2's second try).
    assert sorted(offsets) == [0, 1000, 1000, 2000]
    assert offsets[0] == 0


def test_the_pages_of_a_window_are_asked_side_by_side(box: Sandbox, tmp_path: Path) -> None:
    # One page after the other, a window is read at a round trip plus a page's
    # parsing per page, under DescribePushTasks' 20 a second: the tracker fell
    # behind the pushes. Here pages 2 and 3 are answered only once both are asked.
    ledger = SqliteLedger(tmp_path / "ledger.db")
    queue(box, ledger, 2500)
    provider = provider_for(box)
    run_queue(ledger, provider, RunOptions(wait=False, scheduler=SchedulerOptions(batch_size=500)))
    box.tencent.settle()
    real = provider._client.call_json
    both_asked = threading.Barrier(2, timeout=10)
    offsets: list[int] = []

    def pages_wait_for_each_other(action: str, params: dict[str, Any], **kwargs: Any) -> Any:
        if action == "DescribePushTasks":
            offsets.append(params["Offset"])
            if params["Offset"] in (1000, 2000):
                both_asked.wait()
        return real(action, params, **kwargs)

    provider._client.call_json = pages_wait_for_each_other  # type: ignore[method-assign]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    entries = provider.window_status(start, dt.datetime.now(dt.UTC))
    assert entries is not None and len(entries) == 2500
    assert len({(e.task_id, e.url) for e in entries}) == 2500
    assert box.tencent.actions["DescribePushTasks"] == 3
    assert sorted(offsets) == [0, 1000, 2000]  # the pages went through the barrier


def test_once_pushing_is_over_the_last_second_is_read_when_its_tasks_can_be_done(
    box: Sandbox, tmp_path: Path
) -> None:
    # While pushing, a second is read a task time after it is over (tasks may still
    # be added to it until then). Once pushing is over none is, so the last second
    # is read as soon as its tasks are expected done, not up to a second later.
    ledger = SqliteLedger(tmp_path / "ledger.db")
    queue(box, ledger, 1000)
    provider = provider_for(box)
    run_queue(ledger, provider, RunOptions(wait=False, scheduler=SchedulerOptions(batch_size=500)))
    box.clock.advance(dt.timedelta(seconds=1))  # the tasks are done
    box.tencent.settle()
    tasks = ledger.open_tasks("tencent", "mainland")
    newest = max(task.created_at for task in tasks)
    lag = 0.2
    # The newest task's second is over, and its tasks have had their time; but not
    # a second (SETTLE) more beyond that.
    now = max(newest.replace(microsecond=0) + dt.timedelta(seconds=1), newest + _s(lag))
    tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=lag), clock=lambda: now)
    report = tracker._round(pushing=False)
    assert report.done == 1000
    assert not ledger.open_tasks("tencent", "mainland")
    assert box.tencent.actions["DescribePushTasks"] == 1  # one page, read once


def test_while_pushing_a_second_is_read_once_it_is_over_and_its_tasks_can_be_done(
    box: Sandbox, tmp_path: Path
) -> None:
    # The same moment while pushing goes on: the newest second may still get tasks.
    ledger = SqliteLedger(tmp_path / "ledger.db")
    queue(box, ledger, 1000)
    provider = provider_for(box)
    run_queue(ledger, provider, RunOptions(wait=False, scheduler=SchedulerOptions(batch_size=500)))
    box.tencent.settle()
    tasks = ledger.open_tasks("tencent", "mainland")
    newest = max(task.created_at for task in tasks)
    second = newest.replace(microsecond=0)
    now = max(second + dt.timedelta(seconds=1), newest + _s(0.2))
    tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=0.2), clock=lambda: now)
    tracker._round(pushing=True)
    still_open = {task.task_id for task in ledger.open_tasks("tencent", "mainland")}
    newest_second = {task.task_id for task in tasks if task.created_at >= second}
    assert newest_second and newest_second <= still_open


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_the_poller_of_several_workers_takes_their_status_budget_and_their_tasks(
    box: Sandbox, tmp_path: Path
) -> None:
    # Two workers on one account share every budget, 10 calls a second each of
    # DescribePushTasks' 20. One of them polls for both (a ledger turn): it takes
    # the status budget but the other's small part, and follows the other's tasks.
    ledger = SqliteLedger(tmp_path / "ledger.db")
    queue(box, ledger, 1000)
    pusher, poller = provider_for(box), provider_for(box)
    options = SchedulerOptions(batch_size=500, worker_id="pusher")
    run_queue(ledger, pusher, RunOptions(wait=False, scheduler=options))
    shares = [
        RateShare(ledger, "tencent", worker, provider.pacing).start()
        for worker, provider in (("pusher", pusher), ("poller", poller))
    ]
    try:
        assert poller.pacing.rate("DescribePushTasks") == 10
        pushing = threading.Event()
        pushing.set()
        rates: list[tuple[float, float]] = []
        led: list[tuple[float, float]] = []  # the rates when the poller took the lead
        tracker = Tracker(ledger, poller, TrackerOptions(poll_interval=0.1, worker_id="poller"))

        def on_round(open_tasks: int, totals: TrackReport) -> None:
            rates.append(
                (poller.pacing.rate("DescribePushTasks"), pusher.pacing.rate("DescribePushTasks"))
            )
            if rates[-1][0] > 10 and pushing.is_set():
                led.append(rates[-1])
                pushing.clear()  # the poller leads: end once the tasks are followed

        other = Tracker(ledger, pusher, TrackerOptions(poll_interval=0.1, worker_id="pusher"))
        ledger.take_turn("poll/tencent/mainland", "poller", dt.datetime.now(dt.UTC), _s(30))
        tracker.on_round = on_round
        follower = threading.Thread(target=other.follow, kwargs={"pushing": pushing})
        follower.start()
        give_up = threading.Timer(30, pushing.clear)  # a poller that never leads
        give_up.start()
        tracked = tracker.follow(pushing=pushing)
        give_up.cancel()
        follower.join()
        assert tracked.done == 1000 and not tracked.timed_out
        assert not ledger.open_tasks("tencent", "mainland")
        assert led == [(17.5, 2.5)]  # 20 - 2.5 for the poller, a quarter share else
        # Done following, both share evenly again.
        assert poller.pacing.rate("DescribePushTasks") == 10
        assert pusher.pacing.rate("DescribePushTasks") == 10
        assert box.tencent.rate_refusals == {}
    finally:
        for share in shares:
            share.stop()


def _s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


class _Pauses(threading.Event):
    """A stop event that records the pauses asked of it, and is set after ``rounds``."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.asked: list[float | None] = []
        self._rounds = rounds

    def wait(self, timeout: float | None = None) -> bool:
        self.asked.append(timeout)
        if len(self.asked) >= self._rounds:
            self.set()
        return self.is_set()


def test_a_worker_that_is_not_the_poller_looks_often_once_its_pushing_is_over(
    box: Sandbox, tmp_path: Path
) -> None:
    # It only waits for the poller to close the tasks: a poll interval between
    # looks kept it (and the run) up to that long after the poller was done.
    ledger = SqliteLedger(tmp_path / "ledger.db")
    queue(box, ledger, 500)
    provider = provider_for(box)
    run_queue(ledger, provider, RunOptions(wait=False, scheduler=SchedulerOptions(batch_size=500)))
    ledger.take_turn("poll/tencent/mainland", "the-poller", dt.datetime.now(dt.UTC), _s(60))
    tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=5.0, worker_id="me"))
    stop = _Pauses(rounds=3)
    tracker.follow(stop)
    assert len(stop.asked) == 3
    assert all(pause is not None and pause <= FOLLOWER_PAUSE for pause in stop.asked)
    assert box.tencent.actions["DescribePushTasks"] == 0  # the poller's work, not its
    assert len(ledger.open_tasks("tencent", "mainland")) == 1


def push_in_second(
    box: Sandbox, ledger: SqliteLedger, provider: TencentProvider, urls: list[str], at: dt.datetime
) -> None:
    """Push ``urls`` (500 a task) with the emulator's clock, and the ledger's, at ``at``."""
    box.clock.advance(at - box.clock.now())
    items = [QueuedUrl(url, "segment") for url in urls]
    ledger.enqueue("v", "tencent", "mainland", items, box.clock.now(), dt.timedelta(days=1))
    options = SchedulerOptions(batch_size=500)
    Scheduler(ledger, provider, options, clock=box.clock.now).drain()


def segments(box: Sandbox, first: int, count: int) -> list[str]:
    return [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(first, first + count)]


def test_while_pushing_a_task_a_window_left_open_does_not_stop_the_reading_of_later_seconds(
    box: Sandbox, tmp_path: Path
) -> None:
    # A task that a window read and left open (here a result held: Tencent "invalid"
    # may be a passing 5xx) counted towards the next page and cut it at its own
    # second, which was read already: while pushing went on no window was read
    # again. Four workers pushed 800,000 URLs with 788,500 still open at the end.
    ledger = SqliteLedger(tmp_path / "ledger.db")
    provider = provider_for(box)
    s0 = box.clock.now().replace(microsecond=0) + _s(10)
    missing = box.edge_url("/vod/demo-1/v0/seg99999.ts")  # the origin answers 404
    push_in_second(box, ledger, provider, [*segments(box, 0, 499), missing], s0)
    push_in_second(box, ledger, provider, segments(box, 500, 1000), s0 + _s(1))
    push_in_second(box, ledger, provider, segments(box, 1500, 1000), s0 + _s(2))
    box.clock.advance(_s(5))  # every task is over at the emulator
    by_second = {
        second: {t.task_id for t in ledger.open_tasks("tencent", "mainland")
                 if t.created_at.replace(microsecond=0) == s0 + _s(second)}
        for second in range(3)
    }  # fmt: skip
    assert [len(ids) for ids in by_second.values()] == [1, 2, 2]
    now = s0 + _s(6)
    tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=0.2), clock=lambda: now)
    calls = []
    for _ in range(3):
        tracker._round(pushing=True)
        calls.append(box.tencent.actions["DescribePushTasks"])
    still_open = {t.task_id for t in ledger.open_tasks("tencent", "mainland")}
    assert still_open == by_second[0]  # its invalid result is held for a while
    assert calls == [1, 2, 3]  # a page a round: the first second, then one each


@pytest.fixture
def slow_box() -> Iterator[Sandbox]:
    with Sandbox(videos=1, variants=1, segments=1000, task_delay=1.0) as sandbox:
        yield sandbox


def test_a_task_a_window_showed_still_processing_is_asked_again_by_itself(
    slow_box: Sandbox, tmp_path: Path
) -> None:
    # It was left out of the stragglers until windows had been read two seconds past
    # it (the margin for a vendor clock off ours): asked again seconds late, or never
    # while no later second was read.
    box = slow_box
    ledger = SqliteLedger(tmp_path / "ledger.db")
    provider = provider_for(box)
    s0 = box.clock.now().replace(microsecond=0) + _s(10)
    push_in_second(box, ledger, provider, segments(box, 0, 500), s0)
    push_in_second(box, ledger, provider, segments(box, 500, 500), s0 + _s(0.5))
    box.clock.advance(s0 + _s(1.2) - box.clock.now())  # the first task done, not the second
    now = s0 + _s(1.3)
    tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=0.2), clock=lambda: now)
    report = tracker._round(pushing=False)
    assert (report.done, report.still_processing) == (500, 500)
    assert box.tencent.actions["DescribePushTasks"] == 1
    box.clock.advance(_s(2))  # the second task is done too
    report = tracker.poll_once()
    assert report.done == 500
    assert not ledger.open_tasks("tencent", "mainland")
    assert box.tencent.actions["DescribePushTasks"] == 2


def test_a_poller_that_took_the_turn_over_reads_no_window_across_a_gap_between_open_tasks(
    tmp_path: Path,
) -> None:
    # It knows nothing of what the former poller read: the open tasks are all it
    # has. A window from the oldest (a result held, 20 s before the others) to the
    # newest read every log in between, closed long ago: a page per 1,000 of them.
    with Sandbox(videos=1, variants=1, segments=6000, task_delay=0.2) as box:
        ledger = SqliteLedger(tmp_path / "ledger.db")
        provider = provider_for(box)
        s0 = box.clock.now().replace(microsecond=0) + _s(10)
        missing = box.edge_url("/vod/demo-1/v0/seg99999.ts")  # the origin answers 404
        push_in_second(box, ledger, provider, [*segments(box, 0, 499), missing], s0)
        push_in_second(box, ledger, provider, segments(box, 500, 5000), s0 + _s(10))
        box.clock.advance(_s(5))
        # The former poller read them; the held result keeps the first task open.
        former_now = s0 + _s(15)
        former = Tracker(
            ledger, provider, TrackerOptions(poll_interval=0.2), clock=lambda: former_now
        )
        while former._round(pushing=False).polls:
            pass
        (held,) = ledger.open_tasks("tencent", "mainland")
        assert held.created_at < s0 + _s(1)
        push_in_second(box, ledger, provider, segments(box, 5500, 500), s0 + _s(20))
        box.clock.advance(_s(5))
        before = box.tencent.actions["DescribePushTasks"]
        now = s0 + _s(25)
        tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=0.2), clock=lambda: now)
        for _ in range(3):
            tracker._round(pushing=False)
        assert ledger.counts().get(UrlState.DONE, 0) == 499 + 5000 + 500
        assert [t.task_id for t in ledger.open_tasks("tencent", "mainland")] == [held.task_id]
        # One page around the held task, one around the new one.
        assert box.tencent.actions["DescribePushTasks"] - before == 2
