"""The engine as a pipeline: pushing while the catalog is queued, tracking while pushing.

Against the sandbox's Tencent emulator (in this process, shared by the module).
The order of events is observed through the emulator's received log and the
ledger, with hooks that hold one stage until another has acted; no test
asserts how long anything took (a hook gives up after a bound, so that a
missing behaviour fails instead of hanging).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdn_preheat.config import Settings
from cdn_preheat.hls import ExpandOptions
from cdn_preheat.ledger.base import QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.pipeline import (
    PRIORITY_TAIL,
    CatalogIntake,
    HeadFirst,
    QueuedVideo,
    RunOptions,
    queue_expansion,
    run_queue,
)
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import Scheduler, SchedulerOptions
from cdn_preheat.tracker import TrackerOptions

BOUND = 60.0  # seconds a hook waits for the other stage before the test fails


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=4, variants=1, segments=30, task_delay=0.1) as sandbox:
        yield sandbox


def provider_for(box: Sandbox) -> TencentProvider:
    env = {name.lower(): value for name, value in box.client_env("tencent").items()}
    return TencentProvider(Settings(_env_file=None, **env))  # type: ignore[call-arg]


def wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def received_since(box: Sandbox, mark: int) -> list[str]:
    return [url for push in box.tencent.received()[mark:] for url in push.urls]


class HeldOpen:
    """An intake the test closes: the drain must go on while it is open."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.waits = 0

    def more_coming(self) -> bool:
        return not self.closed.is_set()

    def wait(self, timeout: float) -> None:
        self.waits += 1
        self.closed.wait(min(timeout, 0.02))

    def may_push(self, remaining: int | None, claimed: int) -> bool:
        return True


def segment_urls(box: Sandbox, video: str, count: int) -> list[str]:
    return [box.edge_url(f"/vod/{video}/v0/seg{i}.ts") for i in range(count)]


def enqueue(ledger: SqliteLedger, video: str, urls: list[str]) -> None:
    items = [QueuedUrl(url, "segment") for url in urls]
    now = dt.datetime.now(dt.UTC)
    ledger.enqueue(video, "tencent", "mainland", items, now, dt.timedelta(days=1))


def test_the_first_video_is_pushed_before_the_last_is_queued(box: Sandbox, tmp_path: Path) -> None:
    """With the quota covering the catalog, pushing starts at the first video queued."""
    from cdn_preheat.api import Observer, Preheater, QueueResult

    mark = len(box.tencent.received())
    first: list[str] = []
    pushed_when_queued: list[int] = []

    class Hold(Observer):
        def queued(self, video: QueueResult) -> None:
            if not first:
                first.append(video.video_id)
                # Hold the expansion (the other videos wait) until pushing sent this
                # video's URLs.
                wait_for(lambda: any(f"/{video.video_id}/" in u for u in received_since(box, mark)))
            pushed_when_queued.append(
                sum(f"/{first[0]}/" in url for url in received_since(box, mark))
            )

    env = {**box.client_env("tencent"), "CDN_PREHEAT_DB": str(tmp_path / "ledger.db")}
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    sources = [(f"demo-{n}", box.video_url(f"demo-{n}")) for n in (1, 2, 3)]
    with Preheater.from_settings(settings) as engine:
        videos, run = engine.queue_and_drain(
            sources, head_first=2, observer=Hold(), poll_interval=0.1
        )
        counts = engine.ledger.counts()
    assert [v.error for v in videos] == [None, None, None]
    assert len(pushed_when_queued) == 3
    assert pushed_when_queued[-1] > 0  # the last video was queued after the first's push
    urls = received_since(box, mark)
    assert len(urls) == len(set(urls)) == sum(v.queued for v in videos) == run.submitted
    assert counts.get(UrlState.DONE, 0) == run.submitted
    assert not counts.get(UrlState.PENDING) and not counts.get(UrlState.SUBMITTED)


