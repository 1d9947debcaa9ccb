"""When the long-running worker waits at an empty queue, and when it goes round again.

Against the sandbox's Tencent emulator over real HTTP, with a real SQLite
ledger. The moments that matter are forced by hooks, not by sleeps: the wake
event the worker waits on at an empty queue records the wait and stops the
worker, and a ledger hook lets another worker claim the queue (and die) at a
chosen point of the round.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdn_preheat.clock import quota_day, utcnow
from cdn_preheat.config import Settings
from cdn_preheat.ledger.base import Claim, QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.worker import run_worker

BOUND = 60.0  # seconds a worker thread may take before the test fails instead of hanging
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=2, variants=1, segments=6, task_delay=0.05) as sandbox:
        yield sandbox


def settings_for(box: Sandbox) -> Settings:
    env = {name.lower(): value for name, value in box.client_env("tencent").items()}
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


class IdleWait(threading.Event):
    """The worker's ``wake``: waiting on it means the worker found nothing to do.

    The first wait records itself and stops the worker (the test's stop), so the
    worker's run ends exactly at its first idle wait.
    """

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        self.stop.set()
        return True


def queue(ledger: SqliteLedger, video: str, urls: list[str], provider: str, area: str) -> None:
    now = utcnow()
    ledger.put_video(video, f"https://origin.example.com/{video}.m3u8", len(urls), now)
    ledger.enqueue(video, provider, area, [QueuedUrl(u, "segment") for u in urls], now, DAY)


class DiesDuringTheRound(SqliteLedger):
    """Right after the round's drain has looked for dead workers' batches, another
    worker claims the whole queue and dies: its lease has run out by the time the
    round ends (it was taken on a clock a lease behind)."""

    offset_hours: int | None = None
    dead: Claim | None = None

    def expired_claims(self, provider: str, area: str, now: dt.datetime) -> list[Claim]:
        found = super().expired_claims(provider, area, now)
        if self.dead is None:
            lease = dt.timedelta(seconds=30)
            then = now - 2 * lease
            day = quota_day(then, self.offset_hours)
            claim, _ = self.claim_with_quota(provider, area, day, 1000, "dead-worker", then, lease)
            assert claim is not None
            self.dead = claim
        return found


def test_a_dead_workers_batch_that_expires_during_a_round_is_recovered_not_left_to_idle(
    box: Sandbox, tmp_path: Path
) -> None:
    urls = [box.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(6)]
    settings = settings_for(box)
    provider = TencentProvider(settings)
    ledger = DiesDuringTheRound(tmp_path / "ledger.sqlite3")
    ledger.offset_hours = provider.limits.quota_utc_offset_hours
    mark = len(box.tencent.received())
    try:
        queue(ledger, "demo-1", urls, provider.name, provider.area)
        stop = threading.Event()
        idle = IdleWait(stop)
        code = run_worker(ledger, provider, settings, stop=stop, idle=3600.0, wake=idle)
        assert code == 0
        assert ledger.dead is not None and sorted(ledger.dead.urls) == sorted(urls)
        assert idle.waits == 1  # it waited once: after the dead batch was pushed
        counts = ledger.counts(target=(provider.name, provider.area))
        assert counts.get(UrlState.RESERVED, 0) == 0, counts
        assert counts.get(UrlState.DONE, 0) == len(urls), counts
        pushed = [u for push in box.tencent.received()[mark:] for u in push.urls]
        assert sorted(pushed) == sorted(urls)  # each once: the dead worker never pushed
        # The dead batch's reservation was given back once, the pushes counted once.
        day = quota_day(ledger.dead.claimed_at, ledger.offset_hours)
        book = ledger.quota_day(provider.name, provider.area, day)
        assert book is not None and book.inflight == 0, book
    finally:
        ledger.close()


def test_another_providers_queue_is_not_this_workers_work(box: Sandbox, tmp_path: Path) -> None:
    """A Tencent worker whose ledger also holds Qiniu's queue waits at its own empty queue."""
    settings = settings_for(box)
    provider = TencentProvider(settings)
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    mark = len(box.tencent.received())
    try:
        queue(ledger, "other", [box.edge_url("/vod/demo-2/v0/seg0.ts")], "qiniu", "global")
        stop = threading.Event()
        idle = IdleWait(stop)
        codes: list[int] = []
        thread = threading.Thread(
            target=lambda: codes.append(
                run_worker(ledger, provider, settings, stop=stop, idle=3600.0, wake=idle)
            ),
            daemon=True,
        )
        thread.start()
        thread.join(BOUND)
        stop.set()  # the old check went round and round; end it either way
        thread.join(BOUND)
        assert idle.waits == 1 and codes == [0]
        assert ledger.counts(target=("qiniu", "global")) == {UrlState.PENDING: 1}
        assert box.tencent.received()[mark:] == []
    finally:
        ledger.close()


def test_worker_once_settles_a_batch_whose_worker_died_during_its_round(
    box: Sandbox, tmp_path: Path
) -> None:
    """``worker --once`` does not exit 0 leaving a batch it could settle reserved."""
    urls = [box.edge_url(f"/vod/demo-2/v0/seg{i}.ts") for i in range(6)]
    settings = settings_for(box)
    provider = TencentProvider(settings)
    ledger = DiesDuringTheRound(tmp_path / "ledger.sqlite3")
    ledger.offset_hours = provider.limits.quota_utc_offset_hours
    mark = len(box.tencent.received())
    try:
        queue(ledger, "demo-2", urls, provider.name, provider.area)
        code = run_worker(ledger, provider, settings, stop=threading.Event(), once=True)
        assert code == 0
        assert ledger.dead is not None and sorted(ledger.dead.urls) == sorted(urls)
        counts = ledger.counts(target=(provider.name, provider.area))
        assert counts == {UrlState.DONE: len(urls)}, counts
        pushed = [u for push in box.tencent.received()[mark:] for u in push.urls]
        assert sorted(pushed) == sorted(urls)
    finally:
        ledger.close()
