"""Status polling by time window: few status calls per URL pushed, pages retried alone.

Against the Tencent emulator, which counts every call per API; the figures
asserted are the emulator's counts, never how long anything took.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdn_preheat.config import Settings
from cdn_preheat.ledger.base import QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.pipeline import RunOptions, run_queue
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import SchedulerOptions
from cdn_preheat.tracker import Tracker, TrackerOptions

URLS = 2000


@pytest.fixture
def box() -> Iterator[Sandbox]:
    # The origin has every URL queued: a prefetch of a missing file ends "invalid",
    # which Tencent also says of a passing 5xx, so it would be pushed once more.
    with Sandbox(videos=1, variants=1, segments=2600, task_delay=0.2) as sandbox:
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
    real = provider._client.DescribePushTasks
    offsets: list[int] = []

    def second_page_fails_once(request: Any) -> Any:
        offsets.append(request.Offset)
        if request.Offset == 1000 and offsets.count(1000) == 1:
            box.tencent.inject("RequestLimitExceeded")
        return real(request)

    provider._client.DescribePushTasks = second_page_fails_once  # type: ignore[method-assign]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    entries = provider.window_status(start, dt.datetime.now(dt.UTC))
    assert entries is not None and len(entries) == 2500
    assert offsets == [0, 1000, 1000, 2000]  # page 2 again, page 1 not
