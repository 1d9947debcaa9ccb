"""The ledger interface: what is queued, in flight, done, and how much quota is used.

Two backends implement it (SQLite, MongoDB) and one contract suite in
``tests/ledger/`` holds both to the same behaviour.

URLs are unique per (provider, area, url): a URL pushed for one video is not
pushed again for another while it has not expired. Each URL row moves through

    pending ──claim──> reserved ──submitted──> submitted ──outcome──> done
       ^                  │                        │                   failed ─┐
       └──release/lease───┘                        └──────> invalid         │
       └────────────────── retry (attempts < max) ───────────────────────────┘

``skipped`` URLs (foreign host, unsupported scheme) are recorded per video and
never claimed. Every state change that more than one worker could race on is
atomic in the backend (one SQLite transaction, one conditional MongoDB update).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self


class UrlState(StrEnum):
    PENDING = "pending"
    RESERVED = "reserved"
    SUBMITTED = "submitted"
    DONE = "done"
    FAILED = "failed"
    INVALID = "invalid"
    SKIPPED = "skipped"


class VideoState(StrEnum):
    QUEUED = "queued"  # URLs recorded, not all submitted yet
    SUBMITTED = "submitted"  # every URL reached the provider
    DONE = "done"  # every URL is in a terminal state
    FAILED = "failed"  # every URL ended failed or invalid: nothing reached the edge
    LEGACY = "legacy"  # recorded by the old script: counts as preheated
    CANCELLED = "cancelled"  # its queued URLs were dropped (Preheater.cancel)


@dataclass(frozen=True, slots=True)
class QueuedUrl:
    """A URL to enqueue. Lower ``priority`` is claimed first, then insertion order."""

    url: str
    kind: str
    priority: int = 0


@dataclass(frozen=True)
class VideoRecord:
    video_id: str
    m3u8_url: str
    url_count: int
    state: VideoState
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class UrlRecord:
    url: str
    provider: str
    area: str
    kind: str
    state: UrlState
    task_id: str | None
    attempts: int
    last_error: str | None
    pushed_at: dt.datetime | None
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class Claim:
    """A batch of URLs reserved by one worker until ``lease_until``."""

    claim_id: str
    provider: str
    area: str
    urls: tuple[str, ...]
    worker: str
    claimed_at: dt.datetime
    lease_until: dt.datetime


@dataclass(frozen=True)
class EnqueueResult:
    queued: int  # new or expired URLs now pending
    already_done: int  # done and not expired: nothing to push
    already_queued: int  # pending, reserved or submitted by an earlier run
    skipped: int  # recorded as skipped for this video


@dataclass(frozen=True)
class Outcome:
    """What the provider's task list says about one submitted URL."""

    url: str
    task_id: str
    state: UrlState  # DONE, FAILED or INVALID
    reason: str | None = None
    # INVALID only: back to pending once (an attempt counted) if the URL has no
    # attempt yet; invalid for good otherwise.
    retry_once: bool = False


@dataclass(frozen=True)
class QuotaDay:
    """Quota bookkeeping for one provider, area and provider-local day.

    ``limit`` is the provider's daily total (None: unknown or unlimited);
    ``used`` is what the provider has counted, ``inflight`` what workers have
    reserved and not yet recorded. A reservation succeeds only while
    ``used + inflight + n <= limit``. ``settles`` counts settled reservations;
    it tells :meth:`Ledger.sync_quota` whether a provider snapshot is current.
    """

    provider: str
    area: str
    day: str
    limit: int | None
    used: int
    inflight: int
    settles: int = field(default=0, compare=False)

    @property
    def remaining(self) -> int | None:
        if self.limit is None:
            return None
        return max(0, self.limit - self.used - self.inflight)


@dataclass(frozen=True)
class PendingGroup:
    """Pending URLs of one video at one priority, for one provider and area.

    :meth:`Ledger.pending_groups` lists them in claim order (priority, then the
    queue position of the group's first URL), so walking them shows which
    videos a given number of pushes would reach.
    """

    video_id: str
    priority: int
    count: int


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    provider: str
    area: str
    kind: str  # "push" or "purge"
    url_count: int
    created_at: dt.datetime
    open: bool


