"""The poll turn of several workers on one account: who polls, who leads the status budget.

Against the Tencent emulator and one SQLite ledger; what is asserted is who
holds the turn, the rates each process paces at and the emulator's counts,
never how long anything took (waits are bounded only so a failure ends).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdn_preheat.config import Settings
from cdn_preheat.ledger.base import QueuedUrl
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers.base import Provider
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.ratelimit import RateShare
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import Scheduler, SchedulerOptions
from cdn_preheat.targets import PoolProvider
from cdn_preheat.tracker import TURN_RENEW, TURN_SECONDS, Tracker, TrackerOptions

TURN = "poll/tencent/mainland"
STATUS = "DescribePushTasks"
# Two workers on DescribePushTasks' 20 a second: 10 each evenly; the poller 20 - 2.5,
# the other a quarter of its share.
EVEN, LEAD, FOLLOW = 10.0, 17.5, 2.5


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=1, variants=1, segments=3000, task_delay=0.2) as sandbox:
        yield sandbox


def provider_for(box: Sandbox) -> TencentProvider:
    env = {name.lower(): value for name, value in box.client_env("tencent").items()}
    return TencentProvider(Settings(_env_file=None, **env))  # type: ignore[call-arg]


def push(box: Sandbox, ledger: SqliteLedger, provider: TencentProvider, first: int, n: int) -> None:
    urls = [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(first, first + n)]
    items = [QueuedUrl(url, "segment") for url in urls]
    ledger.enqueue("v", "tencent", "mainland", items, dt.datetime.now(dt.UTC), _s(1))
    # The scheduler alone: a run's rate share would leave (and the pusher's heartbeat
    # with it) when the run ends, changing the shares the tests look at.
    Scheduler(ledger, provider, SchedulerOptions(batch_size=500, worker_id="pusher")).drain()


def until(condition: Callable[[], bool], limit: float = 30.0) -> bool:
    """Whether ``condition`` came true (looked at every 50 ms, for at most ``limit``)."""
    ends = time.monotonic() + limit
    while not condition():
        if time.monotonic() >= ends:
            return False
        time.sleep(0.05)
    return True


def holder(ledger: SqliteLedger) -> str | None:
    """Who holds the poll turn, read from the ledger's file."""
    db = sqlite3.connect(f"file:{ledger.path}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("SELECT holder FROM turns WHERE name = ?", (TURN,)).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def _s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


class Workers:
    """Two processes' worth of providers on one account, sharing its rates."""

    def __init__(self, box: Sandbox, ledger: SqliteLedger, names: tuple[str, str]) -> None:
        self.providers = {name: provider_for(box) for name in names}
        self.shares = [
            RateShare(ledger, "tencent", name, provider.pacing).start()
            for name, provider in self.providers.items()
        ]

    def rate(self, name: str) -> float:
        return self.providers[name].pacing.rate(STATUS)

    def stop(self) -> None:
        for share in self.shares:
            share.stop()


class Following:
    """``Tracker.follow`` of one worker in a thread, with its own stop."""

    def __init__(
        self, ledger: SqliteLedger, provider: Provider, worker: str,
        pushing: threading.Event,
    ) -> None:  # fmt: skip
        options = TrackerOptions(poll_interval=0.1, worker_id=worker)
        self.tracker = Tracker(ledger, provider, options)
        self.stop = threading.Event()
        self.result: Any = None
        self.thread = threading.Thread(target=self._run, args=(pushing,), daemon=True)
        self.thread.start()

    def _run(self, pushing: threading.Event) -> None:
        self.result = self.tracker.follow(self.stop, pushing=pushing)

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def test_the_worker_that_takes_the_turn_after_the_poller_leaves_leads_the_status_budget(
    box: Sandbox, tmp_path: Path
) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    workers = Workers(box, ledger, ("first", "second"))
    pushing = threading.Event()
    pushing.set()
    try:
        assert workers.rate("first") == workers.rate("second") == EVEN
        ledger.take_turn(TURN, "first", dt.datetime.now(dt.UTC), _s(TURN_SECONDS))
        first = Following(ledger, workers.providers["first"], "first", pushing)
        second = Following(ledger, workers.providers["second"], "second", pushing)
        assert until(lambda: workers.rate("first") == LEAD)
        assert workers.rate("second") == FOLLOW
        first.end()  # its run is over: it gives the turn up
        assert until(lambda: holder(ledger) == "second")
        assert until(lambda: workers.rate("second") == LEAD)
        assert workers.rate("first") == EVEN  # done following: an even share again
        # The new poller follows what is pushed from now on, at the lead's rate.
        push(box, ledger, workers.providers["first"], 0, 1000)
        pushing.clear()
        second.thread.join(timeout=60)
        assert second.result is not None and second.result.done == 1000
        assert not ledger.open_tasks("tencent", "mainland")
        assert box.tencent.rate_refusals == {}
    finally:
        pushing.clear()
        workers.stop()


def test_a_poller_busy_in_a_long_round_keeps_the_turn_and_leaves_the_lead_when_it_loses_it(
    box: Sandbox, tmp_path: Path
) -> None:
    # The turn is renewed by a thread of the poller, not once a round: a round of
    # many pages at a shared rate outlasts a turn that a dead poller should lose soon.
    # Should the turn go to another worker all the same (the ledger unreachable for
    # half a turn, the process frozen), the former poller leaves the lead at once,
    # not when its round ends, so the two never lead together.
    ledger = SqliteLedger(tmp_path / "ledger.db")
    workers = Workers(box, ledger, ("poller", "pusher"))
    poller = workers.providers["poller"]
    client = poller._client
    real = client.call_json
    blocked, unblock = threading.Event(), threading.Event()
    returned = threading.Event()

    def a_long_round(action: str, params: dict[str, Any], **kwargs: Any) -> Any:
        if (
            action == "DescribePushTasks"
            and workers.rate("poller") == LEAD
            and not unblock.is_set()
        ):
            blocked.set()
            unblock.wait(60)
            returned.set()
        return real(action, params, **kwargs)

    client.call_json = a_long_round  # type: ignore[method-assign]
    pushing = threading.Event()
    pushing.set()
    try:
        following = Following(ledger, poller, "poller", pushing)
        assert until(lambda: workers.rate("poller") == LEAD)
        push(box, ledger, workers.providers["pusher"], 0, 1000)
        assert until(blocked.is_set)
        # Longer than a turn lasts without renewal: still the poller's.
        time.sleep(TURN_SECONDS + 2 * TURN_RENEW)
        assert not returned.is_set()
        now = dt.datetime.now(dt.UTC)
        assert not ledger.take_turn(TURN, "other", now, _s(TURN_SECONDS))
        assert holder(ledger) == "poller"
        # Taken over all the same: the poller follows while its call is still out.
        ledger.release_turn(TURN, "poller")
        assert ledger.take_turn(TURN, "other", now, _s(60))
        assert until(lambda: workers.rate("poller") == FOLLOW)
        assert not returned.is_set()
        unblock.set()
        following.end()
        assert holder(ledger) == "other"  # its release leaves the new holder's turn
        assert workers.rate("poller") == EVEN
    finally:
        unblock.set()
        pushing.clear()
        workers.stop()


KILLED_POLLER = """
import os, sys, threading
from cdn_preheat.config import Settings
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers.base import Provider
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.tracker import Tracker, TrackerOptions

env = {k[len("T_"):].lower(): v for k, v in os.environ.items() if k.startswith("T_")}
provider = TencentProvider(Settings(_env_file=None, **env))
ledger = SqliteLedger(sys.argv[1])
tracker = Tracker(ledger, provider, TrackerOptions(poll_interval=0.1, worker_id="killed"))

def on_round(open_tasks, totals):
    print("polling", flush=True)

tracker.on_round = on_round
pushing = threading.Event()
pushing.set()
tracker.follow(pushing=pushing)
"""


def test_a_poller_killed_holding_the_turn_is_replaced_once_a_turn_has_lapsed(
    box: Sandbox, tmp_path: Path
) -> None:
    # Killed, it cannot give the turn up: the next worker takes it once the turn
    # lapsed unrenewed, as soon as a worker silent that long leaves the rate share,
    # not 32 s later. The next worker's clock is that far ahead: nothing waits here.
    db = tmp_path / "ledger.db"
    ledger = SqliteLedger(db)
    env = {**os.environ, **{f"T_{k}": v for k, v in box.client_env("tencent").items()}}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_POLLER, str(db)],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "polling"
        assert holder(ledger) == "killed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert holder(ledger) == "killed"
    provider = provider_for(box)
    push(box, ledger, provider, 0, 1000)
    # A rate-share heartbeat's ttl (5 s: a worker silent that long has left the
    # share) and a second: the turn of a killed poller has lapsed by then.
    later = 6.0

    def clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + _s(later)

    options = TrackerOptions(poll_interval=0.1, worker_id="next", timeout=60)
    tracker = Tracker(ledger, provider, options, clock=clock)
    polls: list[int] = []  # status calls so far, at each look
    tracker.on_round = lambda open_tasks, totals: polls.append(totals.polls)
    tracked = tracker.follow()
    assert polls[0] > 0  # its first look took the turn over, and polled
    assert not tracked.timed_out
    assert tracked.done == 1000
    assert not ledger.open_tasks("tencent", "mainland")


