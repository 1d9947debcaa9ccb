"""The service's one door to the engine: what the routes and the worker call.

Routes call these coroutines; blocking work (the ledger, CDN API calls, edge
probes) runs in worker threads so the event loop only serves requests.
Playlists are fetched on the loop through the guarded transport of
:mod:`cdn_preheat.service.ssrf`.

Everything it does goes through the public API (:class:`cdn_preheat.api.AsyncPreheater`:
queue, cancel, verify, purge, quota; :meth:`cdn_preheat.api.Preheater.work` for
the worker), with the SSRF guard as the preheater's ``fetch_transport``; what
it adds is the shaping of the ledger's records into the API's.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from cdn_preheat import notify
from cdn_preheat.errors import InputError, PreheatError
from cdn_preheat.ledger.base import UrlState, VideoRecord, VideoState
from cdn_preheat.service.settings import ServiceSettings
from cdn_preheat.service.ssrf import OriginPolicy

if TYPE_CHECKING:
    from cdn_preheat.api import AsyncPreheater, PurgeResult
    from cdn_preheat.config import Settings
    from cdn_preheat.hls import Expansion
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.providers.base import Provider
    from cdn_preheat.targets import TargetsPreheater, Unit
    from cdn_preheat.verify import GateResult, VerifyReport

T = TypeVar("T")

# The counts of a record, in this order; reserved URLs (claimed, on their way
# to the CDN) count as pending.
COUNT_STATES = ("pending", "submitted", "done", "failed", "invalid", "skipped")
MAX_ERRORS = 20


@dataclass(frozen=True)
class VideoView:
    """A video as the API returns it."""

    video_id: str
    m3u8_url: str
    state: str
    counts: dict[str, int]
    created_at: dt.datetime
    updated_at: dt.datetime
    errors: list[dict[str, str]] = field(default_factory=list)
    # With CDN_PREHEAT_TARGETS: the video on each target (None: one provider, no key).
    targets: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "video_id": self.video_id,
            "m3u8_url": self.m3u8_url,
            "state": self.state,
            "counts": dict(self.counts),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "errors": list(self.errors),
        }
        if self.targets is not None:
            document["targets"] = [dict(target) for target in self.targets]
        return document


@dataclass(frozen=True)
class Submitted:
    """What submitting one video did: ``created`` (queued now) or already known."""

    created: bool
    video: VideoView


def _counts(raw: dict[UrlState, int]) -> dict[str, int]:
    counts = {name: raw.get(UrlState(name), 0) for name in COUNT_STATES}
    counts["pending"] += raw.get(UrlState.RESERVED, 0)
    return counts


# A video's state and progress on one target: the rule webhook events use too.
target_state = notify.target_state
progress = notify.progress


def encode_cursor(record: VideoRecord) -> str:
    raw = json.dumps([record.created_at.isoformat(), record.video_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, video_id = json.loads(raw)
        return dt.datetime.fromisoformat(when), str(video_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InputError("cursor is not one this API returned; start without it.") from None


class ServiceEngine:
    """The service's :class:`~cdn_preheat.api.AsyncPreheater`, and the records the API returns.

    Every playlist the preheater fetches goes through the SSRF guard (its
    ``fetch_transport``). ``on_provider`` hooks are called once with the
    provider when it is first made (the metrics count its calls there);
    ``on_queued`` hooks after a video is queued (the worker wakes up).

    With ``CDN_PREHEAT_TARGETS`` (docs/targets.md) videos are queued, counted
    and quota read per target through :class:`cdn_preheat.targets.TargetsPreheater`
    (``targets``); ``target_errors`` holds the sentence of each target whose
    worker stopped (wrong keys), shown in that target's entries.
    """

    def __init__(self, settings: Settings, service_settings: ServiceSettings | None = None) -> None:
        self.settings = settings
        self.service_settings = service_settings or ServiceSettings()
        self.policy = OriginPolicy.from_settings(self.service_settings)
        self._lock = threading.Lock()
        self.on_provider: list[Callable[[Provider], None]] = []
        self.on_queued: list[Callable[[], None]] = []
        self.preheater = self._new_preheater()
        self._instrumented: Provider | None = None
        self.targets: TargetsPreheater | None = None
        self.target_errors: dict[str, str] = {}
        self._instrumented_units: list[Unit] | None = None
        if settings.cdn_preheat_targets:
            from cdn_preheat.targets import TargetsPreheater

            connections = settings.cdn_preheat_fetch_concurrency
            self.targets = TargetsPreheater.from_settings(
                settings,
                fetch_transport=lambda: self.policy.transport(max_connections=connections),
            )

    def _new_preheater(self) -> AsyncPreheater:
        from cdn_preheat.api import AsyncPreheater

        connections = self.settings.cdn_preheat_fetch_concurrency
        return AsyncPreheater.from_settings(
            self.settings,
            fetch_transport=lambda: self.policy.transport(max_connections=connections),
        )

    # ------------------------------------------------------------ resources
    @property
    def ledger(self) -> Ledger:
        return self.preheater.sync.ledger

    @property
    def provider(self) -> Provider:
        provider = self.preheater.sync.provider
        if self._instrumented is not provider:
            with self._lock:
                if self._instrumented is not provider:
                    for hook in self.on_provider:
                        hook(provider)
                    self._instrumented = provider
        return provider

    @property
    def units(self) -> list[Unit]:
        """The targets (a pool is one unit), their providers counted by the metrics."""
        assert self.targets is not None, "units exist with CDN_PREHEAT_TARGETS only"
        units = self.targets.units
        if self._instrumented_units is not units:
            with self._lock:
                if self._instrumented_units is not units:
                    for unit in units:
                        for hook in self.on_provider:
                            hook(unit.provider)
                    self._instrumented_units = units
        return units

    def quota_keys(self) -> list[tuple[str, str, int | None]]:
        """(ledger provider key, area, quota day's UTC offset) of every place pushed to."""
        if self.targets is None:
            provider = self.provider
            offset = self.settings.cdn_preheat_quota_utc_offset_hours
            if offset is None:
                offset = provider.limits.quota_utc_offset_hours
            return [(provider.name, provider.area, offset)]
        keys = []
        for unit in self.units:
            offset = unit.settings.cdn_preheat_quota_utc_offset_hours
            if offset is None:
                offset = unit.provider.limits.quota_utc_offset_hours
            keys.append((*unit.key, offset))
        return keys

    def close(self) -> None:
        """Release the ledger and the provider; they are opened again on next use."""
        with self._lock:
            old, self.preheater = self.preheater, self._new_preheater()
            self._instrumented = None
            self._instrumented_units = None
        old.sync.close()
        if self.targets is not None:
            self.targets.close()  # its units and ledger open again on next use

    @staticmethod
    async def run(function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread (blocking ledger and API calls)."""
        return await anyio.to_thread.run_sync(function, *args)

    # ------------------------------------------------------------ reading
    def _view(self, record: VideoRecord) -> VideoView:
        ledger = self.ledger
        failures = ledger.failures(record.video_id, limit=MAX_ERRORS)
        return VideoView(
            record.video_id,
            record.m3u8_url,
            str(record.state),
            _counts(ledger.counts(record.video_id)),
            record.created_at,
            record.updated_at,
            [{"url": f.url, "reason": f.last_error or str(f.state)} for f in failures],
            self._targets_of(record.video_id) if self.targets is not None else None,
        )

    def _targets_of(self, video_id: str) -> list[dict[str, Any]]:
        """The video on each target: counts by state, state, progress, a pool's members."""
        assert self.targets is not None
        from cdn_preheat.targets import target_entries

        rows = target_entries(self.targets.ledger, self.units, video_id)
        for row in rows:
            row["error"] = self.target_errors.get(row["name"])
        return rows

    def describe_targets(self) -> notify.DescribeTargets | None:
        """With targets: their description for the webhook events of a video (notify)."""
        if self.targets is None:
            return None
        from cdn_preheat.targets import describe_targets

        return describe_targets(self.targets.ledger, self.units)

    def _video_sync(self, video_id: str) -> VideoView | None:
        record = self.ledger.get_video(video_id)
        return None if record is None else self._view(record)

    async def video(self, video_id: str) -> VideoView | None:
        return await self.run(self._video_sync, video_id)

    def _page_sync(
        self, state: str | None, limit: int, cursor: str | None
    ) -> tuple[list[VideoView], str | None]:
        after = decode_cursor(cursor) if cursor else None
        records = [
            r
            for r in self.ledger.list_videos()
            if (state is None or str(r.state) == state)
            and (after is None or (r.created_at, r.video_id) > after)
        ]
        page = records[:limit]
        more = len(records) > limit
        return [self._view(r) for r in page], encode_cursor(page[-1]) if more and page else None

    async def videos(
        self, state: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[VideoView], str | None]:
        return await self.run(self._page_sync, state, limit, cursor)

    def _queue_depth_sync(self) -> int:
        counts = self.ledger.counts()
        return counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0)

    async def queue_depth(self) -> int:
        return await self.run(self._queue_depth_sync)

    # ------------------------------------------------------------ writing
    async def submit(
        self, video_id: str, m3u8_url: str, *, reset: bool = False, head_first: str | None = None
    ) -> Submitted:
        """Queue a video (``AsyncPreheater.queue``: expanded now, pushed by the worker).

        A known video without ``reset`` is left as it is (``created`` False),
        unless its preheat has expired. Bad input (a refused URL, a playlist
        that cannot be read, a bad ``head_first``) raises before anything is
        written; with ``reset`` the playlist is read once before the video is
        forgotten, so a failing one leaves the old record as it was.
        """
        from cdn_preheat import pipeline
        from cdn_preheat.clock import utcnow

        head = "10" if head_first is None else head_first
        pipeline.HeadFirst.parse(head)  # InputError before anything happens
        problem = self.policy.url_problem(m3u8_url)
        if problem is not None:
            raise InputError(f"m3u8_url is refused: {problem}.")
        ledger = await self.run(lambda: self.ledger)
        if self.targets is not None:
            await self.run(lambda: self.units)  # a bad targets file: its sentence, nothing written
        if reset:
            await self.expand(m3u8_url)
        else:
            known = await self.run(ledger.get_video, video_id)
            max_age = self.settings.cdn_preheat_max_age
            if known is not None and (
                known.state not in (VideoState.DONE, VideoState.SUBMITTED)
                or pipeline.is_preheated(known, utcnow(), max_age)
            ):
                return Submitted(False, await self.run(self._view, known))
        error: str | None
        if self.targets is not None:
            # Expanded once, queued for every target (the host mapped per target).
            (queued,) = await self.run(
                functools.partial(
                    self.targets.queue, [(video_id, m3u8_url)], reset=reset, head_first=head
                )
            )
            error, preheated = queued.error, queued.already_preheated
        else:
            await self.run(lambda: self.provider)  # counted by the metrics from the first call
            (result,) = await self.preheater.queue(
                [(video_id, m3u8_url)], reset=reset, head_first=head, check_credentials=False
            )
            error, preheated = result.error, result.already_preheated
        if error is not None:
            raise InputError(error)

        def settled() -> VideoView:
            pipeline.refresh_video_state(ledger, video_id, targets=self.describe_targets())
            view = self._video_sync(video_id)
            assert view is not None
            return view

        view = await self.run(settled)
        if preheated:
            return Submitted(False, view)
        for hook in self.on_queued:
            hook()
        return Submitted(True, view)

    async def expand(self, m3u8_url: str) -> Expansion:
        """Read the playlist (every fetch through the SSRF guard); nothing is written."""
        return await self.preheater.expand(m3u8_url)

    async def cancel(self, video_id: str) -> VideoView | None:
        """Pending URLs of the video are not pushed (they count as skipped); None: unknown."""
        if await self.video(video_id) is None:
            return None
        await self.preheater.cancel(video_id)
        return await self.video(video_id)

    # ------------------------------------------------------------ CDN calls
    async def verify(self, video_id: str, sample: int) -> dict[str, Any] | None:
        """Probe a sample at the edge (``AsyncPreheater.verify``); None: unknown video.

        With targets: each target's own URLs at its host (``TargetsPreheater.verify``),
        one entry each under ``targets``; ``passed`` when every target passes.
        """
        if await self.video(video_id) is None:
            return None
        if self.targets is not None:
            return await self.run(self._targets_verify, video_id, sample)
        result = await self.preheater.verify(video_id, sample=sample, min_hit_ratio=1.0)
        return {"video_id": video_id, **_probed(result.report, result.gate)}

    def _targets_verify(self, video_id: str, sample: int) -> dict[str, Any]:
        assert self.targets is not None
        _ = self.units  # counted by the metrics
        run = self.targets.verify(video_id, sample=sample, min_hit_ratio=1.0)
        entries = [
            {"name": one.name, "provider": one.provider, "cdn_host": one.cdn_host,
             **_probed(one.report, one.gate)}
            for one in run.results
        ]  # fmt: skip
        reasons = [f"target {e['name']}: {e['reason']}" for e in entries if e["reason"]]
        return {
            "video_id": video_id,
            "overall": None,  # per target: each is read with its own vendor's header
            "renditions": {},
            "urls": [],
            "passed": run.passed,
            "reason": "; ".join(reasons) or None,
            "targets": entries,
        }

    async def purge(
        self, urls: Sequence[str], dirs: Sequence[str], video_id: str | None, delete: bool
    ) -> dict[str, Any]:
        """Refresh URLs, directories or a video's URLs (``AsyncPreheater.purge``, not followed).

        With targets: on every target at its own host, a pool on each member
        (``TargetsPreheater.purge``), one entry each under ``targets``; a target
        that fails has its sentence there and the others are purged all the same.
        """
        if delete and not dirs:
            raise InputError("delete applies to dirs only.")
        if not urls and not dirs and video_id is None:
            raise InputError("give urls, dirs or a video_id to purge.")
        if video_id is not None and await self.video(video_id) is None:
            raise InputError(f"no video {video_id!r} in the ledger.")
        if self.targets is not None:
            return await self.run(self._targets_purge, urls, dirs, video_id, delete)
        await self.run(lambda: self.provider)
        result = await self.preheater.purge(
            urls=urls, dirs=dirs, video_id=video_id, delete=delete, follow=False
        )
        return _purged(result)

    def _targets_purge(
        self, urls: Sequence[str], dirs: Sequence[str], video_id: str | None, delete: bool
    ) -> dict[str, Any]:
        assert self.targets is not None
        _ = self.units  # counted by the metrics
        run = self.targets.purge(
            urls=urls, dirs=dirs, video_id=video_id, delete=delete, follow=False
        )
        entries = []
        for one in run.results:
            entry: dict[str, Any] = {"name": one.name, "pool": one.pool, "cdn_host": one.cdn_host}
            entry.update(
                _purged(one.result) if one.result is not None else {"provider": one.provider}
            )
            entry["error"] = one.error
            entries.append(entry)
        return {"ok": run.ok, "targets": entries}

    async def quota(self) -> list[dict[str, Any]]:
        """Today's quota per provider and area (``AsyncPreheater.quota``), or per target."""
        if self.targets is not None:
            return await self.run(self._targets_quota)
        await self.run(lambda: self.provider)
        report = await self.preheater.quota()
        return [
            {
                "provider": report.provider,
                "area": report.area,
                "day": report.day,
                "total": report.total,
                "available": report.available,
                "used_today": report.used_today,
                "reserved_in_flight": report.reserved_in_flight,
            }
        ]

    def _targets_quota(self) -> list[dict[str, Any]]:
        """One entry per target (a pool: one, with its members); a failing one has its sentence."""
        assert self.targets is not None
        units = self.units
        rows = []
        for unit, row in zip(units, self.targets.quota(), strict=True):
            book = self.ledger.quota_day(*unit.key, row.day)
            total, available = row.total, row.available
            if available is None and row.error is None and book is not None:
                # No quota API (Qiniu): what the CDN's answers told the ledger today.
                total, available = book.limit, book.remaining
            rows.append(
                {
                    "target": row.name,
                    "provider": unit.members[0].spec.provider,
                    "area": unit.key[1],
                    "day": row.day,
                    "total": total,
                    "available": available,
                    "used_today": book.used if book else None,
                    "reserved_in_flight": row.reserved_in_flight,
                    "members": [
                        {"name": name, "available": left} for name, left in row.members.items()
                    ]
                    if unit.is_pool
                    else [],
                    "error": row.error or self.target_errors.get(row.name),
                }
            )
        return rows

    # ------------------------------------------------------------ health
    def _ready_sync(self) -> None:
        if self.targets is not None:
            _ = self.units  # the targets file and every target's settings are valid
            self.ledger.get_video("cdn-preheat-health-probe")
            return
        _ = self.provider  # settings complete enough to build it (no CDN call)
        self.ledger.get_video("cdn-preheat-health-probe")  # one indexed round trip

    async def ready(self) -> None:
        """Raise (PreheatError) unless the settings are valid and the ledger answers."""
        await self.run(self._ready_sync)


def _probed(report: VerifyReport, outcome: GateResult) -> dict[str, Any]:
    """A verification as the API returns it: ratios overall and per rendition, each probe."""

    def ratio(value: Any) -> dict[str, Any]:
        names = ("hits", "upper", "misses", "unknown", "errors", "ratio")
        return {name: getattr(value, name) for name in names}

    return {
        "overall": ratio(report.overall),
        "renditions": {k: ratio(v) for k, v in report.by_rendition().items()},
        "urls": [
            {"url": r.url, "status": r.status_code, "cache": str(r.status), "error": r.error}
            for r in report.results
        ],
        "passed": outcome.passed,
        "reason": outcome.reason or None,
    }


def _purged(result: PurgeResult) -> dict[str, Any]:
    return {
        "provider": result.provider,
        "urls": result.urls,
        "dirs": result.dirs,
        "submitted": result.submitted,
        "not_submitted": result.not_submitted,
        "left": list(result.left),
        "tasks": list(result.tasks),
        "done": result.done,
        "failed": result.failed,
        "processing": result.processing,
        "timed_out": result.timed_out,
        "quota_exhausted": result.quota_exhausted is not None,
        "failures": [{"url": url, "reason": why} for url, why in result.failures.items()],
    }


__all__ = ["PreheatError", "ServiceEngine", "Submitted", "VideoView"]
