"""The preheat use cases: queue videos, push the queue, follow the tasks.

This is the library behind ``push``, ``batch`` and ``worker``; the CLI only
parses arguments and renders what these functions return.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from cdn_preheat import notify, stopping
from cdn_preheat.clock import utcnow
from cdn_preheat.errors import InputError, PreheatError
from cdn_preheat.ledger.base import (
    Ledger,
    QueuedUrl,
    UrlState,
    VideoRecord,
    VideoState,
)
from cdn_preheat.ratelimit import RateShare
from cdn_preheat.scheduler import DrainReport, Intake, Scheduler, SchedulerOptions
from cdn_preheat.tracker import Tracker, TrackerOptions, TrackReport

if TYPE_CHECKING:
    from cdn_preheat.hls import Expansion
    from cdn_preheat.providers.base import Provider

# Queue tiers: what a player needs to start, then the opening of every
# rendition, then the rest. Within a tier, insertion order.
PRIORITY_START = 0
PRIORITY_HEAD = 1
PRIORITY_TAIL = 2


@dataclass(frozen=True)
class HeadFirst:
    """Push the first ``amount`` segments (or seconds) of every rendition first."""

    amount: float
    unit: Literal["segments", "seconds"] = "segments"

    @classmethod
    def parse(cls, text: str) -> HeadFirst | None:
        """``"10"`` segments, ``"60s"`` seconds, ``"fifo"``/``"0"`` for plain order."""
        text = text.strip().lower()
        if text in ("fifo", "0", "off"):
            return None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|seconds)?", text)
        if match is None:
            raise InputError(
                f"--head-first takes a segment count, seconds like 60s, or fifo: {text!r}"
            )
        return cls(float(match.group(1)), "seconds" if match.group(2) else "segments")


DEFAULT_HEAD_FIRST = HeadFirst(10)


def prioritize(expansion: Expansion, head_first: HeadFirst | None) -> list[QueuedUrl]:
    """Queue entries for an expansion, tiered so the start of every video goes first."""
    return list(iter_prioritized(expansion, head_first))


def iter_prioritized(expansion: Expansion, head_first: HeadFirst | None) -> Iterator[QueuedUrl]:
    """:func:`prioritize` one entry at a time, so queueing holds no second list of the video."""
    from cdn_preheat.hls import UrlKind

    elapsed: dict[str, float] = {}
    media = (UrlKind.SEGMENT, UrlKind.PART)
    kinds = {kind: str(kind) for kind in UrlKind}  # one string per kind, not one per URL
    for item in expansion.urls:
        if head_first is None or item.kind not in media:
            priority = PRIORITY_START
        elif head_first.unit == "segments":
            priority = PRIORITY_HEAD if item.index < head_first.amount else PRIORITY_TAIL
        else:
            start = elapsed.get(item.rendition, 0.0)
            elapsed[item.rendition] = start + (item.duration or 0.0)
            priority = PRIORITY_HEAD if start < head_first.amount else PRIORITY_TAIL
        yield QueuedUrl(item.url, kinds[item.kind], priority)


@dataclass
class QueuedVideo:
    """What queueing one video found."""

    video_id: str
    m3u8_url: str
    found: int = 0
    queued: int = 0
    already_done: int = 0
    already_queued: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    live: bool = False
    already_preheated: bool = False
    error: str | None = None
    hit_ratio: float | None = None  # from a verification after pushing
    warnings: list[str] = field(default_factory=list)  # malformed tags read as absent
    failed_playlists: list[str] = field(default_factory=list)  # renditions skipped: partial
    would_push: int | None = None  # dry runs: what a push would send
    interrupted: bool = False  # the stop came before it was expanded and queued

    @property
    def partial(self) -> bool:
        return bool(self.failed_playlists)


@dataclass
class RunReport(DrainReport):
    """What pushing (summed over rounds) and following the tasks did."""

    done: int = 0
    failed: int = 0
    quota_left_today: int | None = None
    pending: int = 0  # still queued or reserved at the end
    in_flight: int = 0  # submitted, outcome not known yet
    tracking_timed_out: bool = False
    interrupted: bool = False  # ``stop`` was set (Ctrl-C, SIGTERM): the run wound down early


def is_preheated(video: VideoRecord | None, now: dt.datetime, max_age: dt.timedelta) -> bool:
    """A video counts as preheated until its pushes are older than ``max_age``."""
    if video is None:
        return False
    if video.state is VideoState.LEGACY:
        return True
    fresh = now - video.updated_at < max_age
    return video.state in (VideoState.SUBMITTED, VideoState.DONE) and fresh


def skip_reason_key(reason: str) -> str:
    """Group skip reasons for the summary ("foreign host a.com" -> "foreign host")."""
    words = reason.split()
    return " ".join(words[:2]) if len(words) > 2 else reason


def describe_expansion(video_id: str, expansion: Expansion) -> QueuedVideo:
    """What an expansion found, before anything is queued."""
    summary = QueuedVideo(video_id, expansion.source, found=len(expansion.urls))
    summary.live = expansion.is_live
    summary.skipped.update(skip_reason_key(item.reason) for item in expansion.skipped)
    summary.warnings = list(expansion.warnings)
    summary.failed_playlists = [str(error) for error in expansion.failed]
    return summary


def count_would_push(
    ledger: Ledger,
    summary: QueuedVideo,
    expansion: Expansion,
    max_age: dt.timedelta,
    now: dt.datetime | None = None,
    *,
    target: tuple[str, str] | None = None,
) -> None:
    """For a dry run: how many of the expansion's URLs a push would send.

    Those the ledger holds as done and not yet expired are not sent again;
    everything else is (queued ones included: the push sends them). With
    ``target`` (provider, area) that is every done URL of the target, whichever
    video brought it, as ``enqueue`` counts; without (no provider could be
    built, e.g. no keys), this video's own done URLs.
    """
    now = now or utcnow()
    video = ledger.get_video(summary.video_id)
    if is_preheated(video, now, max_age):
        summary.already_preheated = True
        summary.would_push = 0
        return
    if target is not None:
        fresh = ledger.done_urls(*target, (item.url for item in expansion.urls), now, max_age)
    else:
        fresh = {
            record.url
            for record in (ledger.url_records(summary.video_id) if video is not None else [])
            if record.state is UrlState.DONE
            and (record.expires_at is None or record.expires_at > now)
        }
    summary.already_done = sum(1 for item in expansion.urls if item.url in fresh) if fresh else 0
    summary.would_push = summary.found - summary.already_done


def queue_expansion(
    ledger: Ledger,
    provider_name: str,
    area: str,
    video_id: str,
    expansion: Expansion,
    *,
    head_first: HeadFirst | None,
    max_age: dt.timedelta,
    now: dt.datetime | None = None,
) -> QueuedVideo:
    """Record the video and queue its URLs (deduplicated against the whole ledger)."""
    now = now or utcnow()
    summary = describe_expansion(video_id, expansion)
    ledger.put_video(video_id, expansion.source, len(expansion.urls), now)
    result = ledger.enqueue(
        video_id, provider_name, area, iter_prioritized(expansion, head_first), now, max_age
    )
    if expansion.skipped:
        reasons = {item.url: item.reason for item in expansion.skipped}
        ledger.mark_skipped(video_id, provider_name, area, reasons)
    summary.queued = result.queued
    summary.already_done = result.already_done
    summary.already_queued = result.already_queued
    return summary


def refresh_video_state(
    ledger: Ledger,
    video_id: str,
    now: dt.datetime | None = None,
    *,
    targets: notify.DescribeTargets | None = None,
) -> None:
    """Record the video's state from its URL counts; a finished video gets its event.

    ``targets``: a run over targets, whose events name them (:mod:`cdn_preheat.notify`).
    """
    counts = ledger.counts(video_id)
    waiting = counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0)
    if not waiting:
        video = ledger.get_video(video_id)
        if video is not None and video.state is VideoState.CANCELLED:
            return  # stays cancelled until it is queued again
    if waiting:
        state = VideoState.QUEUED
    elif counts.get(UrlState.SUBMITTED, 0):
        state = VideoState.SUBMITTED
    elif not counts.get(UrlState.DONE, 0) and (
        counts.get(UrlState.FAILED, 0) or counts.get(UrlState.INVALID, 0)
    ):
        state = VideoState.FAILED
    else:
        state = VideoState.DONE
    now = now or utcnow()
    # A video that just finished gets its webhook event (outbox) before the state is written.
    notify.video_settled(ledger, video_id, state, counts, now, targets=targets)
    ledger.set_video_state(video_id, state, now)


def requeue_missed(
    ledger: Ledger, provider: str, area: str, video_id: str, urls: Sequence[str]
) -> int:
    """Queue ``urls`` of the video again (verify --requeue); the video is queued again."""
    requeued = ledger.requeue(provider, area, urls)
    if requeued:
        refresh_video_state(ledger, video_id)
    return requeued


@dataclass(frozen=True)
class RunOptions:
    wait: bool = True  # follow tasks to completion (and retry failures)
    scheduler: SchedulerOptions = field(default_factory=SchedulerOptions)
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    max_rounds: int = 10  # push/track rounds, bounding retries of failed URLs


def run_queue(
    ledger: Ledger,
    provider: Provider,
    options: RunOptions,
    *,
    on_progress: Callable[[int], None] | None = None,
    on_tracking: Callable[[int, TrackReport], None] | None = None,
    stop: threading.Event | None = None,
    video_id: str | None = None,
    intake: Intake | None = None,
) -> RunReport:
    """Push everything queued for this provider while following the tasks; repeat for retries.

    ``intake``: videos are still being queued (see :func:`preheat_videos`); the
    first round's pushing ends once the intake is closed and the queue is empty.


    ``video_id``: push only that video's URLs; other videos' stay queued (the
    open tasks followed are still all of this provider's, whoever pushed them).
    ``pending`` then counts that video's URLs only.
    ``on_tracking(open_tasks, totals)`` is called after each look at the tasks.
    """
    # The run's stop (the caller's, or a new one) is bound while it lasts: a signal
    # sets it too, and the waits below that are handed no stop wake on it.
    with stopping.bound(stop) as bound_stop:
        return _run_queue(ledger, provider, options, on_progress, on_tracking, bound_stop,
                          video_id, intake)  # fmt: skip


def _run_queue(
    ledger: Ledger,
    provider: Provider,
    options: RunOptions,
    on_progress: Callable[[int], None] | None,
    on_tracking: Callable[[int, TrackReport], None] | None,
    stop: threading.Event,
    video_id: str | None,
    intake: Intake | None,
) -> RunReport:
    report = RunReport()
    scheduler = Scheduler(ledger, provider, options.scheduler, on_submitted=on_progress)
    tracker = Tracker(ledger, provider, options.tracker)
    tracker.on_round = on_tracking
    # Other processes pushing or polling on this account take their share of
    # every API's rate limit while this run lasts (heartbeats in the ledger).
    share = RateShare(ledger, provider.name, options.scheduler.worker_id, provider.pacing)
    share.start(stop)
    try:
        _rounds(ledger, options, scheduler, tracker, report, stop, video_id, intake)
    finally:
        share.stop()
    report.interrupted = stop.is_set()
    if report.interrupted:
        report.stopped_by = None  # an answer cut short by the stop is not the run's error
    counts = ledger.counts(video_id)
    report.pending = counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0)
    report.in_flight = counts.get(UrlState.SUBMITTED, 0)
    report.quota_left_today = _quota_left(ledger, scheduler)
    return report


def _rounds(
    ledger: Ledger,
    options: RunOptions,
    scheduler: Scheduler,
    tracker: Tracker,
    report: RunReport,
    stop: threading.Event,
    video_id: str | None,
    intake: Intake | None = None,
) -> None:
    """Push/track rounds until the queue (``video_id``'s URLs) is empty or a round ends the run.

    In a round, the tasks are followed while pushing goes on (a thread of its
    own, on the status API's budget); the round ends when both are over. URLs
    whose prefetch failed go back to the queue and are pushed by the next round.
    """
    for _ in range(options.max_rounds):
        following = _Following(tracker, stop) if options.wait else None
        try:
            drained = scheduler.drain(stop, video_id=video_id, intake=intake)
        except PreheatError:
            if following is not None:
                following.halt()
            if not stop.is_set():
                raise
            break  # a query cut short by the stop: what was pushed is recorded
        finally:
            if following is not None:
                following.pushed()
        report.add(drained)
        ends_run = drained.stopped_by is not None and not stop.is_set()
        if following is None or ends_run or stop.is_set():
            if following is not None:
                following.halt()  # its outcomes so far count; the tasks stay open
                _add_tracked(report, following.result(raise_errors=False))
            break
        tracked = following.result(raise_errors=True)
        _add_tracked(report, tracked)
        if tracked is not None and tracked.timed_out:
            report.tracking_timed_out = True
            break
        if report.quota_exhausted or not ledger.has_pending(
            scheduler.provider.name, scheduler.provider.area, video_id
        ):
            break


def _add_tracked(report: RunReport, tracked: TrackReport | None) -> None:
    if tracked is None:
        return
    report.done += tracked.done
    report.failed += tracked.failed
    report.invalid += tracked.invalid


class _Following:
    """:meth:`Tracker.follow` in a thread of its own, while the caller pushes."""

    def __init__(self, tracker: Tracker, stop: threading.Event) -> None:
        self._pushing = threading.Event()
        self._pushing.set()
        self._halt = threading.Event()
        self._stop = stop
        self._result: TrackReport | None = None
        self._error: BaseException | None = None
        # Progress of the tracking is reported once pushing is over (the caller's bar
        # counts pushes until then).
        self._tracker, self._on_round = tracker, tracker.on_round
        report_round = tracker.on_round
        if report_round is not None:

            def on_round(open_tasks: int, totals: TrackReport) -> None:
                if not self._pushing.is_set():
                    report_round(open_tasks, totals)

            tracker.on_round = on_round
        self._watch = threading.Thread(target=self._relay, name="tracker-stop", daemon=True)
        self._thread = threading.Thread(
            target=self._follow, args=(tracker,), name="tracker", daemon=True
        )
        self._watch.start()
        self._thread.start()

    def _relay(self) -> None:
        # The tracker waits on one event: the caller's stop, or ours (the push failed).
        while not self._halt.wait(0.05):
            if self._stop.is_set():
                self._halt.set()
        self._pushing.clear()

    def _follow(self, tracker: Tracker) -> None:
        try:
            with stopping.bound(self._halt):  # this thread works for the run
                self._result = tracker.follow(self._halt, pushing=self._pushing)
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc
        finally:
            self._halt.set()  # ends the relay

    def pushed(self) -> None:
        """Pushing is over: follow what is open to the end, then stop."""
        self._pushing.clear()

    def halt(self) -> None:
        self._halt.set()

    def result(self, *, raise_errors: bool) -> TrackReport | None:
        self._thread.join()
        self._watch.join()
        self._tracker.on_round = self._on_round
        if self._error is not None and raise_errors:
            if isinstance(self._error, PreheatError) and self._stop.is_set():
                return self._result  # a query cut short by the stop
            raise self._error
        return self._result


def _quota_left(ledger: Ledger, scheduler: Scheduler) -> int | None:
    provider_name, area, day = scheduler.quota_key()
    quota = ledger.quota_day(provider_name, area, day)
    return None if quota is None else quota.remaining


def refresh_states(
    ledger: Ledger, video_ids: Sequence[str], *, targets: notify.DescribeTargets | None = None
) -> None:
    now = utcnow()
    for video_id in video_ids:
        refresh_video_state(ledger, video_id, now, targets=targets)


class _Counted(Protocol):
    """What the intake reads of a queued video (QueuedVideo, api.QueueResult)."""

    @property
    def found(self) -> int: ...

    @property
    def queued(self) -> int: ...


class CatalogIntake:
    """The :class:`~cdn_preheat.scheduler.Intake` of a catalog being expanded and queued.

    Pushing may start before the catalog is complete when the day's quota
    covers it all: what is queued and not yet claimed, plus, for every video
    still to expand, as many URLs as the largest video so far (an estimate: a
    video's size is known only once it is expanded). When the quota does not
    cover that, the drain waits until every video is queued, and the quota goes
    to every video's head first, as when queueing ran before pushing.
    """

    def __init__(self, videos: int, pending: int = 0) -> None:
        self._condition = threading.Condition()
        self._videos_left = videos
        self._queued = pending  # URLs queued (and not pushed) before this catalog
        self._largest = 0
        self._added = 0  # videos of the catalog queued (or settled) so far
        self._closed = False

    def add(self, video: QueuedVideo | _Counted) -> None:
        """One video of the catalog was queued (or failed, or was preheated already)."""
        with self._condition:
            self._videos_left = max(0, self._videos_left - 1)
            self._added += 1
            self._queued += video.queued
            self._largest = max(self._largest, video.found)
            self._condition.notify_all()

    def close(self) -> None:
        """Nothing more will be queued."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def more_coming(self) -> bool:
        with self._condition:
            return not self._closed

    def wait(self, timeout: float) -> None:
        with self._condition:
            if not self._closed:
                self._condition.wait(timeout)

    def may_push(self, remaining: int | None, claimed: int) -> bool:
        with self._condition:
            if self._closed or remaining is None:
                return True  # complete (ordered as usual), or no daily quota known
            if not self._added:
                return False  # nothing of the catalog is known yet (resets may be going on)
            need = max(0, self._queued - claimed) + self._videos_left * self._largest
            return remaining >= need
