"""Warm CDNs that have no prefetch API by fetching every URL through the edge.

CloudFront, Cloudflare and a self-run nginx cache fill on a viewer's first
full GET, so warming is being that first viewer: a plain GET of the whole
body (streamed and discarded), once per listed edge IP and per
Accept-Encoding variant the cache key distinguishes. There is no daily quota
and no task to wait for: ``submit`` warms synchronously and remembers each
URL's outcome, in memory, for ``task_status`` and ``find_submitted``.

There is no vendor-neutral way to purge a cache over HTTP (``PURGE`` is a
Varnish/Squid convention most CDNs refuse), so the purge methods raise.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

import httpx

from cdn_preheat._sync import LoopThread
from cdn_preheat.config import Settings
from cdn_preheat.edgehttp import (
    DEFAULT_PLAYER_USER_AGENT,
    EdgeAddress,
    describe_transport_error,
    edge_client,
    edge_request,
    parse_edge_addresses,
    player_headers,
)
from cdn_preheat.errors import (
    BatchTooLarge,
    DomainError,
    ProviderError,
    RateLimited,
    Transient,
)
from cdn_preheat.providers.base import (
    Features,
    Limits,
    Provider,
    ProviderSpec,
    Quota,
    SubmitResult,
    TaskEntry,
    TaskState,
)
from cdn_preheat.ratelimit import Budget
from cdn_preheat.throttle import TokenBucket

_RETRYABLE_4XX = frozenset({408, 429})
PURGE_UNSUPPORTED = "the http provider cannot purge; use the CDN's console or API"
# Outcomes are kept this long: the tracker reads them within seconds, and a
# long-running worker must not grow without bound.
RETENTION = dt.timedelta(hours=24)
# The most batches warming at once: the scheduler's concurrency is at most 64.
MAX_CONCURRENT_BATCHES = 64


@dataclass(frozen=True)
class WarmOptions:
    """How to warm. Empty ``edge_ips``: connect wherever DNS points."""

    edge_ips: tuple[EdgeAddress, ...] = ()
    cdn_host: str | None = None  # when set, URLs on other hosts are refused
    encodings: tuple[str, ...] = ("gzip",)  # one fetch per Accept-Encoding value
    bandwidth: float | None = None  # bytes a second across all fetches; None: no cap
    concurrency: int = 8
    timeout: float = 30.0
    user_agent: str = DEFAULT_PLAYER_USER_AGENT
    referer: str | None = None
    verify_tls: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> WarmOptions:
        return cls(
            edge_ips=parse_edge_addresses(settings.cdn_preheat_edge_ips),
            cdn_host=settings.cdn_host,
            encodings=_csv(settings.cdn_preheat_warm_encodings) or ("gzip",),
            bandwidth=settings.cdn_preheat_warm_bandwidth,
            concurrency=settings.cdn_preheat_warm_concurrency,
            timeout=settings.cdn_preheat_fetch_timeout,
            user_agent=settings.cdn_preheat_user_agent or DEFAULT_PLAYER_USER_AGENT,
            referer=settings.cdn_preheat_referer,
        )


def _csv(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(item.strip() for item in items if item.strip())


@dataclass(frozen=True)
class _Fetch:
    """One GET of one URL on one edge with one encoding.

    ``status`` is None when no HTTP answer came back (``error`` says why).
    """

    url: str
    edge: EdgeAddress | None
    encoding: str
    status: int | None = None
    error: str | None = None
    location: str | None = None
    retry_after: float | None = None
    unusable: bool = False  # the URL itself cannot be requested

    @property
    def state(self) -> TaskState:
        if self.unusable:
            return TaskState.INVALID
        if self.status is None or self.status >= 500 or self.status in _RETRYABLE_4XX:
            return TaskState.FAILED  # down or overloaded now: worth another try
        if self.status >= 300:
            # A redirect or a refusal: the edge will answer the same next time.
            return TaskState.INVALID
        return TaskState.DONE

    def describe(self) -> str:
        where = f" from edge {self.edge}" if self.edge else ""
        what = f"HTTP {self.status}" if self.error is None else self.error
        moved = f" to {self.location}" if self.location else ""
        return f"{what}{moved}{where} (Accept-Encoding: {self.encoding})"


class HttpProvider(Provider):
    """Warms through the edge: no quota, no purge, outcomes known on return."""

    name = "http"
    # No quota, no purge; outcomes are known when submit returns and kept in memory only.
    features = Features(
        quota_query=False,
        daily_quota=False,
        purge=False,
        task_list=False,
        tasks_finish_on_submit=True,
        in_flight_follows_rate=False,
    )
    limits = Limits(
        batch_size=50,
        requests_per_second=200,
        # Purging is not supported; 1 keeps any caller's chunking arithmetic sane.
        purge_batch_size=1,
        purge_dir_batch_size=1,
        quota_utc_offset_hours=None,
    )
    # Our own politeness towards the edges, not a vendor limit: 200 batches a second.
    budgets: ClassVar[Mapping[str, Budget]] = {
        "warm": Budget(200, source="cdn-preheat's own pace for edge warming")
    }
    submit_api = "warm"

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        options: WarmOptions | None = None,
        area: str = "global",
        bandwidth: TokenBucket | None = None,
    ) -> None:
        """``options`` override the settings; ``bandwidth`` replaces the byte bucket."""
        if options is None:
            options = WarmOptions.from_settings(settings) if settings else WarmOptions()
        self.options = options
        self.area = area
        if bandwidth is None and options.bandwidth:
            # A second's worth of burst: smooth, without starving small files.
            bandwidth = TokenBucket(options.bandwidth, burst=options.bandwidth)
        self.bandwidth = bandwidth
        self._tasks: OrderedDict[str, list[TaskEntry]] = OrderedDict()
        self._lock = threading.Lock()
        # One client (one connection pool) for the provider's lifetime, on an
        # event loop of its own; opened by the first warm-up, released by close().
        self._loop: LoopThread | None = None
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def close(self) -> None:
        """Close the client's connections and stop its loop. Safe to call twice."""
        with self._lock:
            loop, client = self._loop, self._client
            self._loop, self._client, self._closed = None, None, True
        if loop is None:
            return
        try:
            if client is not None:
                loop.call(client.aclose())
        finally:
            loop.close()

    def _warm_now(self, urls: Sequence[str]) -> list[_Fetch]:
        with self._lock:
            if self._closed:
                raise ProviderError("the http provider is closed")
            if self._loop is None:
                options = self.options
                self._loop = LoopThread("cdn-preheat-warm")
                # Batches warm concurrently (CDN_PREHEAT_CONCURRENCY, at most 64),
                # each with ``options.concurrency`` fetches.
                self._client = edge_client(
                    concurrency=options.concurrency * MAX_CONCURRENT_BATCHES,
                    timeout=options.timeout,
                    verify_tls=options.verify_tls,
                )
            loop, client = self._loop, self._client
        assert client is not None
        return loop.call(self._warm(client, urls))

    # -- prefetch -----------------------------------------------------------------

    def quota(self) -> Quota:
        return Quota(self.area, total=None, available=None, batch=self.limits.batch_size)

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        """Warm every URL now; each URL's outcome is kept for ``task_status``."""
        if len(urls) > self.limits.batch_size:
            raise BatchTooLarge(
                f"{len(urls)} URLs in one batch; the http provider takes at most "
                f"{self.limits.batch_size}"
            )
        self._check_hosts(urls)
        self._pace(self.submit_api)()  # the warm-up itself is not the vendor's API
        fetches = self._warm_now(urls)
        _raise_for_batch(fetches, self.options.edge_ips)
        task_id = f"http-{uuid.uuid4().hex}"
        now = dt.datetime.now(dt.UTC)
        by_url: dict[str, list[_Fetch]] = {url: [] for url in urls}
        for fetch in fetches:
            by_url[fetch.url].append(fetch)
        entries = [_outcome(task_id, url, mine, now) for url, mine in by_url.items()]
        with self._lock:
            self._tasks[task_id] = entries
            self._forget_before(now - RETENTION)
        return SubmitResult(task_id, tuple(urls))

    def _check_hosts(self, urls: Sequence[str]) -> None:
        # Warming a URL that is not on the CDN fetches it from wherever it
        # lives (often the origin itself) and fills no cache.
        cdn_host = self.options.cdn_host
        if cdn_host is None:
            return
        foreign = [url for url in urls if not _on_host(url, cdn_host)]
        if foreign:
            raise DomainError(
                f"{foreign[0]} is not on CDN_HOST ({cdn_host}); "
                "warming it would not fill the CDN's cache"
            )

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        with self._lock:
            return [entry for task_id in task_ids for entry in self._tasks.get(task_id, [])]

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        # Memory only: after a restart nothing is found and the batch is warmed
        # again, which is harmless (a warm is a GET).
        wanted = set(urls)
        found: dict[str, str] = {}
        with self._lock:
            for entries in self._tasks.values():
                for entry in entries:
                    created = entry.created_at
                    if entry.url in wanted and created is not None and created >= since:
                        found[entry.url] = entry.task_id
        return found

    # -- purge: not possible over plain HTTP ----------------------------------------

    def purge_urls(self, urls: Sequence[str]) -> str:
        raise ProviderError(PURGE_UNSUPPORTED)

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        raise ProviderError(PURGE_UNSUPPORTED)

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        raise ProviderError(PURGE_UNSUPPORTED)

    # -- warming ----------------------------------------------------------------------

    async def _warm(self, client: httpx.AsyncClient, urls: Sequence[str]) -> list[_Fetch]:
        options = self.options
        edges: tuple[EdgeAddress | None, ...] = options.edge_ips or (None,)
        jobs = [
            (url, edge, encoding)
            for url in dict.fromkeys(urls)
            for edge in edges
            for encoding in options.encodings
        ]
        results: list[_Fetch] = []
        pending = iter(jobs)

        async def worker(client: httpx.AsyncClient) -> None:
            for url, edge, encoding in pending:  # shared iterator: each job is taken once
                results.append(await self._fetch(client, url, edge, encoding))

        workers = max(1, min(options.concurrency, len(jobs)))
        await asyncio.gather(*(worker(client) for _ in range(workers)))
        return results

    async def _fetch(
        self, client: httpx.AsyncClient, url: str, edge: EdgeAddress | None, encoding: str
    ) -> _Fetch:
        headers = player_headers(self.options.user_agent, encoding, self.options.referer)
        try:
            request = edge_request(client, url, headers, edge)
            response = await client.send(request, stream=True)
            try:
                # Raw bytes: the body is only read so that the edge stores all of it.
                async for chunk in response.aiter_raw():
                    if self.bandwidth is not None:
                        await self.bandwidth.take(len(chunk))
            finally:
                await response.aclose()
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return _Fetch(url, edge, encoding, error=f"unusable URL: {exc}", unusable=True)
        except httpx.HTTPError as exc:
            return _Fetch(url, edge, encoding, error=describe_transport_error(exc))
        return _Fetch(
            url,
            edge,
            encoding,
            response.status_code,
            location=response.headers.get("Location"),
            retry_after=_seconds(response.headers.get("Retry-After")),
        )

    def _forget_before(self, cutoff: dt.datetime) -> None:
        while self._tasks:
            oldest = next(iter(self._tasks.values()))
            created = oldest[0].created_at if oldest else None
            if created is None or created >= cutoff:
                return
            self._tasks.popitem(last=False)


