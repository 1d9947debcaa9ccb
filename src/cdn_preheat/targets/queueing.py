"""Queueing one expansion for every unit: each video is expanded once, and its URLs
are queued under every unit's key with the host mapped to the unit's CDN host.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cdn_preheat._sync import run_coroutine
from cdn_preheat.errors import PreheatError
from cdn_preheat.ledger.base import Ledger, UrlState

if TYPE_CHECKING:
    from cdn_preheat.hls import ExpandOptions, Expansion
    from cdn_preheat.pipeline import HeadFirst, QueuedVideo
    from cdn_preheat.source import VideoSource
    from cdn_preheat.targets.units import Unit


def map_host(url: str, from_host: str, to_host: str) -> str:
    """``url`` with its host ``from_host`` replaced by ``to_host`` (path, query kept)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if netloc.lower() != from_host:
        return url
    return f"{scheme}://{to_host}{slash}{tail}"


def expansion_for(expansion: Expansion, from_host: str | None, to_host: str | None) -> Expansion:
    """The expansion as seen by a unit whose CDN host is ``to_host``.

    ``from_host`` is the host the expansion was mapped to (None: the origin's).
    """
    import dataclasses

    source_host = urlsplit(expansion.source).netloc.lower()
    old = (from_host or source_host).lower()
    new = (to_host or source_host).lower()
    if old == new:
        return expansion
    urls = [dataclasses.replace(u, url=map_host(u.url, old, new)) for u in expansion.urls]
    skipped = [dataclasses.replace(s, url=map_host(s.url, old, new)) for s in expansion.skipped]
    return dataclasses.replace(expansion, urls=urls, skipped=skipped)


def expand_host(units: Sequence[Unit]) -> str | None:
    """The host an expansion is mapped to once, for every unit: the first unit's."""
    return units[0].cdn_host if units else None


def queue_for_units(
    ledger: Ledger,
    units: Sequence[Unit],
    video_id: str,
    expansion: Expansion,
    *,
    head_first: HeadFirst | None,
    max_age: dt.timedelta,
    now: dt.datetime | None = None,
) -> dict[str, QueuedVideo]:
    """Queue the expansion under every unit's key, the host mapped per unit."""
    from cdn_preheat.pipeline import queue_expansion

    base = expand_host(units)
    queued: dict[str, QueuedVideo] = {}
    for unit in units:
        name, area = unit.key
        queued[unit.name] = queue_expansion(
            ledger, name, area, video_id, expansion_for(expansion, base, unit.cdn_host),
            head_first=head_first, max_age=max_age, now=now,
        )  # fmt: skip
    return queued


def combined(video_id: str, per_unit: Mapping[str, QueuedVideo]) -> QueuedVideo:
    """One video's summary over every unit: found once, queued and done summed."""
    import dataclasses

    first = next(iter(per_unit.values()))
    return dataclasses.replace(
        first,
        queued=sum(q.queued for q in per_unit.values()),
        already_done=sum(q.already_done for q in per_unit.values()),
        already_queued=sum(q.already_queued for q in per_unit.values()),
    )


def preheated_everywhere(
    ledger: Ledger, units: Sequence[Unit], video_id: str, now: dt.datetime, max_age: dt.timedelta
) -> bool:
    """The video is preheated and every unit holds its URLs with none waiting there."""
    from cdn_preheat.ledger.base import VideoState
    from cdn_preheat.pipeline import is_preheated

    video = ledger.get_video(video_id)
    if not is_preheated(video, now, max_age):
        return False
    if len(units) == 1 or (video is not None and video.state is VideoState.LEGACY):
        return True  # as before targets; the old script's record counts as preheated
    by_key = ledger.counts_by_target(video_id)
    for unit in units:
        counts = by_key.get(unit.key)
        if not counts:
            return False
        if counts.get(UrlState.PENDING, 0) or counts.get(UrlState.RESERVED, 0):
            return False
    return True


def queue_videos_for_units(
    ledger: Ledger,
    units: Sequence[Unit],
    sources: Sequence[VideoSource],
    expand_options: ExpandOptions,
    *,
    head_first: HeadFirst | None,
    max_age: dt.timedelta,
    reset: bool = False,
    on_video: Callable[[QueuedVideo], None] | None = None,
    stop: threading.Event | None = None,
) -> list[QueuedVideo]:
    """Expand many videos concurrently, once each, and queue each for every unit.

    Once ``stop`` (default: the run's, :func:`stopping.current`) is set the
    expansion ends at once; the videos not queued by then are ``interrupted``.
    """
    import dataclasses

    from cdn_preheat import stopping
    from cdn_preheat.clock import utcnow
    from cdn_preheat.hls import expand_many
    from cdn_preheat.pipeline import QueuedVideo

    now = utcnow()
    results: list[QueuedVideo] = []
    todo: list[VideoSource] = []
    for source in sources:
        if reset:
            ledger.reset_video(source.video_id)
        if preheated_everywhere(ledger, units, source.video_id, now, max_age):
            done = QueuedVideo(source.video_id, source.m3u8_url, already_preheated=True)
            results.append(done)
            if on_video:
                on_video(done)
        else:
            todo.append(source)
    options = dataclasses.replace(expand_options, cdn_host=expand_host(units))
    if stop is not None:
        options = dataclasses.replace(options, stop=stop)

    async def expand_all() -> None:
        items = ((source, source.m3u8_url) for source in todo)
        try:
            async for source, outcome in stopping.each_until_stopped(
                expand_many(items, options), stop
            ):
                queue_one(source, outcome)
        except stopping.Stopped:
            seen = {video.video_id for video in results}
            results.extend(
                QueuedVideo(source.video_id, source.m3u8_url, interrupted=True)
                for source in todo
                if source.video_id not in seen
            )

    def queue_one(source: VideoSource, outcome: Expansion | PreheatError) -> None:
        if isinstance(outcome, PreheatError):
            video = QueuedVideo(source.video_id, source.m3u8_url, error=str(outcome))
        else:
            per_unit = queue_for_units(
                ledger, units, source.video_id, outcome,
                head_first=head_first, max_age=max_age,
            )  # fmt: skip
            video = combined(source.video_id, per_unit)
        results.append(video)
        if on_video:
            on_video(video)

    run_coroutine(expand_all())  # the sync boundary: works inside a running loop too
    order = {source.video_id: index for index, source in enumerate(sources)}
    results.sort(key=lambda video: order.get(video.video_id, 0))
    return results