def test_the_poller_of_a_pool_leads_the_status_budget_of_every_member(
    box: Sandbox, tmp_path: Path
) -> None:
    # A pool's pacing has one budget for every API (its members pace themselves), so
    # the poller never led: it polled each member at a worker's share while all the
    # workers pushed. Two accounts here (two members on the emulator's one).
    ledger = SqliteLedger(tmp_path / "ledger.db")
    pools = {
        worker: PoolProvider("pool", [("a", provider_for(box)), ("b", provider_for(box))])
        for worker in ("poller", "pusher")
    }
    shares = [RateShare(ledger, "pool", w, pool.pacing).start() for w, pool in pools.items()]

    def rates(worker: str) -> list[float]:
        return [member.pacing.rate(STATUS) for member in pools[worker].members.values()]

    try:
        assert rates("poller") == rates("pusher") == [EVEN, EVEN]
        pushing = threading.Event()
        pushing.set()
        ledger.take_turn("poll/pool/pool", "poller", dt.datetime.now(dt.UTC), _s(TURN_SECONDS))
        other = Following(ledger, pools["pusher"], "pusher", pushing)
        poller = Following(ledger, pools["poller"], "poller", pushing)
        led = until(lambda: rates("poller") == [LEAD, LEAD])
        followed = rates("pusher")
        pushing.clear()
        poller.thread.join(timeout=30)
        other.thread.join(timeout=30)
        assert led and followed == [FOLLOW, FOLLOW]
        assert rates("poller") == rates("pusher") == [EVEN, EVEN]  # done following
    finally:
        pushing.clear()
        for share in shares:
            share.stop()
