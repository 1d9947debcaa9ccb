"""Follow submitted prefetch tasks until every URL is done, failed or invalid.

Outcomes go to the ledger, which sends ``failed`` URLs back to the queue
while attempts remain; ``invalid`` (the origin answered an error) is final.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cdn_preheat.errors import RateLimited, Transient
from cdn_preheat.ledger.base import Ledger, Outcome, UrlState
from cdn_preheat.providers.base import Provider, TaskEntry, TaskState
from cdn_preheat.ratelimit import call_with_retries

log = logging.getLogger(__name__)

_OUTCOME_STATES = {
    TaskState.DONE: UrlState.DONE,
    TaskState.FAILED: UrlState.FAILED,
    TaskState.INVALID: UrlState.INVALID,
}

# Task ids per status call: keeps one poll round within a few requests.
TASKS_PER_CALL = 20


@dataclass(frozen=True)
class TrackerOptions:
    poll_interval: float = 1.0
    timeout: float = 600.0  # give up following tasks after this long
    max_age: dt.timedelta = dt.timedelta(days=3)
    max_attempts: int = 3


@dataclass
class TrackReport:
    done: int = 0
    failed: int = 0
    invalid: int = 0
    still_processing: int = 0
    polls: int = 0
    timed_out: bool = False


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Tracker:
    def __init__(
        self,
        ledger: Ledger,
        provider: Provider,
        options: TrackerOptions | None = None,
        *,
        on_outcomes: Callable[[int], None] | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.ledger = ledger
        self.provider = provider
        self.options = options or TrackerOptions()
        self._on_outcomes = on_outcomes or (lambda n: None)
        self._clock = clock
        # Status calls are paced by the provider on the status API's own budget
        # (Tencent's DescribePushTasks has its own 20/s; it does not share the push budget).

    def poll_once(self) -> TrackReport:
        """One round over every open task."""
        report = TrackReport()
        tasks = self.ledger.open_tasks(self.provider.name, self.provider.area)
        ids = [task.task_id for task in tasks]
        for start in range(0, len(ids), TASKS_PER_CALL):
            chunk = ids[start : start + TASKS_PER_CALL]
            entries = self._status(chunk)
            report.polls += 1
            outcomes = [
                Outcome(e.url, e.task_id, _OUTCOME_STATES[e.state], e.reason)
                for e in entries
                if e.state in _OUTCOME_STATES
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
        return report

    def follow(self, stop: threading.Event | None = None) -> TrackReport:
        """Poll until no task is open, ``stop`` is set, or the timeout passes."""
        stop = stop or threading.Event()
        total = TrackReport()
        deadline = time.monotonic() + self.options.timeout
        while not stop.is_set():
            round_ = self.poll_once()
            total.done += round_.done
            total.failed += round_.failed
            total.invalid += round_.invalid
            total.polls += round_.polls
            total.still_processing = round_.still_processing
            if not self.ledger.open_tasks(self.provider.name, self.provider.area):
                break
            if time.monotonic() >= deadline:
                total.timed_out = True
                break
            stop.wait(self.options.poll_interval)
        return total

    def _status(self, task_ids: list[str]) -> list[TaskEntry]:
        """Statuses of these tasks; a chunk that fails is split instead of retried.

        A provider may need one request per task id (Tencent does), so a chunk
        is answered only when every one of its requests is: on a flaky API a
        chunk of 20 almost never is, and retrying it whole only repeats the
        requests that worked. A failed chunk is halved at once; single tasks
        get the retries.
        """
        if len(task_ids) == 1:
            return call_with_retries(
                lambda: self.provider.task_status(task_ids),
                attempts=8,
                on_retry=lambda exc: log.warning("task status: %s (retrying)", exc),
            )
        try:
            return self.provider.task_status(task_ids)
        except (RateLimited, Transient):
            pass  # the provider held the status budget back on a rate-limit answer
        half = len(task_ids) // 2
        return self._status(task_ids[:half]) + self._status(task_ids[half:])
