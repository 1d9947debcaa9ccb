"""Prove the edge serves from cache: probe URLs and read the cache verdict.

A prefetch task that says "done" is only the CDN's claim. Each probe is a
one-byte ``GET`` (``Range: bytes=0-0``) with a player's headers: a HEAD can
be answered differently from a GET, and a full GET would warm the cache it
is checking. Probes run concurrently, bounded and paced, optionally once per
listed edge IP; a failed probe is reported, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from cdn_preheat import stopping
from cdn_preheat.cachestatus import UNKNOWN, CacheStatus, CacheVerdict, parse_cache_status
from cdn_preheat.edgehttp import (
    BROWSER_ACCEPT_ENCODING,
    DEFAULT_PLAYER_USER_AGENT,
    EdgeAddress,
    describe_transport_error,
    edge_client,
    edge_request,
    parse_edge_addresses,
    player_headers,
)
from cdn_preheat.ledger.base import Ledger, UrlRecord, UrlState
from cdn_preheat.throttle import TokenBucket

if TYPE_CHECKING:
    from cdn_preheat.config import Settings

_SMALL_BODY = 64 * 1024  # an error page or a 1-byte range: cheap to read


@dataclass(frozen=True)
class VerifyTarget:
    """A URL to probe, with the rendition and video its ratios are grouped by."""

    url: str
    rendition: str = ""
    video_id: str = ""


@dataclass(frozen=True)
class VerifyOptions:
    vendor: str | None = None  # which cache header to read; None: any known one
    edge_ips: tuple[EdgeAddress, ...] = ()  # probe each URL on each; empty: DNS
    user_agent: str = DEFAULT_PLAYER_USER_AGENT
    referer: str | None = None
    accept_encoding: str = BROWSER_ACCEPT_ENCODING
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 16
    rate: float = 50.0  # probes a second, across all edges
    timeout: float = 10.0
    verify_tls: bool = True


@dataclass(frozen=True)
class ProbeResult:
    """One URL on one edge. ``error`` is set when no HTTP answer came back."""

    url: str
    edge_ip: str | None
    status_code: int | None
    verdict: CacheVerdict
    error: str | None = None
    rendition: str = ""
    video_id: str = ""

    @property
    def status(self) -> CacheStatus:
        return self.verdict.status

    @property
    def header(self) -> str | None:
        """The header that decided the verdict."""
        return self.verdict.header


@dataclass(frozen=True)
class HitRatio:
    hits: int = 0  # the edge's own copy
    misses: int = 0
    unknown: int = 0  # answered, but without a readable cache header
    errors: int = 0  # no answer at all
    upper: int = 0  # warm in an upper layer of the CDN, not yet at that edge

    @property
    def total(self) -> int:
        return self.hits + self.upper + self.misses + self.unknown + self.errors

    @property
    def cached(self) -> int:
        return self.hits + self.upper

    @property
    def ratio(self) -> float | None:
        """Cached (edge or upper-layer hits) over every probe; None when nothing was probed.

        Both count: a prefetch into the middle/L2 layer is a complete preheat,
        and the edge takes the file from there on the first viewer's request.
        """
        return self.cached / self.total if self.total else None

    @property
    def edge_ratio(self) -> float | None:
        """Edge hits alone over every probe."""
        return self.hits / self.total if self.total else None


@dataclass(frozen=True)
class VerifyReport:
    results: tuple[ProbeResult, ...]
    # Stopped before every probe was answered: ``results`` holds those that were.
    interrupted: bool = False
    planned: int | None = None  # probes there were to make (when interrupted)

    @property
    def overall(self) -> HitRatio:
        return _ratio(self.results)

    def by_rendition(self) -> dict[str, HitRatio]:
        return _grouped(self.results, lambda r: r.rendition)

    def by_video(self) -> dict[str, HitRatio]:
        return _grouped(self.results, lambda r: r.video_id)

    def by_edge(self) -> dict[str, HitRatio]:
        return _grouped(self.results, lambda r: r.edge_ip or "")


def _ratio(results: Iterable[ProbeResult]) -> HitRatio:
    counts = dict.fromkeys(CacheStatus, 0)
    errors = 0
    for result in results:
        if result.error is not None:
            errors += 1
        else:
            counts[result.status] += 1
    return HitRatio(
        counts[CacheStatus.HIT],
        counts[CacheStatus.MISS],
        counts[CacheStatus.UNKNOWN],
        errors,
        counts[CacheStatus.UPPER],
    )


def _grouped(
    results: Sequence[ProbeResult], key: Callable[[ProbeResult], str]
) -> dict[str, HitRatio]:
    groups: dict[str, list[ProbeResult]] = defaultdict(list)
    for result in results:
        groups[key(result)].append(result)
    return {name: _ratio(members) for name, members in groups.items()}


# -- probing ------------------------------------------------------------------


Progress = Callable[[int], object]


def verify_urls(
    urls: Sequence[VerifyTarget | str],
    *,
    options: VerifyOptions | None = None,
    on_progress: Progress | None = None,
) -> VerifyReport:
    """Probe every URL (on every listed edge) and report the cache verdicts.

    ``on_progress(1)`` is called after each probe (``len(urls)`` times per
    edge). Synchronous :func:`verify_urls_async`, for sync callers.
    """
    from cdn_preheat._sync import run_coroutine

    return run_coroutine(verify_urls_async(urls, options=options, on_progress=on_progress))


def probe_count(urls: Sequence[object], options: VerifyOptions) -> int:
    """How many probes :func:`verify_urls` makes: every URL on every listed edge."""
    return len(urls) * max(1, len(options.edge_ips))


async def verify_urls_async(
    urls: Sequence[VerifyTarget | str],
    *,
    options: VerifyOptions | None = None,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> VerifyReport:
    """Probe every URL (on every pinned edge). Once ``stop`` (default: the run's,
    :func:`stopping.current`, which a signal sets) is set the probes in flight are
    cancelled and the report holds those answered (``interrupted``)."""
    options = options or VerifyOptions()
    targets = [VerifyTarget(u) if isinstance(u, str) else u for u in urls]
    edges: tuple[EdgeAddress | None, ...] = options.edge_ips or (None,)
    probes = [(target, edge) for target in targets for edge in edges]
    results: list[ProbeResult | None] = [None] * len(probes)
    pacer = TokenBucket(options.rate, burst=1)
    headers = {
        **player_headers(
            options.user_agent, options.accept_encoding, options.referer, options.extra_headers
        ),
        "Range": "bytes=0-0",
    }
    pending = iter(range(len(probes)))

    async def worker(client: httpx.AsyncClient) -> None:
        for index in pending:  # shared iterator: each probe is taken once
            await pacer.take()
            target, edge = probes[index]
            results[index] = await _probe(client, target, edge, headers, options.vendor)
            if on_progress is not None:
                on_progress(1)

    workers = max(1, min(options.concurrency, len(probes)))
    async with edge_client(
        concurrency=workers, timeout=options.timeout, verify_tls=options.verify_tls
    ) as client:
        try:
            await stopping.until_stopped(
                asyncio.gather(*(worker(client) for _ in range(workers))), stop
            )
        except stopping.Stopped:
            answered = tuple(r for r in results if r is not None)
            return VerifyReport(answered, interrupted=True, planned=len(probes))
    return VerifyReport(tuple(r for r in results if r is not None))


async def _probe(
    client: httpx.AsyncClient,
    target: VerifyTarget,
    edge: EdgeAddress | None,
    headers: Mapping[str, str],
    vendor: str | None,
) -> ProbeResult:
    status_code: int | None = None
    verdict, error = UNKNOWN, None
    response: httpx.Response | None = None
    # httpx's timeout bounds each read; an edge that trickles its answer never
    # trips it, so a probe (one byte) also ends within the timeout as a whole.
    deadline = client.timeout.read or 10.0
    try:
        async with asyncio.timeout(deadline):
            request = edge_request(client, target.url, headers, edge)
            response = await client.send(request, stream=True)
            status_code = response.status_code
            verdict = parse_cache_status(response.headers, vendor)
            await _drain_if_small(response)
    except TimeoutError:
        if response is not None:
            await response.aclose()  # the verdict is in hand; the trickle is dropped
        else:
            error = f"timed out: no answer within {deadline:g} s"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        error = describe_transport_error(exc)
    edge_ip = edge.ip if edge else None
    return ProbeResult(
        target.url, edge_ip, status_code, verdict, error, target.rendition, target.video_id
    )


async def _drain_if_small(response: httpx.Response) -> None:
    """Read the one byte so the connection is reused; never a whole file.

    An edge that ignores ``Range`` answers 200 with the full body: that
    connection is closed unread instead.
    """
    length = response.headers.get("Content-Length", "")
    if response.status_code == 206 or (length.isdigit() and int(length) <= _SMALL_BODY):
        with contextlib.suppress(httpx.HTTPError):  # the verdict is already in hand
            async for _ in response.aiter_raw():
                pass
    await response.aclose()


# -- what to probe, and what to push again ----------------------------------------

_NOT_PUSHED = frozenset({UrlState.SKIPPED, UrlState.INVALID})
_STARTERS = frozenset({"init", "key"})  # a player needs these before the first segment


def rendition_key(url: str) -> str:
    """The URL's directory: where HLS packagers put one rendition's segments."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rsplit('/', 1)[0]}/"


