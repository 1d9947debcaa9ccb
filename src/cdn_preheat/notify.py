"""Webhook events, produced where video states change, kept in the ledger's outbox.

``refresh_video_state`` (pipeline) calls :func:`video_settled` before it
records a video's new state. When the video reaches ``done`` or ``failed``
from another state, one event goes to the outbox, keyed by (video, type,
generation): the generation is the moment of the video's previous state
change, which every process refreshing the same video reads alike, so two
workers finishing one video at once, or a refresh repeated after a crash
between the outbox write and the state write, make one event, not two.
A video queued again (a re-push after expiry, ``verify --requeue``, ``reset``)
passes through ``queued`` and makes a new generation.

Producing here rather than by scanning the ledger from the service: any
process that finishes a video (a ``worker``, ``push``, the service) records
the event in the same ledger at the moment it happens, whether the service is
running or not, and no scan has to find transitions among every video.

The quota event has no video; the service's delivery loop checks the day's
quota per provider and area, with targets per target (:func:`quota_spent`).

Over targets (docs/targets.md) every event names the targets it is about in
``targets``: a video's event every target the video is queued for (its record
has their entries, as ``GET /v1/videos/{id}`` does), ``quota.exhausted`` the
target whose quota was spent. Whoever refreshes a video's state in such a run
passes the description of its targets (:data:`DescribeTargets`).

Delivery (signing, retries) is in ``cdn_preheat.service.webhooks``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cdn_preheat.ledger.base import UrlState, VideoRecord, VideoState

if TYPE_CHECKING:
    from cdn_preheat.ledger.base import Ledger

TOPIC = "webhook"
VIDEO_DONE = "video.done"  # every URL reached the edge (or was skipped)
VIDEO_FAILED = "video.failed"  # finished, with failed or invalid URLs
QUOTA_EXHAUSTED = "quota.exhausted"  # the day's quota is spent with work queued
EVENT_TYPES = (VIDEO_DONE, VIDEO_FAILED, QUOTA_EXHAUSTED)

ERRORS_IN_RECORD = 20

# With targets (docs/targets.md): a video id -> its entries per target, as
# ``GET /v1/videos/{id}`` lists them (``cdn_preheat.targets.target_entries``).
DescribeTargets = Callable[[str], list[dict[str, Any]]]


def iso(moment: dt.datetime) -> str:
    """ISO 8601 in UTC, as the API writes times (``2026-12-02T01:00:00+00:00``)."""
    return moment.astimezone(dt.UTC).isoformat()


def record_counts(counts: dict[UrlState, int]) -> dict[str, int]:
    """The record's counts; ``reserved`` (in a worker's hands) shows as pending."""
    return {
        "pending": counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0),
        "submitted": counts.get(UrlState.SUBMITTED, 0),
        "done": counts.get(UrlState.DONE, 0),
        "failed": counts.get(UrlState.FAILED, 0),
        "invalid": counts.get(UrlState.INVALID, 0),
        "skipped": counts.get(UrlState.SKIPPED, 0),
    }


def target_state(counts: dict[str, int]) -> str:
    """A video's state on one target (record counts), by the rule of its overall state."""
    if counts["pending"]:
        return "queued"
    if counts["submitted"]:
        return "submitted"
    if not counts["done"] and (counts["failed"] or counts["invalid"]):
        return "failed"
    if not any(counts.values()):
        return "queued"  # nothing recorded for this target yet (added to the file later)
    return "done"


def progress(counts: dict[str, int]) -> float:
    """The share of a target's URLs that reached an end (done, failed or invalid)."""
    total = sum(counts[name] for name in ("pending", "submitted", "done", "failed", "invalid"))
    finished = counts["done"] + counts["failed"] + counts["invalid"]
    return round(finished / total, 4) if total else 0.0


