"""Ledger throughput: queue + dedup 1,000,000 URLs and claim them, on SQLite;
round trips per 1,000 URLs on MongoDB (mongomock, counting operations), including
the scheduler's path (quota and claim in one call, submitted and settled in one).

    python bench/ledger.py [--urls 1000000] [--batch 10000] [--claim 500]

Target: at least 100,000 URLs/s queued on SQLite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdn_preheat.ledger.base import Ledger, QueuedUrl

P, A = "tencent", "mainland"
NOW = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
MAX_AGE = dt.timedelta(days=3)
LEASE = dt.timedelta(minutes=2)


def batches(total: int, size: int, *, prefix: str = "v") -> list[tuple[str, list[QueuedUrl]]]:
    """Videos of ``size`` segments; built before timing so only the ledger is measured."""
    return [
        (
            f"{prefix}{start // size}",
            [
                QueuedUrl(f"https://cdn.example.com/{prefix}{start // size}/seg-{i:06d}.ts", "ts")
                for i in range(start, min(start + size, total))
            ],
        )
        for start in range(0, total, size)
    ]


def timed(action: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    count = action()
    return count, time.perf_counter() - started


def enqueue_all(ledger: Ledger, work: list[tuple[str, list[QueuedUrl]]]) -> int:
    return sum(ledger.enqueue(v, P, A, urls, NOW, MAX_AGE).queued for v, urls in work)


def dedup_all(ledger: Ledger, work: list[tuple[str, list[QueuedUrl]]]) -> int:
    """The same URLs again for other videos: nothing new may be queued."""
    results = [ledger.enqueue(f"again-{v}", P, A, urls, NOW, MAX_AGE) for v, urls in work]
    assert sum(r.queued for r in results) == 0
    return sum(r.already_queued for r in results)


def claim_all(ledger: Ledger, size: int) -> int:
    claimed = 0
    while (claim := ledger.claim(P, A, size, "bench", NOW, LEASE)) is not None:
        claimed += len(claim.urls)
    return claimed


def push_all(ledger: Ledger, size: int) -> int:
    """The scheduler's path: quota and claim in one call, submitted and settled in one."""
    day, pushed = "2024-05-01", 0
    while True:
        claim, _ = ledger.claim_with_quota(P, A, day, size, "bench", NOW, LEASE)
        if claim is None:
            return pushed
        ledger.mark_submitted_settling(claim, f"t{pushed}", claim.urls, NOW, day, len(claim.urls))
        pushed += len(claim.urls)


def bench_sqlite(total: int, batch: int, claim: int) -> None:
    from cdn_preheat.ledger.sqlite import SqliteLedger

    work = batches(total, batch)
    with tempfile.TemporaryDirectory() as folder:
        ledger = SqliteLedger(Path(folder) / "bench.sqlite3")
        for label, action in (
            (f"queue {total:,} URLs in batches of {batch:,}", lambda: enqueue_all(ledger, work)),
            (f"dedup {total:,} URLs again (other videos)", lambda: dedup_all(ledger, work)),
            (f"claim them in batches of {claim}", lambda: claim_all(ledger, claim)),
        ):
            count, seconds = timed(action)
            assert count == total, (label, count)
            print(f"sqlite    {label:<44} {seconds:7.2f} s  {count / seconds:>10,.0f} URLs/s")
        size = (Path(folder) / "bench.sqlite3").stat().st_size
        print(f"sqlite    file size {size / 1e6:,.0f} MB")
        ledger.close()


class CountingCollection:
    """Stands in for a collection and counts each operation (one round trip each)."""

    def __init__(self, target: Any, calls: Counter[str]) -> None:
        self._target = target
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def bench_mongomock(total: int, batch: int, claim: int) -> None:
    import mongomock
    import mongomock.collection

    from cdn_preheat.ledger.mongo import MongoLedger

    # mongomock 4.3 vs pymongo >= 4.11 (mongomock issue #912): drop the unused ``sort``.
    builder = mongomock.collection.BulkOperationBuilder
    original = builder.add_update

    def add_update(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        return original(self, *args, **kwargs)

    builder.add_update = add_update

    ledger = MongoLedger(mongomock.MongoClient())
    ledger.quota_day(P, A, "2024-05-01")  # creates the indexes: once per process, not counted
    calls: Counter[str] = Counter()
    for name in ("urls", "links", "skipped", "counters", "videos", "tasks", "quota", "journal"):
        setattr(ledger, name, CountingCollection(getattr(ledger, name), calls))
    work = batches(total, batch, prefix="m")
    pushed = batches(total, batch, prefix="q")
    for label, action in (
        (f"queue {total:,} URLs in batches of {batch:,}", lambda: enqueue_all(ledger, work)),
        (f"dedup {total:,} URLs again", lambda: dedup_all(ledger, work)),
        (f"claim them in batches of {claim}", lambda: claim_all(ledger, claim)),
        (f"queue {total:,} more", lambda: enqueue_all(ledger, pushed)),
        (f"claim+quota, submit+settle, by {claim}", lambda: push_all(ledger, claim)),
    ):
        calls.clear()
        count, _ = timed(action)
        trips = sum(calls.values())
        detail = ", ".join(f"{n} {op}" for op, n in calls.most_common())
        print(
            f"mongomock {label:<44} {trips:4d} round trips = {trips * 1000 / count:6.2f}"
            f" per 1,000 URLs ({detail})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--claim", type=int, default=500)
    parser.add_argument(
        "--mongo-urls",
        type=int,
        default=2_000,
        help="mongomock has no indexes (each upsert scans), so it gets fewer URLs",
    )
    parser.add_argument("--mongo-batch", type=int, default=1_000)
    args = parser.parse_args()
    bench_sqlite(args.urls, args.batch, args.claim)
    bench_mongomock(args.mongo_urls, args.mongo_batch, args.claim)


if __name__ == "__main__":
    main()
