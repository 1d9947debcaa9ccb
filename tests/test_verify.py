"""verify end to end against the sandbox edge on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from cdn_preheat.cachestatus import CacheStatus
from cdn_preheat.edgehttp import EdgeAddress
from cdn_preheat.ledger.base import UrlRecord, UrlState
from cdn_preheat.sandbox.core import EdgeCache, LoopbackServer
from cdn_preheat.sandbox.edge import Edge, EdgeHandler, Vendor
from cdn_preheat.sandbox.origin import Origin
from cdn_preheat.verify import (
    VerifyOptions,
    VerifyTarget,
    gate,
    missed_urls,
    probe_count,
    rendition_key,
    select_sample,
    verify_urls,
)


@dataclass
class EdgeBox:
    """A sandbox edge whose handler also records each request's headers."""

    edge: Edge
    seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def cache(self) -> EdgeCache:
        return self.edge.cache

    @property
    def port(self) -> int:
        return int(self.edge.netloc.rsplit(":", 1)[1])

    def url(self, path: str) -> str:
        return self.edge.url(path)


def _recording_handler(seen: list[dict[str, str]]) -> type[EdgeHandler]:
    class Recording(EdgeHandler):
        def do_GET(self) -> None:
            seen.append({"method": self.command, **{k.lower(): v for k, v in self.headers.items()}})
            super().do_GET()

        do_HEAD = do_GET

    return Recording


@pytest.fixture
def start_edge() -> Iterator[Callable[[Vendor], EdgeBox]]:
    servers: list[LoopbackServer] = []

    def start(vendor: Vendor = "tencent") -> EdgeBox:
        edge = Edge(Origin(videos=2, variants=2, segments=4), EdgeCache(), vendor)
        box = EdgeBox(edge)
        server = LoopbackServer(_recording_handler(box.seen), edge)
        edge.netloc = server.netloc  # what Edge.bind() does, with the recording handler
        servers.append(server.start())
        return box

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def box(start_edge: Callable[[Vendor], EdgeBox]) -> EdgeBox:
    return start_edge("tencent")


def _records(box: EdgeBox, video_id: str) -> list[UrlRecord]:
    def kind(path: str) -> str:
        if path.endswith(".m3u8"):
            return "playlist"
        if path.endswith(".key"):
            return "key"
        return "init" if path.endswith("init.mp4") else "segment"

    paths = box.edge.origin.catalog_paths(video_id)
    return [
        UrlRecord(box.url(p), "http", "global", kind(p), UrlState.DONE, "t", 1, None, None, None)
        for p in dict.fromkeys(paths)
    ]


@pytest.mark.parametrize("vendor", ["tencent", "qiniu", "aliyun"])
def test_prefetched_urls_hit_and_the_rest_miss(
    start_edge: Callable[[Vendor], EdgeBox], vendor: Vendor
) -> None:
    box = start_edge(vendor)
    cached = [box.url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(4)]
    cold = [box.url(f"/vod/demo-1/v1/seg{i}.ts") for i in range(4)]
    for url in cached:
        box.cache.add(url)

    for options in (VerifyOptions(vendor=vendor), VerifyOptions()):  # named, then detected
        report = verify_urls(cached + cold, options=options)
        status = {r.url: r.status for r in report.results}
        assert all(status[u] is CacheStatus.HIT for u in cached)
        assert all(status[u] is CacheStatus.MISS for u in cold)
        assert {r.status_code for r in report.results} == {206}
        assert {r.header for r in report.results} == {box.edge.cache_header(True).popitem()[0]}
    assert missed_urls(report) == cold


def test_verifying_does_not_warm_and_sends_one_byte_gets_as_a_player(box: EdgeBox) -> None:
    urls = [box.url("/vod/demo-1/master.m3u8"), box.url("/vod/demo-1/v0/seg0.ts")]
    options = VerifyOptions(referer="https://player.example/watch")
    first = verify_urls(urls, options=options)
    second = verify_urls(urls, options=options)

    assert [r.status for r in first.results + second.results] == [CacheStatus.MISS] * 4
    assert len(box.cache) == 0
    assert len(box.seen) == 4
    for request in box.seen:
        assert request["method"] == "GET"
        assert request["range"] == "bytes=0-0"
        assert request["referer"] == "https://player.example/watch"
        assert request["user-agent"].startswith("Mozilla/5.0")
        assert request["accept-encoding"] == "gzip, deflate, br"


