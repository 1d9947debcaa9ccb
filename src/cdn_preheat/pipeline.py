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
from typing import TYPE_CHECKING, Literal

from cdn_preheat import notify
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
from cdn_preheat.scheduler import DrainReport, Scheduler, SchedulerOptions
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
) -> None:
    """For a dry run: how many of the expansion's URLs a push would send.

    Those the ledger holds as done for this video, and not yet expired, are not
    sent again; everything else is (queued ones included: the push sends them).
    """
    now = now or utcnow()
    video = ledger.get_video(summary.video_id)
    if is_preheated(video, now, max_age):
        summary.already_preheated = True
        summary.would_push = 0
        return
    fresh = {
        record.url
        for record in (ledger.url_records(summary.video_id) if video is not None else [])
        if record.state is UrlState.DONE and (record.expires_at is None or record.expires_at > now)
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


def refresh_video_state(ledger: Ledger, video_id: str, now: dt.datetime | None = None) -> None:
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
    notify.video_settled(ledger, video_id, state, counts, now)
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
) -> RunReport:
    """Push everything queued for this provider, then follow the tasks; repeat for retries.

    ``video_id``: push only that video's URLs; other videos' stay queued (the
    open tasks followed are still all of this provider's, whoever pushed them).
    ``pending`` then counts that video's URLs only.
    ``on_tracking(open_tasks, totals)`` is called after each look at the tasks.
    """
    stop = stop or threading.Event()
    report = RunReport()
    scheduler = Scheduler(ledger, provider, options.scheduler, on_submitted=on_progress)
    tracker = Tracker(ledger, provider, options.tracker)
    tracker.on_round = on_tracking
    # Other processes pushing or polling on this account take their share of
    # every API's rate limit while this run lasts (heartbeats in the ledger).
    share = RateShare(ledger, provider.name, options.scheduler.worker_id, provider.pacing)
    share.start(stop)
    try:
        _rounds(ledger, options, scheduler, tracker, report, stop, video_id)
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
) -> None:
    """Push/track rounds until the queue (``video_id``'s URLs) is empty or a round ends the run."""
    for _ in range(options.max_rounds):
        try:
            drained = scheduler.drain(stop, video_id=video_id)
        except PreheatError:
            if not stop.is_set():
                raise
            break  # a query cut short by the stop: what was pushed is recorded
        report.add(drained)
        if drained.stopped_by is not None and not stop.is_set():
            break
        if not options.wait or stop.is_set():
            break
        try:
            tracked = tracker.follow(stop)
        except PreheatError:
            if not stop.is_set():
                raise
            break
        report.done += tracked.done
        report.failed += tracked.failed
        report.invalid += tracked.invalid
        if tracked.timed_out:
            report.tracking_timed_out = True
            break
        if report.quota_exhausted or not ledger.counts(video_id).get(UrlState.PENDING, 0):
            break


def _quota_left(ledger: Ledger, scheduler: Scheduler) -> int | None:
    provider_name, area, day = scheduler.quota_key()
    quota = ledger.quota_day(provider_name, area, day)
    return None if quota is None else quota.remaining


def refresh_states(ledger: Ledger, video_ids: Sequence[str]) -> None:
    now = utcnow()
    for video_id in video_ids:
        refresh_video_state(ledger, video_id, now)