def test_outcomes_are_recorded_while_pushing_goes_on(box: Sandbox, tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.db")
    urls = segment_urls(box, "demo-1", 20)
    enqueue(ledger, "v", urls)
    intake = HeldOpen()
    options = RunOptions(
        scheduler=SchedulerOptions(batch_size=5),
        tracker=TrackerOptions(poll_interval=0.1),
    )
    reports = []
    run = threading.Thread(
        target=lambda: reports.append(run_queue(ledger, provider_for(box), options, intake=intake))
    )
    run.start()
    try:
        # The drain cannot end while the intake is open: outcomes now are the tracker's
        # work alongside pushing.
        tracked = wait_for(lambda: ledger.counts().get(UrlState.DONE, 0) == len(urls))
        still_pushing = run.is_alive() and not intake.closed.is_set()
    finally:
        intake.closed.set()
        run.join()
    assert tracked and still_pushing
    assert reports[0].submitted == reports[0].done == len(urls)


def test_a_drain_with_an_intake_goes_on_while_urls_are_queued(box: Sandbox, tmp_path: Path) -> None:
    """An empty queue does not end the drain while more URLs are coming."""
    ledger = SqliteLedger(tmp_path / "ledger.db")
    mark = len(box.tencent.received())
    scheduler = Scheduler(ledger, provider_for(box), SchedulerOptions(batch_size=10))
    intake = HeldOpen()
    reports = []
    drain = threading.Thread(target=lambda: reports.append(scheduler.drain(intake=intake)))
    drain.start()
    first, second = segment_urls(box, "demo-2", 25), segment_urls(box, "demo-3", 15)
    try:
        assert wait_for(lambda: intake.waits > 0)  # empty queue: it waits, it does not end
        enqueue(ledger, "a", first)
        assert wait_for(lambda: len(received_since(box, mark)) == len(first))
        enqueue(ledger, "b", second)
        assert wait_for(lambda: len(received_since(box, mark)) == len(first) + len(second))
    finally:
        intake.closed.set()
        drain.join()
    assert reports[0].submitted == len(first) + len(second)
    assert sorted(received_since(box, mark)) == sorted(first + second)


def test_a_short_quota_waits_for_the_whole_catalog_and_goes_head_first(
    box: Sandbox, tmp_path: Path
) -> None:
    """When the quota cannot cover the catalog, nothing goes before every video is queued."""
    from cdn_preheat.hls import expand

    ledger = SqliteLedger(tmp_path / "ledger.db")
    mark = len(box.tencent.received())
    options = ExpandOptions(cdn_host=box.edge.netloc)
    one, two = expand(box.video_url("demo-1"), options), expand(box.video_url("demo-2"), options)
    total = len(one.urls) + len(two.urls)
    # Less than demo-1 twice (demo-1 plus one more video of its size, the estimate),
    # less than the catalog, more than every video's start and head.
    quota = len(one.urls) * 3 // 2
    assert quota < total
    limits = box.tencent.limits
    saved = limits.push_per_day
    limits.push_per_day = box.tencent.quota_used() + quota
    head = HeadFirst(2)
    intake = CatalogIntake(2)
    waits = [0]
    real_wait = intake.wait

    def counted(timeout: float) -> None:
        waits[0] += 1
        real_wait(min(timeout, 0.02))

    intake.wait = counted  # type: ignore[method-assign]
    scheduler = Scheduler(ledger, provider_for(box), SchedulerOptions(batch_size=10))
    drain = threading.Thread(target=lambda: scheduler.drain(intake=intake))
    try:
        queued = queue_expansion(
            ledger, "tencent", "mainland", "demo-1", one, head_first=head,
            max_age=dt.timedelta(days=1),
        )  # fmt: skip
        intake.add(queued)
        drain.start()
        # The quota does not cover demo-1 plus another video of its size: no push yet.
        assert wait_for(lambda: waits[0] >= 5)
        assert received_since(box, mark) == []
        queued = queue_expansion(
            ledger, "tencent", "mainland", "demo-2", two, head_first=head,
            max_age=dt.timedelta(days=1),
        )  # fmt: skip
        intake.add(queued)
        intake.close()
        drain.join()
    finally:
        intake.close()
        limits.push_per_day = saved
    pushed = received_since(box, mark)
    assert len(pushed) == quota
    # Head first over the whole catalog: every start and head URL of both videos
    # before any tail URL (there are fewer of those than the quota).
    tiers = {item.url: item.priority for video in (one, two) for item in _prioritized(video, head)}
    heads = {url for url, tier in tiers.items() if tier < PRIORITY_TAIL}
    assert len(heads) <= quota
    assert heads <= set(pushed)


def _prioritized(expansion: object, head: HeadFirst) -> list[QueuedUrl]:
    from cdn_preheat.pipeline import prioritize

    return prioritize(expansion, head)  # type: ignore[arg-type]


def test_catalog_intake_covers_what_is_queued_and_to_come() -> None:
    intake = CatalogIntake(3)
    assert not intake.may_push(10_000, 0)  # nothing of the catalog known yet
    intake.add(QueuedVideo("a", "u", found=100, queued=100))
    # 100 queued + 2 videos still to come estimated at the largest so far (100 each).
    assert intake.may_push(300, 0)
    assert not intake.may_push(299, 0)
    assert intake.may_push(250, 50)  # 50 of the queued already claimed
    assert intake.may_push(None, 0)  # no daily quota known
    intake.add(QueuedVideo("b", "u", found=150, queued=150))
    assert not intake.may_push(399, 0)  # 250 queued + 1 video of up to 150
    assert intake.more_coming()
    intake.close()
    assert not intake.more_coming()
    assert intake.may_push(0, 0)  # complete: the queue's own order applies