def test_pinning_to_an_edge_ip_keeps_the_url_host(box: EdgeBox) -> None:
    path = "/vod/demo-1/v0/seg1.ts"
    box.cache.add(box.url(path))
    # A name that resolves nowhere: only the pinned address can answer it.
    url = f"http://cdn.example.invalid:{box.port}{path}"
    report = verify_urls([url], options=VerifyOptions(edge_ips=(EdgeAddress("127.0.0.1"),)))

    (result,) = report.results
    assert (result.url, result.edge_ip, result.error) == (url, "127.0.0.1", None)
    assert result.status is CacheStatus.HIT
    assert box.seen[0]["host"] == f"cdn.example.invalid:{box.port}"


def test_each_listed_edge_is_probed(start_edge: Callable[[Vendor], EdgeBox]) -> None:
    warm, cold = start_edge("tencent"), start_edge("tencent")
    path = "/vod/demo-2/v1/seg0.ts"
    warm.cache.add(warm.url(path))
    edges = (EdgeAddress("127.0.0.1", warm.port), EdgeAddress("127.0.0.1", cold.port))
    report = verify_urls(
        [f"http://cdn.example.invalid{path}"], options=VerifyOptions(edge_ips=edges)
    )

    assert [r.status for r in report.results] == [CacheStatus.HIT, CacheStatus.MISS]
    assert len(warm.seen) == len(cold.seen) == 1


def test_hit_ratio_per_rendition_and_per_video(box: EdgeBox) -> None:
    targets = select_sample(_records(box, "demo-1"), None, video_id="demo-1")
    targets += select_sample(_records(box, "demo-2"), None, video_id="demo-2")
    for target in targets:
        if "/demo-1/v0/" in target.url:
            box.cache.add(target.url)
    report = verify_urls(targets)

    renditions = report.by_rendition()
    assert renditions[box.url("/vod/demo-1/v0/")].ratio == 1.0
    assert renditions[box.url("/vod/demo-1/v0/")].total == 5  # playlist + 4 segments
    assert renditions[box.url("/vod/demo-1/v1/")].ratio == 0.0
    videos = report.by_video()
    assert videos["demo-1"].hits == 5
    assert videos["demo-2"].hits == 0
    assert videos["demo-2"].misses == videos["demo-2"].total > 0
    assert report.overall.hits == 5


def test_a_probe_that_gets_no_answer_is_reported_not_raised(box: EdgeBox) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    targets = [
        VerifyTarget(f"http://127.0.0.1:{closed_port}/vod/demo-1/v0/seg0.ts", "r"),
        VerifyTarget(box.url("/vod/demo-1/v0/seg0.ts"), "r"),
    ]
    report = verify_urls(targets, options=VerifyOptions(timeout=5))

    dead, alive = report.results
    assert dead.error is not None and "connect" in dead.error
    assert dead.status_code is None and dead.status is CacheStatus.UNKNOWN
    assert alive.error is None and alive.status is CacheStatus.MISS
    ratio = report.by_rendition()["r"]
    assert (ratio.misses, ratio.errors, ratio.ratio) == (1, 1, 0.0)
    assert missed_urls(report) == [alive.url]


def test_answers_that_are_not_the_file_are_not_requeued(box: EdgeBox) -> None:
    missing = box.url("/vod/demo-1/v0/seg99.ts")
    report = verify_urls([missing])
    (result,) = report.results
    assert (result.status_code, result.status) == (404, CacheStatus.MISS)
    assert missed_urls(report) == []


# -- sampling ---------------------------------------------------------------------------


def test_sample_always_holds_playlists_and_the_start_of_every_rendition(box: EdgeBox) -> None:
    records = _records(box, "demo-2")  # audio, subtitles and keys too
    sample = select_sample(records, 0, seed=1, video_id="demo-2")
    urls = [t.url for t in sample]

    playlists = [r.url for r in records if r.kind == "playlist"]
    assert set(playlists) <= set(urls)
    for rendition in ("v0", "v1", "audio/en", "subs/en"):
        first = box.url(f"/vod/demo-2/{rendition}/seg0.")
        assert any(u.startswith(first) for u in urls), rendition
        assert not any(u.startswith(box.url(f"/vod/demo-2/{rendition}/seg1.")) for u in urls)
    assert urls == [r.url for r in records if r.url in set(urls)]  # records' order
    assert {t.video_id for t in sample} == {"demo-2"}
    assert all(t.rendition == rendition_key(t.url) for t in sample)


