"""Follow submitted prefetch tasks until every URL is done, failed or invalid.

Outcomes go to the ledger, which sends ``failed`` URLs back to the queue
while attempts remain; ``invalid`` (the origin answered an error) is final,
except where the vendor's status may hide a passing origin fault (Tencent
``invalid`` covers 5xx too): that URL is pushed once more, after a delay.

Polling costs API calls, and every vendor limits its status API, so:

- where the vendor lists tasks by time (Tencent ``DescribePushTasks`` with
  ``StartTime``/``EndTime``, 1,000 logs a page), one round asks for the time
  windows the open tasks were created in, a few pages for thousands of tasks,
  instead of one call per task; tasks the windows did not show (clock skew, a
  log that moved between pages) are asked by id;
- a round that finds most URLs still processing doubles the pause before the
  next one (up to ``max_poll_interval``), so slow tasks are not read again and
  again;
- of several workers sharing a ledger, one at a time polls (a ledger turn),
  for everyone: the outcomes land in the shared ledger;
- every call is paced by the provider on its status API's own budget, and a
  page that fails is retried alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cdn_preheat.clock import utcnow
from cdn_preheat.errors import RateLimited, Transient
from cdn_preheat.ledger.base import Ledger, Outcome, TaskRecord, UrlState
from cdn_preheat.providers.base import Provider, TaskEntry, TaskState
from cdn_preheat.ratelimit import call_with_retries
from cdn_preheat.urlkey import match_urls, url_key

log = logging.getLogger(__name__)

_OUTCOME_STATES = {
    TaskState.DONE: UrlState.DONE,
    TaskState.FAILED: UrlState.FAILED,
    TaskState.INVALID: UrlState.INVALID,
}

# Task ids per status call: keeps one poll round within a few requests.
TASKS_PER_CALL = 20
# Open tasks created further apart than this are asked for in separate time windows,
# so that one old task does not make a window span hours of the account's pushes.
WINDOW_GAP = dt.timedelta(seconds=30)
# A window query is worth it from this many tasks on; fewer are asked by id.
MIN_WINDOW_TASKS = 2
STATUS_ATTEMPTS = 8
# How long a poller's turn lasts without renewal (renewed every round).
TURN_SECONDS = 30.0


def _default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TrackerOptions:
    poll_interval: float = 1.0
    timeout: float = 600.0  # give up following tasks after this long
    max_age: dt.timedelta = dt.timedelta(days=3)
    max_attempts: int = 3
    # A round that closes less than half of what it read waits twice as long next time.
    max_poll_interval: float = 15.0
    # A result that may not be final (Tencent ``invalid``: the origin answered 4xx *or*
    # 5xx) is held this long after it is first seen, so that the push it earns again
    # goes out once an origin swamped by the prefetch burst has had time to recover.
    invalid_retry_delay: float = 30.0
    worker_id: str = field(default_factory=_default_worker_id)


@dataclass
class TrackReport:
    done: int = 0
    failed: int = 0
    invalid: int = 0
    still_processing: int = 0
    abandoned: int = 0  # URLs of tasks older than the provider keeps, re-queued
    polls: int = 0  # status requests asked for (a window's pages count once)
    timed_out: bool = False


class Tracker:
    def __init__(
        self,
        ledger: Ledger,
        provider: Provider,
        options: TrackerOptions | None = None,
        *,
        on_outcomes: Callable[[int], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.ledger = ledger
        self.provider = provider
        self.options = options or TrackerOptions()
        self._on_outcomes = on_outcomes or (lambda n: None)
        # Called after each look at the open tasks: (tasks still open, totals so far).
        self.on_round: Callable[[int, TrackReport], None] | None = None
        self._clock = clock
        # Status calls are paced by the provider on the status API's own budget
        # (Tencent's DescribePushTasks has its own 20/s; it does not share the push budget).
        self._turn = f"poll/{provider.name}/{provider.area}"
        # When each held result (task id, URL) was first seen, on the monotonic clock.
        self._first_seen: dict[tuple[str, str], float] = {}
        # The caller's stop while following (None: stopping.STOP), for retry backoffs.
        self._retry_stop: threading.Event | None = None

    def poll_once(self) -> TrackReport:
        """One round over every open task."""
        report = TrackReport()
        tasks = self._abandon_forgotten(
            self.ledger.open_tasks(self.provider.name, self.provider.area), report
        )
        by_id: list[str] = []
        for cluster in _clusters(tasks):
            if len(cluster) < MIN_WINDOW_TASKS:
                by_id += [task.task_id for task in cluster]
                continue
            entries = self._window(cluster, report)
            if entries is None:  # the provider cannot list by time
                by_id += [task.task_id for task in cluster]
                continue
            wanted = {task.task_id for task in cluster}
            mine = [entry for entry in entries if entry.task_id in wanted]
            self._record(mine, report)
            seen = {entry.task_id for entry in mine}
            by_id += [task.task_id for task in cluster if task.task_id not in seen]
        for start in range(0, len(by_id), TASKS_PER_CALL):
            chunk = by_id[start : start + TASKS_PER_CALL]
            report.polls += 1
            self._record(self._status(chunk), report)
        return report

    def _abandon_forgotten(self, tasks: list[TaskRecord], report: TrackReport) -> list[TaskRecord]:
        """Close the tasks older than the provider keeps them; the others, to poll.

        The provider cannot answer for those any more (its task query returns
        nothing or refuses the date), so polling them would never end: their
        outcome is unknown and their URLs are pushed again.
        """
        retention = self.provider.limits.task_retention
        if retention is None:
            return tasks
        cutoff = self._clock() - retention
        keep = []
        for task in tasks:
            if task.created_at >= cutoff:
                keep.append(task)
                continue
            reason = (
                f"task {task.task_id} outlived the {retention.days} days {self.provider.name} "
                "keeps tasks: outcome unknown, pushed again"
            )
            requeued = self.ledger.abandon_task(self.provider.name, task.task_id, reason)
            report.abandoned += requeued
            log.warning("%s; %d URLs re-queued", reason, requeued)
        return keep

    def follow(self, stop: threading.Event | None = None) -> TrackReport:
        """Poll until no task is open, ``stop`` is set, or the timeout passes.

        ``stop`` also ends a status call's retry backoff at once (without it,
        :data:`stopping.STOP` does).
        """
        self._retry_stop = stop
        stop = stop or threading.Event()
        total = TrackReport()
        deadline = time.monotonic() + self.options.timeout
        interval = self.options.poll_interval
        worker = self.options.worker_id
        try:
            while not stop.is_set():
                # Long enough for a round of many pages at a shared status rate; given
                # back when this worker stops following, so only a dead holder costs
                # the others a wait.
                ttl = dt.timedelta(seconds=max(TURN_SECONDS, 2 * interval + 2))
                if self.ledger.take_turn(self._turn, worker, self._clock(), ttl):
                    round_ = self.poll_once()
                    total.done += round_.done
                    total.failed += round_.failed
                    total.invalid += round_.invalid
                    total.abandoned += round_.abandoned
                    total.polls += round_.polls
                    total.still_processing = round_.still_processing
                    interval = self._next_interval(interval, round_)
                # else another worker polls for everyone; its outcomes land here too.
                still_open = len(self.ledger.open_tasks(self.provider.name, self.provider.area))
                if self.on_round is not None:
                    self.on_round(still_open, total)
                if not still_open:
                    break
                if time.monotonic() >= deadline:
                    total.timed_out = True
                    break
                stop.wait(interval)
        finally:
            self.ledger.release_turn(self._turn, worker)
        return total

    def _next_interval(self, interval: float, round_: TrackReport) -> float:
        closed = round_.done + round_.failed + round_.invalid
        read = closed + round_.still_processing
        if read and closed * 2 < read:
            return min(
                interval * 2, max(self.options.max_poll_interval, self.options.poll_interval)
            )
        return self.options.poll_interval

    def _record(self, entries: Sequence[TaskEntry], report: TrackReport) -> None:
        entries = self._as_submitted(entries)
        outcomes = [
            Outcome(e.url, e.task_id, _OUTCOME_STATES[e.state], e.reason, e.retry_once)
            for e in entries
            if e.state in _OUTCOME_STATES and not self._held(e)
        ]
        report.still_processing += len(entries) - len(outcomes)
        for outcome in outcomes:
            if outcome.state is UrlState.DONE:
                report.done += 1
            elif outcome.state is UrlState.FAILED:
                report.failed += 1
            else:
                report.invalid += 1
        if outcomes:
            self.ledger.record_outcomes(
                self.provider.name,
                self.provider.area,
                outcomes,
                self._clock(),
                self.options.max_age,
                self.options.max_attempts,
            )
            self._on_outcomes(len(outcomes))

    def _as_submitted(self, entries: Sequence[TaskEntry]) -> list[TaskEntry]:
        """Entries with each URL written as it was submitted under that task.

        A vendor may answer a URL normalised (scheme, host case, percent-encoding
        case, default port; see :mod:`cdn_preheat.urlkey`); the ledger matches the
        exact string, so a result left as the vendor wrote it would never close
        its row, and its task would be polled until the tracker gives up.
        """
        submitted = self.ledger.submitted_urls(self.provider.name, {e.task_id for e in entries})
        exact = {task_id: set(urls) for task_id, urls in submitted.items()}
        by_key: dict[str, dict[str, list[str]]] = {}
        matched = []
        for entry in entries:
            urls = submitted.get(entry.task_id)
            if not urls or entry.url in exact[entry.task_id]:
                matched.append(entry)
                continue
            if entry.task_id not in by_key:
                keys: dict[str, list[str]] = {}
                for url in urls:
                    keys.setdefault(url_key(url), []).append(url)
                by_key[entry.task_id] = keys
            found = match_urls(entry.url, by_key[entry.task_id])
            matched.append(entry if found is None else dataclasses.replace(entry, url=found))
        return matched

    def _held(self, entry: TaskEntry) -> bool:
        """Whether a may-be-final result waits a little before it is recorded."""
        if not entry.retry_once:
            return False
        key = (entry.task_id, entry.url)
        now = time.monotonic()
        first = self._first_seen.setdefault(key, now)
        if now - first < self.options.invalid_retry_delay:
            return True
        del self._first_seen[key]
        return False

    def _window(self, cluster: Sequence[TaskRecord], report: TrackReport) -> list[TaskEntry] | None:
        """Every task log created in the cluster's time span (None: not supported)."""
        since, until = cluster[0].created_at, cluster[-1].created_at
        report.polls += 1
        try:
            return call_with_retries(
                lambda: self.provider.window_status(since, until),
                attempts=STATUS_ATTEMPTS,
                on_retry=lambda exc: log.warning("task window: %s (retrying)", exc),
                stop=self._retry_stop,
            )
        except (RateLimited, Transient) as exc:
            log.warning("task window: %s; asking those tasks by id", exc)
            return []

    def _status(self, task_ids: list[str]) -> list[TaskEntry]:
        """Statuses of these tasks; a chunk that fails is split instead of retried.

        A provider may need one request per task id (Alibaba asks 10 at a time),
        so a chunk is answered only when every one of its requests is: on a
        flaky API a chunk of 20 almost never is, and retrying it whole only
        repeats the requests that worked. A failed chunk is halved at once;
        single tasks get the retries.
        """
        if len(task_ids) == 1:
            return call_with_retries(
                lambda: self.provider.task_status(task_ids),
                attempts=STATUS_ATTEMPTS,
                on_retry=lambda exc: log.warning("task status: %s (retrying)", exc),
                stop=self._retry_stop,
            )
        try:
            return self.provider.task_status(task_ids)
        except (RateLimited, Transient):
            pass  # the provider held the status budget back on a rate-limit answer
        half = len(task_ids) // 2
        return self._status(task_ids[:half]) + self._status(task_ids[half:])


def _clusters(tasks: Sequence[TaskRecord]) -> list[list[TaskRecord]]:
    """Open tasks (oldest first) in runs created no more than WINDOW_GAP apart."""
    clusters: list[list[TaskRecord]] = []
    for task in sorted(tasks, key=lambda t: t.created_at):
        if clusters and task.created_at - clusters[-1][-1].created_at <= WINDOW_GAP:
            clusters[-1].append(task)
        else:
            clusters.append([task])
    return clusters