def is_playlist(record: UrlRecord) -> bool:
    return record.kind in ("playlist", "master") or urlsplit(record.url).path.endswith(".m3u8")


def select_sample(
    records: Sequence[UrlRecord],
    n: int | None,
    seed: int | str | None = 0,
    *,
    video_id: str = "",
    head: int = 1,
    rendition_of: Callable[[str], str] = rendition_key,
) -> list[VerifyTarget]:
    """The URLs to probe, in the records' order; ``n=None`` takes all (``--all``).

    Always taken: every playlist, and the start of every rendition (its
    init segment and keys before its first media file, and the first
    ``head`` media files): what a viewer requests first. The rest of the
    ``n`` are drawn at random, the same draw for the same ``seed``.
    """
    pushed = [r for r in records if r.state not in _NOT_PUSHED]
    if n is None:
        chosen = set(range(len(pushed)))
    else:
        chosen = _must_probe(pushed, head, rendition_of)
        rest = [i for i in range(len(pushed)) if i not in chosen]
        room = max(0, n - len(chosen))
        chosen.update(random.Random(seed).sample(rest, min(room, len(rest))))
    return [
        VerifyTarget(pushed[i].url, rendition_of(pushed[i].url), video_id) for i in sorted(chosen)
    ]


def _must_probe(
    records: Sequence[UrlRecord], head: int, rendition_of: Callable[[str], str]
) -> set[int]:
    chosen: set[int] = set()
    media_seen: dict[str, int] = defaultdict(int)
    for index, record in enumerate(records):
        if is_playlist(record):
            chosen.add(index)
            continue
        rendition = rendition_of(record.url)
        if media_seen[rendition] >= head:
            continue
        chosen.add(index)
        if record.kind not in _STARTERS:
            media_seen[rendition] += 1
    return chosen