def test_sample_is_deterministic_per_seed_and_sized(box: EdgeBox) -> None:
    records = _records(box, "demo-1")
    base = len(select_sample(records, 0))
    first = select_sample(records, base + 3, seed=7)
    assert first == select_sample(records, base + 3, seed=7)
    assert len(first) == base + 3
    draws = {tuple(t.url for t in select_sample(records, base + 3, seed=s)) for s in range(10)}
    assert len(draws) > 1
    assert len(select_sample(records, None)) == len(records)
    assert len(select_sample(records, 10_000)) == len(records)


def test_sample_leaves_out_urls_that_were_never_pushed(box: EdgeBox) -> None:
    records = _records(box, "demo-1")
    now = dt.datetime.now(dt.UTC)
    skipped = UrlRecord("http://other.example/x.ts", "http", "global", "segment",
                        UrlState.SKIPPED, None, 0, "foreign host", None, None)  # fmt: skip
    invalid = UrlRecord(box.url("/vod/demo-1/gone.m3u8"), "http", "global", "playlist",
                        UrlState.INVALID, "t", 1, "404", now, None)  # fmt: skip
    urls = {t.url for t in select_sample([skipped, invalid, *records], None)}
    assert skipped.url not in urls and invalid.url not in urls
    assert len(urls) == len(records)


# -- two layers: edge hits, upper-layer hits, misses -------------------------------------


@pytest.mark.parametrize("vendor", ["tencent", "aliyun", "qiniu"])
def test_upper_layer_hits_count_as_cached_and_are_never_requeued(
    start_edge: Callable[[Vendor], EdgeBox], vendor: Vendor
) -> None:
    box = start_edge(vendor)
    at_edge = box.url("/vod/demo-1/v0/seg0.ts")
    upper = [box.url(f"/vod/demo-1/v0/seg{i}.ts") for i in (1, 2)]
    cold = box.url("/vod/demo-1/v0/seg3.ts")
    box.cache.add(at_edge)
    for url in upper:
        box.cache.fill(url, "upper")  # where Tencent mainland and Alibaba prefetch

    report = verify_urls([at_edge, *upper, cold], options=VerifyOptions(vendor=vendor))

    assert [r.status for r in report.results] == [
        CacheStatus.HIT, CacheStatus.UPPER, CacheStatus.UPPER, CacheStatus.MISS,
    ]  # fmt: skip
    overall = report.overall
    assert (overall.hits, overall.upper, overall.misses, overall.cached) == (1, 2, 1, 3)
    assert (overall.ratio, overall.edge_ratio) == (0.75, 0.25)
    assert missed_urls(report) == [cold]
    assert gate(report, 0.75).passed
    failed = gate(report, 1.0)
    assert not failed.passed
    assert "3 of 4 probes were cached (75.0%)" in failed.reason


def test_every_probe_reports_progress_once(box: EdgeBox) -> None:
    targets = select_sample(_records(box, "demo-1"), None, video_id="demo-1")
    steps: list[int] = []
    edges = (EdgeAddress("127.0.0.1", box.port), EdgeAddress("127.0.0.1", box.port))
    options = VerifyOptions(edge_ips=edges)
    report = verify_urls(targets, options=options, on_progress=steps.append)
    assert len(steps) == len(report.results) == probe_count(targets, options) == 2 * len(targets)
    assert set(steps) == {1}


def test_the_gate_fails_on_a_probe_without_answer_and_on_nothing_probed(box: EdgeBox) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    url = box.url("/vod/demo-1/v0/seg0.ts")
    box.cache.add(url)
    report = verify_urls([url, f"http://127.0.0.1:{closed_port}/x.ts"])
    result = gate(report, 0.5)
    assert (report.overall.ratio, result.passed) == (0.5, False)
    assert "1 probes got no answer" in result.reason
    assert not gate(verify_urls([]), 0.0).passed


def test_an_edge_that_trickles_its_answer_ends_the_probe_at_the_timeout() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from scripted_origin import Reply, ScriptedOrigin

    with ScriptedOrigin() as edge:
        # A 206 whose body trickles: 40 bytes, one every 0.3 s, no read timeout ever tripped.
        edge.script("/slow.ts", Reply(b"x" * 40, 206, "video/mp2t", {"X-Cache": "HIT"}, drip=0.3))
        options = VerifyOptions(timeout=1.0, vendor="tencent")
        report = verify_urls([edge.url("/slow.ts")], options=options)
        for _ in range(200):  # the edge notices the closed connection at its next write
            if "/slow.ts" in edge.dripped:
                break
            time.sleep(0.1)
    [result] = report.results
    assert result.error is None and result.status_code == 206  # the verdict was in hand
    assert edge.dripped["/slow.ts"] < 40  # the probe hung up: it did not wait for the trickle
