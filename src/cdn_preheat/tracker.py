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
  for everyone: the outcomes land in the shared ledger, and that poller leads
  the status API's budget (the others keep a small part of theirs);
- a second is read once its tasks are expected done: while pushing, a task
  time after the second is over; after, a task time after its newest task;
- every call is paced by the provider on its status API's own budget, and a
  page that fails is retried alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
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
from cdn_preheat.ratelimit import LEAD_SETTLE, call_with_retries
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
# How far the vendor's clock may be from ours: a task is looked for this far either
# side of when we recorded it, and counts as a straggler once windows passed that.
WINDOW_MARGIN = dt.timedelta(seconds=2)
# A second of the task log is read once it is over (CreateTime is whole seconds) and
# its tasks are expected finished: this after the second, plus the learned task time.
SETTLE = dt.timedelta(seconds=1)
# Logs a window page holds (Tencent DescribePushTasks Limit, providers/tencent.py).
PAGE_LOGS = 1000
# Once pushing is over, a backlog is read this many logs (20 pages) at a time: each
# part is recorded before the next is asked for.
READ_LOGS = 20 * PAGE_LOGS
# Outcomes recorded in one ledger write (a full Tencent task).
OUTCOMES_PER_WRITE = 500
# The shortest pause between looks (a stop or the end of pushing is seen this soon).
MIN_PAUSE = 0.1
# While pushing, a window with less than a page of logs waits at most this long
# (beyond the task time) for more: a page costs the same whether full or not. Qiniu
# prefetches 240 URLs a second, so a page of 1,000 takes 4.2 s to fill.
MAX_WINDOW_WAIT = 5.0
SECOND = dt.timedelta(seconds=1)
# Unread tasks further apart than this are read in separate windows (see _run_end).
RUN_GAP = 2 * WINDOW_MARGIN + SECOND
# How often a worker that is not the poller looks at the open tasks once its own
# pushing is over (a ledger read and a try at the turn).
FOLLOWER_PAUSE = 0.2
# A window query is worth it from this many tasks on; fewer are asked by id.
MIN_WINDOW_TASKS = 2
STATUS_ATTEMPTS = 8
# How long a poller's turn lasts without renewal: a holder that died (killed, its
# machine gone) is replaced this soon, as a worker that stopped beating leaves the
# rate share (RateShare's ttl). A thread of the holder renews it every TURN_RENEW,
# whatever its rounds take (a round of many pages at a shared rate took longer than
# a turn renewed once a round could last, 30 s).
TURN_SECONDS = 5.0
TURN_RENEW = 1.0


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
    """Follows the open tasks of one provider/area in the shared ledger.

    Each task is read once it is expected to be finished: ``lag`` seconds (the
    CDN's task time, learned as the run goes: it doubles while first reads find
    tasks still processing) after it was created. Where the vendor lists tasks by
    time, the task log is read in contiguous windows of whole seconds, each
    second once, so a task costs a share of a page instead of a call; a task a
    window did not close (still processing, a result held, a clock difference
    with the vendor) is a straggler, asked again with a per-task pause that
    doubles, by id or by a narrow window, whichever costs fewer calls.
    """

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
        self._lag = self.options.poll_interval  # the CDN's task time, as learned
        self._windows = True  # the provider lists tasks by time (until it says otherwise)
        self._read_until: dt.datetime | None = None  # windows read up to here (exclusive)
        self._known: dict[str, TaskRecord] = {}  # every task seen open: window costs
        self._next_ask: dict[str, float] = {}  # stragglers: when to ask again (monotonic)
        self._pause: dict[str, float] = {}  # stragglers: the pause before the next ask
        self._hold_until: dict[str, float] = {}  # tasks with results held (see _held)
        self._next_fresh: float | None = None  # when the next unread second is due
        self._in_window: set[str] = set()  # tasks a window has shown (the clocks agree)
        self._leading_at: float | None = None  # when to take the status budget's lead
        self._leading = False  # this tracker leads the status budget (see _lead)
        self._held_since: float | None = None  # when this worker took the turn (monotonic)
        # The turn and the lead change from the follow loop and the turn's renewal.
        self._turn_lock = threading.Lock()

    def poll_once(self) -> TrackReport:
        """One round over every open task, whether or not it is expected finished."""
        return self._round(force=True)

    def _round(self, *, force: bool = False, pushing: bool = False) -> TrackReport:
        """Read what is due: new seconds of the task log, stragglers whose pause is over.

        While ``pushing``, a window waits until it holds a page of logs (or its
        oldest task has waited ``MAX_WINDOW_WAIT``); after, it is read at once.
        """
        report = TrackReport()
        tasks = self._abandon_forgotten(
            self.ledger.open_tasks(self.provider.name, self.provider.area), report
        )
        now, tick = self._clock(), time.monotonic()
        open_ids = {task.task_id for task in tasks}
        for gone in [task_id for task_id in self._next_ask if task_id not in open_ids]:
            self._forget(gone)
        for task in tasks:
            self._known.setdefault(task.task_id, task)
        self._next_fresh = None
        fresh = [t for t in tasks if not self._covered(t)]
        if self._windows and fresh:
            self._read_fresh(fresh, now, tick, report, force=force, pushing=pushing)
        first_asks: list[str] = []
        if not self._windows:
            # Asked by id: a task is first asked once it is expected finished.
            lag = 0.0 if force else self._lag
            for task in fresh:
                if (now - task.created_at).total_seconds() >= lag:
                    first_asks.append(task.task_id)
        due = [
            t
            for t in tasks
            if t.task_id in self._next_ask and (force or self._next_ask[t.task_id] <= tick)
        ]
        # A task no window showed (the vendor's clock is off ours) is asked by id.
        again = [t.task_id for t in due if t.task_id not in self._in_window]
        for cluster in _clusters([t for t in due if t.task_id in self._in_window]):
            ids = [t.task_id for t in cluster]
            if self._windows and self._window_cost(cluster) < len(cluster):
                first, last = cluster[0].created_at, cluster[-1].created_at
                entries = self._window(
                    _whole_second(first - WINDOW_MARGIN), _whole_second(last + WINDOW_MARGIN),
                    report,
                )  # fmt: skip
                if entries is not None:
                    self._take(entries, set(ids), report)
                    continue
            again += ids
        self._learn(self._by_id(first_asks, report))
        self._by_id(again, report)
        self._schedule_stragglers(tick, {*first_asks, *(t.task_id for t in due)})
        return report

    def _read_fresh(
        self,
        fresh: Sequence[TaskRecord],
        now: dt.datetime,
        tick: float,
        report: TrackReport,
        *,
        force: bool,
        pushing: bool,
    ) -> None:
        """Read the task log's seconds that are over and due, from where the last read ended.

        While pushing, a second is due once it is over and the learned task time
        has passed since (tasks may still be created in it until its end). Once
        pushing is over, no task is added to a second that is over, so a second
        is due as soon as the tasks it holds are expected finished: the last
        second's tasks are read a task time after the last push, not up to a
        second later.
        """
        lag = _seconds(self._lag)
        if force:
            horizon = _whole_second(now)
        elif pushing:
            horizon = _whole_second(now - lag - SETTLE)
        else:
            horizon = _whole_second(now) - SECOND  # the last second that is over
            unready = [t.created_at for t in fresh if t.created_at + lag > now]
            if unready:
                horizon = min(horizon, _whole_second(min(unready)) - SECOND)
        readable = [t for t in fresh if t.created_at < horizon + SECOND]
        waiting = [t for t in fresh if t.created_at >= horizon + SECOND]
        if waiting:
            first = _whole_second(min(t.created_at for t in waiting))
            if pushing:
                ready = first + lag + SECOND
            else:  # its last task's time, once the second is over
                last = max(t.created_at for t in waiting if t.created_at < first + SECOND)
                ready = max(first + SECOND, last + lag)
            self._next_fresh = tick + max(0.0, (ready - now).total_seconds())
        if not readable:
            return
        start = _whole_second(min(t.created_at for t in readable) - WINDOW_MARGIN)
        if self._read_until is not None and self._read_until > start:
            start = self._read_until
        if start > horizon:
            # Read up to here already (the horizon moves back when the task time learned
            # doubles): nothing new yet. EdgeOne refuses an end before the start.
            self._next_fresh = tick + (start - horizon).total_seconds()
            return
        # Open tasks of seconds read already (a window missed them: the vendor's clock
        # ahead of ours) wait to be covered; what fills the next window, and whether it
        # is worth a call yet, is the tasks of the seconds from ``start`` on. Counted
        # with the others, they made the page "full" and cut it at their own second,
        # before ``start``: no window was read again while pushing went on.
        unread = [t for t in readable if t.created_at >= start]
        # A window spans no gap between the tasks it is for: the seconds of a gap hold
        # no open task (read by the poller before this one took the turn over, or no
        # push then), and a page of them costs as much as one of open tasks.
        end = None if force else _run_end(unread)
        if end is not None and end < horizon:
            horizon = end
            unread = [t for t in unread if t.created_at < horizon + SECOND]
            self._next_fresh = tick  # the tasks after the gap, next round
        logs = sum(t.url_count for t in unread)
        if pushing and not force and end is None:
            oldest = min((t.created_at for t in unread), default=None)
            overdue = oldest is not None and (
                (now - oldest).total_seconds() >= self._lag + MAX_WINDOW_WAIT
            )
            if logs < PAGE_LOGS and not overdue:
                if unread:
                    self._next_fresh = tick  # look again next time; more may fill the page
                return
        cap = PAGE_LOGS if pushing else READ_LOGS
        if not force and logs > cap:
            # A page's worth now while pushing, the rest next round: a window just over a
            # page costs two calls, the second nearly empty (Qiniu's 20-URL tasks
            # overshoot a page). After pushing, READ_LOGS at a time, so that a backlog is
            # recorded as it is read and a page that fails costs a part of it only.
            horizon = _page_horizon(unread, horizon, cap)
            self._next_fresh = tick
        entries = self._window(start, horizon, report)
        if entries is None:  # the provider cannot list by time
            self._windows = False
            return
        self._read_until = horizon + SECOND
        self._learn(self._take(entries, {t.task_id for t in fresh}, report))

    def _by_id(self, task_ids: Sequence[str], report: TrackReport) -> TrackReport:
        """Ask these tasks by id, TASKS_PER_CALL at a time; what they held."""
        part = TrackReport()
        for offset in range(0, len(task_ids), TASKS_PER_CALL):
            chunk = list(task_ids[offset : offset + TASKS_PER_CALL])
            report.polls += 1
            got = self._take(self._status(chunk), set(chunk), report, windowed=False)
            part.done += got.done
            part.failed += got.failed
            part.invalid += got.invalid
            part.still_processing += got.still_processing
        return part

    def _covered(self, task: TaskRecord) -> bool:
        """Whether every window the task's log can be in has been read (or it was asked)."""
        if task.task_id in self._next_ask:
            return True
        if not self._windows:
            return False
        until = self._read_until
        return until is not None and task.created_at + WINDOW_MARGIN < until

    def _forget(self, task_id: str) -> None:
        self._next_ask.pop(task_id, None)
        self._pause.pop(task_id, None)
        self._hold_until.pop(task_id, None)
        self._in_window.discard(task_id)

    def _take(
        self,
        entries: Sequence[TaskEntry],
        wanted: set[str],
        report: TrackReport,
        *,
        windowed: bool = True,
    ) -> TrackReport:
        """Record the entries of the ``wanted`` tasks; what they held, as a report."""
        mine = [entry for entry in entries if entry.task_id in wanted]
        if windowed:
            self._in_window.update(entry.task_id for entry in mine)
        part = TrackReport()
        self._record(mine, part)
        report.done += part.done
        report.failed += part.failed
        report.invalid += part.invalid
        report.still_processing += part.still_processing
        return part

    def _learn(self, part: TrackReport) -> None:
        """A first read of tasks: most still processing means the CDN takes longer."""
        closed = part.done + part.failed + part.invalid
        read = closed + part.still_processing
        if read and closed * 2 < read:
            self._lag = min(self._lag * 2, self._longest_pause())

    def _schedule_stragglers(self, tick: float, asked: set[str]) -> None:
        """Tasks the reads so far left open: when each is asked next (a pause that doubles)."""
        for task in self.ledger.open_tasks(self.provider.name, self.provider.area):
            task_id = task.task_id
            shown = task_id in self._in_window  # read, and left open (processing, held)
            if task_id not in asked and (
                task_id in self._next_ask or not (shown or self._covered(task))
            ):
                continue  # not read yet, or its pause is not over
            pause = self._pause.get(task_id)
            pause = self._lag if pause is None else min(pause * 2, self._longest_pause())
            self._pause[task_id] = pause
            self._next_ask[task_id] = max(tick + pause, self._hold_until.get(task_id, 0.0))

    def _longest_pause(self) -> float:
        return max(self.options.max_poll_interval, self.options.poll_interval)

    def _window_cost(self, cluster: Sequence[TaskRecord]) -> int:
        """Pages a window over the cluster's span reads (every known task's URLs in it)."""
        first = _whole_second(cluster[0].created_at - WINDOW_MARGIN)
        last = _whole_second(cluster[-1].created_at + WINDOW_MARGIN) + dt.timedelta(seconds=1)
        logs = sum(t.url_count for t in self._known.values() if first <= t.created_at < last)
        return max(1, -(-logs // PAGE_LOGS))

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

    def follow(
        self, stop: threading.Event | None = None, *, pushing: threading.Event | None = None
    ) -> TrackReport:
        """Poll until no task is open, ``stop`` is set, or the timeout passes.

        ``pushing``: set while URLs are still being pushed (tracking runs alongside
        pushing): the tracker goes on while it is set, even with no task open, and
        the timeout counts from when it is cleared. ``stop`` also ends a status
        call's retry backoff at once (without it, :data:`stopping.STOP` does).
        """
        self._retry_stop = stop
        stop = stop or threading.Event()
        total = TrackReport()
        deadline: float | None = None
        turn = _Turn(self.ledger, self._turn, self.options.worker_id, self._clock, self._lost)
        self._lead(False)  # one worker polls for everyone: the others keep a little
        try:
            while not stop.is_set():
                busy = pushing is not None and pushing.is_set()
                if deadline is None and not busy:
                    deadline = time.monotonic() + self.options.timeout
                if not turn.take():
                    self._lost()  # another worker holds it (or took it over)
                else:
                    self._took()
                    round_ = self._round(pushing=busy)
                    total.done += round_.done
                    total.failed += round_.failed
                    total.invalid += round_.invalid
                    total.abandoned += round_.abandoned
                    total.polls += round_.polls
                    total.still_processing = round_.still_processing
                # else another worker polls for everyone; its outcomes land here too.
                still_open = len(self.ledger.open_tasks(self.provider.name, self.provider.area))
                if self.on_round is not None:
                    self.on_round(still_open, total)
                if not still_open and not (pushing is not None and pushing.is_set()):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    total.timed_out = True
                    break
                self._wait(stop, pushing, polling=self._held_since is not None)
        finally:
            turn.stop()
            with self._turn_lock:
                self._held_since = self._leading_at = None
                self._lead(None)
            turn.release()
        return total

    def _took(self) -> None:
        """This worker holds the turn: it leads the status budget once LEAD_SETTLE passed.

        The lead waits for the former poller's last calls to leave the vendor's window.
        """
        with self._turn_lock:
            if self._held_since is None:
                self._held_since = time.monotonic()
                self._leading_at = self._held_since + LEAD_SETTLE
        self._take_lead_when_due()

    def _lost(self) -> None:
        """Another worker holds the turn (or its renewal failed): follow, at once."""
        with self._turn_lock:
            if self._held_since is None:
                return
            self._held_since = self._leading_at = None
            self._lead(False)

    def _lead(self, leading: bool | None) -> None:
        """Take (True), leave to another (False) or share evenly (None) the status budget.

        Only where the status API has a budget of its own: one shared with the
        pushes (a provider that declares a single budget) is never led.
        """
        provider = self.provider
        try:
            provider.pacing.set_lead(provider.status_api, leading, apart_from=provider.submit_api)
        except KeyError:
            return
        self._leading = leading is True

    def _take_lead_when_due(self) -> None:
        """Lead the status budget once LEAD_SETTLE has passed since the turn was taken."""
        with self._turn_lock:  # not after the renewal found the turn lost
            if self._leading_at is not None and time.monotonic() >= self._leading_at:
                self._leading_at = None
                self._lead(True)

    def _wait(
        self, stop: threading.Event, pushing: threading.Event | None, *, polling: bool = True
    ) -> None:
        """Until the next task or straggler is due (at most a poll interval), or a stop.

        A worker that is not the poller only looks whether the poller has closed
        every task (or gave its turn up): once its own pushing is over, it looks
        every FOLLOWER_PAUSE, so that it ends soon after the poller does.
        """
        pause = self.options.poll_interval
        if not polling and not (pushing is not None and pushing.is_set()):
            pause = min(pause, FOLLOWER_PAUSE)
        due = list(self._next_ask.values())
        if self._next_fresh is not None:
            due.append(self._next_fresh)
        if due:
            pause = min(pause, max(0.0, min(due) - time.monotonic()))
        pause = max(pause, MIN_PAUSE)
        if pushing is None or not pushing.is_set():
            stop.wait(pause)
            return
        # While pushing, wake early when pushing ends: the last tasks are then due soon.
        ends = time.monotonic() + pause
        while not stop.is_set() and pushing.is_set():
            left = ends - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(left, MIN_PAUSE))

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
        # A write per task's worth of outcomes: the pushes going on alongside claim
        # and settle through the same ledger, between these writes.
        for first in range(0, len(outcomes), OUTCOMES_PER_WRITE):
            chunk = outcomes[first : first + OUTCOMES_PER_WRITE]
            self.ledger.record_outcomes(
                self.provider.name,
                self.provider.area,
                chunk,
                self._clock(),
                self.options.max_age,
                self.options.max_attempts,
            )
            self._on_outcomes(len(chunk))

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
            until = first + self.options.invalid_retry_delay
            self._hold_until[entry.task_id] = max(self._hold_until.get(entry.task_id, 0.0), until)
            return True
        del self._first_seen[key]
        return False

    def _window(
        self, since: dt.datetime, until: dt.datetime, report: TrackReport
    ) -> list[TaskEntry] | None:
        """Every task log created from ``since`` to ``until`` (whole seconds; None: unsupported)."""
        report.polls += 1
        self._take_lead_when_due()
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
        self._take_lead_when_due()
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


class _Turn:
    """This worker's poll turn in the ledger, renewed by a thread of its own while held.

    The follow loop takes it (or learns another worker holds it) once a round;
    the thread renews it every TURN_RENEW, so it lapses TURN_SECONDS after its
    holder stops (dies), however long a round takes. A renewal that finds the
    turn gone, or cannot reach the ledger for half a turn, calls ``lost`` at
    once, so that the former holder stops leading the status budget before the
    next one takes the lead.
    """

    def __init__(
        self,
        ledger: Ledger,
        name: str,
        holder: str,
        clock: Callable[[], dt.datetime],
        lost: Callable[[], None],
    ) -> None:
        self._ledger, self._name, self._holder = ledger, name, holder
        self._clock, self._on_lost = clock, lost
        self._lock = threading.Lock()
        self._held = False
        self._renewed = 0.0  # when the ledger last said it is ours (monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> bool:
        """Take or renew the turn; whether this worker holds it."""
        held = self._ledger.take_turn(
            self._name, self._holder, self._clock(), _seconds(TURN_SECONDS)
        )
        with self._lock:
            self._held = held
            if held:
                self._renewed = time.monotonic()
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._renew, name="poll-turn", daemon=True
                    )
                    self._thread.start()
        return held

    def _renew(self) -> None:
        while not self._stop.wait(TURN_RENEW):
            with self._lock:
                if not self._held:
                    continue
            try:
                held = self._ledger.take_turn(
                    self._name, self._holder, self._clock(), _seconds(TURN_SECONDS)
                )
            except Exception:  # the ledger busy or gone for a moment: try again
                log.warning("could not renew the poll turn", exc_info=True)
                with self._lock:
                    if time.monotonic() - self._renewed < TURN_SECONDS / 2:
                        continue
                    held = False
            with self._lock:
                if held:
                    self._renewed = time.monotonic()
                    continue
                self._held = False
            self._on_lost()

    def stop(self) -> None:
        """No more renewals (the follow loop is over)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TURN_SECONDS)

    def release(self) -> None:
        self._ledger.release_turn(self._name, self._holder)


def _whole_second(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=0)


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def _page_horizon(
    tasks: Sequence[TaskRecord], horizon: dt.datetime, logs: int = PAGE_LOGS
) -> dt.datetime:
    """The last whole second up to ``horizon`` whose tasks, with all before, fit ``logs``.

    At least the first second, however many logs it holds.
    """
    by_second: dict[dt.datetime, int] = {}
    for task in tasks:
        second = _whole_second(task.created_at)
        by_second[second] = by_second.get(second, 0) + task.url_count
    seconds = sorted(by_second)
    last, held = seconds[0], 0
    for second in seconds:
        held += by_second[second]
        if held > logs:
            break
        last = second
    return min(last, horizon)


def _run_end(tasks: Sequence[TaskRecord]) -> dt.datetime | None:
    """The end of the window for the first run of ``tasks`` before a gap (None: no gap).

    A gap is longer than the margins on both of its sides cover (RUN_GAP); the
    window ends WINDOW_MARGIN after the run's last task, where its log may be.
    """
    times = sorted(t.created_at for t in tasks)
    for before, after in itertools.pairwise(times):
        if after - before > RUN_GAP:
            return _whole_second(before + WINDOW_MARGIN)
    return None


def _clusters(tasks: Sequence[TaskRecord]) -> list[list[TaskRecord]]:
    """Open tasks (oldest first) in runs created no more than WINDOW_GAP apart."""
    clusters: list[list[TaskRecord]] = []
    for task in sorted(tasks, key=lambda t: t.created_at):
        if clusters and task.created_at - clusters[-1][-1].created_at <= WINDOW_GAP:
            clusters[-1].append(task)
        else:
            clusters.append([task])
    return clusters
