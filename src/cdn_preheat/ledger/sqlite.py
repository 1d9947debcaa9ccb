"""The embedded ledger: one SQLite file, shared by every worker process on a machine.

The file runs in WAL mode so readers never block the writer, and every change
that workers race on (claims, quota reservations) happens inside one
``BEGIN IMMEDIATE`` transaction: SQLite takes the write lock up front, so two
processes can never read the same pending rows and both reserve them.

Timestamps are stored as integer microseconds since the epoch (exact, and
comparable with ``<=`` in SQL) and come back as aware UTC datetimes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from itertools import groupby, islice
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from cdn_preheat.errors import ConfigError, LedgerError
from cdn_preheat.ledger.base import (
    Claim,
    EnqueueResult,
    EventState,
    Ledger,
    OutboxEvent,
    Outcome,
    PendingGroup,
    QueuedUrl,
    QuotaDay,
    TaskRecord,
    UrlRecord,
    UrlState,
    VideoRecord,
    VideoState,
)

SCHEMA_VERSION = 1

# ``PRAGMA application_id`` marks the file as a cdn-preheat ledger
# (https://www.sqlite.org/pragma.html#pragma_application_id, a 32-bit integer in
# the header, "CDNP" in ASCII). Ledgers written before it was set are
# recognised by their tables and get it on their next write open.
APPLICATION_ID = 0x43444E50
# Tables every cdn-preheat ledger has had since schema 1.
_OWN_TABLES = {"schema_version", "counters", "videos", "urls", "video_urls", "tasks"}

# ``exhaust_quota`` with an unknown limit: a figure no real quota reaches, so
# that ``remaining`` is 0 until the provider's own figures are synced again.
EXHAUSTED = 10**15

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('seq', 0);

CREATE TABLE IF NOT EXISTS videos (
    video_id   TEXT PRIMARY KEY,
    m3u8_url   TEXT NOT NULL,
    url_count  INTEGER NOT NULL,
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS urls (
    id          INTEGER PRIMARY KEY,
    provider    TEXT NOT NULL,
    area        TEXT NOT NULL,
    url         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    state       TEXT NOT NULL,
    task_id     TEXT,
    claim_id    TEXT,
    worker      TEXT,
    claimed_at  INTEGER,
    lease_until INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    pushed_at   INTEGER,
    expires_at  INTEGER,
    UNIQUE (provider, area, url)
);
-- Partial indexes hold only the rows each query looks for, so the bulk of
-- done URLs costs them nothing and enqueue stays fast.
CREATE INDEX IF NOT EXISTS urls_claim
    ON urls (provider, area, priority, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS urls_lease
    ON urls (provider, area, lease_until) WHERE state = 'reserved';
CREATE INDEX IF NOT EXISTS urls_claim_id ON urls (claim_id) WHERE claim_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS urls_task ON urls (task_id) WHERE state = 'submitted';

CREATE TABLE IF NOT EXISTS video_urls (
    video_id TEXT NOT NULL,
    url_id   INTEGER NOT NULL,
    PRIMARY KEY (video_id, url_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS skipped_urls (
    video_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    area     TEXT NOT NULL,
    url      TEXT NOT NULL,
    reason   TEXT NOT NULL,
    PRIMARY KEY (video_id, provider, area, url)
);

CREATE TABLE IF NOT EXISTS tasks (
    provider   TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    area       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    url_count  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    open       INTEGER NOT NULL,
    PRIMARY KEY (provider, task_id)
);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (provider, area, kind, created_at) WHERE open = 1;

-- Live worker processes per shared rate limit (heartbeats, see RateShare).
CREATE TABLE IF NOT EXISTS rate_workers (
    scope     TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, worker_id)
);

-- Named turns one worker holds at a time (polling a task list for everyone).
CREATE TABLE IF NOT EXISTS turns (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS quota_days (
    provider TEXT NOT NULL,
    area     TEXT NOT NULL,
    day      TEXT NOT NULL,
    "limit"  INTEGER,
    used     INTEGER NOT NULL DEFAULT 0,
    inflight INTEGER NOT NULL DEFAULT 0,
    settles  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, area, day)
);

-- The outbox: webhook events and storage notifications, each handed on at
-- least once under its stable id (see Ledger.enqueue_event).
CREATE TABLE IF NOT EXISTS outbox (
    event_id    TEXT PRIMARY KEY,
    topic       TEXT NOT NULL,
    key         TEXT NOT NULL,
    payload     TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    lease_until INTEGER,
    worker      TEXT,
    UNIQUE (topic, key)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (topic, due_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_recent ON outbox (topic, created_at);
"""

_SELECT_URLS = (
    "SELECT u.url, u.provider, u.area, u.kind, u.state, u.task_id, u.attempts, u.last_error,"
    " u.pushed_at, u.expires_at FROM urls u"
)
_SELECT_VIDEO_URLS = _SELECT_URLS + " JOIN video_urls l ON l.url_id = u.id WHERE l.video_id = ?"

# ``counts``: (the URLs by state, the skipped URLs) by (for a video, for a target).
_COUNTS = {
    (False, False): (
        "SELECT state, count(*) FROM urls GROUP BY state",
        "SELECT count(*) FROM skipped_urls",
    ),
    (False, True): (
        "SELECT state, count(*) FROM urls WHERE provider = ? AND area = ? GROUP BY state",
        "SELECT count(*) FROM skipped_urls WHERE provider = ? AND area = ?",
    ),
    (True, False): (
        "SELECT u.state, count(*) FROM video_urls l JOIN urls u ON u.id = l.url_id"
        " WHERE l.video_id = ? GROUP BY u.state",
        "SELECT count(*) FROM skipped_urls WHERE video_id = ?",
    ),
    (True, True): (
        "SELECT u.state, count(*) FROM video_urls l CROSS JOIN urls u ON u.id = l.url_id"
        " WHERE l.video_id = ? AND u.provider = ? AND u.area = ? GROUP BY u.state",
        "SELECT count(*) FROM skipped_urls WHERE video_id = ? AND provider = ? AND area = ?",
    ),
}

P = ParamSpec("P")
R = TypeVar("R")


_NO_EXPIRY = 2**62  # later than any lease, in microseconds