def video_record(
    ledger: Ledger,
    video: VideoRecord,
    *,
    counts: dict[UrlState, int] | None = None,
    state: VideoState | None = None,
    updated_at: dt.datetime | None = None,
    targets: DescribeTargets | None = None,
) -> dict[str, Any]:
    """A video as ``GET /v1/videos/{id}`` returns it (and webhook events carry it).

    ``targets``: a run over targets; the record has their entries under ``targets``.
    """
    if counts is None:
        counts = ledger.counts(video.video_id)
    errors = [
        {"url": failure.url, "reason": failure.last_error or str(failure.state)}
        for failure in ledger.failures(video.video_id, limit=ERRORS_IN_RECORD)
    ]
    record = {
        "video_id": video.video_id,
        "m3u8_url": video.m3u8_url,
        "state": str(state or video.state),
        "counts": record_counts(counts),
        "created_at": iso(video.created_at),
        "updated_at": iso(updated_at or video.updated_at),
        "errors": errors,
    }
    if targets is not None:
        record["targets"] = targets(video.video_id)
    return record


def finished_type(state: VideoState, counts: dict[UrlState, int]) -> str | None:
    """The event a video in ``state`` with these counts makes, if any."""
    if state not in (VideoState.DONE, VideoState.FAILED):
        return None
    if (
        state is VideoState.FAILED
        or counts.get(UrlState.FAILED, 0)
        or counts.get(UrlState.INVALID, 0)
    ):
        return VIDEO_FAILED
    return VIDEO_DONE


def video_settled(
    ledger: Ledger,
    video_id: str,
    state: VideoState,
    counts: dict[UrlState, int],
    now: dt.datetime,
    *,
    targets: DescribeTargets | None = None,
) -> str | None:
    """Queue the event for a video about to be recorded in ``state``; its id, if one is due.

    Called before the state is written, so that a crash in between leaves the
    old state and the next refresh enqueues the same (deduplicated) event.
    ``targets``: the run is over targets; the event names every target the video
    is queued for (``targets``) and its record has each one's entry, as the
    video's route shows them.
    """
    kind = finished_type(state, counts)
    if kind is None:
        return None
    previous = ledger.get_video(video_id)
    if previous is None or previous.state in (state, VideoState.LEGACY):
        return None
    key = f"{video_id}\n{kind}\n{iso(previous.updated_at)}"
    record = video_record(
        ledger, previous, counts=counts, state=state, updated_at=now, targets=targets
    )
    payload: dict[str, Any] = {"type": kind, "video": record}
    if targets is not None:
        payload["targets"] = [entry["name"] for entry in record["targets"]]
    event, _ = ledger.enqueue_event(TOPIC, key, payload, now)
    return event.event_id


def quota_spent(
    ledger: Ledger,
    provider: str,
    area: str,
    day: str,
    now: dt.datetime,
    *,
    target: bool = False,
) -> str | None:
    """Queue a ``quota.exhausted`` event (once per provider, area and day) if it is due.

    ``target``: ``provider`` is a target's (or pool's) name, its ledger key; the
    event names it in ``targets``, as every event of a run over targets does.

    Due once the day's quota is spent *and settled*: nothing left, nothing in
    flight. A batch holding the last of the quota (reserved, its push not yet
    answered) has not spent it yet: its claim may still end released (the call
    failed, the quota comes back) and its URLs are neither queued nor pushed.
    Once every reservation is settled the count is the ledger's pending URLs of
    that provider and area only: a URL reserved then is in a worker's hands
    (a claim taken without quota), not queued.
    """
    quota = ledger.quota_day(provider, area, day)
    if quota is None or quota.remaining != 0 or quota.inflight:
        return None
    # The queue of this provider and area (with targets: this target's, docs/targets.md).
    queued = ledger.counts(target=(provider, area)).get(UrlState.PENDING, 0)
    if not queued:
        return None
    payload: dict[str, Any] = {
        "type": QUOTA_EXHAUSTED,
        "video": None,
        "quota": {
            "provider": provider,
            "area": area,
            "day": day,
            # exhaust_quota with an unknown limit records a figure no quota reaches.
            "limit": quota.limit if quota.limit is not None and quota.limit < 10**15 else None,
            "used": quota.used if quota.used < 10**15 else None,
            "queued": queued,
        },
    }
    if target:
        payload["targets"] = [provider]
    event, _ = ledger.enqueue_event(
        TOPIC, f"{provider}/{area}\n{QUOTA_EXHAUSTED}\n{day}", payload, now
    )
    return event.event_id
