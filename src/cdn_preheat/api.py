"""The public library API: :class:`Preheater` and :class:`AsyncPreheater`.

Everything the ``cdn-preheat`` commands do goes through these two classes; the
CLI only parses arguments and renders what they return. A preheater owns its
ledger and its provider (opened on first use, released by :meth:`close` or the
``with`` block), so one instance serves many calls::

    from cdn_preheat import Preheater

    with Preheater(provider="tencent",
                   credentials={"secret_id": "...", "secret_key": "..."},
                   ledger="preheat.sqlite3", cdn_host="cdn.example.com") as preheater:
        result = preheater.preheat("ep-101", "https://origin.example.com/ep-101/master.m3u8")
        print(result.run.done, "URLs are at the edge")

:class:`AsyncPreheater` has the same methods as coroutines. Expansion and
verification run on the caller's event loop (their cores are async); ledger
writes and CDN API calls, which block, run in worker threads
(:func:`asyncio.to_thread`), never on the loop's thread.

Errors are :class:`cdn_preheat.errors.PreheatError` subclasses; each carries
the exit code the CLI uses (``exit_code``). Results are frozen dataclasses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from cdn_preheat import stopping
from cdn_preheat._sync import run_coroutine
from cdn_preheat.errors import (
    ConfigError,
    InputError,
    PreheatError,
    ProviderError,
    RateLimited,
    Transient,
)
from cdn_preheat.ledger.base import UrlState, VideoState

if TYPE_CHECKING:
    import httpx

    from cdn_preheat.config import Settings
    from cdn_preheat.hls import ExpandOptions, Expansion
    from cdn_preheat.ledger.base import Ledger, VideoRecord
    from cdn_preheat.pipeline import CatalogIntake, HeadFirst, QueuedVideo, RunReport
    from cdn_preheat.providers.base import Provider
    from cdn_preheat.purge import PurgeReport
    from cdn_preheat.scheduler import Intake
    from cdn_preheat.source import VideoSource
    from cdn_preheat.verify import GateResult, VerifyReport, VerifyTarget

T = TypeVar("T")

__all__ = [
    "AsyncPreheater",
    "DrainResult",
    "FailedUrl",
    "Observer",
    "Preheater",
    "PurgeResult",
    "PushResult",
    "QueueResult",
    "QuotaReport",
    "StatusReport",
    "VerifyResult",
    "VideoStatus",
]

DEFAULT_WAIT_TIMEOUT = 600.0
# Probes of ``preheat(verify=True)``: playlists and every rendition's start, then a sample.
DEFAULT_VERIFY_SAMPLE = 20


# -- results -------------------------------------------------------------------------


def _frozen_counts(counts: Mapping[UrlState, int]) -> Mapping[UrlState, int]:
    return MappingProxyType({state: counts.get(state, 0) for state in UrlState})


@dataclass(frozen=True)
class QueueResult:
    """What expanding and queueing one video found.

    ``error`` is set (and nothing was queued) when the video's playlist could
    not be read; ``failed_playlists`` lists renditions skipped for that reason
    while the rest was queued (``partial``). ``interrupted``: the stop came
    before the video was expanded and queued (nothing of it was queued).
    """

    video_id: str
    m3u8_url: str
    found: int = 0  # URLs the expansion found
    queued: int = 0  # newly pending
    already_done: int = 0  # preheated before and not expired
    already_queued: int = 0  # pending or in flight from an earlier run
    skipped: Mapping[str, int] = field(default_factory=dict)  # reason -> URLs not queued
    live: bool = False  # a live playlist: only what it lists now
    already_preheated: bool = False  # the whole video was fresh: nothing expanded
    error: str | None = None
    warnings: tuple[str, ...] = ()  # malformed tags read as absent
    failed_playlists: tuple[str, ...] = ()
    would_push: int | None = None  # dry runs: what a push would send
    interrupted: bool = False  # stopped before it was expanded and queued

    @property
    def partial(self) -> bool:
        """Renditions were skipped because they could not be read."""
        return bool(self.failed_playlists)

    @classmethod
    def _of(cls, queued: QueuedVideo) -> QueueResult:
        return cls(
            video_id=queued.video_id,
            m3u8_url=queued.m3u8_url,
            found=queued.found,
            queued=queued.queued,
            already_done=queued.already_done,
            already_queued=queued.already_queued,
            skipped=MappingProxyType(dict(queued.skipped)),
            live=queued.live,
            already_preheated=queued.already_preheated,
            error=queued.error,
            warnings=tuple(queued.warnings),
            failed_playlists=tuple(queued.failed_playlists),
            would_push=queued.would_push,
            interrupted=queued.interrupted,
        )


@dataclass(frozen=True)
class DrainResult:
    """What pushing the queue and following the CDN's tasks did.

    ``error`` is the provider error that ended the run early (rate limits and
    transient failures are ridden out; quota and refusals are not), None when
    it ran to its end. ``interrupted``: the ``stop`` event was set and the run
    wound down, settling the batches in flight. ``tracking_timed_out``: the
    tasks were followed for ``wait_timeout`` seconds and some had not finished
    (they go on at the CDN; a later ``drain`` or ``status`` sees them).

    ``reserved``, ``failed_urls`` and ``invalid_videos`` describe the videos
    the run was for after it (every video for ``drain()`` without a video):
    URLs held by another run, URLs that failed every attempt, and videos whose
    every URL was refused.
    """

    submitted: int = 0
    done: int = 0
    failed: int = 0
    invalid: int = 0
    pending: int = 0  # still queued or reserved at the end
    in_flight: int = 0  # submitted, outcome not known yet
    requests: int = 0
    rate_limited: int = 0
    transient: int = 0
    reconciled: int = 0
    quota_exhausted: bool = False
    quota_left_today: int | None = None
    tracking_timed_out: bool = False
    interrupted: bool = False
    error: PreheatError | None = None
    reserved: int = 0
    failed_urls: int = 0
    invalid_videos: tuple[str, ...] = ()

    @property
    def quota_spent_with_work_left(self) -> bool:
        """The daily quota ran out with URLs still queued (they go after the reset)."""
        return self.quota_exhausted and self.pending > 0


@dataclass(frozen=True)
class PushResult:
    """What :meth:`Preheater.preheat` did for one video.

    ``run`` is None when nothing was pushed: the video was already preheated,
    or it was a dry run. ``hit_ratio`` is the cached share of a sample probed
    at the edge after the push (``verify=True``), ``purged`` what was purged
    first (``purge=True``).
    """

    video: QueueResult
    run: DrainResult | None = None
    dry_run: bool = False
    hit_ratio: float | None = None
    purged: PurgeResult | None = None

    @property
    def video_id(self) -> str:
        return self.video.video_id


@dataclass(frozen=True)
class VideoStatus:
    """One video's record: its state and its URLs by state."""

    video_id: str
    m3u8_url: str
    state: VideoState
    found: int
    counts: Mapping[UrlState, int]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class FailedUrl:
    url: str
    state: UrlState  # failed or invalid
    error: str | None