def _micros(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("the ledger takes timezone-aware datetimes only")
    return round(moment.timestamp() * 1_000_000)


def _span_micros(span: dt.timedelta) -> int:
    return span // dt.timedelta(microseconds=1)


def _moment(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def _maybe_moment(micros: int | None) -> dt.datetime | None:
    return None if micros is None else _moment(micros)


def _translated(
    method: Callable[Concatenate[SqliteLedger, P], R],
) -> Callable[Concatenate[SqliteLedger, P], R]:
    """Turn sqlite3 errors into one-sentence LedgerErrors naming the file."""

    @wraps(method)
    def wrapper(self: SqliteLedger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self.describe(exc) from exc

    return wrapper


class SqliteLedger(Ledger):
    """The ledger in one SQLite file. Safe for several processes and threads."""

    def __init__(
        self, path: str | Path, *, busy_timeout: float = 30.0, read_only: bool = False
    ) -> None:
        """Open (creating it if needed) the ledger file at ``path``.

        ``read_only``: for commands that only look (``status``, ``quota``). The
        file is opened with ``mode=ro``, nothing is created or migrated and no
        lock is taken, so it answers while a worker holds a write transaction
        (WAL readers never wait for the writer). A missing file reads as an
        empty ledger. Another application's SQLite file is refused either way,
        before anything is written to it.
        """
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        # One connection per ledger object; the lock lets threads share it.
        self._lock = threading.RLock()
        missing = not self.path.exists()
        if self.path.is_dir():
            raise ConfigError(
                f"The ledger path {self.path} is a directory; set CDN_PREHEAT_DB to a file path."
            )
        if not missing and not self.path.is_file():
            # /dev/null, a FIFO, a socket: SQLite would fail on it with no clear reason.
            raise ConfigError(
                f"The ledger path {self.path} is not a regular file; set CDN_PREHEAT_DB to a"
                " file path."
            )
        try:
            if read_only and missing:
                target: str | Path = ":memory:"
            elif read_only:
                target = f"{self.path.resolve().as_uri()}?mode=ro"
            else:
                target = self.path
            self._db = sqlite3.connect(
                target,
                timeout=busy_timeout,
                isolation_level=None,  # transactions are explicit, see _write
                check_same_thread=False,
                uri=read_only and not missing,
            )
        except sqlite3.Error as exc:
            raise self.describe(exc) from exc
        try:
            if read_only and missing:
                self._db.executescript(_SCHEMA)
            elif read_only:
                if not self._check_identity():
                    # An empty file (created, never written): an empty ledger, as
                    # a missing one; the file itself stays as it is.
                    self._db.close()
                    self._db = sqlite3.connect(
                        ":memory:", isolation_level=None, check_same_thread=False
                    )
                    self._db.executescript(_SCHEMA)
            else:
                self._open()
        except BaseException:
            self._db.close()
            raise

    # Plumbing -------------------------------------------------------------
    def describe(self, exc: sqlite3.Error) -> LedgerError | ConfigError:
        """A one-sentence error for what went wrong with the file."""
        text = str(exc).lower()
        if "not a database" in text or "encrypted" in text:
            # Damaged or not SQLite at all: a corrupt store (exit 1), unlike a sound
            # SQLite file of another application, which is a wrong setting (exit 2).
            return LedgerError(
                f"The file {self.path} is not a cdn-preheat ledger (not an SQLite database, "
                "or an encrypted one); it was left untouched. Set CDN_PREHEAT_DB to another path."
            )
        if "malformed" in text:
            return LedgerError(
                f"The ledger file {self.path} is not a cdn-preheat SQLite database "
                "(damaged or another kind of file); move it aside or set CDN_PREHEAT_DB."
            )
        if "locked" in text or "busy" in text:
            return LedgerError(
                f"The ledger file {self.path} stayed locked by another process for "
                f"{self.busy_timeout:g} s; try again when that process has finished."
            )
        if "unable to open" in text or "readonly" in text or "read-only" in text:
            # A path that cannot be written is a setting to fix (exit 2), not a failure.
            return ConfigError(
                f"The ledger file {self.path} cannot be opened for writing ({exc}); "
                "set CDN_PREHEAT_DB to a writable path."
            )
        return LedgerError(f"The ledger file {self.path} failed: {exc}.")

    @_translated
    def _check_identity(self) -> bool:
        """True when the file is a cdn-preheat ledger, False when it is empty (new).

        Raises ConfigError for another application's SQLite file, read before
        any pragma or statement could change it.
        """
        self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
        tables = {
            row[0]
            for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if app_id == APPLICATION_ID or (app_id == 0 and tables >= _OWN_TABLES):
            return True
        if app_id == 0 and not tables:
            return False
        raise ConfigError(
            f"The file {self.path} is another application's SQLite database, not a "
            "cdn-preheat ledger; it was left untouched. Set CDN_PREHEAT_DB to another path."
        )

    @_translated
    def _open(self) -> None:
        self._check_identity()
        self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable in WAL mode except for the last commits on power loss;
        # losing those only means a few URLs are pushed twice.
        self._db.execute("PRAGMA synchronous = NORMAL")
        # executescript() commits any open transaction first, so the script
        # carries its own; IMMEDIATE keeps two first-time openers apart.
        self._db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        with self._write() as db:
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise LedgerError(
                    f"The ledger file {self.path} was written by a newer cdn-preheat "
                    f"(schema {row[0]}); upgrade cdn-preheat to use it."
                )
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from the start."""
        if self.read_only:
            raise LedgerError(f"The ledger file {self.path} was opened read-only.")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # Videos ---------------------------------------------------------------
    @_translated
    def get_video(self, video_id: str) -> VideoRecord | None:
        with self._read() as db:
            row = db.execute(
                "SELECT video_id, m3u8_url, url_count, state, created_at, updated_at"
                " FROM videos WHERE video_id = ?",
                (video_id,),
            ).fetchone()
        return None if row is None else _video(row)

    @_translated
    def put_video(self, video_id: str, m3u8_url: str, url_count: int, now: dt.datetime) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (video_id) DO UPDATE"
                " SET m3u8_url = excluded.m3u8_url, url_count = excluded.url_count,"
                " state = excluded.state, updated_at = excluded.updated_at",
                (video_id, m3u8_url, url_count, VideoState.QUEUED, _micros(now), _micros(now)),
            )

    @_translated
    def set_video_state(self, video_id: str, state: VideoState, now: dt.datetime) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE videos SET state = ?, updated_at = ? WHERE video_id = ?",
                (state, _micros(now), video_id),
            )

    @_translated
    def reset_video(self, video_id: str) -> int:
        """Forget the video, its skipped URLs and its URL rows.

        A URL row shared with another video is forgotten for both (it is the
        same push); the other video sees it again once it is re-queued.
        """
        with self._write() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT url_id FROM video_urls WHERE video_id = ?", (video_id,)
                )
            ]
            skipped = db.execute(
                "DELETE FROM skipped_urls WHERE video_id = ?", (video_id,)
            ).rowcount
            db.execute("CREATE TEMP TABLE IF NOT EXISTS forget (id INTEGER PRIMARY KEY)")
            db.execute("DELETE FROM temp.forget")
            db.executemany("INSERT INTO temp.forget VALUES (?)", ((i,) for i in ids))
            db.execute("DELETE FROM video_urls WHERE url_id IN (SELECT id FROM temp.forget)")
            db.execute("DELETE FROM urls WHERE id IN (SELECT id FROM temp.forget)")
            db.execute("DELETE FROM videos WHERE video_id = ?", (video_id,))
        return len(ids) + skipped

    @_translated
    def cancel_video(self, video_id: str, reason: str = "cancelled") -> int:
        with self._write() as db:
            rows = db.execute(
                "SELECT u.id, u.provider, u.area, u.url FROM video_urls l"
                " JOIN urls u ON u.id = l.url_id"
                " WHERE l.video_id = ? AND u.state = 'pending' AND NOT EXISTS"
                " (SELECT 1 FROM video_urls o WHERE o.url_id = u.id AND o.video_id != ?)",
                (video_id, video_id),
            ).fetchall()
            db.executemany(
                "INSERT INTO skipped_urls VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET reason = excluded.reason",
                ((video_id, provider, area, url, reason) for _, provider, area, url in rows),
            )
            db.executemany("DELETE FROM video_urls WHERE url_id = ?", ((row[0],) for row in rows))
            db.executemany(
                "DELETE FROM urls WHERE id = ? AND state = 'pending'", ((row[0],) for row in rows)
            )
        return len(rows)

    @_translated
    def list_videos(self) -> list[VideoRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT video_id, m3u8_url, url_count, state, created_at, updated_at"
                " FROM videos ORDER BY created_at, video_id"
            ).fetchall()
        return [_video(row) for row in rows]

    # URLs -----------------------------------------------------------------
    @_translated
    def enqueue(
        self,
        video_id: str,
        provider: str,
        area: str,
        urls: Iterable[QueuedUrl],
        now: dt.datetime,
        max_age: dt.timedelta,
    ) -> EnqueueResult:
        """Link the URLs to the video; queue those never pushed, expired or failed.

        A done URL has expired when its ``expires_at`` has passed or it was
        pushed longer than ``max_age`` ago (so a shorter setting applies at
        once). A URL that failed or was refused before is queued again, with
        its attempts reset: enqueueing is a new request to push it.
        """
        unique = {item.url: item for item in urls}
        params = {
            "provider": provider,
            "area": area,
            "now": _micros(now),
            "cutoff": _micros(now - max_age),
        }
        with self._write() as db:
            _fill_batch(db, unique.values())
            queued, done, in_queue = db.execute(_CLASSIFY_BATCH, params).fetchone()
            (params["base"],) = db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'seq' RETURNING value - ?",
                (len(unique), len(unique)),
            ).fetchone()
            db.execute(_UPSERT_BATCH, params)
            db.execute(_LINK_BATCH, {**params, "video_id": video_id})
            db.execute(
                "DELETE FROM skipped_urls WHERE video_id = ? AND provider = ? AND area = ?"
                " AND url IN (SELECT url FROM temp.batch)",
                (video_id, provider, area),
            )
        return EnqueueResult(
            queued=queued or 0, already_done=done or 0, already_queued=in_queue or 0, skipped=0
        )

    @_translated
    def mark_skipped(
        self, video_id: str, provider: str, area: str, reasons: Mapping[str, str]
    ) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT INTO skipped_urls VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET reason = excluded.reason",
                ((video_id, provider, area, url, why) for url, why in reasons.items()),
            )

    @_translated
    def claim(
        self,
        provider: str,
        area: str,
        limit: int,
        worker: str,
        now: dt.datetime,
        lease: dt.timedelta,
        *,
        video_id: str | None = None,
    ) -> Claim | None:
        with self._write() as db:
            return _claim_pending(db, provider, area, limit, worker, now, lease, video_id)

    @_translated
    def claim_with_quota(
        self,
        provider: str,
        area: str,
        day: str,
        limit: int,
        worker: str,
        now: dt.datetime,
        lease: dt.timedelta,
        *,
        video_id: str | None = None,
    ) -> tuple[Claim | None, int]:
        """One transaction: a crash cannot separate the reservation from the claim."""
        with self._write() as db:
            granted = _grantable(db, provider, area, day, limit)
            if granted == 0:
                return None, 0
            claim = _claim_pending(db, provider, area, granted, worker, now, lease, video_id)
            _hold_quota(db, provider, area, day, len(claim.urls) if claim else 0)
        return claim, granted

    @_translated
    def mark_submitted(
        self, claim: Claim, task_id: str, urls: Sequence[str], now: dt.datetime
    ) -> None:
        with self._write() as db:
            _mark_submitted(db, claim, task_id, urls, now)

    @_translated
    def mark_submitted_settling(
        self,
        claim: Claim,
        task_id: str,
        urls: Sequence[str],
        now: dt.datetime,
        day: str,
        reserved: int,
    ) -> None:
        self.settle_claim(claim, now, day, reserved, len(urls), submitted={task_id: urls})

    @_translated
    def settle_claim(
        self,
        claim: Claim,
        now: dt.datetime,
        day: str | None,
        reserved: int,
        used: int,
        *,
        submitted: Mapping[str, Sequence[str]] | None = None,
        invalid: Mapping[str, str] | None = None,
        released: Sequence[str] = (),
        error: str | None = None,
        count_attempt: bool = False,
    ) -> None:
        """One transaction: a crash cannot separate the URLs' end from the settle."""
        with self._write() as db:
            for task_id, urls in (submitted or {}).items():
                _mark_submitted(db, claim, task_id, urls, now)
            if invalid:
                _mark_invalid(db, claim.provider, claim.area, invalid)
            if released:
                _release(db, claim, released, error, count_attempt)
            if day is not None:
                _settle_quota(db, claim.provider, claim.area, day, reserved, used)

    @_translated
    def release(
        self, claim: Claim, urls: Sequence[str], error: str | None, *, count_attempt: bool
    ) -> None:
        with self._write() as db:
            _release(db, claim, urls, error, count_attempt)

    @_translated
    def mark_invalid(
        self, provider: str, area: str, reasons: Mapping[str, str], now: dt.datetime
    ) -> None:
        with self._write() as db:
            _mark_invalid(db, provider, area, reasons)

    @_translated
    def requeue(self, provider: str, area: str, urls: Sequence[str]) -> int:
        unique = list(dict.fromkeys(urls))
        moved = 0
        with self._write() as db:
            (base,) = db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'seq' RETURNING value - ?",
                (len(unique), len(unique)),
            ).fetchone()
            for offset, url in enumerate(unique):
                moved += db.execute(
                    "UPDATE urls SET state = 'pending', seq = ?, attempts = 0, last_error = NULL,"
                    " task_id = NULL, expires_at = NULL"
                    " WHERE provider = ? AND area = ? AND url = ?"
                    " AND state IN ('done', 'failed', 'invalid')",
                    (base + offset, provider, area, url),
                ).rowcount
        return moved

    @_translated
    def record_outcomes(
        self,
        provider: str,
        area: str,
        outcomes: Sequence[Outcome],
        now: dt.datetime,
        max_age: dt.timedelta,
        max_attempts: int,
    ) -> None:
        """Apply task results to URLs still submitted under that task.

        DONE expires ``max_age`` from now; FAILED counts an attempt and goes
        back to pending (same place in the queue) until ``max_attempts``
        failures, then stays failed. A task is closed once none of its URLs is
        submitted any more.
        """
        expires = _micros(now) + _span_micros(max_age)
        # One executemany per statement: a tracker writes a page of outcomes at a
        # time, nearly all DONE, and one execute per URL cost more than the update.
        by_statement: dict[str, list[tuple[object, ...]]] = {}
        for outcome in outcomes:
            key = (provider, area, outcome.url, outcome.task_id)
            if outcome.state is UrlState.DONE:
                by_statement.setdefault(_OUTCOME_DONE, []).append((expires, *key))
            elif outcome.state is UrlState.FAILED:
                by_statement.setdefault(_OUTCOME_FAILED, []).append(
                    (max_attempts, max_attempts, outcome.reason, *key)
                )
            elif outcome.state is UrlState.INVALID and outcome.retry_once:
                by_statement.setdefault(_OUTCOME_INVALID_ONCE, []).append((outcome.reason, *key))
            elif outcome.state is UrlState.INVALID:
                by_statement.setdefault(_OUTCOME_INVALID, []).append((outcome.reason, *key))
            else:
                raise ValueError(f"an outcome is DONE, FAILED or INVALID, not {outcome.state}")
        with self._write() as db:
            for statement, rows in by_statement.items():
                db.executemany(statement, rows)
            _close_finished_tasks(db, provider, {outcome.task_id for outcome in outcomes})

    @_translated
    def expired_claims(self, provider: str, area: str, now: dt.datetime) -> list[Claim]:
        with self._read() as db:
            rows = db.execute(
                "SELECT claim_id, worker, claimed_at, lease_until, url FROM urls"
                " WHERE state = 'reserved' AND provider = ? AND area = ? AND lease_until <= ?"
                " ORDER BY claimed_at, claim_id, priority, seq",
                (provider, area, _micros(now)),
            ).fetchall()
        claims = []
        for (claim_id, worker, claimed_at, lease_until), group in groupby(
            rows, key=lambda row: row[:4]
        ):
            urls = tuple(row[4] for row in group)
            claims.append(
                Claim(
                    claim_id,
                    provider,
                    area,
                    urls,
                    worker,
                    _moment(claimed_at),
                    _moment(lease_until),
                )
            )
        return claims

    @_translated
    def renew_lease(
        self, claim: Claim, now: dt.datetime, lease: dt.timedelta, *, worker: str | None = None
    ) -> Claim | None:
        lease_until = now + lease
        # Taking over: only a lease that has run out. Renewing: whatever its lease.
        expired_by = _micros(now) if worker is not None else _NO_EXPIRY
        with self._write() as db:
            rows = db.execute(
                "UPDATE urls SET lease_until = ?, worker = ? WHERE state = 'reserved'"
                " AND provider = ? AND area = ? AND claim_id = ? AND worker = ?"
                " AND lease_until <= ? RETURNING priority, seq, url",
                (
                    _micros(lease_until),
                    worker or claim.worker,
                    claim.provider,
                    claim.area,
                    claim.claim_id,
                    claim.worker,
                    expired_by,
                ),
            ).fetchall()
        if not rows:
            return None
        urls = tuple(url for _, _, url in sorted(rows))
        return dataclasses.replace(
            claim, urls=urls, worker=worker or claim.worker, lease_until=lease_until
        )

    @_translated
    def record_task(
        self, task_id: str, provider: str, area: str, kind: str, url_count: int, now: dt.datetime
    ) -> None:
        with self._write() as db:
            _insert_task(db, task_id, provider, area, kind, url_count, now)

    @_translated
    def known_tasks(self, provider: str, task_ids: Iterable[str]) -> set[str]:
        with self._read() as db:
            rows = db.execute(
                "SELECT task_id FROM tasks WHERE provider = ?"
                " AND task_id IN (SELECT value FROM json_each(?))",
                (provider, json.dumps(sorted(set(task_ids)))),
            ).fetchall()
        return {row[0] for row in rows}

    @_translated
    def earlier_pushes(self, provider: str, area: str, found: Mapping[str, str]) -> set[str]:
        if not found:
            return set()
        with self._read() as db:
            # CROSS JOIN keeps this order: each found URL, then its row and its task by
            # their unique indexes. json_each has no statistics, and with plain JOINs
            # SQLite put it innermost, scanning every URL of the provider times every
            # task (400 million steps at 10,000 URLs, for one lost batch).
            rows = db.execute(
                "SELECT f.key FROM json_each(?) f"
                " CROSS JOIN urls u ON u.provider = ? AND u.area = ? AND u.url = f.key"
                " CROSS JOIN tasks t ON t.provider = u.provider AND t.task_id = f.value"
                " WHERE u.pushed_at >= t.created_at",
                (json.dumps(dict(found)), provider, area),
            ).fetchall()
        return {row[0] for row in rows}

    @_translated
    def close_task(self, task_id: str, provider: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE tasks SET open = 0 WHERE provider = ? AND task_id = ?", (provider, task_id)
            )

    @_translated
    def open_tasks(self, provider: str, area: str, kind: str = "push") -> list[TaskRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT task_id, provider, area, kind, url_count, created_at, open FROM tasks"
                " WHERE open = 1 AND provider = ? AND area = ? AND kind = ?"
                " ORDER BY created_at, rowid",
                (provider, area, kind),
            ).fetchall()
        return [
            TaskRecord(task_id, prov, ar, kd, count, _moment(created), bool(is_open))
            for task_id, prov, ar, kd, count, created, is_open in rows
        ]

    @_translated
    def abandon_task(self, provider: str, task_id: str, reason: str) -> int:
        with self._write() as db:
            moved = db.execute(
                "UPDATE urls SET state = 'pending', task_id = NULL, last_error = ?"
                " WHERE provider = ? AND task_id = ? AND state = 'submitted'",
                (reason, provider, task_id),
            ).rowcount
            db.execute(
                "UPDATE tasks SET open = 0 WHERE provider = ? AND task_id = ?", (provider, task_id)
            )
        return int(moved)

    @_translated
    def submitted_urls(self, provider: str, task_ids: Iterable[str]) -> dict[str, list[str]]:
        with self._read() as db:
            # "+provider": by the task index, not the (provider, ...) key, which the
            # planner preferred and which scanned every URL of the provider: a
            # tracker asks this for every page it reads, so the cost grew with the
            # catalog (26 ms a page at 100,000 URLs, 0.5 ms by the task index).
            rows = db.execute(
                "SELECT task_id, url FROM urls WHERE state = 'submitted' AND +provider = ?"
                " AND task_id IN (SELECT value FROM json_each(?)) ORDER BY seq",
                (provider, json.dumps(sorted(set(task_ids)))),
            ).fetchall()
        found: dict[str, list[str]] = {}
        for task_id, url in rows:
            found.setdefault(task_id, []).append(url)
        return found

    @_translated
    def done_urls(
        self,
        provider: str,
        area: str,
        urls: Iterable[str],
        now: dt.datetime,
        max_age: dt.timedelta,
    ) -> set[str]:
        found: set[str] = set()
        unique = iter(dict.fromkeys(urls))
        params = {
            "provider": provider,
            "area": area,
            "now": _micros(now),
            "cutoff": _micros(now - max_age),
        }
        with self._read() as db:
            while chunk := list(islice(unique, 500)):
                rows = db.execute(
                    _SELECT_FRESH_DONE,
                    {**params, "urls": json.dumps(chunk)},
                )
                found.update(row[0] for row in rows)
        return found

    @_translated
    def url_records(self, video_id: str) -> list[UrlRecord]:
        """The video's URLs in queue order, then its skipped URLs."""
        with self._read() as db:
            rows = db.execute(
                _SELECT_VIDEO_URLS + " ORDER BY u.seq",
                (video_id,),
            ).fetchall()
            skipped = db.execute(
                "SELECT url, provider, area, reason FROM skipped_urls WHERE video_id = ?"
                " ORDER BY rowid",
                (video_id,),
            ).fetchall()
        return [_url_record(row) for row in rows] + [
            UrlRecord(url, prov, ar, "", UrlState.SKIPPED, None, 0, reason, None, None)
            for url, prov, ar, reason in skipped
        ]

    @_translated
    def counts(
        self, video_id: str | None = None, *, target: tuple[str, str] | None = None
    ) -> dict[UrlState, int]:
        # With a target, ``provider = ? AND area = ?`` reads that target's range of
        # the (provider, area, url) index only; with a video too, the CROSS JOIN
        # keeps the video's links as the outer loop (the planner would otherwise
        # walk the whole target's range and look each row's link up).
        args = (() if video_id is None else (video_id,)) + (() if target is None else target)
        urls, skipped_urls = _COUNTS[video_id is not None, target is not None]
        with self._read() as db:
            rows = db.execute(urls, args).fetchall()
            (skipped,) = db.execute(skipped_urls, args).fetchone()
        result = {UrlState(state): count for state, count in rows}
        if skipped:
            result[UrlState.SKIPPED] = skipped
        return result

    @_translated
    def has_pending(self, provider: str, area: str, video_id: str | None = None) -> bool:
        # Both forms search the urls_claim partial index (pending rows only) and
        # stop at the first row found.
        with self._read() as db:
            if video_id is None:
                (found,) = db.execute(
                    "SELECT EXISTS (SELECT 1 FROM urls WHERE provider = ? AND area = ?"
                    " AND state = 'pending')",
                    (provider, area),
                ).fetchone()
            else:
                (found,) = db.execute(
                    "SELECT EXISTS (SELECT 1 FROM urls u JOIN video_urls l ON l.url_id = u.id"
                    " WHERE u.provider = ? AND u.area = ? AND u.state = 'pending'"
                    " AND l.video_id = ?)",
                    (provider, area, video_id),
                ).fetchone()
        return bool(found)

    @_translated
    def counts_by_target(
        self, video_id: str | None = None
    ) -> dict[tuple[str, str], dict[UrlState, int]]:
        with self._read() as db:
            if video_id is None:
                rows = db.execute(
                    "SELECT provider, area, state, count(*) FROM urls"
                    " GROUP BY provider, area, state"
                ).fetchall()
                skipped = db.execute(
                    "SELECT provider, area, count(*) FROM skipped_urls GROUP BY provider, area"
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT u.provider, u.area, u.state, count(*) FROM video_urls l"
                    " JOIN urls u ON u.id = l.url_id WHERE l.video_id = ?"
                    " GROUP BY u.provider, u.area, u.state",
                    (video_id,),
                ).fetchall()
                skipped = db.execute(
                    "SELECT provider, area, count(*) FROM skipped_urls WHERE video_id = ?"
                    " GROUP BY provider, area",
                    (video_id,),
                ).fetchall()
        result: dict[tuple[str, str], dict[UrlState, int]] = {}
        for provider, area, state, count in rows:
            result.setdefault((provider, area), {})[UrlState(state)] = count
        for provider, area, count in skipped:
            result.setdefault((provider, area), {})[UrlState.SKIPPED] = count
        return result

    @_translated
    def pending_groups(self, provider: str, area: str) -> list[PendingGroup]:
        with self._read() as db:
            rows = db.execute(
                "SELECT v.video_id, u.priority, count(*), min(u.seq) FROM urls u"
                " JOIN (SELECT url_id, min(video_id) AS video_id FROM video_urls"
                " GROUP BY url_id) v ON v.url_id = u.id"
                " WHERE u.provider = ? AND u.area = ? AND u.state = 'pending'"
                " GROUP BY v.video_id, u.priority ORDER BY u.priority, min(u.seq)",
                (provider, area),
            ).fetchall()
        return [PendingGroup(video_id, priority, count) for video_id, priority, count, _ in rows]

    @_translated
    def failures(self, video_id: str | None = None, limit: int = 20) -> list[UrlRecord]:
        """Failed and invalid URLs, in queue order."""
        with self._read() as db:
            if video_id is None:
                rows = db.execute(
                    _SELECT_URLS + " WHERE u.state IN ('failed', 'invalid') ORDER BY u.seq LIMIT ?",
                    (limit,),
                ).fetchall()
            else:
                rows = db.execute(
                    _SELECT_VIDEO_URLS
                    + " AND u.state IN ('failed', 'invalid') ORDER BY u.seq LIMIT ?",
                    (video_id, limit),
                ).fetchall()
        return [_url_record(row) for row in rows]

    # Quota ----------------------------------------------------------------
    @_translated
    def sync_quota(
        self,
        provider: str,
        area: str,
        day: str,
        limit: int | None,
        used: int,
        *,
        settles_seen: int | None = None,
    ) -> QuotaDay:
        with self._write() as db:
            known = _quota_day(db, provider, area, day)
            current = known is not None and known.inflight == 0 and known.settles == settles_seen
            if known is not None and not current:
                used = max(used, known.used)
            db.execute(
                'INSERT INTO quota_days (provider, area, day, "limit", used) VALUES (?, ?, ?, ?, ?)'
                ' ON CONFLICT DO UPDATE SET "limit" = excluded."limit", used = excluded.used',
                (provider, area, day, limit, used),
            )
            return _quota_day(db, provider, area, day) or QuotaDay(
                provider, area, day, limit, used, 0
            )

    @_translated
    def reserve_quota(self, provider: str, area: str, day: str, n: int) -> int:
        with self._write() as db:
            granted = _grantable(db, provider, area, day, n)
            _hold_quota(db, provider, area, day, granted)
        return granted

    @_translated
    def settle_quota(self, provider: str, area: str, day: str, reserved: int, used: int) -> None:
        with self._write() as db:
            _settle_quota(db, provider, area, day, reserved, used)

    @_translated
    def exhaust_quota(self, provider: str, area: str, day: str) -> None:
        """Used becomes the limit; with no known limit both become ``EXHAUSTED``."""
        with self._write() as db:
            db.execute(
                'INSERT INTO quota_days (provider, area, day, "limit", used)'
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE"
                ' SET "limit" = coalesce("limit", excluded."limit"),'
                ' used = coalesce("limit", excluded.used)',
                (provider, area, day, EXHAUSTED, EXHAUSTED),
            )

    @_translated
    def quota_day(self, provider: str, area: str, day: str) -> QuotaDay | None:
        with self._read() as db:
            return _quota_day(db, provider, area, day)

    # Workers --------------------------------------------------------------
    @_translated
    def heartbeat(
        self, scope: str, worker_id: str, now: dt.datetime, ttl: dt.timedelta
    ) -> dict[str, dt.datetime]:
        seen, oldest = _micros(now), _micros(now - ttl)
        with self._write() as db:
            db.execute("DELETE FROM rate_workers WHERE scope = ? AND seen_at < ?", (scope, oldest))
            db.execute(
                "INSERT INTO rate_workers (scope, worker_id, joined_at, seen_at)"
                " VALUES (?, ?, ?, ?)"
                " ON CONFLICT (scope, worker_id) DO UPDATE SET seen_at = excluded.seen_at",
                (scope, worker_id, seen, seen),
            )
            rows = db.execute(
                "SELECT worker_id, joined_at FROM rate_workers WHERE scope = ?", (scope,)
            ).fetchall()
        return {worker: _moment(joined) for worker, joined in rows}

    @_translated
    def leave(self, scope: str, worker_id: str) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM rate_workers WHERE scope = ? AND worker_id = ?", (scope, worker_id)
            )

    @_translated
    def take_turn(self, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
        with self._write() as db:
            db.execute(
                "INSERT INTO turns (name, holder, until) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until"
                " WHERE turns.until < ? OR turns.holder = excluded.holder",
                (name, holder, _micros(now + ttl), _micros(now)),
            )
            row = db.execute("SELECT holder FROM turns WHERE name = ?", (name,)).fetchone()
        return row is not None and row[0] == holder

    @_translated
    def release_turn(self, name: str, holder: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM turns WHERE name = ? AND holder = ?", (name, holder))

    # Outbox -----------------------------------------------------------------
    @_translated
    def enqueue_event(
        self,
        topic: str,
        key: str,
        payload: Mapping[str, Any],
        now: dt.datetime,
        *,
        due: dt.datetime | None = None,
    ) -> tuple[OutboxEvent, bool]:
        event_id = f"evt_{uuid.uuid4().hex}"
        body = json.dumps(dict(payload), separators=(",", ":"), sort_keys=True)
        with self._write() as db:
            added = db.execute(
                "INSERT INTO outbox (event_id, topic, key, payload, state, created_at, due_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (topic, key) DO NOTHING",
                (event_id, topic, key, body, EventState.PENDING, _micros(now),
                 _micros(due or now)),
            ).rowcount  # fmt: skip
            row = db.execute(
                f"{_SELECT_EVENTS} WHERE topic = ? AND key = ?", (topic, key)
            ).fetchone()
        return _event(row), bool(added)

    @_translated
    def claim_events(
        self, topic: str, now: dt.datetime, lease: dt.timedelta, limit: int, worker: str
    ) -> list[OutboxEvent]:
        moment = _micros(now)
        with self._write() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT event_id FROM outbox WHERE topic = ? AND state = 'pending'"
                    " AND due_at <= ? AND ifnull(lease_until, 0) <= ?"
                    " ORDER BY due_at, created_at LIMIT ?",
                    (topic, moment, moment, limit),
                )
            ]
            db.executemany(
                "UPDATE outbox SET lease_until = ?, worker = ? WHERE event_id = ?",
                ((_micros(now + lease), worker, event_id) for event_id in ids),
            )
            rows = [
                db.execute(f"{_SELECT_EVENTS} WHERE event_id = ?", (event_id,)).fetchone()
                for event_id in ids
            ]
        return [_event(row) for row in rows]

    @_translated
    def mark_event_delivered(self, event_id: str, now: dt.datetime) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1,"
                " lease_until = NULL, due_at = ? WHERE event_id = ? AND state = 'pending'",
                (_micros(now), event_id),
            )

    @_translated
    def reschedule_event(self, event_id: str, due: dt.datetime, error: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET due_at = ?, attempts = attempts + 1, last_error = ?,"
                " lease_until = NULL WHERE event_id = ? AND state = 'pending'",
                (_micros(due), error, event_id),
            )

    @_translated
    def fail_event(self, event_id: str, error: str, now: dt.datetime) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?,"
                " lease_until = NULL, due_at = ? WHERE event_id = ? AND state = 'pending'",
                (error, _micros(now), event_id),
            )

    @_translated
    def prune_events(self, topic: str, before: dt.datetime) -> int:
        with self._write() as db:
            # A settled event's due_at is when it was delivered or given up.
            return db.execute(
                "DELETE FROM outbox WHERE topic = ? AND state IN ('delivered', 'failed')"
                " AND due_at < ?",
                (topic, _micros(before)),
            ).rowcount

    @_translated
    def get_event(self, event_id: str) -> OutboxEvent | None:
        with self._read() as db:
            row = db.execute(f"{_SELECT_EVENTS} WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else _event(row)

    @_translated
    def list_events(
        self,
        topic: str,
        *,
        state: EventState | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> list[OutboxEvent]:
        where, args = "topic = ?", [topic]
        if state is not None:
            where += " AND state = ?"
            args.append(str(state))
        if key_prefix:
            where += " AND substr(key, 1, ?) = ?"
            args += [str(len(key_prefix)), key_prefix]
        with self._read() as db:
            rows = db.execute(
                f"{_SELECT_EVENTS} WHERE {where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_event(row) for row in rows]


# Enqueue's rule for pushing a done URL again (parameters :now and :cutoff),
# which the dry run's done_urls reads too.
_STALE = "(ifnull(urls.expires_at <= :now, 0) OR ifnull(urls.pushed_at <= :cutoff, 0))"

# Constant text only (values are bound parameters), so S608 does not apply.
_SELECT_FRESH_DONE = (
    """
SELECT url FROM urls WHERE provider = :provider AND area = :area
    AND url IN (SELECT value FROM json_each(:urls)) AND state = 'done' AND NOT """  # noqa: S608
    + _STALE
)

# Enqueue works on a temporary table so that classification, upsert and
# linking are three set-wise statements instead of three statements per URL.
_CLASSIFY_BATCH = (
    """
SELECT
    sum(urls.id IS NULL OR urls.state IN ('failed', 'invalid')
        OR (urls.state = 'done' AND """
    + _STALE
    + """)),
    sum(urls.state = 'done' AND NOT """
    + _STALE
    + """),
    sum(urls.state IN ('pending', 'reserved', 'submitted'))
FROM temp.batch b LEFT JOIN urls
    ON urls.provider = :provider AND urls.area = :area AND urls.url = b.url
"""
)

_UPSERT_BATCH = (
    """
INSERT INTO urls (provider, area, url, kind, priority, seq, state)
SELECT :provider, :area, url, kind, priority, :base + pos, 'pending' FROM temp.batch WHERE true
ON CONFLICT (provider, area, url) DO UPDATE SET
    state = 'pending', kind = excluded.kind, priority = excluded.priority, seq = excluded.seq,
    attempts = 0, last_error = NULL, task_id = NULL, expires_at = NULL
WHERE urls.state IN ('failed', 'invalid')
    OR (urls.state = 'done' AND """
    + _STALE
    + """)
"""
)

_LINK_BATCH = """
INSERT OR IGNORE INTO video_urls (video_id, url_id)
SELECT :video_id, u.id FROM temp.batch b JOIN urls u
    ON u.provider = :provider AND u.area = :area AND u.url = b.url
"""

# Outcomes only touch a URL still submitted under the task they report on, so
# a late answer about an older task cannot undo a newer push.
_OUTCOME_DONE = """
UPDATE urls SET state = 'done', expires_at = ?, last_error = NULL
WHERE provider = ? AND area = ? AND url = ? AND task_id = ? AND state = 'submitted'
"""

# Both CASEs read the row as it was before the update (SQL semantics).
_OUTCOME_FAILED = """
UPDATE urls SET
    attempts = attempts + 1,
    state = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE 'pending' END,
    task_id = CASE WHEN attempts + 1 >= ? THEN task_id END,
    last_error = ?
WHERE provider = ? AND area = ? AND url = ? AND task_id = ? AND state = 'submitted'
"""

# Retried once: a URL with no attempt counted goes back to pending, counting one.
_OUTCOME_INVALID_ONCE = """
UPDATE urls SET
    attempts = attempts + 1,
    state = CASE WHEN attempts >= 1 THEN 'invalid' ELSE 'pending' END,
    task_id = CASE WHEN attempts >= 1 THEN task_id END,
    last_error = ?
WHERE provider = ? AND area = ? AND url = ? AND task_id = ? AND state = 'submitted'
"""

_OUTCOME_INVALID = """
UPDATE urls SET state = 'invalid', last_error = ?
WHERE provider = ? AND area = ? AND url = ? AND task_id = ? AND state = 'submitted'
"""


def _fill_batch(db: sqlite3.Connection, items: Iterable[QueuedUrl]) -> None:
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS batch"
        " (pos INTEGER PRIMARY KEY, url TEXT NOT NULL, kind TEXT NOT NULL, priority INTEGER)"
    )
    db.execute("DELETE FROM temp.batch")
    db.executemany(
        "INSERT INTO temp.batch VALUES (?, ?, ?, ?)",
        ((pos, item.url, item.kind, item.priority) for pos, item in enumerate(items)),
    )


_SUBMITTED = (
    "UPDATE urls SET state = 'submitted', task_id = ?, pushed_at = ?,"
    " claim_id = NULL, worker = NULL, claimed_at = NULL, lease_until = NULL"
    " WHERE claim_id = ? AND state = 'reserved'"
)


def _mark_submitted(
    db: sqlite3.Connection, claim: Claim, task_id: str, urls: Sequence[str], now: dt.datetime
) -> None:
    pushed_at = _micros(now)
    if tuple(urls) == claim.urls:
        # The whole claim (the common case): its reserved rows are exactly its URLs,
        # found by the claim id's index in one statement instead of one per URL.
        db.execute(_SUBMITTED, (task_id, pushed_at, claim.claim_id))
    else:
        db.executemany(
            _SUBMITTED + " AND provider = ? AND area = ? AND url = ?",
            ((task_id, pushed_at, claim.claim_id, claim.provider, claim.area, url) for url in urls),
        )
    _insert_task(db, task_id, claim.provider, claim.area, "push", len(urls), now)
    db.execute(
        "UPDATE tasks SET open = 1 WHERE provider = ? AND task_id = ?",
        (claim.provider, task_id),
    )


def _release(
    db: sqlite3.Connection,
    claim: Claim,
    urls: Sequence[str],
    error: str | None,
    count_attempt: bool,
) -> None:
    db.executemany(
        "UPDATE urls SET state = 'pending',"
        " claim_id = NULL, worker = NULL, claimed_at = NULL, lease_until = NULL,"
        " attempts = attempts + ?, last_error = coalesce(?, last_error)"
        " WHERE provider = ? AND area = ? AND url = ? AND claim_id = ?"
        " AND state = 'reserved'",
        (
            (int(count_attempt), error, claim.provider, claim.area, url, claim.claim_id)
            for url in urls
        ),
    )


def _mark_invalid(
    db: sqlite3.Connection, provider: str, area: str, reasons: Mapping[str, str]
) -> None:
    tasks = set()
    for url, reason in reasons.items():
        row = db.execute(
            "UPDATE urls SET state = 'invalid', last_error = ?, claim_id = NULL,"
            " worker = NULL, claimed_at = NULL, lease_until = NULL"
            " WHERE provider = ? AND area = ? AND url = ?"
            " AND state IN ('pending', 'reserved', 'submitted') RETURNING task_id",
            (reason, provider, area, url),
        ).fetchone()
        if row is not None and row[0] is not None:
            tasks.add(row[0])
    _close_finished_tasks(db, provider, tasks)


def _claim_pending(
    db: sqlite3.Connection,
    provider: str,
    area: str,
    limit: int,
    worker: str,
    now: dt.datetime,
    lease: dt.timedelta,
    video_id: str | None = None,
) -> Claim | None:
    """Reserve up to ``limit`` pending URLs, best priority first, under a new claim id.

    ``video_id``: only URLs linked to that video.
    """
    claim_id = uuid.uuid4().hex
    lease_until = now + lease
    at = (claim_id, worker, _micros(now), _micros(lease_until))
    rows = db.execute(
        "UPDATE urls SET state = 'reserved', claim_id = ?, worker = ?, claimed_at = ?,"
        " lease_until = ? WHERE id IN (SELECT id FROM urls WHERE state = 'pending'"
        " AND provider = ? AND area = ?"
        " AND (? IS NULL OR id IN (SELECT url_id FROM video_urls WHERE video_id = ?))"
        " ORDER BY priority, seq LIMIT ?)"
        " RETURNING priority, seq, url",
        (*at, provider, area, video_id, video_id, limit),
    ).fetchall()
    if not rows:
        return None
    # RETURNING gives rows in no particular order.
    urls = tuple(url for _, _, url in sorted(rows))
    return Claim(claim_id, provider, area, urls, worker, now, lease_until)


def _grantable(db: sqlite3.Connection, provider: str, area: str, day: str, n: int) -> int:
    """How much of ``n`` the day's quota still allows (all of it when the limit is unknown)."""
    quota = _quota_day(db, provider, area, day) or QuotaDay(provider, area, day, None, 0, 0)
    remaining = quota.remaining
    return max(0, n if remaining is None else min(n, remaining))


def _hold_quota(db: sqlite3.Connection, provider: str, area: str, day: str, n: int) -> None:
    """Count ``n`` URLs of the day's quota as in flight."""
    db.execute(
        "INSERT INTO quota_days (provider, area, day, inflight) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET inflight = inflight + excluded.inflight",
        (provider, area, day, n),
    )


def _settle_quota(
    db: sqlite3.Connection, provider: str, area: str, day: str, reserved: int, used: int
) -> None:
    db.execute(
        "INSERT INTO quota_days (provider, area, day, used) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET used = used + excluded.used,"
        " inflight = max(0, inflight - ?), settles = settles + 1",
        (provider, area, day, used, reserved),
    )


def _insert_task(
    db: sqlite3.Connection,
    task_id: str,
    provider: str,
    area: str,
    kind: str,
    url_count: int,
    now: dt.datetime,
) -> None:
    # A task is recorded once; repeating the call (a retried reconciliation)
    # must not change its count or reopen it.
    db.execute(
        "INSERT OR IGNORE INTO tasks VALUES (?, ?, ?, ?, ?, ?, 1)",
        (provider, task_id, area, kind, url_count, _micros(now)),
    )


def _close_finished_tasks(db: sqlite3.Connection, provider: str, task_ids: Iterable[str]) -> None:
    db.executemany(
        "UPDATE tasks SET open = 0 WHERE provider = ? AND task_id = ? AND open = 1"
        " AND NOT EXISTS (SELECT 1 FROM urls WHERE task_id = tasks.task_id"
        " AND state = 'submitted' AND provider = tasks.provider)",
        ((provider, task_id) for task_id in task_ids),
    )


def _quota_day(db: sqlite3.Connection, provider: str, area: str, day: str) -> QuotaDay | None:
    row = db.execute(
        'SELECT "limit", used, inflight, settles FROM quota_days'
        " WHERE provider = ? AND area = ? AND day = ?",
        (provider, area, day),
    ).fetchone()
    return None if row is None else QuotaDay(provider, area, day, *row)


def _video(row: Any) -> VideoRecord:
    video_id, m3u8_url, url_count, state, created_at, updated_at = row
    return VideoRecord(
        video_id, m3u8_url, url_count, VideoState(state), _moment(created_at), _moment(updated_at)
    )


_SELECT_EVENTS = (
    "SELECT event_id, topic, key, payload, state, created_at, due_at, attempts, last_error,"
    " lease_until, worker FROM outbox"
)


def _event(row: Any) -> OutboxEvent:
    return OutboxEvent(
        event_id=row[0],
        topic=row[1],
        key=row[2],
        payload=json.loads(row[3]),
        state=EventState(row[4]),
        created_at=_moment(row[5]),
        due_at=_moment(row[6]),
        attempts=row[7],
        last_error=row[8],
        lease_until=_maybe_moment(row[9]),
        worker=row[10],
    )


def _url_record(row: Any) -> UrlRecord:
    url, provider, area, kind, state, task_id, attempts, last_error, pushed, expires = row
    return UrlRecord(
        url,
        provider,
        area,
        kind,
        UrlState(state),
        task_id,
        attempts,
        last_error,
        _maybe_moment(pushed),
        _maybe_moment(expires),
    )
