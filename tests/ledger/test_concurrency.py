"""Several workers on one ledger: no URL claimed twice, quota never exceeded.

SQLite is shared by processes (as worker processes on one machine share the
file); MongoDB by threads on one client (mongomock, made atomic per write as a
real server is: see ``mongomock_atomic``), or by a real server when configured.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from cdn_preheat.ledger.base import Ledger, QueuedUrl
from cdn_preheat.ledger.sqlite import SqliteLedger

from .conftest import make_mongo_ledger

P, A, DAY = "tencent", "mainland", "2024-05-01"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
QUEUE, QUOTA, WORKERS, BATCH = 300, 230, 4, 7


def fill(ledger: Ledger) -> None:
    urls = [QueuedUrl(f"https://cdn.example.com/s{i:04d}.ts", "segment") for i in range(QUEUE)]
    ledger.enqueue("v1", P, A, urls, T0, dt.timedelta(days=3))
    ledger.sync_quota(P, A, DAY, QUOTA, 0)


def drain(ledger: Ledger, worker: str) -> list[str]:
    """What a scheduler worker does: reserve quota, claim that much, submit, settle."""
    claimed: list[str] = []
    while (granted := ledger.reserve_quota(P, A, DAY, BATCH)) > 0:
        claim = ledger.claim(P, A, granted, worker, T0, dt.timedelta(minutes=2))
        if claim is None:
            ledger.settle_quota(P, A, DAY, granted, 0)
            break
        ledger.mark_submitted(claim, f"{worker}-{len(claimed)}", claim.urls, T0)
        ledger.settle_quota(P, A, DAY, granted, len(claim.urls))
        claimed.extend(claim.urls)
        quota = ledger.quota_day(P, A, DAY)
        assert quota is not None and quota.used + quota.inflight <= QUOTA
    return claimed


def drain_in_one_step(ledger: Ledger, worker: str) -> list[str]:
    """The scheduler's own path: quota and claim in one call, submit and settle in one."""
    claimed: list[str] = []
    lease = dt.timedelta(minutes=2)
    while True:
        claim, _ = ledger.claim_with_quota(P, A, DAY, BATCH, worker, T0, lease)
        if claim is None:
            break
        task_id = f"{worker}-{len(claimed)}"
        ledger.mark_submitted_settling(claim, task_id, claim.urls, T0, DAY, len(claim.urls))
        claimed.extend(claim.urls)
        quota = ledger.quota_day(P, A, DAY)
        assert quota is not None and quota.used + quota.inflight <= QUOTA
    return claimed


DRAINS = {"two steps": drain, "one step": drain_in_one_step}


def check(ledger: Ledger, per_worker: list[list[str]]) -> None:
    claimed = [url for urls in per_worker for url in urls]
    assert len(claimed) == len(set(claimed)), "a URL was claimed twice"
    assert len(claimed) == QUOTA  # all the quota was used, no more
    quota = ledger.quota_day(P, A, DAY)
    assert quota is not None
    assert (quota.used, quota.inflight) == (QUOTA, 0)


def _sqlite_worker(path: str, worker: str, how: str, start: Any, results: Any) -> None:
    ledger = SqliteLedger(path)
    start.wait()  # all processes race from here
    try:
        results.put((worker, DRAINS[how](ledger, worker)))
    finally:
        ledger.close()


@pytest.mark.parametrize("how", DRAINS)
def test_sqlite_processes_share_one_file(tmp_path: Path, how: str) -> None:
    path = str(tmp_path / "ledger.sqlite3")
    ledger = SqliteLedger(path)
    fill(ledger)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(WORKERS), context.Queue()
    processes = [
        context.Process(target=_sqlite_worker, args=(path, f"w{i}", how, start, results))
        for i in range(WORKERS)
    ]
    for process in processes:
        process.start()

    per_worker = [results.get(timeout=120)[1] for _ in processes]
    for process in processes:
        process.join()

    assert [process.exitcode for process in processes] == [0] * WORKERS
    check(ledger, per_worker)
    ledger.close()


@pytest.mark.parametrize(
    "kind", ["mongomock"] + (["mongodb"] if os.environ.get("MONGODB_URI") else [])
)
@pytest.mark.parametrize("how", DRAINS)
def test_mongodb_threads_share_one_database(kind: str, how: str) -> None:
    ledger, cleanup = make_mongo_ledger(kind)
    fill(ledger)
    per_worker: list[list[str]] = [[] for _ in range(WORKERS)]
    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS)

    def run(index: int) -> None:
        try:
            start.wait()
            per_worker[index] = DRAINS[how](ledger, f"w{index}")
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    check(ledger, per_worker)
    cleanup()
