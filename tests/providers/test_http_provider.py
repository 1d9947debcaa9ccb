"""The HTTP warm provider against the sandbox edge on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from cdn_preheat.cachestatus import CacheStatus
from cdn_preheat.config import load_settings
from cdn_preheat.edgehttp import EdgeAddress
from cdn_preheat.errors import BatchTooLarge, DomainError, ProviderError, RateLimited, Transient
from cdn_preheat.providers import make_provider
from cdn_preheat.providers.base import TaskState
from cdn_preheat.providers.http import HttpProvider, WarmOptions
from cdn_preheat.sandbox.core import EdgeCache, LoopbackServer
from cdn_preheat.sandbox.edge import Edge, EdgeHandler
from cdn_preheat.sandbox.origin import Origin
from cdn_preheat.throttle import TokenBucket
from cdn_preheat.verify import verify_urls

SEGMENTS = [f"/vod/demo-1/v0/seg{i}.ts" for i in range(4)]


class RecordingEdge(Edge):
    """The sandbox edge, also keeping (method, path, Accept-Encoding, Range) per request."""

    def __init__(self) -> None:
        super().__init__(Origin(videos=2, variants=2, segments=4), EdgeCache(), "tencent")
        self.seen: list[tuple[str, str, str | None, str | None]] = []


class RecordingHandler(EdgeHandler):
    def do_GET(self) -> None:
        edge: RecordingEdge = self.server.app  # type: ignore[attr-defined]
        headers = self.headers
        edge.seen.append((self.command, self.path, headers["Accept-Encoding"], headers["Range"]))
        super().do_GET()


@pytest.fixture
def start_edge() -> Iterator[Callable[[], RecordingEdge]]:
    servers: list[LoopbackServer] = []

    def start() -> RecordingEdge:
        edge = RecordingEdge()
        server = LoopbackServer(RecordingHandler, edge)
        edge.netloc = server.netloc  # what Edge.bind() does, with the recording handler
        servers.append(server.start())
        return edge

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def edge(start_edge: Callable[[], RecordingEdge]) -> RecordingEdge:
    return start_edge()


def _port(edge: Edge) -> int:
    return int(edge.netloc.rsplit(":", 1)[1])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_warming_through_the_edge_makes_the_next_range_get_a_hit(edge: RecordingEdge) -> None:
    urls = [edge.url(p) for p in SEGMENTS]
    assert {r.status for r in verify_urls(urls).results} == {CacheStatus.MISS}

    provider = HttpProvider(options=WarmOptions())
    result = provider.submit(urls)

    assert result.accepted == tuple(urls)
    entries = provider.task_status([result.task_id])
    assert [(e.url, e.state) for e in entries] == [(u, TaskState.DONE) for u in urls]
    assert {r.status for r in verify_urls(urls).results} == {CacheStatus.HIT}
    warms = [s for s in edge.seen if s[3] is None]  # full GETs, no Range
    assert sorted(s[1] for s in warms) == sorted(SEGMENTS)
    assert {s[0] for s in warms} == {"GET"}


def test_a_404_is_invalid_with_the_status_and_the_rest_done(edge: RecordingEdge) -> None:
    missing = edge.url("/vod/demo-1/v0/seg404.ts")
    present = edge.url(SEGMENTS[0])
    provider = HttpProvider(options=WarmOptions())
    result = provider.submit([missing, present])

    by_url = {e.url: e for e in provider.task_status([result.task_id])}
    assert by_url[missing].state is TaskState.INVALID
    assert by_url[missing].reason is not None and "404" in by_url[missing].reason
    assert by_url[present].state is TaskState.DONE


def _answering(status: int, headers: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Fixed(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    return Fixed


@pytest.fixture
def answer() -> Iterator[Callable[[int, dict[str, str]], str]]:
    """Start a server answering every GET with one status; its base URL."""
    servers: list[LoopbackServer] = []

    def start(status: int, headers: dict[str, str]) -> str:
        servers.append(LoopbackServer(_answering(status, headers), None).start())
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("status", [503, 500, 408])
def test_5xx_and_timeouts_fail_so_that_they_are_retried(
    answer: Callable[[int, dict[str, str]], str], status: int
) -> None:
    provider = HttpProvider(options=WarmOptions())
    result = provider.submit([answer(status, {}) + "/seg0.ts"])
    (entry,) = provider.task_status([result.task_id])
    assert entry.state is TaskState.FAILED
    assert entry.reason is not None and str(status) in entry.reason


def test_a_429_from_the_edge_rate_limits_the_batch(
    answer: Callable[[int, dict[str, str]], str],
) -> None:
    provider = HttpProvider(options=WarmOptions())
    with pytest.raises(RateLimited) as caught:
        provider.submit([answer(429, {"Retry-After": "7"}) + "/seg0.ts"])
    assert caught.value.retry_after == 7.0


def test_a_redirect_is_invalid_and_names_the_target(
    answer: Callable[[int, dict[str, str]], str],
) -> None:
    provider = HttpProvider(options=WarmOptions())
    result = provider.submit([answer(302, {"Location": "http://elsewhere.invalid/x.ts"}) + "/x.ts"])
    (entry,) = provider.task_status([result.task_id])
    assert entry.state is TaskState.INVALID
    assert entry.reason is not None and "302 to http://elsewhere.invalid/x.ts" in entry.reason


def test_urls_off_cdn_host_are_refused_before_any_fetch(edge: RecordingEdge) -> None:
    provider = HttpProvider(options=WarmOptions(cdn_host=edge.netloc))
    with pytest.raises(DomainError, match="CDN_HOST"):
        provider.submit([edge.url(SEGMENTS[0]), "http://origin.example.invalid/seg0.ts"])
    assert edge.seen == []
    assert provider.submit([edge.url(SEGMENTS[0])]).task_id


def test_every_accept_encoding_variant_is_fetched(edge: RecordingEdge) -> None:
    urls = [edge.url(p) for p in SEGMENTS[:2]]
    provider = HttpProvider(options=WarmOptions(encodings=("gzip", "identity", "br")))
    provider.submit(urls)

    fetched = sorted((path, encoding) for _, path, encoding, _ in edge.seen)
    expected = sorted((p, e) for p in SEGMENTS[:2] for e in ("gzip", "identity", "br"))
    assert fetched == expected


def test_each_listed_edge_is_warmed_under_the_url_host(
    start_edge: Callable[[], RecordingEdge],
) -> None:
    first, second = start_edge(), start_edge()
    edges = (EdgeAddress("127.0.0.1", _port(first)), EdgeAddress("127.0.0.1", _port(second)))
    urls = [f"http://cdn.example.invalid{p}" for p in SEGMENTS]  # resolvable by no one
    provider = HttpProvider(options=WarmOptions(edge_ips=edges))
    result = provider.submit(urls)

    assert {e.state for e in provider.task_status([result.task_id])} == {TaskState.DONE}
    for edge in (first, second):
        assert all(edge.url(p) in edge.cache for p in SEGMENTS)


class FakeClock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_bandwidth_cap_is_kept_in_bytes_counted(edge: RecordingEdge) -> None:
    clock = FakeClock()
    rate, burst = 50.0, 40.0  # bytes a second; each sandbox segment is ~40 bytes
    bucket = TokenBucket(rate, burst, clock=clock, sleep=clock.sleep)
    provider = HttpProvider(
        options=WarmOptions(encodings=("gzip", "identity"), concurrency=1), bandwidth=bucket
    )
    provider.submit([edge.url(p) for p in SEGMENTS])

    body_bytes = 0
    for path in SEGMENTS:
        found = edge.origin.lookup(path)
        assert found is not None
        body_bytes += 2 * len(found[0])
    assert bucket.consumed == body_bytes
    # The bucket never granted more than burst + rate * (time it made us wait).
    assert bucket.consumed <= burst + rate * clock.now + 1e-9
    assert clock.now > 0


def test_token_bucket_debt_is_paid_in_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, 50.0, clock=clock)
    assert bucket.reserve(50) == 0.0  # the burst
    assert bucket.reserve(100) == pytest.approx(1.0)  # 100 bytes at 100 B/s
    clock.now += 1.0
    assert bucket.reserve(10) == pytest.approx(0.1)
    clock.now += 10.0
    assert bucket.reserve(50) == 0.0  # refilled, capped at the burst
    assert bucket.consumed == 210


def test_no_daily_quota_means_unlimited_not_zero() -> None:
    provider = HttpProvider(options=WarmOptions())
    quota = provider.quota()
    assert quota.unlimited
    assert (quota.total, quota.available) == (None, None)
    assert provider.limits.quota_utc_offset_hours is None
    assert provider.limits.batch_size == 50


def test_connection_refused_by_every_edge_is_transient() -> None:
    dead = (EdgeAddress("127.0.0.1", _closed_port()), EdgeAddress("127.0.0.1", _closed_port()))
    provider = HttpProvider(options=WarmOptions(edge_ips=dead, timeout=5))
    with pytest.raises(Transient, match="could not reach any edge"):
        provider.submit(["http://cdn.example.invalid/vod/demo-1/v0/seg0.ts"])


def test_one_dead_edge_fails_the_urls_it_could_not_warm(edge: RecordingEdge) -> None:
    dead = EdgeAddress("127.0.0.1", _closed_port())
    live = EdgeAddress("127.0.0.1", _port(edge))
    provider = HttpProvider(options=WarmOptions(edge_ips=(live, dead), timeout=5))
    result = provider.submit(["http://cdn.example.invalid" + SEGMENTS[0]])

    (entry,) = provider.task_status([result.task_id])
    assert entry.state is TaskState.FAILED
    assert entry.reason is not None and str(dead) in entry.reason


def test_outcomes_answer_find_submitted_and_unknown_tasks(edge: RecordingEdge) -> None:
    provider = HttpProvider(options=WarmOptions())
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    urls = [edge.url(p) for p in SEGMENTS[:2]]
    result = provider.submit(urls)

    assert provider.find_submitted([*urls, edge.url("/other.ts")], before) == dict.fromkeys(
        urls, result.task_id
    )
    assert provider.find_submitted(urls, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == {}
    assert provider.task_status(["http-unknown"]) == []


def test_batches_over_the_limit_are_refused() -> None:
    provider = HttpProvider(options=WarmOptions())
    with pytest.raises(BatchTooLarge):
        provider.submit([f"http://127.0.0.1:1/{i}.ts" for i in range(51)])


def test_purging_is_not_possible() -> None:
    provider = HttpProvider(options=WarmOptions())
    for call in (
        lambda: provider.purge_urls(["http://cdn.example.invalid/x.ts"]),
        lambda: provider.purge_dirs(["http://cdn.example.invalid/"]),
        lambda: provider.purge_status(["t"]),
    ):
        with pytest.raises(ProviderError, match="cannot purge"):
            call()


def test_selected_by_cdn_provider_http() -> None:
    provider = make_provider(load_settings(cdn_provider="http", _env_file=None))
    assert isinstance(provider, HttpProvider)
    options = provider.options
    assert options == WarmOptions(cdn_host=options.cdn_host, timeout=options.timeout)


def test_one_client_for_the_providers_lifetime_released_by_close(
    edge: RecordingEdge, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cdn_preheat.providers.http as http_module

    made: list[object] = []
    original = http_module.edge_client

    def counting(**kwargs: object) -> object:
        client = original(**kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    monkeypatch.setattr(http_module, "edge_client", counting)
    provider = HttpProvider(options=WarmOptions())
    provider.submit([edge.url(SEGMENTS[0])])
    provider.submit([edge.url(SEGMENTS[1])])
    assert len(made) == 1  # not one per batch

    provider.close()
    provider.close()  # twice is harmless

    assert made[0].is_closed  # type: ignore[attr-defined]
    with pytest.raises(ProviderError, match="closed"):
        provider.submit([edge.url(SEGMENTS[2])])
