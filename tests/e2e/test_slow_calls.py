"""No duplicates from slow calls (issue 10, item 6).

A claim's lease is renewed while its call is in flight; a call that timed out
is given one more deadline to take effect and then reconciled before its URLs
are pushed again; workers restarting together recover each dead batch once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support import assert_all_done, duplicates, expected_urls, make_cli

from cdn_preheat.clock import quota_day
from cdn_preheat.config import Settings
from cdn_preheat.ledger.base import QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import Scheduler, SchedulerOptions

P, A = "tencent", "mainland"


def _settings(box: Sandbox, **extra: str) -> Settings:
    env: Mapping[str, str] = {**box.client_env("tencent"), **extra}
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]


def _queue(ledger: SqliteLedger, box: Sandbox, count: int) -> list[str]:
    paths = box.origin.catalog_paths("demo-1")[:count]
    urls = [box.edge_url(path) for path in paths]
    now = dt.datetime.now(dt.UTC)
    ledger.put_video("demo-1", box.video_url("demo-1"), len(urls), now)
    ledger.enqueue(
        "demo-1", P, A, [QueuedUrl(u, "segment") for u in urls], now, dt.timedelta(days=3)
    )
    return urls


@pytest.mark.parametrize(
    "faults",
    [
        # The request takes effect at once; the answer comes after the client's deadline.
        Faults(late_answer=0.3, slow_seconds=1.0, seed=3),
        # The request reaches the API and takes effect only after the client's deadline.
        Faults(slow=0.3, slow_seconds=0.7, seed=5),
    ],
    ids=["late-answer", "late-effect"],
)
def test_a_timed_out_push_is_reconciled_before_it_is_pushed_again(
    tmp_path: Path, faults: Faults
) -> None:
    with Sandbox(videos=1, segments=25, task_delay=0.1, faults=faults) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=10, CDN_PREHEAT_API_TIMEOUT=0.4)
        urls = expected_urls(cli, "demo-1")
        run = cli("push", "demo-1", box.video_url("demo-1"), "--wait-timeout", "120")
        assert run.code == 0, run.stderr
        timed_out = box.tencent.outcomes["late_answer"] if faults.late_answer else None
        assert timed_out is None or timed_out > 0  # the fault did fire
        assert duplicates(box.tencent.received_urls()) == {}
        assert_all_done(cli, urls)


def _slow_pushes(box: Sandbox, seconds: float) -> None:
    """Make PushUrlsCache take ``seconds`` before it takes effect (a congested API)."""
    emulator: Any = box.tencent
    push = emulator._push_urls_cache

    def slow(params: Mapping[str, Any]) -> dict[str, Any]:
        time.sleep(seconds)
        return dict(push(params))

    _, accepted = emulator._actions["PushUrlsCache"]
    emulator._actions["PushUrlsCache"] = (slow, accepted)


def test_a_call_outliving_its_lease_is_not_taken_for_a_dead_workers(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=20, task_delay=0.1) as box:
        _slow_pushes(box, 2.0)
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        urls = _queue(ledger, box, 20)
        lease = dt.timedelta(seconds=0.6)  # far shorter than one push
        provider = TencentProvider(_settings(box))

        def worker(name: str) -> Scheduler:
            options = SchedulerOptions(concurrency=1, batch_size=10, lease=lease, worker_id=name)
            return Scheduler(ledger, provider, options)

        first = threading.Thread(target=worker("w1").drain)
        first.start()
        # The second worker starts while the first one's push is on its way.
        deadline = time.monotonic() + 30
        while not ledger.counts().get(UrlState.RESERVED) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)
        worker("w2").drain()
        first.join()

        received = box.tencent.received_urls()
        assert duplicates(received) == {}
        assert sorted(received) == sorted(urls)
        counts = ledger.counts()
        assert counts.get(UrlState.SUBMITTED, 0) + counts.get(UrlState.DONE, 0) == len(urls)
        ledger.close()


def test_workers_restarting_together_recover_each_dead_batch_once(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=40, task_delay=0.1) as box:
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        urls = _queue(ledger, box, 50)
        provider = TencentProvider(_settings(box))
        quota = provider.quota()
        now = dt.datetime.now(dt.UTC)
        day = quota_day(now, 8)
        assert quota.total is not None and quota.available is not None
        ledger.sync_quota(P, A, day, quota.total, quota.total - quota.available)
        long_ago = now - dt.timedelta(hours=1)
        lease = dt.timedelta(seconds=60)
        # Three batches of a worker that died, and one of a worker still pushing.
        for _ in range(3):
            ledger.claim_with_quota(P, A, day, 10, "dead", long_ago, lease)
        live, _ = ledger.claim_with_quota(P, A, day, 10, "alive", now, lease)
        assert live is not None
        book = ledger.quota_day(P, A, day)
        assert book is not None and book.inflight == 40

        barrier = threading.Barrier(3)
        found: list[int] = []

        def restart(name: str) -> None:
            options = SchedulerOptions(concurrency=1, batch_size=10, lease=lease, worker_id=name)
            scheduler = Scheduler(ledger, provider, options)
            barrier.wait()
            found.append(scheduler.reconcile_expired())

        threads = [threading.Thread(target=restart, args=(f"w{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        book = ledger.quota_day(P, A, day)
        assert book is not None
        # The dead worker's 30 URLs of reservation came back once; the live one's stays.
        assert book.inflight == len(live.urls)
        counts = ledger.counts()
        assert counts.get(UrlState.RESERVED) == len(live.urls)
        assert counts.get(UrlState.PENDING) == len(urls) - len(live.urls)
        assert found == [0, 0, 0]

        # The restarted workers push the rest together: each URL once, within quota.
        # The live one gives its batch back as the scheduler does: in one step.
        ledger.settle_claim(live, now, day, len(live.urls), 0, released=live.urls)
        drains = [
            threading.Thread(
                target=Scheduler(
                    ledger,
                    provider,
                    SchedulerOptions(concurrency=2, batch_size=10, worker_id=f"d{i}"),
                ).drain
            )
            for i in range(3)
        ]
        for thread in drains:
            thread.start()
        for thread in drains:
            thread.join()
        received = box.tencent.received_urls()
        assert duplicates(received) == {} and sorted(received) == sorted(urls)
        assert box.tencent.outcomes["quota"] == 0
        book = ledger.quota_day(P, A, day)
        assert book is not None and book.inflight == 0
        ledger.close()
