"""SQLite-only behaviour: a damaged or locked file is one clear LedgerError."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from cdn_preheat.errors import LedgerError
from cdn_preheat.ledger.base import QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def test_a_file_that_is_not_a_database_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"these are not the bytes of an SQLite database\n" * 100)

    with pytest.raises(LedgerError) as caught:
        SqliteLedger(path)

    message = str(caught.value)
    assert str(path) in message
    assert "not a cdn-preheat ledger" in message
    assert "\n" not in message


def test_a_locked_database_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path, busy_timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LedgerError) as caught:
            ledger.enqueue("v1", "p", "a", [QueuedUrl("https://x/1", "s")], T0, dt.timedelta(1))
        with pytest.raises(LedgerError):
            ledger.reserve_quota("p", "a", "2024-05-01", 10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    message = str(caught.value)
    assert str(path) in message
    assert "locked by another process" in message
    # The lock is gone: the same ledger works again.
    assert ledger.reserve_quota("p", "a", "2024-05-01", 10) == 10
    ledger.close()


def test_opening_a_locked_new_file_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LedgerError, match="locked by another process"):
            SqliteLedger(path, busy_timeout=0.05)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    SqliteLedger(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version VALUES (99)")

    with pytest.raises(LedgerError, match="newer cdn-preheat"):
        SqliteLedger(path)


def test_reopening_keeps_the_data_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = SqliteLedger(path)
    first.put_video("v1", "https://o/v1.m3u8", 3, T0)
    first.close()

    second = SqliteLedger(path)

    assert second.get_video("v1") is not None
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    second.close()


def test_naive_datetimes_are_refused(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")

    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.put_video("v1", "https://o/v1.m3u8", 3, dt.datetime(2024, 5, 1))
    ledger.close()


def test_submitted_urls_reads_by_the_task_not_every_url_of_the_provider(tmp_path: Path) -> None:
    # The tracker asks this for every page of results it reads: a scan of all the
    # provider's URLs made each page cost more as the catalog grew. Counted in
    # SQLite's virtual machine steps (a progress handler), never in time.
    ledger = SqliteLedger(tmp_path / "ledger.db")
    now = dt.datetime.now(dt.UTC)
    items = [QueuedUrl(f"https://cdn.example.com/seg{i}.ts", "segment") for i in range(20_000)]
    ledger.enqueue("v", "tencent", "mainland", items, now, dt.timedelta(days=1))
    claimed = []
    while claim := ledger.claim("tencent", "mainland", 500, "w", now, dt.timedelta(minutes=5)):
        claimed.append(claim)
    for n, claim in enumerate(claimed):
        ledger.mark_submitted(claim, f"task-{n}", claim.urls, now)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    ledger._db.set_progress_handler(count, 100)
    found = ledger.submitted_urls("tencent", ["task-0"])
    ledger._db.set_progress_handler(None, 0)
    assert len(found["task-0"]) == 500
    # By the task index: steps for its 500 rows; a scan of 20,000 takes far more.
    assert steps[0] * 100 < 20_000 * 5


def _steps(ledger: SqliteLedger, call: object) -> int:
    """SQLite virtual-machine steps (in thousands) a ledger call takes: a count, not a time."""
    count = 0

    def step() -> int:
        nonlocal count
        count += 1
        return 0

    ledger._db.set_progress_handler(step, 1000)
    try:
        call()  # type: ignore[operator]
    finally:
        ledger._db.set_progress_handler(None, 1000)
    return count


def test_earlier_pushes_looks_each_found_url_up_by_index(tmp_path: Path) -> None:
    """Reconciling a lost push asks the ledger about its ~100 URLs: the work must follow
    those URLs, not the ledger's size. json_each has no statistics, so SQLite put it
    innermost and scanned every URL of the provider times every task: with 10,000 URLs
    and 100 tasks, about as many steps as a run's whole push took (CPU-bound under
    lost answers, bench/polling.py)."""
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")

    def fill(count: int) -> dict[str, str]:
        base = ledger.counts().get(UrlState.DONE, 0) + ledger.counts().get(UrlState.SUBMITTED, 0)
        urls = [QueuedUrl(f"https://x/{base + i}.ts", "s") for i in range(count)]
        ledger.enqueue(f"v{base}", "p", "a", urls, T0, dt.timedelta(days=1))
        found = {}
        while (claim := ledger.claim("p", "a", 100, "w", T0, dt.timedelta(minutes=1))) is not None:
            task = f"t-{claim.urls[0]}"
            ledger.mark_submitted(claim, task, claim.urls, T0)
            found = dict.fromkeys(claim.urls, task)
        return found  # the last batch's URLs under their task

    small = fill(200)
    few = _steps(ledger, lambda: ledger.earlier_pushes("p", "a", small))
    large = fill(9800)
    many = _steps(ledger, lambda: ledger.earlier_pushes("p", "a", large))
    assert ledger.earlier_pushes("p", "a", large) == set(large)
    # 50 times the URLs and tasks in the ledger, the same 100 URLs asked about.
    assert many <= 2 * few + 5, (few, many)
    ledger.close()
