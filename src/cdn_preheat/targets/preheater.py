"""The library API over a targets file: :class:`TargetsPreheater`, the same surface
as :class:`cdn_preheat.api.Preheater` with every answer per target.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from cdn_preheat.ledger.base import Ledger, UrlState
from cdn_preheat.targets.deadline import parse_deadline
from cdn_preheat.targets.pool import PoolProvider
from cdn_preheat.targets.purge import purge_targets
from cdn_preheat.targets.push import preheat
from cdn_preheat.targets.queueing import queue_videos_for_units
from cdn_preheat.targets.results import TargetQuota, TargetSummary, UnitResult
from cdn_preheat.targets.run import run_unit_workers
from cdn_preheat.targets.spec import resolve_targets
from cdn_preheat.targets.status import status_by_unit
from cdn_preheat.targets.units import build_units, check_units, close_units, live_quota
from cdn_preheat.targets.verify import verify_targets

if TYPE_CHECKING:
    import httpx

    from cdn_preheat.config import Settings
    from cdn_preheat.pipeline import HeadFirst, QueuedVideo
    from cdn_preheat.source import VideoSource
    from cdn_preheat.targets.purge import TargetsPurge
    from cdn_preheat.targets.results import TargetsRun
    from cdn_preheat.targets.status import TargetCounts
    from cdn_preheat.targets.units import Unit
    from cdn_preheat.targets.verify import TargetsVerify


class TargetsPreheater:
    """Preheat into every target of a targets file at once; every answer is per target.

    ::

        with TargetsPreheater.from_settings(load_settings()) as targets:
            run = targets.preheat([("ep-101", "https://origin.example.com/ep-101/master.m3u8")])
            for result in run.results:
                print(result.name, result.report.submitted if result.report else result.error)

    ``environ`` holds the variables the file names for the keys (default: the
    process environment). The ledger and the providers open on first use and
    close with :meth:`close`. Thread-safe as the ledger is: each call is independent.
    ``read_only=True`` opens the ledger for looking only (:meth:`status`,
    :meth:`quota`, :meth:`summary`, a dry run): no write lock, nothing written,
    as :class:`cdn_preheat.api.Preheater` does.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        fetch_transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        read_only: bool = False,
    ) -> None:
        self.settings = settings
        self.read_only = read_only
        self._environ = environ
        # Makes the transport of every playlist fetch (``serve`` guards them against SSRF).
        self.fetch_transport = fetch_transport
        self._units: list[Unit] | None = None
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        fetch_transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        read_only: bool = False,
    ) -> TargetsPreheater:
        return cls(settings, environ=environ, fetch_transport=fetch_transport, read_only=read_only)

    @property
    def units(self) -> list[Unit]:
        with self._lock:
            if self._units is None:
                self._units = build_units(resolve_targets(self.settings, self._environ))
            return self._units

    @property
    def ledger(self) -> Ledger:
        from cdn_preheat.ledger import open_ledger

        with self._lock:
            if self._ledger is None:
                self._ledger = open_ledger(self.settings, read_only=self.read_only)
            return self._ledger

    def _writing(self, what: str) -> None:
        from cdn_preheat.errors import InputError

        if self.read_only:
            raise InputError(f"{what} writes to the ledger; this TargetsPreheater is read-only.")

    def preheat(
        self,
        videos: Sequence[tuple[str, str] | VideoSource],
        *,
        head_first: HeadFirst | str | None = None,
        wait: bool = True,
        wait_timeout: float = 600.0,
        by: dt.datetime | str | None = None,
        dry_run: bool = False,
        reset: bool = False,
        purge: bool = False,
        only_these: bool = False,
        strict: bool = False,
        verify: bool = False,
        verify_sample: int | None = None,
        stop: threading.Event | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> TargetsRun:
        """Expand each video once, queue it for every target, push them side by side.

        ``head_first``: a :class:`HeadFirst`, or its text (``"10"``, ``"60s"``,
        ``"fifo"``: plain order); None: the default. ``by``: a deadline (or its
        text, ``--by``): the run first reports per target whether its queue can
        be warm by then (``run.feasibility``); with ``dry_run`` it stops there.
        ``reset``: forget the videos' records first and push them all again;
        ``purge`` (with ``reset``): purge their old URLs on every target before,
        all or nothing (:func:`purge_before_republish`). ``only_these`` (one
        video): push only its URLs, other queued videos stay queued.
        ``verify``: then probe each target's own URLs of every video queued, a
        sample each (``verify_sample`` probes, default 20; ``run.verified``,
        ``run.hit_ratios()``). ``on_progress(n)``:
        n more URLs were pushed, on any target.
        """
        from cdn_preheat.api import DEFAULT_VERIFY_SAMPLE
        from cdn_preheat.clock import utcnow
        from cdn_preheat.pipeline import DEFAULT_HEAD_FIRST
        from cdn_preheat.pipeline import HeadFirst as Head
        from cdn_preheat.source import VideoSource as Source

        if isinstance(head_first, str):
            head = Head.parse(head_first)
        else:
            head = head_first if head_first is not None else DEFAULT_HEAD_FIRST
        deadline = parse_deadline(by, utcnow()) if isinstance(by, str) else by
        if not dry_run:
            self._writing("preheat")
        sources: list[VideoSource] = []
        for n, video in enumerate(videos, 1):
            if isinstance(video, tuple):
                sources.append(Source(video[0], video[1], n))
            else:
                sources.append(video)
        units = self.units
        run = preheat(
            self.ledger, units, sources, self.settings,
            head_first=head, wait=wait, wait_timeout=wait_timeout, by=deadline,
            dry_run=dry_run, reset=reset, purge=purge, only_these=only_these, strict=strict,
            stop=stop, on_progress=on_progress,
        )  # fmt: skip
        if verify and not dry_run and not (stop is not None and stop.is_set()):
            sample = verify_sample if verify_sample is not None else DEFAULT_VERIFY_SAMPLE
            # Each target's own URLs at its own host, as ``verify`` reads them; a video
            # whose playlist failed (or that was never queued) has nothing to probe, and a
            # stopped run probes nothing.
            run.verified = [
                self.verify(video.video_id, sample=sample, min_hit_ratio=0.0)
                for video in run.videos
                if video.error is None and self.ledger.get_video(video.video_id) is not None
            ]
        return run

    def summary(self, run: TargetsRun | None = None) -> list[TargetSummary]:
        """One line per target: ``run``'s outcome with the ledger's counts now.

        Without ``run`` (after :meth:`queue`): the queue per target, nothing pushed.
        """
        units = self.units
        results = run.results if run is not None else [UnitResult(u.name, u.key) for u in units]
        ratios = (run.hit_ratios() if run is not None else None) or {}
        by_key = self.ledger.counts_by_target()
        rows = []
        for unit, result in zip(units, results, strict=True):
            counts = by_key.get(unit.key, {})
            report = result.report
            quota = unit.quota
            rows.append(
                TargetSummary(
                    name=unit.name,
                    provider=unit.members[0].spec.provider,
                    area=unit.key[1],
                    members=tuple(m.name for m in unit.members) if unit.is_pool else (),
                    pushed=report.submitted if report else 0,
                    done=counts.get(UrlState.DONE, 0),
                    failed=counts.get(UrlState.FAILED, 0) + counts.get(UrlState.INVALID, 0),
                    pending=counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0),
                    in_flight=counts.get(UrlState.SUBMITTED, 0),
                    quota_left=report.quota_left_today if report else (
                        quota.available if quota else None
                    ),
                    requests=report.requests if report else 0,
                    wasted_requests=report.wasted_requests if report else 0,
                    quota_exhausted=bool(report and report.quota_exhausted),
                    pushed_by=dict(result.pushed_by),
                    set_aside=dict(result.set_aside),
                    error=result.error,
                    hit_ratio=ratios.get(unit.name),
                )
            )  # fmt: skip
        return rows

    def queue(
        self,
        videos: Sequence[tuple[str, str] | VideoSource],
        *,
        head_first: HeadFirst | str | None = "10",
        reset: bool = False,
        strict: bool = False,
    ) -> list[QueuedVideo]:
        """Expand each video once and queue it for every target; push nothing (workers do).

        ``head_first`` as :meth:`cdn_preheat.api.Preheater.queue` takes it (None or
        ``"fifo"``: plain order). No CDN API is called: a target with wrong keys is
        found by its worker (:meth:`work`), which stops alone. A video whose
        playlist fails is its own entry's ``error``.
        """
        import dataclasses

        from cdn_preheat.app import expand_options
        from cdn_preheat.pipeline import HeadFirst as Head
        from cdn_preheat.source import VideoSource as Source

        if isinstance(head_first, str):
            head_first = Head.parse(head_first)
        self._writing("queue")

        sources = [
            Source(video[0], video[1], n) if isinstance(video, tuple) else video
            for n, video in enumerate(videos, 1)
        ]
        options = expand_options(self.settings, strict=strict)
        if self.fetch_transport is not None:
            options = dataclasses.replace(options, transport=self.fetch_transport)
        return queue_videos_for_units(
            self.ledger, self.units, sources, options,
            head_first=head_first, max_age=self.settings.cdn_preheat_max_age, reset=reset,
        )  # fmt: skip

    def status(self, video_id: str | None = None) -> list[TargetCounts]:
        """URL counts by state per target (a pool's also per member)."""
        units = self.units
        return status_by_unit(self.ledger, units, video_id)

    def quota(self) -> list[TargetQuota]:
        """Each target's quota today, read from the providers side by side."""
        from cdn_preheat.clock import quota_day, utcnow

        units = self.units
        check_units(units, live_quota)
        rows = []
        for unit in units:
            offset = unit.settings.cdn_preheat_quota_utc_offset_hours
            if offset is None:
                offset = unit.provider.limits.quota_utc_offset_hours
            day = quota_day(utcnow(), offset)
            book = self.ledger.quota_day(*unit.key, day)
            quota = unit.quota
            members = unit.provider.left() if isinstance(unit.provider, PoolProvider) else {}
            rows.append(
                TargetQuota(
                    unit.name, day, quota.total if quota else None,
                    quota.available if quota else None, book.inflight if book else 0,
                    members, unit.explain(unit.error) if unit.error else None,
                )
            )  # fmt: skip
        return rows

    def verify(
        self,
        video_id: str,
        *,
        sample: int | None = 50,
        requeue: bool = False,
        min_hit_ratio: float = 1.0,
        seed: int = 0,
        on_progress: Callable[[int], None] | None = None,
    ) -> TargetsVerify:
        """Probe each target's own URLs of the video at its CDN host, side by side.

        ``sample`` per target (playlists and every rendition's start always;
        ``None``: all), read with each target's vendor's cache header.
        ``run.passed`` when every target reaches ``min_hit_ratio`` with every
        probe answered; ``run["name"]`` is one target's :class:`TargetVerify`.
        ``requeue`` queues each target's missed URLs again, for that target only.
        """
        if requeue:
            self._writing("verify --requeue")
        return verify_targets(
            self.ledger, self.units, video_id, sample=sample, requeue=requeue,
            min_hit_ratio=min_hit_ratio, seed=seed, on_progress=on_progress,
        )  # fmt: skip

    def purge(
        self,
        *,
        urls: Sequence[str] = (),
        dirs: Sequence[str] = (),
        video_id: str | None = None,
        delete: bool = False,
        follow: bool = True,
        wait_timeout: float = 600.0,
        stop: threading.Event | None = None,
    ) -> TargetsPurge:
        """Purge URLs, directories or a video's URLs on every target (a pool: each member).

        URLs on any target's host are moved to each target's own host. One
        :class:`TargetPurge` per target; a target that fails (wrong keys, quota
        spent) carries its sentence and exit code, the others are purged all
        the same. ``run.exit_code`` is the worst.
        """
        self._writing("purge")
        return purge_targets(
            self.ledger, self.units, urls=urls, dirs=dirs, video_id=video_id, delete=delete,
            follow=follow, wait_timeout=wait_timeout, stop=stop,
        )  # fmt: skip

    def work(
        self,
        *,
        stop: threading.Event,
        once: bool = False,
        idle: float = 30.0,
        wait_timeout: float = 600.0,
        wake: threading.Event | None = None,
        on_error: Callable[[str, str], None] | None = None,
    ) -> int:
        """Drain every target's queue side by side until ``stop`` (or once).

        ``wake``: set it when work is queued (every target's idle wait ends).
        ``on_error(target, sentence)``: a target's loop stopped on an error no
        pause cures (wrong keys); the others go on.
        """
        self._writing("work")
        units = self.units
        return run_unit_workers(
            self.ledger, units, stop=stop, once=once, idle=idle, wait_timeout=wait_timeout,
            wake=wake, on_error=on_error,
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
            if self._units is not None:
                close_units(self._units)
                self._units = None
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

    def __enter__(self) -> TargetsPreheater:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
