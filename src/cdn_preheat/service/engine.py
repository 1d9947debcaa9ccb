"""The service's one door to the engine: what the routes and the worker call.

Routes call these coroutines; blocking work (the ledger, CDN API calls, edge
probes) runs in worker threads so the event loop only serves requests.
Playlists are fetched on the loop through the guarded transport of
:mod:`cdn_preheat.service.ssrf`.

It drives the library the way the CLI does (expand, queue, push in the
worker, verify, purge) and adds nothing to the pipeline: each method is a
call into the library plus the shaping of what it returns into the API's
records.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from cdn_preheat.errors import InputError, PreheatError
from cdn_preheat.ledger.base import UrlState, VideoRecord, VideoState
from cdn_preheat.service.settings import ServiceSettings
from cdn_preheat.service.ssrf import OriginPolicy

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.providers.base import Provider

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

    def as_dict(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "m3u8_url": self.m3u8_url,
            "state": self.state,
            "counts": dict(self.counts),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class Submitted:
    """What submitting one video did: ``created`` (queued now) or already known."""

    created: bool
    video: VideoView


def _counts(raw: dict[UrlState, int]) -> dict[str, int]:
    counts = {name: raw.get(UrlState(name), 0) for name in COUNT_STATES}
    counts["pending"] += raw.get(UrlState.RESERVED, 0)
    return counts


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
    """The ledger and provider of one service process, opened on first use.

    ``ledger`` and ``provider`` may be given (tests, the demo); otherwise they
    are made from ``settings``. ``on_provider`` is called once with the
    provider when it is made (the metrics instrument it there).
    """

    def __init__(
        self,
        settings: Settings,
        service_settings: ServiceSettings | None = None,
        *,
        ledger: Ledger | None = None,
        provider: Provider | None = None,
    ) -> None:
        self.settings = settings
        self.service_settings = service_settings or ServiceSettings()
        self.policy = OriginPolicy.from_settings(self.service_settings)
        self._ledger = ledger
        self._provider = provider
        self._lock = threading.Lock()
        self._provider_lock = threading.Lock()
        self.on_provider: list[Callable[[Provider], None]] = []
        self.on_queued: list[Callable[[], None]] = []  # the worker wakes up

    # ------------------------------------------------------------ resources
    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            with self._lock:
                if self._ledger is None:
                    from cdn_preheat.ledger import open_ledger

                    self._ledger = open_ledger(self.settings)
        return self._ledger

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            with self._lock:
                if self._provider is None:
                    from cdn_preheat.providers import make_provider

                    provider = make_provider(self.settings)
                    for hook in self.on_provider:
                        hook(provider)
                    self._provider = provider
        return self._provider

    def close(self) -> None:
        with self._lock:
            if self._provider is not None:
                self._provider.close()
                self._provider = None
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

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
        )

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
        """Queue a video (expanded now); a known video without ``reset`` is left as it is.

        Bad input (a refused URL, a playlist that cannot be read) raises before
        anything is written.
        """
        from cdn_preheat import pipeline
        from cdn_preheat.scheduler import utcnow

        head = (
            pipeline.HeadFirst.parse(head_first)
            if head_first is not None
            else (pipeline.DEFAULT_HEAD_FIRST)
        )
        problem = self.policy.url_problem(m3u8_url)
        if problem is not None:
            raise InputError(f"m3u8_url is refused: {problem}.")
        if not reset:
            known = await self.run(self.ledger.get_video, video_id)
            max_age = self.settings.cdn_preheat_max_age
            if known is not None and (
                known.state not in (VideoState.DONE, VideoState.SUBMITTED)
                or pipeline.is_preheated(known, utcnow(), max_age)
            ):
                return Submitted(False, await self.run(self._view, known))
        expansion = await self.expand(m3u8_url)
        provider = await self.run(lambda: self.provider)

        def queue() -> VideoView:
            if reset:
                self.ledger.reset_video(video_id)
            pipeline.queue_expansion(
                self.ledger, provider.name, provider.area, video_id, expansion,
                head_first=head, max_age=self.settings.cdn_preheat_max_age,
            )  # fmt: skip
            pipeline.refresh_video_state(self.ledger, video_id)
            view = self._video_sync(video_id)
            assert view is not None
            return view

        view = await self.run(queue)
        for hook in self.on_queued:
            hook()
        return Submitted(True, view)

    async def expand(self, m3u8_url: str) -> Any:
        """Expand on the event loop, every fetch through the SSRF guard."""
        from cdn_preheat.app import expand_options
        from cdn_preheat.hls import expand_playlist, make_client

        options = expand_options(self.settings)
        transport = self.policy.transport(max_connections=options.concurrency)
        async with make_client(options, transport) as client:
            return await expand_playlist(m3u8_url, options, client)

    def _cancel_sync(self, video_id: str) -> VideoView | None:
        from cdn_preheat import pipeline

        if self.ledger.get_video(video_id) is None:
            return None
        self.ledger.cancel_video(video_id)
        pipeline.refresh_video_state(self.ledger, video_id)
        return self._video_sync(video_id)

    async def cancel(self, video_id: str) -> VideoView | None:
        """Pending URLs of the video are not pushed (they count as skipped)."""
        return await self.run(self._cancel_sync, video_id)

    # ------------------------------------------------------------ CDN calls
    def _verify_sync(self, video_id: str, sample: int) -> dict[str, Any] | None:
        from cdn_preheat.verify import gate, options_from_settings, verify_video

        if self.ledger.get_video(video_id) is None:
            return None
        report = verify_video(self.ledger, video_id, sample, options_from_settings(self.settings))
        outcome = gate(report)

        def ratio(value: Any) -> dict[str, Any]:
            names = ("hits", "upper", "misses", "unknown", "errors", "ratio")
            return {name: getattr(value, name) for name in names}

        return {
            "video_id": video_id,
            "overall": ratio(report.overall),
            "renditions": {k: ratio(v) for k, v in report.by_rendition().items()},
            "urls": [
                {"url": r.url, "status": r.status_code, "cache": str(r.status), "error": r.error}
                for r in report.results
            ],
            "passed": outcome.passed,
            "reason": outcome.reason or None,
        }

    async def verify(self, video_id: str, sample: int) -> dict[str, Any] | None:
        return await self.run(self._verify_sync, video_id, sample)

    def _purge_sync(
        self, urls: Sequence[str], dirs: Sequence[str], video_id: str | None, delete: bool
    ) -> dict[str, Any]:
        from cdn_preheat import purge
        from cdn_preheat.render import purge_dict

        targets = purge.clean_urls(urls)
        directories = purge.clean_dirs(dirs)
        if video_id is not None:
            if self.ledger.get_video(video_id) is None:
                raise InputError(f"no video {video_id!r} in the ledger.")
            targets = list(dict.fromkeys([*targets, *purge.video_urls(self.ledger, video_id)]))
        if not targets and not directories:
            raise InputError("give urls, dirs or a video_id to purge.")
        with self._provider_lock:
            report = purge.purge(
                self.ledger, self.provider, targets, directories, delete=delete,
                options=purge.PurgeOptions(wait=False),
            )  # fmt: skip
        return purge_dict(report)

    async def purge(
        self, urls: Sequence[str], dirs: Sequence[str], video_id: str | None, delete: bool
    ) -> dict[str, Any]:
        return await self.run(self._purge_sync, urls, dirs, video_id, delete)

    def _quota_sync(self) -> list[dict[str, Any]]:
        from cdn_preheat.ratelimit import RateLimiter, call_with_retries
        from cdn_preheat.scheduler import quota_day, utcnow

        provider = self.provider
        with self._provider_lock:
            limiter = RateLimiter(provider.limits.requests_per_second)
            live = call_with_retries(provider.quota, limiter, attempts=3)
        offset = self.settings.cdn_preheat_quota_utc_offset_hours
        if offset is None:
            offset = provider.limits.quota_utc_offset_hours
        day = quota_day(utcnow(), offset)
        book = self.ledger.quota_day(provider.name, provider.area, day)
        total, available = live.total, live.available
        if available is None and book is not None and book.limit is not None:
            total, available = book.limit, book.remaining
        return [
            {
                "provider": provider.name,
                "area": provider.area,
                "day": day,
                "total": total,
                "available": available,
                "used_today": book.used if book else None,
                "reserved_in_flight": book.inflight if book else 0,
            }
        ]

    async def quota(self) -> list[dict[str, Any]]:
        return await self.run(self._quota_sync)

    # ------------------------------------------------------------ health
    def _ready_sync(self) -> None:
        _ = self.provider  # settings complete enough to build it (no CDN call)
        self.ledger.get_video("cdn-preheat-health-probe")  # one indexed round trip

    async def ready(self) -> None:
        """Raise (PreheatError) unless the settings are valid and the ledger answers."""
        await self.run(self._ready_sync)


__all__ = ["PreheatError", "ServiceEngine", "Submitted", "VideoView"]
