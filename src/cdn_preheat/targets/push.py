"""The whole push over every unit: check each, purge first when asked, expand each
video once and queue it for every unit, answer the deadline, push side by side.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeGuard

from cdn_preheat._sync import run_coroutine
from cdn_preheat.errors import AuthError, PreheatError, ProviderError, QuotaExhausted
from cdn_preheat.ledger.base import Ledger, PendingGroup
from cdn_preheat.targets.deadline import feasibility, planned_groups
from cdn_preheat.targets.purge import purge_before_republish
from cdn_preheat.targets.queueing import expand_host, queue_videos_for_units
from cdn_preheat.targets.results import TargetsRun, UnitResult
from cdn_preheat.targets.run import run_units, unit_run_options
from cdn_preheat.targets.status import describe_targets
from cdn_preheat.targets.units import check_units, live_quota

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.hls import Expansion
    from cdn_preheat.pipeline import HeadFirst, QueuedVideo, RunOptions
    from cdn_preheat.source import VideoSource
    from cdn_preheat.targets.deadline import Feasibility
    from cdn_preheat.targets.units import Unit


def preheat(
    ledger: Ledger,
    units: Sequence[Unit],
    sources: Sequence[VideoSource],
    settings: Settings,
    *,
    head_first: HeadFirst | None,
    wait: bool = True,
    wait_timeout: float = 600.0,
    reset: bool = False,
    purge: bool = False,
    only_these: bool = False,
    by: dt.datetime | None = None,
    dry_run: bool = False,
    strict: bool = False,
    stop: threading.Event | None = None,
    on_video: Callable[[QueuedVideo], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    options_for: Callable[[Unit], RunOptions] | None = None,
) -> TargetsRun:
    """Check every unit, expand each video once, queue it for every unit, push side by side.

    ``only_these``: with one source, push only that video's URLs (``push VIDEO``).
    ``by``: first work out, per unit, whether its queue can be warm by then
    (:func:`feasibility`); with ``dry_run`` stop there, having pushed nothing.
    A unit whose check fails (wrong keys) is queued for all the same (a later run
    with the keys fixed pushes it) and reported failed; when every unit fails, the
    first unit's error is raised, as a single-provider run does.

    ``purge`` (with ``reset``): first purge what the ledger holds for each video on
    every target (:func:`purge_before_republish`); unless every target purged all
    of it, nothing is erased or pushed.
    """
    from cdn_preheat.app import expand_options
    from cdn_preheat.clock import utcnow
    from cdn_preheat.errors import InputError

    if purge and not reset:
        raise InputError("--purge goes with --reset: it purges the old URLs before pushing anew.")
    options_for = options_for or unit_run_options(settings, wait=wait, wait_timeout=wait_timeout)
    check_units(units, live_quota)
    failed = [unit for unit in units if unit.error is not None]
    if failed and len(failed) == len(units):
        first = failed[0].error
        assert first is not None
        if not settings.cdn_preheat_targets or not _rebuildable(first):
            raise first  # the single-provider setup: its sentence as before targets
        code = first.code if isinstance(first, ProviderError) else None
        raise type(first)(failed[0].explain(first), code=code)
    if purge and not dry_run:
        ids = [source.video_id for source in sources]
        purge_before_republish(ledger, units, ids, wait_timeout=wait_timeout, stop=stop)
    if dry_run:
        videos, table = _plan(ledger, units, sources, settings, head_first, by, strict,
                              options_for)  # fmt: skip
        return TargetsRun(videos, [UnitResult(u.name, u.key) for u in units], table)
    videos = queue_videos_for_units(
        ledger, units, sources, expand_options(settings, strict=strict),
        head_first=head_first, max_age=settings.cdn_preheat_max_age, reset=reset,
        on_video=on_video, stop=stop,
    )  # fmt: skip
    table = None
    if by is not None:
        table = feasibility(ledger, units, by, utcnow(), options_for)
    video_id = sources[0].video_id if only_these and len(sources) == 1 else None
    results = run_units(
        ledger, units, options_for, stop=stop, video_id=video_id, on_progress=on_progress
    )
    from cdn_preheat.pipeline import refresh_states

    refresh_states(
        ledger, [v.video_id for v in videos if v.error is None],
        targets=describe_targets(ledger, units),
    )  # fmt: skip
    return TargetsRun(videos, results, table)


def _plan(
    ledger: Ledger,
    units: Sequence[Unit],
    sources: Sequence[VideoSource],
    settings: Settings,
    head_first: HeadFirst | None,
    by: dt.datetime | None,
    strict: bool,
    options_for: Callable[[Unit], RunOptions],
) -> tuple[list[QueuedVideo], list[Feasibility] | None]:
    """A dry run: expand, count, and (with ``by``) the feasibility table; nothing written."""
    import dataclasses

    from cdn_preheat.app import expand_options
    from cdn_preheat.clock import utcnow
    from cdn_preheat.hls import expand_many
    from cdn_preheat.pipeline import QueuedVideo, describe_expansion

    base = expand_host(units)
    options = dataclasses.replace(expand_options(settings, strict=strict), cdn_host=base)
    expansions: dict[str, Expansion] = {}
    videos: list[QueuedVideo] = []

    async def expand_all() -> None:
        items = ((source, source.m3u8_url) for source in sources)
        async for source, outcome in expand_many(items, options):
            if isinstance(outcome, PreheatError):
                videos.append(QueuedVideo(source.video_id, source.m3u8_url, error=str(outcome)))
            else:
                expansions[source.video_id] = outcome
                videos.append(describe_expansion(source.video_id, outcome))

    run_coroutine(expand_all())  # the sync boundary: works inside a running loop too
    order = {source.video_id: index for index, source in enumerate(sources)}
    videos.sort(key=lambda video: order.get(video.video_id, 0))
    ordered = {v.video_id: expansions[v.video_id] for v in videos if v.video_id in expansions}
    if by is None:
        return videos, None
    now = utcnow()
    max_age = settings.cdn_preheat_max_age

    def groups(unit: Unit) -> list[PendingGroup]:
        return planned_groups(ledger, unit, ordered, base, head_first, now, max_age)

    return videos, feasibility(ledger, units, by, now, options_for, groups)


def _rebuildable(error: PreheatError) -> TypeGuard[ProviderError]:
    """Errors whose class takes one message (most); others are raised as they are."""
    return type(error) in (AuthError, ProviderError, QuotaExhausted)