def _raise_for_batch(fetches: Sequence[_Fetch], edges: Sequence[EdgeAddress]) -> None:
    """Errors about the whole batch rather than single URLs."""
    limited = [f for f in fetches if f.status == 429]
    if limited:
        # The edge asks us to slow down: back off and warm the batch again
        # (warming twice is harmless).
        raise RateLimited(f"the edge answered 429: {limited[0].describe()}",
                          retry_after=limited[0].retry_after)  # fmt: skip
    attempted = [f for f in fetches if not f.unusable]
    if attempted and all(f.status is None for f in attempted):
        where = ", ".join(str(e) for e in edges) or "the URLs' hosts"
        raise Transient(f"could not reach any edge ({where}): {attempted[0].error}")


def _on_host(url: str, cdn_host: str) -> bool:
    wanted = urlsplit(f"//{cdn_host}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.hostname == wanted.hostname and (wanted.port is None or port == wanted.port)


def _seconds(retry_after: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare from edges: ignored)."""
    if retry_after is None or not retry_after.strip().isdigit():
        return None
    return float(retry_after.strip())


def _outcome(task_id: str, url: str, fetches: Sequence[_Fetch], now: dt.datetime) -> TaskEntry:
    """One URL's state over all its fetches: INVALID, then FAILED, wins over DONE."""
    for state in (TaskState.INVALID, TaskState.FAILED):
        for fetch in fetches:
            if fetch.state is state:
                return TaskEntry(task_id, url, state, fetch.describe(), now)
    return TaskEntry(task_id, url, TaskState.DONE, None, now)


def _build(options: WarmOptions) -> HttpProvider:
    return HttpProvider(options=options)


SPEC = ProviderSpec(
    provider=HttpProvider,
    title="the http provider",
    config=WarmOptions,
    build=_build,
)