def missed_urls(report: VerifyReport) -> list[str]:
    """URLs an edge answered successfully but no CDN layer held: push them again.

    Upper-layer hits are left out: the prefetch did its job (Tencent mainland
    and Alibaba prefetch into that layer), and pushing again would only spend
    quota to fill the same layer. Errors and unreadable headers are left out
    (they prove nothing), and so are 4xx/5xx answers: pushing a URL the
    origin refuses again will not help.
    """
    missed: dict[str, None] = {}
    for result in report.results:
        if result.status is CacheStatus.MISS and result.status_code in (200, 206):
            missed.setdefault(result.url)
    return list(missed)


# -- a video from the ledger --------------------------------------------------


def options_from_settings(
    settings: Settings, *, edge_ips: Sequence[str] = (), vendor: str | None = None
) -> VerifyOptions:
    """Verification options from the settings; explicit edges override the configured ones.

    Without ``vendor``, the cache header read is the one the configured provider's
    edges send (its registration's ``cache_vendor``; None: any known header).
    """
    from cdn_preheat.providers import provider_spec

    return VerifyOptions(
        vendor=vendor or provider_spec(settings.cdn_provider).cache_vendor,
        edge_ips=parse_edge_addresses(list(edge_ips) or settings.cdn_preheat_edge_ips),
        user_agent=settings.cdn_preheat_user_agent or DEFAULT_PLAYER_USER_AGENT,
        referer=settings.cdn_preheat_referer,
        timeout=settings.cdn_preheat_fetch_timeout,
    )


def video_targets(
    ledger: Ledger, video_id: str, sample: int | None, *, seed: int = 0
) -> list[VerifyTarget]:
    """The video's URLs to probe: a sample (``None``: all) of those pushed."""
    return select_sample(ledger.url_records(video_id), sample, seed, video_id=video_id)


def verify_video(
    ledger: Ledger,
    video_id: str,
    sample: int | None,
    options: VerifyOptions,
    *,
    seed: int = 0,
    on_progress: Progress | None = None,
) -> VerifyReport:
    """Probe a sample (``None``: all) of the video's pushed URLs at the edge (sync callers)."""
    targets = video_targets(ledger, video_id, sample, seed=seed)
    return verify_urls(targets, options=options, on_progress=on_progress)


# -- the gate: may the premiere go ahead? ----------------------------------------


@dataclass(frozen=True)
class GateResult:
    """Whether a verification passes ``min_hit_ratio``; ``reason`` says why not."""

    min_hit_ratio: float
    passed: bool
    reason: str = ""


def gate(report: VerifyReport, min_hit_ratio: float = 1.0) -> GateResult:
    """Pass when the cached ratio (edge and upper-layer hits) reaches ``min_hit_ratio``
    and every probe got an answer; nothing probed never passes."""
    overall = report.overall
    ratio = overall.ratio
    wanted = f"{min_hit_ratio:.1%}"
    if ratio is None:
        return GateResult(min_hit_ratio, False, "nothing was probed: the video has no pushed URLs.")
    reasons = []
    if ratio < min_hit_ratio:
        reasons.append(
            f"{overall.cached} of {overall.total} probes were cached ({ratio:.1%}), "
            f"below --min-hit-ratio {wanted}"
        )
    if overall.errors:
        reasons.append(f"{overall.errors} probes got no answer")
    if not reasons:
        return GateResult(min_hit_ratio, True)
    return GateResult(min_hit_ratio, False, "verification failed: " + "; ".join(reasons) + ".")
