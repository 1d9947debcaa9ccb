"""The real pipeline on the MongoDB ledger: push, old-script records, several workers.

The contract suite holds the ledger's methods; these tests hold what a team
switching from the old script relies on, end to end against the sandbox.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator

import mongomock
import pytest

from cdn_preheat.app import expand_options, run_options
from cdn_preheat.clock import utcnow
from cdn_preheat.config import Settings
from cdn_preheat.hls import expand
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.ledger.mongo import MongoLedger
from cdn_preheat.pipeline import (
    DEFAULT_HEAD_FIRST,
    is_preheated,
    queue_expansion,
    refresh_video_state,
    run_queue,
)
from cdn_preheat.providers import make_provider
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import Scheduler, SchedulerOptions

MAX_AGE = dt.timedelta(days=3)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=3, segments=8, task_delay=0.1) as box:
        yield box


def settings_for(box: Sandbox) -> Settings:
    env = {k.lower(): v for k, v in box.client_env("tencent").items()}
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


def queue(ledger: MongoLedger, box: Sandbox, settings: Settings, video_id: str) -> list[str]:
    expansion = expand(box.video_url(video_id), expand_options(settings))
    queue_expansion(
        ledger, "tencent", settings.tencent_area, video_id, expansion,
        head_first=DEFAULT_HEAD_FIRST, max_age=MAX_AGE,
    )  # fmt: skip
    return [item.url for item in expansion.urls]


def test_push_on_mongodb_honours_and_writes_the_old_scripts_records(sandbox: Sandbox) -> None:
    client = mongomock.MongoClient()
    old = client.cdn_preheat.preheated_videos
    old.insert_one(
        {"video_id": "ep-7", "m3u8_url": "https://cdn.example/ep7.m3u8", "ts_count": 143,
         "pushed_at": dt.datetime(2024, 5, 13, 8, 32)}
    )  # fmt: skip
    ledger = MongoLedger(client)
    settings = settings_for(sandbox)
    provider = make_provider(settings)

    # A video the old script pushed counts as preheated, as it did for the script.
    assert is_preheated(ledger.get_video("ep-7"), utcnow(), MAX_AGE)

    urls = queue(ledger, sandbox, settings, "demo-1")
    report = run_queue(ledger, provider, run_options(settings, poll_interval=0.1))
    refresh_video_state(ledger, "demo-1")

    assert report.stopped_by is None
    assert sorted(sandbox.tencent.received_urls()) == sorted(urls)
    assert ledger.counts("demo-1") == {UrlState.DONE: len(urls)}
    # ...and it is written back in the old shape, so the old script would skip it too.
    written = old.find_one({"video_id": "demo-1"})
    assert written is not None
    assert (written["m3u8_url"], written["ts_count"]) == (sandbox.video_url("demo-1"), len(urls))
    assert isinstance(written["pushed_at"], dt.datetime)

    # Queueing it again pushes nothing; --reset clears the old record as the script did.
    assert queue(ledger, sandbox, settings, "demo-1") == urls
    assert ledger.counts().get(UrlState.PENDING, 0) == 0
    ledger.reset_video("ep-7")
    assert old.find_one({"video_id": "ep-7"}) is None
    assert ledger.get_video("ep-7") is None


def test_threads_sharing_one_database_never_exceed_the_quota_nor_push_twice(
    sandbox: Sandbox,
) -> None:
    ledger = MongoLedger(mongomock.MongoClient())
    settings = settings_for(sandbox)
    urls = [
        u
        for video in ("demo-1", "demo-2", "demo-3")
        for u in queue(ledger, sandbox, settings, video)
    ]
    quota = len(urls) // 2
    sandbox.tencent.limits.push_per_day = quota
    sandbox.tencent.limits.push_batch = 7  # many small batches, so the workers interleave

    reports = []

    def work(number: int) -> None:
        options = SchedulerOptions(concurrency=2, worker_id=f"worker-{number}")
        reports.append(Scheduler(ledger, make_provider(settings), options).drain())

    workers = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)

    received = sandbox.tencent.received_urls()
    assert len(received) == quota  # all of today's quota, and not one URL more
    assert max(Counter(received).values()) == 1
    assert sandbox.tencent.outcomes.get("quota", 0) == 0  # the ledger stopped them, not the CDN
    assert all(report.quota_exhausted for report in reports)
    assert ledger.counts()[UrlState.PENDING] == len(urls) - quota

    # The next provider day, one worker finishes the queue, still without a duplicate.
    sandbox.clock.next_day()
    sandbox.tencent.limits.push_per_day = len(urls)
    Scheduler(ledger, make_provider(settings)).drain()
    assert sorted(sandbox.tencent.received_urls()) == sorted(urls)