@dataclass(frozen=True)
class StatusReport:
    """Videos (one, or all), URL counts by state in total, and the first failures."""

    videos: tuple[VideoStatus, ...]
    total: Mapping[UrlState, int]
    failures: tuple[FailedUrl, ...]


@dataclass(frozen=True)
class QuotaReport:
    """Today's prefetch quota (provider-local day) and what the ledger holds of it.

    ``source`` says where ``total``/``available`` come from: ``provider`` (its
    quota API), ``ledger`` (learned from today's prefetch answers, Qiniu), or
    that they stay unknown until the first push today.
    """

    provider: str
    area: str
    day: str
    batch: int
    total: int | None
    available: int | None
    used_today: int | None
    reserved_in_flight: int
    source: str


@dataclass(frozen=True)
class VerifyResult:
    """The edge's cache verdicts for a video's sample, and whether they pass.

    ``report`` has the per-URL probes and ratios (overall, per rendition, per
    edge); ``requeued`` counts missed URLs queued again (``requeue=True``).
    """

    video_id: str
    report: VerifyReport
    gate: GateResult
    requeued: int = 0

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def hit_ratio(self) -> float | None:
        return self.report.overall.ratio


@dataclass(frozen=True)
class PurgeResult:
    """What a purge asked, the CDN accepted and finished. Counts are URLs plus directories.

    ``left`` were not submitted (the purge quota ran out: ``quota_exhausted``
    holds the provider's error, or the run was stopped).
    """

    provider: str
    urls: int
    dirs: int
    submitted: int
    not_submitted: int
    tasks: tuple[str, ...]
    done: int
    failed: int
    processing: int
    failures: Mapping[str, str]
    timed_out: bool
    left: tuple[str, ...]
    quota_exhausted: PreheatError | None = None

    @classmethod
    def _of(cls, report: PurgeReport) -> PurgeResult:
        return cls(
            provider=report.provider,
            urls=report.urls,
            dirs=report.dirs,
            submitted=report.submitted,
            not_submitted=report.not_submitted,
            tasks=tuple(report.tasks),
            done=report.done,
            failed=report.failed,
            processing=report.processing,
            failures=MappingProxyType(dict(report.failures)),
            timed_out=report.timed_out,
            left=tuple(report.left),
            quota_exhausted=report.quota_exhausted,
        )


class Observer:
    """Progress of a long call; subclass and override what you want to see.

    Every method is called on the thread doing the work (for the async API: a
    worker thread), so keep them short and thread-safe. The defaults do nothing.
    """

    def expanding(self, videos: int) -> None:
        """``queue`` starts expanding this many videos."""

    def queued(self, video: QueueResult) -> None:
        """One video was expanded and queued (or failed, or was already preheated)."""

    def pushing(self, pending: int) -> None:
        """A drain starts with this many URLs queued for it."""

    def pushed(self, urls: int) -> None:
        """This many more URLs reached the CDN."""

    def following(self, open_tasks: int, done: int, processing: int, settled: int) -> None:
        """A look at the CDN's open tasks: URLs done, still processing, settled in all."""

    def purged_before_push(self, video_id: str, result: PurgeResult | None) -> None:
        """``preheat(reset=True, purge=True)`` purged the video's old URLs (None: it had none)."""

    def purging(self, items: int, provider: str) -> None:
        """A purge of this many URLs and directories on ``provider`` starts."""

    def purged(self, items: int) -> None:
        """This many more purges finished."""

    def probing(self, probes: int) -> None:
        """A verification of this many probes starts."""

    def probed(self, probes: int) -> None:
        """This many more probes were answered (or failed)."""


_QUIET = Observer()

# After a stop, how long queue_and_drain waits for the expansion to notice it.
STOP_JOIN_SECONDS = 1.0


class _PushingWhileQueueing(Observer):
    """The drain's observer in :meth:`Preheater.queue_and_drain`.

    While videos are still being queued the caller sees the queueing's
    progress; the push's is passed on once every video is queued (from the
    URLs still to push then).
    """

    def __init__(self, observer: Observer) -> None:
        self._observer = observer
        self._expanded = threading.Event()

    def expanded(self, pending: int) -> None:
        self._expanded.set()
        self._observer.pushing(pending)

    def pushing(self, pending: int) -> None:
        self._observer.pushing(pending)

    def pushed(self, urls: int) -> None:
        if self._expanded.is_set():
            self._observer.pushed(urls)

    def following(self, open_tasks: int, done: int, processing: int, settled: int) -> None:
        self._observer.following(open_tasks, done, processing, settled)


class _Feeding(Observer):
    """Queueing's observer in :meth:`Preheater.queue_and_drain`: feeds the drain's intake."""

    def __init__(self, observer: Observer, intake: CatalogIntake, queued_ids: list[str]) -> None:
        self._observer, self._intake, self._ids = observer, intake, queued_ids

    def expanding(self, videos: int) -> None:
        self._observer.expanding(videos)

    def queued(self, video: QueueResult) -> None:
        if video.error is None:
            self._ids.append(video.video_id)
        self._intake.add(video)
        self._observer.queued(video)


# -- settings from plain arguments -----------------------------------------------------