class EventState(StrEnum):
    PENDING = "pending"  # to be handled at ``due_at`` (again, after a failed attempt)
    DELIVERED = "delivered"  # handled: the receiver answered 2xx, the video was queued
    FAILED = "failed"  # given up (retried for as long as allowed)


@dataclass(frozen=True)
class OutboxEvent:
    """One entry of the outbox: something to hand on at least once, under a stable id.

    ``topic`` says who handles it (``webhook``: a signed POST to the configured
    receiver; ``storage``: a storage notification to settle, then queue). ``key``
    makes it unique within the topic: enqueueing the same key again returns the
    first entry, so a producer may repeat itself (after a crash, on another
    worker) without a second event. ``payload`` is JSON-serialisable.
    """

    event_id: str
    topic: str
    key: str
    payload: dict[str, Any]
    state: EventState
    created_at: dt.datetime
    due_at: dt.datetime
    attempts: int
    last_error: str | None
    lease_until: dt.datetime | None
    worker: str | None


class Ledger(ABC):
    """Everything cdn-preheat remembers. All datetimes are timezone-aware UTC."""

    # Videos ---------------------------------------------------------------
    @abstractmethod
    def get_video(self, video_id: str) -> VideoRecord | None:
        """The video, including one recorded by the old script (state LEGACY)."""

    @abstractmethod
    def put_video(self, video_id: str, m3u8_url: str, url_count: int, now: dt.datetime) -> None:
        """Create or update the video record (state QUEUED)."""

    @abstractmethod
    def set_video_state(self, video_id: str, state: VideoState, now: dt.datetime) -> None:
        """Record the video's state (also mirrored to the old script's record on MongoDB)."""

    @abstractmethod
    def reset_video(self, video_id: str) -> int:
        """Forget the video and its URLs so that it is pushed again; URLs forgotten."""

    @abstractmethod
    def cancel_video(self, video_id: str, reason: str = "cancelled") -> int:
        """Take the video's pending URLs out of the queue; how many were taken.

        They are recorded as skipped for the video with ``reason``. A pending URL
        that another video links too stays queued (that video still wants it);
        URLs already reserved or submitted go on. Queueing the video again
        (``enqueue``) queues them anew.
        """

    @abstractmethod
    def list_videos(self) -> list[VideoRecord]:
        """Every video, oldest first."""

    # URLs -----------------------------------------------------------------
    @abstractmethod
    def enqueue(
        self,
        video_id: str,
        provider: str,
        area: str,
        urls: Iterable[QueuedUrl],
        now: dt.datetime,
        max_age: dt.timedelta,
    ) -> EnqueueResult:
        """Link the URLs to the video; queue those never pushed or expired."""

    @abstractmethod
    def mark_skipped(
        self, video_id: str, provider: str, area: str, reasons: Mapping[str, str]
    ) -> None:
        """Record URLs of this video that will not be pushed, with why."""

    @abstractmethod
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
        """Atomically reserve up to ``limit`` pending URLs, best priority first.

        ``video_id``: only URLs of that video (a URL shared by several videos
        is claimable through any of them); None: any video's.
        """

    @abstractmethod
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
        """Reserve up to ``limit`` URLs of the day's quota and claim that many, atomically.

        ``video_id`` filters the claim as in :meth:`claim`.

        Returns the claim (None: nothing pending) and the quota granted before
        trimming to what was pending (0: the quota is spent); the reservation
        left in flight is exactly ``len(claim.urls)``. A process killed
        half-way leaves nothing reserved for good: once the lease has run out,
        :meth:`expired_claims` (which recovers first) and the claim's lease
        give the reservation back exactly once.
        """

    @abstractmethod
    def mark_submitted(
        self, claim: Claim, task_id: str, urls: Sequence[str], now: dt.datetime
    ) -> None:
        """Reserved -> submitted with the provider's task id; records the task."""

    @abstractmethod
    def mark_submitted_settling(
        self,
        claim: Claim,
        task_id: str,
        urls: Sequence[str],
        now: dt.datetime,
        day: str,
        reserved: int,
    ) -> None:
        """``mark_submitted``, and settle ``reserved`` of the day's quota with ``len(urls)`` used.

        Atomic: a process killed half-way leaves either nothing done (the
        claim's lease gives the reservation back) or, once the lease has run
        out, :meth:`expired_claims` finishes it (URLs submitted, settled once).
        """

    @abstractmethod
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
        """End URLs of ``claim`` and settle their share of the day's quota, atomically.

        ``submitted`` (task id -> URLs) as :meth:`mark_submitted`, ``invalid``
        (URL -> reason) as :meth:`mark_invalid`, ``released`` back to pending as
        :meth:`release` (with ``error`` and ``count_attempt``); then ``reserved``
        of ``day``'s reservation settled with ``used`` counted as reaching the
        provider (``day`` None: no quota to settle). Every path that ends a
        claimed URL uses it, so a URL never leaves ``reserved`` without its share
        of the reservation leaving ``inflight`` in the same step.

        A process killed half-way leaves either nothing done (the URLs stay
        reserved: the claim's lease gives them and their share back) or, once
        the lease has run out, :meth:`expired_claims` finishes the step (each URL
        ends as asked, the reservation settled once).
        """

    @abstractmethod
    def release(
        self, claim: Claim, urls: Sequence[str], error: str | None, *, count_attempt: bool
    ) -> None:
        """Reserved -> pending (the call failed or was never made).

        Leaves the quota book alone: a claim holding a reservation ends its URLs
        with :meth:`settle_claim` instead.
        """

    @abstractmethod
    def mark_invalid(
        self, provider: str, area: str, reasons: Mapping[str, str], now: dt.datetime
    ) -> None:
        """These URLs were refused by the provider: invalid, not retried.

        Leaves the quota book alone (see :meth:`settle_claim`).
        """

    @abstractmethod
    def record_outcomes(
        self,
        provider: str,
        area: str,
        outcomes: Sequence[Outcome],
        now: dt.datetime,
        max_age: dt.timedelta,
        max_attempts: int,
    ) -> None:
        """Apply task results; FAILED goes back to pending while attempts remain.

        INVALID with ``retry_once`` goes back to pending if the URL has no
        attempt counted yet (counting one), else is final like any INVALID.
        """

    @abstractmethod
    def requeue(self, provider: str, area: str, urls: Sequence[str]) -> int:
        """Send done, failed or invalid URLs back to the end of the queue; how many moved.

        Used when the edge still misses URLs whose tasks said done.
        """

    @abstractmethod
    def renew_lease(
        self, claim: Claim, now: dt.datetime, lease: dt.timedelta, *, worker: str | None = None
    ) -> Claim | None:
        """Extend the lease of the claim's URLs still reserved under it, to ``now + lease``.

        Without ``worker``: the claim's own worker keeps it while its API call is
        in flight (a heartbeat), expired or not, as long as nobody took it over.
        With ``worker``: a worker takes over a claim whose lease has run out
        (recovery of a dead worker's batch); the URLs pass to ``worker`` only if
        still held by ``claim.worker`` with an expired lease, so of several
        workers recovering one claim each URL goes to exactly one.

        Returns the claim as it now stands (the URLs this call won, the new
        lease and worker; ``claimed_at`` kept), or None when none was held.
        """

    @abstractmethod
    def expired_claims(self, provider: str, area: str, now: dt.datetime) -> list[Claim]:
        """Claims whose lease ran out without being submitted or released.

        Recovers first what a killed :meth:`claim_with_quota`,
        :meth:`mark_submitted_settling` or :meth:`settle_claim` left half-done
        under a lease that ran out; a claim whose settling is still within its
        lease is not listed.
        """

    @abstractmethod
    def record_task(
        self, task_id: str, provider: str, area: str, kind: str, url_count: int, now: dt.datetime
    ) -> None:
        """Remember a task (``mark_submitted`` does this for push tasks)."""

    @abstractmethod
    def known_tasks(self, provider: str, task_ids: Iterable[str]) -> set[str]:
        """Which of these task ids the ledger has recorded (for any kind).

        Reconciliation uses it: a task already recorded is an earlier push of a
        URL (a failed attempt, an expired preheat), never the lost answer of the
        batch being reconciled.
        """

    @abstractmethod
    def earlier_pushes(self, provider: str, area: str, found: Mapping[str, str]) -> set[str]:
        """The URLs of ``found`` (URL -> task id) already recorded pushed under that task.

        Reconciliation uses it: the provider's newest task for a URL is an earlier
        push (a failed attempt, an expired preheat) when the ledger recorded the
        task no later than the URL's last push, so the URL went under it then. A
        task recorded for other URLs only is not one: vendors that merge pushes
        under one id (Alibaba's PushTaskId, pushes of one second) hand the id of a
        lost push to another batch's answer first.
        """

    @abstractmethod
    def close_task(self, task_id: str, provider: str) -> None:
        """The task has no URL left in progress."""

    @abstractmethod
    def open_tasks(self, provider: str, area: str, kind: str = "push") -> list[TaskRecord]:
        """Tasks not yet closed, oldest first."""

    @abstractmethod
    def abandon_task(self, provider: str, task_id: str, reason: str) -> int:
        """Close a task whose outcome can no longer be learnt; re-queue its URLs.

        URLs still submitted under it go back to pending (same place in the
        queue, no attempt counted, ``reason`` as their last error). Used for
        tasks older than the provider keeps them. Returns the URLs re-queued.
        """

    @abstractmethod
    def submitted_urls(self, provider: str, task_ids: Iterable[str]) -> dict[str, list[str]]:
        """task id -> the URLs still submitted under it (for matching task results)."""

    @abstractmethod
    def url_records(self, video_id: str) -> list[UrlRecord]:
        """Every URL of the video, in queue order."""

    @abstractmethod
    def done_urls(
        self,
        provider: str,
        area: str,
        urls: Iterable[str],
        now: dt.datetime,
        max_age: dt.timedelta,
    ) -> set[str]:
        """Of ``urls``, those done and not expired on the target, whichever video they
        came with: what ``enqueue`` would count as already done (a dry run's answer).
        Reads only."""

    @abstractmethod
    def counts(
        self, video_id: str | None = None, *, target: tuple[str, str] | None = None
    ) -> dict[UrlState, int]:
        """URL counts by state, for one video or the whole ledger.

        ``target`` (provider, area): that target's URLs only (its skipped ones
        too), without reading the other targets' rows of a shared ledger.
        """

    @abstractmethod
    def has_pending(self, provider: str, area: str, video_id: str | None = None) -> bool:
        """Whether a URL of this provider and area (and video) is pending: is a round left?

        Reads the pending URLs only, not the whole queue.
        """

    @abstractmethod
    def counts_by_target(
        self, video_id: str | None = None
    ) -> dict[tuple[str, str], dict[UrlState, int]]:
        """URL counts by state per (provider, area), for one video or the whole ledger.

        Skipped URLs count under the provider and area they were recorded for.
        """

    @abstractmethod
    def pending_groups(self, provider: str, area: str) -> list[PendingGroup]:
        """Pending URLs of this provider and area by video and priority, in claim order.

        A URL linked to several videos counts once, for the first of them by id.
        """

    @abstractmethod
    def failures(self, video_id: str | None = None, limit: int = 20) -> list[UrlRecord]:
        """Failed and invalid URLs with their last error."""

    # Quota ----------------------------------------------------------------
    @abstractmethod
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
        """Take the provider's figures for the day: its limit, and its count when current.

        The provider's count replaces ours (and may lower it: the provider's
        day began) only when the snapshot is known to be current: nothing is
        in flight and no reservation was settled since ``settles_seen``, read
        from :meth:`quota_day` before asking the provider. Otherwise our count
        only grows to the provider's, because a lower figure may be a snapshot
        taken before another worker's batch arrived, and trusting it would let
        the workers together exceed the quota.
        """

    @abstractmethod
    def reserve_quota(self, provider: str, area: str, day: str, n: int) -> int:
        """Atomically reserve up to ``n`` URLs of quota; how many were granted."""

    @abstractmethod
    def settle_quota(self, provider: str, area: str, day: str, reserved: int, used: int) -> None:
        """A reservation of ``reserved`` ended; ``used`` of it reached the provider."""

    @abstractmethod
    def exhaust_quota(self, provider: str, area: str, day: str) -> None:
        """The provider said the quota is spent: nothing more today."""

    @abstractmethod
    def quota_day(self, provider: str, area: str, day: str) -> QuotaDay | None:
        """The day's bookkeeping, if any."""

    # Workers sharing an account's rate limits ---------------------------
    @abstractmethod
    def heartbeat(
        self, scope: str, worker_id: str, now: dt.datetime, ttl: dt.timedelta
    ) -> dict[str, dt.datetime]:
        """``worker_id`` is alive on ``scope`` at ``now``; the live workers and when each joined.

        Workers heard from within ``ttl`` before ``now`` count, this one
        included; older heartbeats are forgotten. A worker joins at its first
        heartbeat (again after it left or was forgotten). ``scope`` names what
        they share (a provider account's rate limits, see ``ratelimit.RateShare``).
        """

    @abstractmethod
    def leave(self, scope: str, worker_id: str) -> None:
        """``worker_id`` stopped: it no longer counts on ``scope``."""

    @abstractmethod
    def take_turn(self, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
        """Hold the turn ``name`` until ``now + ttl`` if it is free, expired or already ours.

        Atomic across workers: of several asking at once, exactly one gets a
        free turn. Used so that one worker at a time polls a provider's task
        list for everyone (the outcomes go to the shared ledger).
        """

    @abstractmethod
    def release_turn(self, name: str, holder: str) -> None:
        """Give the turn ``name`` up, if ``holder`` has it; others may take it at once."""

    # Outbox (webhooks, storage notifications) ----------------------------
    @abstractmethod
    def enqueue_event(
        self,
        topic: str,
        key: str,
        payload: Mapping[str, Any],
        now: dt.datetime,
        *,
        due: dt.datetime | None = None,
    ) -> tuple[OutboxEvent, bool]:
        """Add the event ``(topic, key)`` unless it exists; the event and whether it is new.

        Once per key, whatever the state the first one reached: a key delivered
        or given up is not queued again. ``due``: not before then (default ``now``).
        The id (``evt_`` and 32 hex digits) is made here, once, and kept.
        """

    @abstractmethod
    def claim_events(
        self, topic: str, now: dt.datetime, lease: dt.timedelta, limit: int, worker: str
    ) -> list[OutboxEvent]:
        """Atomically lease up to ``limit`` pending events due by ``now``, earliest due first.

        An event whose lease has run out (its handler died between sending and
        marking) is claimable again: delivery is at least once. Of several
        workers claiming at once, each event goes to exactly one.
        """

    @abstractmethod
    def mark_event_delivered(self, event_id: str, now: dt.datetime) -> None:
        """The event was handed on: pending -> delivered (an attempt counted)."""

    @abstractmethod
    def reschedule_event(self, event_id: str, due: dt.datetime, error: str) -> None:
        """The attempt failed: pending again at ``due``, lease dropped, an attempt counted."""

    @abstractmethod
    def fail_event(self, event_id: str, error: str, now: dt.datetime) -> None:
        """Give the event up (pending -> failed), an attempt counted, ``error`` kept."""

    @abstractmethod
    def prune_events(self, topic: str, before: dt.datetime) -> int:
        """Forget the topic's delivered and failed events settled before ``before``; how many.

        Pending events are never pruned. A key pruned may be enqueued again.
        """

    @abstractmethod
    def get_event(self, event_id: str) -> OutboxEvent | None:
        """The event with this id."""

    @abstractmethod
    def list_events(
        self,
        topic: str,
        *,
        state: EventState | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> list[OutboxEvent]:
        """The topic's events (of one state, whose key starts with ``key_prefix``), newest first."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