def settings_from_arguments(
    provider: str,
    *,
    credentials: Mapping[str, str] | None = None,
    ledger: str | None = None,
    cdn_host: str | None = None,
    area: str | None = None,
    endpoint: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Settings:
    """A :class:`Settings` from these values alone: no environment, no ``.env`` file.

    ``credentials`` keys are the provider's own names, e.g. tencent
    ``secret_id``/``secret_key``, qiniu ``access_key``/``secret_key``, aliyun
    ``access_key_id``/``access_key_secret`` (the variable names without the
    vendor prefix). ``ledger``: an SQLite file path, or a ``mongodb://`` /
    ``mongodb+srv://`` URI. ``options``: further settings by field name, with
    or without the ``cdn_preheat_`` prefix (``{"concurrency": 8}``).
    """
    from pydantic import ValidationError
    from pydantic_settings import PydanticBaseSettingsSource

    from cdn_preheat.config import Settings, _register_secrets, describe_validation_error

    class _ArgumentsOnly(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[Any],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    from cdn_preheat.providers import provider_names, provider_spec

    fields = set(Settings.model_fields)
    name = provider.strip().lower()
    values: dict[str, Any] = {"cdn_provider": name}
    # The fields the registration declares, for a vendor whose variables are not
    # prefixed with its name (EdgeOne: the Tencent keys, EO_ZONE_ID, EO_ENDPOINT).
    declared: dict[str, str] = {}
    if name in provider_names():
        registration = provider_spec(name)
        for field in registration.credential_settings():
            declared.setdefault(field.split("_", 1)[-1], field)
        if registration.area_setting:
            declared["area"] = registration.area_setting
        if registration.endpoint_settings:
            declared["endpoint"] = registration.endpoint_settings[0]

    def field_for(key: str, *, what: str) -> str:
        for candidate in (f"{name}_{key}", key, declared.get(key, "")):
            if candidate in fields:
                return candidate
        raise ConfigError(f"{what} {key!r} is not a setting of the {name} provider.")

    for key, value in (credentials or {}).items():
        values[field_for(key.lower(), what="credential")] = value
    if area is not None:
        values[field_for("area", what="option")] = area
    if endpoint is not None:
        values[field_for("endpoint", what="option")] = endpoint
    if cdn_host is not None:
        values["cdn_host"] = cdn_host
    if ledger is not None:
        if ledger.startswith(("mongodb://", "mongodb+srv://")):
            values.update(mongodb_uri=ledger, cdn_preheat_store="mongodb")
        else:
            values.update(cdn_preheat_db=ledger, cdn_preheat_store="sqlite")
    for key, value in (options or {}).items():
        lowered = key.lower()
        known = next((f for f in (lowered, f"cdn_preheat_{lowered}") if f in fields), None)
        if known is None:
            raise ConfigError(f"{key!r} is not a setting.")
        values[known] = value
    try:
        settings = _ArgumentsOnly(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    _register_secrets(settings)
    return settings


# -- the synchronous preheater -----------------------------------------------------------


class Preheater:
    """Preheat videos into one CDN account, with one ledger. A context manager.

    Build it from plain arguments (nothing is read from the environment or a
    ``.env`` file)::

        Preheater(provider="qiniu", credentials={"access_key": ak, "secret_key": sk},
                  ledger="mongodb://db.example.com/preheat", cdn_host="cdn.example.com")

    or from a :class:`~cdn_preheat.config.Settings` with :meth:`from_settings`
    (``load_settings()`` reads the environment and ``.env`` as the CLI does).
    ``options`` are further settings by name (see :func:`settings_from_arguments`).

    The ledger and the provider are opened on first use and closed by
    :meth:`close`. ``read_only=True`` opens the ledger for looking only
    (``status``, ``quota``): no write lock, nothing written.

    One instance may be used from several threads at a time; each call is
    independent and the ledger arbitrates (as between processes).
    """

    def __init__(
        self,
        provider: str = "tencent",
        *,
        credentials: Mapping[str, str] | None = None,
        ledger: str | None = None,
        cdn_host: str | None = None,
        area: str | None = None,
        endpoint: str | None = None,
        read_only: bool = False,
        settings: Settings | None = None,
        fetch_transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        **options: Any,
    ) -> None:
        if settings is None:
            settings = settings_from_arguments(
                provider,
                credentials=credentials,
                ledger=ledger,
                cdn_host=cdn_host,
                area=area,
                endpoint=endpoint,
                options=options,
            )
        self.settings = settings
        self.read_only = read_only
        # Makes the transport of every playlist fetch (``serve`` guards them against SSRF).
        self.fetch_transport = fetch_transport
        self._ledger: Ledger | None = None
        self._provider: Provider | None = None
        self._open_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        read_only: bool = False,
        fetch_transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> Self:
        """A preheater configured by ``settings`` (e.g. ``load_settings()``).

        ``fetch_transport``: makes the httpx transport of each client that
        fetches playlists (``serve`` passes its SSRF guard).
        """
        return cls(settings=settings, read_only=read_only, fetch_transport=fetch_transport)

    # -- resources ------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The ledger, opened on first use."""
        with self._open_lock:
            self._check_open()
            if self._ledger is None:
                from cdn_preheat.ledger import open_ledger

                self._ledger = open_ledger(self.settings, read_only=self.read_only)
            return self._ledger

    @property
    def provider(self) -> Provider:
        """The provider (CDN API client), built on first use; no request is made."""
        with self._open_lock:
            self._check_open()
            if self._provider is None:
                from cdn_preheat.providers import make_provider

                self._provider = make_provider(self.settings)
            return self._provider

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("this Preheater is closed; make a new one.")

    def close(self) -> None:
        """Close the provider's connections and the ledger. Safe to call twice."""
        with self._open_lock:
            self._closed = True
            provider, self._provider = self._provider, None
            ledger, self._ledger = self._ledger, None
        try:
            if provider is not None:
                provider.close()
        finally:
            if ledger is not None:
                ledger.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- preheat one video ------------------------------------------------------------

    def preheat(
        self,
        video_id: str,
        m3u8_url: str,
        *,
        reset: bool = False,
        purge: bool = False,
        head_first: HeadFirst | str | int | None = "10",
        strict: bool = False,
        dry_run: bool = False,
        follow: bool = True,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        verify: bool = False,
        only_this_video: bool = True,
        stop: threading.Event | None = None,
        observer: Observer | None = None,
        poll_interval: float = 1.0,
    ) -> PushResult:
        """Expand a video (HLS or DASH), skip what is preheated, push the rest within quota.

        ``reset``: forget the video's record first and push it all again;
        ``purge`` (with ``reset``) purges the URLs the ledger holds for it
        before. ``head_first``: push the first N segments (``"10"``, ``10``)
        or seconds (``"60s"``) of every rendition before the rest; ``None``
        or ``"fifo"`` for playlist order. ``strict``: a malformed tag or an
        unreadable rendition fails the video (default: warn, skip that
        rendition, queue the rest: ``result.video.partial``). ``dry_run``:
        expand and count what a push would send; nothing is written.
        ``follow``: follow the CDN's tasks up to ``wait_timeout`` seconds
        (and push failed URLs again). ``verify``: probe a sample at the edge
        after the tasks finish (``result.hit_ratio``). ``only_this_video``:
        push only this video's URLs (False: every queued video's).
        ``stop``: set it to wind the push down (the batches in flight are
        settled, ``result.run.interrupted``). ``poll_interval``: the longest
        pause between looks at the CDN's tasks, in seconds.

        A video already preheated (its pushes younger than
        ``CDN_PREHEAT_MAX_AGE``) returns at once with
        ``result.video.already_preheated``. Raises :class:`InputError` for a bad
        id or option, :class:`PlaylistError` when the playlist cannot be read,
        :class:`AuthError` for wrong credentials (before anything is written).
        """
        observer = observer or _QUIET
        # Bound for the whole call: every wait wakes on the stop (and on a signal).
        with stopping.bound(stop) as run_stop:
            try:
                plan = self._plan(
                    video_id, m3u8_url, reset, purge, head_first, dry_run, observer, wait_timeout
                )
            except (RateLimited, Transient):
                if not run_stop.is_set():
                    raise
                # The quota query's retries were cut short by the stop: nothing was written.
                return self._stopped_before_queueing(
                    _Plan(video_id, m3u8_url, None, dry_run=dry_run)
                )
            if plan.early is not None:
                return plan.early  # already preheated: the playlist is not even fetched
            options = self._expand_options(strict=strict, stop=run_stop)
            try:
                expansion = run_coroutine(
                    stopping.until_stopped(_expand(m3u8_url, options), run_stop)
                )
            except stopping.Stopped:
                return self._stopped_before_queueing(plan)
            return self._push_expansion(
                plan, expansion, follow=follow, wait_timeout=wait_timeout, verify=verify,
                only_this_video=only_this_video, stop=run_stop, observer=observer,
                poll_interval=poll_interval,
            )  # fmt: skip

    def _plan(
        self,
        video_id: str,
        m3u8_url: str,
        reset: bool,
        purge: bool,
        head_first: HeadFirst | str | int | None,
        dry_run: bool,
        observer: Observer,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> _Plan:
        """Checks and what must happen before expanding (blocking: ledger and provider)."""
        from cdn_preheat import pipeline
        from cdn_preheat.clock import utcnow

        _check_video_id(video_id)
        head = _head_first(head_first)
        if purge and not reset:
            raise InputError(
                "--purge goes with --reset: it purges the old URLs before pushing anew."
            )
        if dry_run:
            return _Plan(video_id, m3u8_url, head, dry_run=True)
        ledger = self.ledger
        purged = None
        if reset:
            # Wrong credentials fail here, before anything of the video is erased.
            self._live_quota()
            if purge:
                purged = self._purge_before_republish(video_id, observer, wait_timeout)
                observer.purged_before_push(video_id, purged)
            ledger.reset_video(video_id)
        video = ledger.get_video(video_id)
        if pipeline.is_preheated(video, utcnow(), self.settings.cdn_preheat_max_age):
            done = QueueResult(
                video_id, m3u8_url, found=video.url_count if video else 0, already_preheated=True
            )
            return _Plan(video_id, m3u8_url, head, early=PushResult(done, purged=purged))
        if not reset:
            self._live_quota()
        return _Plan(video_id, m3u8_url, head, purged=purged)

    def _push_expansion(
        self,
        plan: _Plan,
        expansion: Expansion | None,
        *,
        follow: bool,
        wait_timeout: float,
        verify: bool,
        only_this_video: bool,
        stop: threading.Event | None,
        observer: Observer,
        poll_interval: float,
    ) -> PushResult:
        """Queue an expansion, push, follow, verify (blocking)."""
        from cdn_preheat import pipeline

        if plan.early is not None:
            return plan.early
        assert expansion is not None
        if plan.dry_run:
            from cdn_preheat.ledger import open_ledger

            queued = pipeline.describe_expansion(plan.video_id, expansion)
            try:
                # Its name and area say which rows a push would check; building it
                # makes no request. Without keys a dry run still answers, per video.
                target: tuple[str, str] | None = (self.provider.name, self.provider.area)
            except ConfigError:
                target = None
            store = self._ledger or open_ledger(self.settings, read_only=True)
            try:
                max_age = self.settings.cdn_preheat_max_age
                pipeline.count_would_push(store, queued, expansion, max_age, target=target)
            finally:
                if store is not self._ledger:
                    store.close()
            return PushResult(QueueResult._of(queued), dry_run=True)
        ledger, provider = self.ledger, self.provider
        queued = pipeline.queue_expansion(
            ledger, provider.name, provider.area, plan.video_id, expansion,
            head_first=plan.head_first, max_age=self.settings.cdn_preheat_max_age,
        )  # fmt: skip
        # The result describes this video; with every video's URLs pushed
        # (not only_this_video), every video's state is brought up to date.
        run = self._drain(
            plan.video_id if only_this_video else None, stop, follow, wait_timeout, observer,
            [plan.video_id], [plan.video_id] if only_this_video else None, poll_interval,
        )  # fmt: skip
        hit_ratio = None
        if verify and run.error is None and not run.interrupted:
            checked = self.verify(plan.video_id, sample=DEFAULT_VERIFY_SAMPLE, min_hit_ratio=0.0)
            hit_ratio = checked.hit_ratio
        return PushResult(QueueResult._of(queued), run, hit_ratio=hit_ratio, purged=plan.purged)

    def _stopped_before_queueing(self, plan: _Plan) -> PushResult:
        """The stop came while the video was being expanded: nothing of it was queued."""
        video = QueueResult(plan.video_id, plan.m3u8_url, interrupted=True)
        if plan.dry_run:
            return PushResult(video, dry_run=True)
        counts = self.ledger.counts(plan.video_id)
        reserved = counts.get(UrlState.RESERVED, 0)
        run = DrainResult(
            interrupted=True, pending=counts.get(UrlState.PENDING, 0) + reserved, reserved=reserved
        )
        return PushResult(video, run, purged=plan.purged)

    def _purge_before_republish(
        self, video_id: str, observer: Observer, wait_timeout: float
    ) -> PurgeResult | None:
        """``preheat(reset=True, purge=True)``: purge what the ledger holds for the video."""
        from cdn_preheat import purge as purging

        if self.ledger.get_video(video_id) is None:
            return None  # nothing to purge
        urls = purging.video_urls(self.ledger, video_id)
        result = self.purge(
            urls=urls, follow=True, wait_timeout=wait_timeout, check=False, observer=observer
        )
        if result.quota_exhausted is not None:
            raise result.quota_exhausted
        if result.failed:
            raise ProviderError(
                f"{result.failed} of {len(urls)} purges of {video_id} failed; nothing was pushed."
            )
        return result

    def _credentials_checked(self, stop: threading.Event) -> bool:
        """The quota asked (wrong credentials raise); False: the stop cut its retries short."""
        try:
            self._live_quota()
        except (RateLimited, Transient):
            if not stop.is_set():
                raise
            return False
        return True

    def _live_quota(self) -> Any:
        """The provider's quota, riding out a flaky API; wrong credentials fail here."""
        from cdn_preheat.ratelimit import RateLimiter, call_with_retries

        provider = self.provider
        limiter = RateLimiter(provider.limits.requests_per_second)
        return call_with_retries(provider.quota, limiter, attempts=8)

    def _expand_options(
        self,
        *,
        strict: bool = False,
        cdn_host: str | None = None,
        stop: threading.Event | None = None,
    ) -> ExpandOptions:
        import dataclasses

        from cdn_preheat.app import expand_options

        options = expand_options(self.settings, cdn_host=cdn_host, strict=strict)
        if self.fetch_transport is not None:
            options = dataclasses.replace(options, transport=self.fetch_transport)
        if stop is not None:
            options = dataclasses.replace(options, stop=stop)  # ends the fetches' backoffs
        return options

    # -- many videos --------------------------------------------------------------------

    def queue(
        self,
        videos: Iterable[VideoSource | tuple[str, str] | Mapping[str, str]],
        *,
        reset: bool = False,
        head_first: HeadFirst | str | int | None = "10",
        strict: bool = False,
        observer: Observer | None = None,
        check_credentials: bool = True,
        stop: threading.Event | None = None,
    ) -> list[QueueResult]:
        """Expand many videos concurrently and queue each as it arrives; push nothing.

        ``videos``: ``(video_id, m3u8_url)`` pairs, mappings with those keys,
        or :class:`~cdn_preheat.source.VideoSource`. A video whose playlist
        fails is its own entry's ``error``; the others go on (no exception for
        the batch). Videos already preheated are reported as such and not
        expanded. Results come in the order given. Push them with :meth:`drain`
        (or leave them to a worker). ``check_credentials``: ask the CDN for the
        quota first, so wrong credentials fail before anything is written (a
        caller queueing one video at a time, such as ``serve``, passes False:
        its worker meets wrong credentials at its first push). ``stop``: set it
        to end the expansion at once; the videos queued so far stay queued, the
        others are ``interrupted``.
        """
        sources = _sources(videos)
        head = _head_first(head_first)
        with stopping.bound(stop) as run_stop:
            if check_credentials and not self._credentials_checked(run_stop):
                return [QueueResult(s.video_id, s.m3u8_url, interrupted=True) for s in sources]
            return run_coroutine(
                _queue_sources(
                    self, sources, head, strict, reset, observer or _QUIET, _inline, run_stop
                )
            )

    def drain(
        self,
        *,
        video_id: str | None = None,
        stop: threading.Event | None = None,
        follow: bool = True,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        observer: Observer | None = None,
        videos: Sequence[str] | None = None,
        poll_interval: float = 1.0,
    ) -> DrainResult:
        """Push what is queued within today's quota, then follow the CDN's tasks.

        ``video_id``: only that video's URLs (others stay queued). ``follow``:
        follow the tasks up to ``wait_timeout`` seconds and push failed URLs
        again (False: return once pushed). ``stop``: set it from another
        thread to wind down: the batches in flight are settled and
        ``interrupted`` is set. The states of the videos pushed are brought up
        to date afterwards. ``videos``: which videos the result's
        ``reserved``, ``failed_urls`` and ``invalid_videos`` describe (default:
        ``video_id``, or every video). ``poll_interval``: the longest pause
        between looks at the tasks, in seconds.
        """
        return self._drain(
            video_id, stop, follow, wait_timeout, observer, videos, videos, poll_interval
        )

    def queue_and_drain(
        self,
        videos: Iterable[VideoSource | tuple[str, str] | Mapping[str, str]],
        *,
        reset: bool = False,
        head_first: HeadFirst | str | int | None = "10",
        strict: bool = False,
        stop: threading.Event | None = None,
        follow: bool = True,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        observer: Observer | None = None,
        poll_interval: float = 1.0,
    ) -> tuple[list[QueueResult], DrainResult]:
        """:meth:`queue` and :meth:`drain` as one pipeline (what ``batch`` runs).

        Pushing starts as soon as the first video is queued when today's quota
        covers the whole catalog (what is queued, plus the largest video so far
        for every video still to expand); otherwise it starts once every video
        is queued, and the quota goes to every video's head first. The tasks
        are followed while pushing goes on. Same ledger protocol and results as
        the two calls one after the other; ``stop`` ends expansion, pushing and
        tracking together.
        """
        with stopping.bound(stop) as bound_stop:
            return self._queue_and_drain(
                _sources(videos), _head_first(head_first), reset, strict, bound_stop, follow,
                wait_timeout, observer or _QUIET, poll_interval,
            )  # fmt: skip

    def _queue_and_drain(
        self,
        sources: list[VideoSource],
        head: HeadFirst | None,
        reset: bool,
        strict: bool,
        stop: threading.Event,
        follow: bool,
        wait_timeout: float,
        observer: Observer,
        poll_interval: float,
    ) -> tuple[list[QueueResult], DrainResult]:
        from cdn_preheat import pipeline

        if not self._credentials_checked(stop):
            skipped = [QueueResult(s.video_id, s.m3u8_url, interrupted=True) for s in sources]
            return skipped, DrainResult(interrupted=True)
        intake = pipeline.CatalogIntake(len(sources), self.ledger.counts().get(UrlState.PENDING, 0))
        queued_ids: list[str] = []
        results: list[QueueResult] = []
        failure: list[BaseException] = []
        feeding = _Feeding(observer, intake, queued_ids)
        pushing = _PushingWhileQueueing(observer)

        def queue_all() -> None:
            try:
                # A stop ends the expansion at once (a slow origin is not waited for):
                # what was queued stays queued, the other videos are ``interrupted``.
                with stopping.bound(stop):
                    results.extend(
                        run_coroutine(
                            _queue_sources(
                                self, sources, head, strict, reset, feeding, _inline, stop
                            )
                        )
                    )
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)
            finally:
                intake.close()
                if not stop.is_set() and not failure:
                    counts = self.ledger.counts()
                    pushing.expanded(counts.get(UrlState.PENDING, 0))

        expanding = threading.Thread(target=queue_all, name="expand", daemon=True)
        expanding.start()
        try:
            drained = self._drain(
                None, stop, follow, wait_timeout, pushing, queued_ids, queued_ids,
                poll_interval, intake=intake,
            )  # fmt: skip
        except BaseException:
            stop.set()
            expanding.join(STOP_JOIN_SECONDS)
            raise
        # Stopped: the expansion ends within a look at the stop (a ledger write under
        # way finishes first).
        expanding.join(STOP_JOIN_SECONDS if stop.is_set() else None)
        if failure:
            raise failure[0]
        return results, drained  # in the order given, as queue() returns them

    def _drain(
        self,
        video_id: str | None,
        stop: threading.Event | None,
        follow: bool,
        wait_timeout: float,
        observer: Observer | None,
        videos: Sequence[str] | None,
        refresh: Sequence[str] | None,
        poll_interval: float = 1.0,
        *,
        intake: Intake | None = None,
    ) -> DrainResult:
        from cdn_preheat import pipeline
        from cdn_preheat.app import run_options

        ledger, provider = self.ledger, self.provider
        observer = observer or _QUIET
        observer.pushing(ledger.counts(video_id).get(UrlState.PENDING, 0))

        def following(open_tasks: int, totals: Any) -> None:
            settled = totals.done + totals.failed + totals.invalid
            observer.following(open_tasks, totals.done, totals.still_processing, settled)

        report = pipeline.run_queue(
            ledger, provider,
            run_options(
                self.settings, wait=follow, wait_timeout=wait_timeout, poll_interval=poll_interval
            ),
            on_progress=observer.pushed, on_tracking=following, stop=stop, video_id=video_id,
            intake=intake,
        )  # fmt: skip
        everyone = [video_id] if video_id else [v.video_id for v in ledger.list_videos()]
        pipeline.refresh_states(ledger, everyone if refresh is None else refresh)
        return _drain_result(report, ledger, everyone if videos is None else videos)

    def work(
        self,
        *,
        stop: threading.Event | None = None,
        once: bool = False,
        idle: float = 30.0,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        wake: threading.Event | None = None,
    ) -> int:
        """Run the worker loop until ``stop`` is set: drain, follow, sleep past the quota reset.

        Rate limits, transient and unknown provider answers never end it (it
        pauses and goes on); wrong credentials or configuration raise.
        ``once``: one round; returns 3 when the quota is spent with work
        queued, else 0 (the CLI's exit codes). ``wake``: set it when work is
        queued to end a wait at an empty queue at once (set it with ``stop`` too).
        """
        from cdn_preheat.worker import run_worker

        return run_worker(
            self.ledger, self.provider, self.settings, stop=stop or threading.Event(),
            once=once, idle=idle, wait_timeout=wait_timeout, wake=wake,
        )  # fmt: skip

    # -- looking ----------------------------------------------------------------------------

    def status(self, video_id: str | None = None) -> StatusReport:
        """Video records with their URL counts by state, the total, and the first failures.

        ``video_id``: that video only (:class:`InputError` when the ledger has none).
        """
        ledger = self.ledger
        if video_id is not None and ledger.get_video(video_id) is None:
            raise InputError(f"no video {video_id!r} in the ledger.")
        videos = [v for v in ledger.list_videos() if video_id in (None, v.video_id)]
        return StatusReport(
            videos=tuple(_video_status(v, ledger.counts(v.video_id)) for v in videos),
            total=_frozen_counts(ledger.counts(video_id)),
            failures=tuple(
                FailedUrl(f.url, f.state, f.last_error) for f in ledger.failures(video_id)
            ),
        )

    def quota(self) -> QuotaReport:
        """Today's quota from the provider (or, without a quota API, the ledger's figures)."""
        from cdn_preheat.clock import quota_day, utcnow

        provider = self.provider
        live = self._live_quota()
        offset = self.settings.cdn_preheat_quota_utc_offset_hours
        if offset is None:
            offset = provider.limits.quota_utc_offset_hours
        day = quota_day(utcnow(), offset)
        book = self.ledger.quota_day(provider.name, provider.area, day)
        total, available, source = live.total, live.available, "provider"
        if available is None and book is not None and book.limit is not None:
            # No quota API (Qiniu): the figures the ledger learned from the CDN's
            # answers today (quotaDay/surplusDay of each prefetch answer).
            total, available, source = book.limit, book.remaining, "ledger"
        return QuotaReport(
            provider=provider.name,
            area=provider.area,
            day=day,
            batch=live.batch or provider.limits.batch_size,
            total=total,
            available=available,
            used_today=book.used if book else None,
            reserved_in_flight=book.inflight if book else 0,
            source=source if available is not None else "unknown until the first push today",
        )

    def verify(
        self,
        video_id: str,
        *,
        sample: int | None = 50,
        edge_ips: Sequence[str] = (),
        vendor: str | None = None,
        requeue: bool = False,
        min_hit_ratio: float = 1.0,
        seed: int = 0,
        observer: Observer | None = None,
        stop: threading.Event | None = None,
    ) -> VerifyResult:
        """Ask the edge (a one-byte GET per URL) whether the video's files are cached.

        ``sample``: probe this many pushed URLs (playlists and every
        rendition's start always; ``None``: all). ``edge_ips``: pin probes to
        these edges (each URL on each). ``vendor``: which cache header to read
        (default: the provider's). ``requeue``: queue the URLs no CDN layer
        held again. ``result.passed`` when the cached ratio reaches
        ``min_hit_ratio`` and every probe was answered. ``stop``: set it to end the
        probes at once; ``result.report.interrupted``, with the probes answered.
        """
        targets, options = self._verify_plan(video_id, sample, edge_ips, vendor, seed)
        report = run_coroutine(_probe(targets, options, observer or _QUIET, stop))
        return self._verify_result(video_id, report, requeue, min_hit_ratio)

    def _verify_plan(
        self,
        video_id: str,
        sample: int | None,
        edge_ips: Sequence[str],
        vendor: str | None,
        seed: int,
    ) -> tuple[list[VerifyTarget], Any]:
        from cdn_preheat.verify import options_from_settings, video_targets

        if sample is not None and sample < 1:
            raise InputError("sample must be at least 1 (None probes every URL).")
        if self.ledger.get_video(video_id) is None:
            raise InputError(f"no video {video_id!r} in the ledger.")
        options = options_from_settings(self.settings, edge_ips=edge_ips, vendor=vendor)
        return video_targets(self.ledger, video_id, sample, seed=seed), options

    def _verify_result(
        self, video_id: str, report: VerifyReport, requeue: bool, min_hit_ratio: float
    ) -> VerifyResult:
        from cdn_preheat import pipeline
        from cdn_preheat.verify import gate, missed_urls

        requeued = 0
        if requeue:
            provider = self.provider
            requeued = pipeline.requeue_missed(
                self.ledger, provider.name, provider.area, video_id, missed_urls(report)
            )
        return VerifyResult(video_id, report, gate(report, min_hit_ratio), requeued)

    # -- changing ---------------------------------------------------------------------------

    def purge(
        self,
        *,
        urls: Sequence[str] = (),
        dirs: Sequence[str] = (),
        video_id: str | None = None,
        delete: bool = False,
        follow: bool = True,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        stop: threading.Event | None = None,
        observer: Observer | None = None,
        check: bool = True,
    ) -> PurgeResult:
        """Refresh (purge) cached URLs, directories, or every URL the ledger holds for a video.

        ``delete`` (directories only): delete the cached copies rather than
        mark them stale. A purge larger than the purge quota left submits what
        fits: the rest is in ``left`` and the quota error in
        ``quota_exhausted`` (not raised). ``follow``: follow the tasks up to
        ``wait_timeout`` seconds.
        """
        from cdn_preheat import purge as purging

        if delete and not dirs:
            raise InputError("--delete applies to --dir purges only.")
        targets = purging.clean_urls(urls) if check else list(urls)
        directories = purging.clean_dirs(dirs)
        ledger = self.ledger
        if video_id is not None:
            targets = list(dict.fromkeys([*targets, *purging.video_urls(ledger, video_id)]))
        if not targets and not directories and check:
            raise InputError("give URLs to purge, --dir DIR or --video VIDEO_ID.")
        observer = observer or _QUIET
        provider = self.provider
        observer.purging(len(targets) + len(directories), provider.name)
        report = purging.purge(
            ledger, provider, targets, directories, delete=delete,
            options=purging.PurgeOptions(wait=follow, timeout=wait_timeout),
            on_progress=observer.purged, stop=stop,
        )  # fmt: skip
        return PurgeResult._of(report)

    def reset(self, video_id: str) -> int:
        """Forget the video's record and URLs (a later preheat pushes it all); rows removed."""
        _check_video_id(video_id)
        return self.ledger.reset_video(video_id)

    def cancel(self, video_id: str) -> int:
        """Stop pushing the video: its URLs still queued are dropped; how many.

        URLs already pushed (or in flight) are left to finish; URLs shared with
        another video stay queued for that one. The video's state becomes
        ``cancelled`` (:class:`InputError` when the ledger has no such video).
        """
        ledger = self.ledger
        if ledger.get_video(video_id) is None:
            raise InputError(f"no video {video_id!r} in the ledger.")
        from cdn_preheat.clock import utcnow

        dropped = ledger.cancel_video(video_id)
        ledger.set_video_state(video_id, VideoState.CANCELLED, utcnow())
        return dropped

    def expand(
        self, m3u8_url: str, *, cdn_host: str | None = None, strict: bool = False
    ) -> Expansion:
        """Every URL a player may fetch of this playlist (HLS or DASH), playlists first."""
        options = self._expand_options(strict=strict, cdn_host=cdn_host)
        return run_coroutine(_expand(m3u8_url, options))


# -- the asynchronous preheater -------------------------------------------------------------


class AsyncPreheater:
    """:class:`Preheater` with coroutines, for asyncio programs. An async context manager.

    Built the same ways (plain arguments, or :meth:`from_settings`). Playlist
    expansion and edge probes run on the calling event loop; ledger writes
    and CDN API calls run in worker threads, so the loop is never blocked.
    Cancelling a call that pushes sets its stop event: the push winds down in
    its thread (the batches in flight are settled) while the cancellation
    goes on.
    """

    def __init__(
        self,
        provider: str = "tencent",
        *,
        credentials: Mapping[str, str] | None = None,
        ledger: str | None = None,
        cdn_host: str | None = None,
        area: str | None = None,
        endpoint: str | None = None,
        read_only: bool = False,
        settings: Settings | None = None,
        fetch_transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
        **options: Any,
    ) -> None:
        self.sync = Preheater(
            provider, credentials=credentials, ledger=ledger, cdn_host=cdn_host, area=area,
            endpoint=endpoint, read_only=read_only, settings=settings,
            fetch_transport=fetch_transport, **options,
        )  # fmt: skip

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        read_only: bool = False,
        fetch_transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> Self:
        """An async preheater configured by ``settings`` (e.g. ``load_settings()``)."""
        return cls(settings=settings, read_only=read_only, fetch_transport=fetch_transport)

    @property
    def settings(self) -> Settings:
        return self.sync.settings

    async def close(self) -> None:
        """Close the provider's connections and the ledger (in a worker thread)."""
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def preheat(
        self,
        video_id: str,
        m3u8_url: str,
        *,
        reset: bool = False,
        purge: bool = False,
        head_first: HeadFirst | str | int | None = "10",
        strict: bool = False,
        dry_run: bool = False,
        follow: bool = True,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        verify: bool = False,
        only_this_video: bool = True,
        stop: threading.Event | None = None,
        observer: Observer | None = None,
        poll_interval: float = 1.0,
    ) -> PushResult:
        """:meth:`Preheater.preheat` as a coroutine."""
        sync = self.sync
        observer = observer or _QUIET
        plan = await asyncio.to_thread(
            sync._plan,
            video_id,
            m3u8_url,
            reset,
            purge,
            head_first,
            dry_run,
            observer,
            wait_timeout,
        )
        if plan.early is not None:
            return plan.early
        options = sync._expand_options(strict=strict, stop=stop)
        try:
            expansion = await stopping.until_stopped(_expand(m3u8_url, options), stop)
        except stopping.Stopped:
            return await asyncio.to_thread(sync._stopped_before_queueing, plan)
        stop = stop or threading.Event()
        return await _stoppable(
            stop,
            lambda: sync._push_expansion(
                plan,
                expansion,
                follow=follow,
                wait_timeout=wait_timeout,
                verify=False,
                only_this_video=only_this_video,
                stop=stop,
                observer=observer or _QUIET,
                poll_interval=poll_interval,
            ),
            then=self._verified if verify else None,
        )

    async def _verified(self, result: PushResult) -> PushResult:
        run = result.run
        if run is None or run.error is not None or run.interrupted:
            return result
        checked = await self.verify(
            result.video_id, sample=DEFAULT_VERIFY_SAMPLE, min_hit_ratio=0.0
        )
        return PushResult(result.video, run, hit_ratio=checked.hit_ratio, purged=result.purged)

    async def queue(
        self,
        videos: Iterable[VideoSource | tuple[str, str] | Mapping[str, str]],
        *,
        reset: bool = False,
        head_first: HeadFirst | str | int | None = "10",
        strict: bool = False,
        observer: Observer | None = None,
        check_credentials: bool = True,
        stop: threading.Event | None = None,
    ) -> list[QueueResult]:
        """:meth:`Preheater.queue` as a coroutine: expansion on this loop, ledger writes off it."""
        sources = _sources(videos)
        head = _head_first(head_first)
        if check_credentials:
            await asyncio.to_thread(self.sync._live_quota)
        return await _queue_sources(
            self.sync, sources, head, strict, reset, observer or _QUIET, _threaded, stop
        )

    async def drain(
        self,
        *,
        video_id: str | None = None,
        stop: threading.Event | None = None,
        follow: bool = True,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        observer: Observer | None = None,
        videos: Sequence[str] | None = None,
        poll_interval: float = 1.0,
    ) -> DrainResult:
        """:meth:`Preheater.drain` as a coroutine (the push runs in a worker thread)."""
        stop = stop or threading.Event()
        return await _stoppable(
            stop,
            lambda: self.sync.drain(
                video_id=video_id,
                stop=stop,
                follow=follow,
                wait_timeout=wait_timeout,
                observer=observer,
                videos=videos,
                poll_interval=poll_interval,
            ),
        )

    async def status(self, video_id: str | None = None) -> StatusReport:
        """:meth:`Preheater.status` as a coroutine."""
        return await asyncio.to_thread(self.sync.status, video_id)

    async def quota(self) -> QuotaReport:
        """:meth:`Preheater.quota` as a coroutine."""
        return await asyncio.to_thread(self.sync.quota)

    async def verify(
        self,
        video_id: str,
        *,
        sample: int | None = 50,
        edge_ips: Sequence[str] = (),
        vendor: str | None = None,
        requeue: bool = False,
        min_hit_ratio: float = 1.0,
        seed: int = 0,
        observer: Observer | None = None,
    ) -> VerifyResult:
        """:meth:`Preheater.verify` as a coroutine: the probes run on this loop."""
        sync = self.sync
        targets, options = await asyncio.to_thread(
            sync._verify_plan, video_id, sample, edge_ips, vendor, seed
        )
        report = await _probe(targets, options, observer or _QUIET)
        return await asyncio.to_thread(
            sync._verify_result, video_id, report, requeue, min_hit_ratio
        )

    async def purge(
        self,
        *,
        urls: Sequence[str] = (),
        dirs: Sequence[str] = (),
        video_id: str | None = None,
        delete: bool = False,
        follow: bool = True,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        stop: threading.Event | None = None,
        observer: Observer | None = None,
    ) -> PurgeResult:
        """:meth:`Preheater.purge` as a coroutine."""
        stop = stop or threading.Event()
        return await _stoppable(
            stop,
            lambda: self.sync.purge(
                urls=urls,
                dirs=dirs,
                video_id=video_id,
                delete=delete,
                follow=follow,
                wait_timeout=wait_timeout,
                stop=stop,
                observer=observer,
            ),
        )

    async def reset(self, video_id: str) -> int:
        """:meth:`Preheater.reset` as a coroutine."""
        return await asyncio.to_thread(self.sync.reset, video_id)

    async def cancel(self, video_id: str) -> int:
        """:meth:`Preheater.cancel` as a coroutine."""
        return await asyncio.to_thread(self.sync.cancel, video_id)

    async def expand(
        self, m3u8_url: str, *, cdn_host: str | None = None, strict: bool = False
    ) -> Expansion:
        """:meth:`Preheater.expand` as a coroutine."""
        return await _expand(m3u8_url, self.sync._expand_options(strict=strict, cdn_host=cdn_host))


# -- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    video_id: str
    m3u8_url: str
    head_first: HeadFirst | None
    dry_run: bool = False
    early: PushResult | None = None  # nothing to expand: the answer already
    purged: PurgeResult | None = None


def _check_video_id(video_id: str) -> None:
    from cdn_preheat.source import video_id_problem

    problem = video_id_problem(video_id)
    if problem is not None:
        raise InputError(f"{problem}; give the id you use for the video, e.g. ep-101.")


def _head_first(value: HeadFirst | str | int | None) -> HeadFirst | None:
    from cdn_preheat.pipeline import HeadFirst

    if value is None or isinstance(value, HeadFirst):
        return value
    return HeadFirst.parse(str(value))


def _sources(
    videos: Iterable[VideoSource | tuple[str, str] | Mapping[str, str]],
) -> list[VideoSource]:
    from cdn_preheat.source import VideoSource

    sources: list[VideoSource] = []
    for number, video in enumerate(videos, start=1):
        if isinstance(video, VideoSource):
            source = video
        elif isinstance(video, Mapping):
            try:
                source = VideoSource(str(video["video_id"]), str(video["m3u8_url"]), number)
            except KeyError as exc:
                raise InputError(f"video {number} has no {exc.args[0]!r}.") from None
        else:
            video_id, m3u8_url = video
            source = VideoSource(video_id, m3u8_url, number)
        _check_video_id(source.video_id)
        sources.append(source)
    return sources


async def _expand(url: str, options: ExpandOptions) -> Expansion:
    from cdn_preheat.hls import expand_playlist

    return await expand_playlist(url, options)


async def _probe(
    targets: Sequence[VerifyTarget],
    options: Any,
    observer: Observer,
    stop: threading.Event | None = None,
) -> VerifyReport:
    from cdn_preheat.verify import probe_count, verify_urls_async

    observer.probing(probe_count(targets, options))
    return await verify_urls_async(targets, options=options, on_progress=observer.probed, stop=stop)


class _Offload(Protocol):
    """Where blocking work runs: inline (sync API) or in a worker thread (async API)."""

    def __call__(self, work: Callable[[], T], /) -> Awaitable[T]: ...


async def _inline(work: Callable[[], T]) -> T:
    """Blocking work on this thread: the sync API's loop is its own, private one."""
    return work()


async def _threaded(work: Callable[[], T]) -> T:
    """Blocking work in a worker thread: the async API's loop is the caller's."""
    return await asyncio.to_thread(work)


async def _queue_sources(
    preheater: Preheater,
    sources: Sequence[VideoSource],
    head: HeadFirst | None,
    strict: bool,
    reset: bool,
    observer: Observer,
    offload: _Offload,
    stop: threading.Event | None = None,
) -> list[QueueResult]:
    """Expand ``sources`` concurrently (this loop) and queue each as it arrives (``offload``).

    Once ``stop`` (default: the run's, :func:`stopping.current`) is set the
    expansion ends at once: the videos not queued by then are ``interrupted``.
    """
    from cdn_preheat import pipeline
    from cdn_preheat.clock import utcnow
    from cdn_preheat.hls import expand_many

    max_age = preheater.settings.cdn_preheat_max_age
    options = preheater._expand_options(strict=strict, stop=stop)

    def sort_out() -> tuple[list[QueueResult], list[VideoSource], str, str]:
        ledger, provider = preheater.ledger, preheater.provider
        now = utcnow()
        done: list[QueueResult] = []
        todo: list[VideoSource] = []
        for source in sources:
            if reset:
                ledger.reset_video(source.video_id)
            if pipeline.is_preheated(ledger.get_video(source.video_id), now, max_age):
                done.append(QueueResult(source.video_id, source.m3u8_url, already_preheated=True))
            else:
                todo.append(source)
        return done, todo, provider.name, provider.area

    def queue_one(source: VideoSource, expansion: Expansion) -> QueuedVideo:
        return pipeline.queue_expansion(
            preheater.ledger, provider_name, area, source.video_id, expansion,
            head_first=head, max_age=max_age,
        )  # fmt: skip

    observer.expanding(len(sources))
    results, todo, provider_name, area = await offload(sort_out)
    for result in results:
        observer.queued(result)

    stream = expand_many(((s, s.m3u8_url) for s in todo), options)
    try:
        async for source, outcome in stopping.each_until_stopped(stream, stop):
            if isinstance(outcome, PreheatError):
                result = QueueResult(source.video_id, source.m3u8_url, error=str(outcome))
            else:
                queued = await offload(functools.partial(queue_one, source, outcome))
                result = QueueResult._of(queued)
            results.append(result)
            observer.queued(result)
    except stopping.Stopped:
        seen = {result.video_id for result in results}
        results.extend(
            QueueResult(s.video_id, s.m3u8_url, interrupted=True)
            for s in todo
            if s.video_id not in seen
        )
    order = {source.video_id: index for index, source in enumerate(sources)}
    results.sort(key=lambda video: order.get(video.video_id, 0))
    return results


async def _stoppable(
    stop: threading.Event,
    work: Callable[[], T],
    then: Callable[[T], Awaitable[T]] | None = None,
) -> T:
    """``work`` in a worker thread; a cancelled caller sets ``stop`` so that it winds down."""
    try:
        result = await asyncio.to_thread(work)
    except asyncio.CancelledError:
        stop.set()
        raise
    return await then(result) if then is not None else result


def _video_status(video: VideoRecord, counts: Mapping[UrlState, int]) -> VideoStatus:
    return VideoStatus(
        video_id=video.video_id,
        m3u8_url=video.m3u8_url,
        state=video.state,
        found=video.url_count,
        counts=_frozen_counts(counts),
        created_at=video.created_at,
        updated_at=video.updated_at,
    )


def _drain_result(report: RunReport, ledger: Ledger, video_ids: Sequence[str]) -> DrainResult:
    counts = [ledger.counts(video_id) for video_id in video_ids]
    invalid = tuple(
        video_id
        for video_id in video_ids
        if (record := ledger.get_video(video_id)) is not None and record.state is VideoState.FAILED
    )
    return DrainResult(
        submitted=report.submitted,
        done=report.done,
        failed=report.failed,
        invalid=report.invalid,
        pending=report.pending,
        in_flight=report.in_flight,
        requests=report.requests,
        rate_limited=report.rate_limited,
        transient=report.transient,
        reconciled=report.reconciled,
        quota_exhausted=report.quota_exhausted,
        quota_left_today=report.quota_left_today,
        tracking_timed_out=report.tracking_timed_out,
        interrupted=report.interrupted,
        error=report.stopped_by,
        reserved=sum(c.get(UrlState.RESERVED, 0) for c in counts),
        failed_urls=sum(c.get(UrlState.FAILED, 0) for c in counts),
        invalid_videos=invalid,
    )
