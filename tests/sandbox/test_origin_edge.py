"""The sandbox origin's catalog over HTTP, and the edge's cache behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import httpx
import m3u8
import pytest

from cdn_preheat.sandbox.core import EdgeCache
from cdn_preheat.sandbox.edge import Edge
from cdn_preheat.sandbox.origin import Origin, parse_range
from cdn_preheat.sandbox.server import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=6, variants=3, segments=4) as box:
        yield box


def _origin_get(box: Sandbox, path: str, **headers: str) -> httpx.Response:
    return httpx.get(box.endpoints["origin"] + path, headers=headers)


def _playlist_paths(box: Sandbox, path: str) -> set[str]:
    """Every path a playlist references, followed recursively, via the m3u8 library."""
    url = box.endpoints["origin"] + path
    text = httpx.get(url).text
    playlist = m3u8.loads(text, uri=url)
    refs = [p.uri for p in playlist.playlists] + [m.uri for m in playlist.media if m.uri]
    found = {path}
    for ref in refs:
        found |= _playlist_paths(box, urlsplit(urljoin(url, ref)).path)
    for segment in playlist.segments:
        found.add(urlsplit(urljoin(url, segment.uri)).path)
        if segment.init_section is not None:
            found.add(urlsplit(urljoin(url, segment.init_section.uri)).path)
    for key in playlist.keys:
        if key is not None and key.uri:
            found.add(urlsplit(urljoin(url, key.uri)).path)
    return found


@pytest.mark.parametrize("video_id", ["demo-1", "demo-2", "demo-3", "demo-6"])
def test_playlists_reference_exactly_the_catalog(sandbox: Sandbox, video_id: str) -> None:
    referenced = _playlist_paths(sandbox, f"/vod/{video_id}/master.m3u8")
    assert referenced == set(sandbox.origin.catalog_paths(video_id))
    for path in referenced:
        assert _origin_get(sandbox, path).status_code == 200, path


def test_features_follow_the_video_number(sandbox: Sandbox) -> None:
    plain = _origin_get(sandbox, "/vod/demo-1/master.m3u8").text
    rich = _origin_get(sandbox, "/vod/demo-2/master.m3u8").text
    assert "EXT-X-MEDIA" not in plain
    assert "TYPE=AUDIO" in rich and "TYPE=SUBTITLES" in rich
    assert "EXT-X-KEY:METHOD=AES-128" in _origin_get(sandbox, "/vod/demo-2/v0/index.m3u8").text
    fmp4 = _origin_get(sandbox, "/vod/demo-3/v2/index.m3u8").text
    assert '#EXT-X-MAP:URI="init.mp4"' in fmp4 and "seg0.m4s" in fmp4
    assert "EXT-X-MAP" not in _origin_get(sandbox, "/vod/demo-3/v0/index.m3u8").text
    subs = _origin_get(sandbox, "/vod/demo-2/subs/en/seg0.vtt")
    assert subs.text.startswith("WEBVTT") and subs.headers["content-type"] == "text/vtt"


@pytest.mark.parametrize(
    "path",
    [
        "/vod/demo-7/master.m3u8",  # beyond the catalog
        "/vod/demo-1/v3/index.m3u8",  # beyond the variants
        "/vod/demo-1/v0/seg4.ts",  # beyond the segments
        "/vod/demo-1/audio/en/index.m3u8",  # demo-1 has no renditions
        "/vod/demo-1/keys/k0.key",  # nor keys
        "/vod/demo-3/v0/seg0.m4s",  # only the last variant is fMP4
        "/elsewhere.ts",
    ],
)
def test_what_the_catalog_lacks_is_404(sandbox: Sandbox, path: str) -> None:
    assert _origin_get(sandbox, path).status_code == 404
    assert sandbox.origin.lookup(path) is None


def test_content_is_deterministic_and_query_is_ignored(sandbox: Sandbox) -> None:
    first = _origin_get(sandbox, "/vod/demo-1/v0/seg0.ts")
    again = _origin_get(sandbox, "/vod/demo-1/v0/seg0.ts?token=abc")
    other = _origin_get(sandbox, "/vod/demo-1/v0/seg1.ts")
    assert first.content == again.content != other.content
    assert first.content[:1] == b"\x47"
    assert first.headers["content-type"] == "video/mp2t"


def test_range_and_head(sandbox: Sandbox) -> None:
    path = "/vod/demo-1/v0/seg0.ts"
    body = _origin_get(sandbox, path).content
    one = _origin_get(sandbox, path, Range="bytes=0-0")
    assert (one.status_code, one.content) == (206, body[:1])
    assert one.headers["content-range"] == f"bytes 0-0/{len(body)}"
    tail = _origin_get(sandbox, path, Range="bytes=-3")
    assert tail.content == body[-3:]
    assert _origin_get(sandbox, path, Range=f"bytes={len(body)}-").status_code == 416
    head = httpx.head(sandbox.endpoints["origin"] + path)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(body))
    assert head.content == b""


def test_parse_range_edge_cases() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-100", 10) == (2, 9)
    assert parse_range("bytes=5-2", 10) is False
    assert parse_range("bytes=0-1,4-5", 10) is None


def test_custom_files_override_and_remove(sandbox: Sandbox) -> None:
    foreign = "#EXTM3U\n#EXTINF:6,\nhttp://other.example/seg.ts\n#EXT-X-ENDLIST\n"
    sandbox.origin.add_file("/custom/foreign.m3u8", foreign)
    response = _origin_get(sandbox, "/custom/foreign.m3u8")
    assert response.text == foreign
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"

    sandbox.origin.add_file("/vod/demo-1/master.m3u8", "<html>oops</html>", "text/html", status=500)
    assert _origin_get(sandbox, "/vod/demo-1/master.m3u8").status_code == 500
    assert sandbox.origin.lookup("/vod/demo-1/master.m3u8") is None

    sandbox.origin.add_file(
        "/moved.m3u8", b"", status=302, headers={"Location": "/custom/foreign.m3u8"}
    )
    assert (
        httpx.get(sandbox.endpoints["origin"] + "/moved.m3u8", follow_redirects=True).text
        == foreign
    )

    sandbox.origin.remove("/vod/demo-1/v0/seg1.ts")
    assert _origin_get(sandbox, "/vod/demo-1/v0/seg1.ts").status_code == 404
    assert not sandbox.origin.has("/vod/demo-1/v0/seg1.ts")


def test_bench_sized_catalog_is_generated_lazily() -> None:
    origin = Origin(videos=100, variants=4, segments=1000)
    found = origin.lookup("/vod/demo-100/v3/index.m3u8")
    assert found is not None
    assert found[0].count(b"#EXTINF") == 1000
    assert origin.lookup("/vod/demo-100/v3/seg999.ts") is not None
    assert origin.lookup("/vod/demo-100/v3/seg1000.ts") is None
    assert len(origin.catalog_paths("demo-1")) == 1 + 4 + 4 * 1000


# -- edge -------------------------------------------------------------------------


def _edge_get(box: Sandbox, path: str, **headers: str) -> httpx.Response:
    return httpx.get(box.edge_url(path), headers=headers)


def test_edge_miss_then_full_get_fills_then_hit(sandbox: Sandbox) -> None:
    path = "/vod/demo-1/v0/seg0.ts"
    probe = _edge_get(sandbox, path, Range="bytes=0-0")
    assert probe.headers["x-cache-lookup"] == "Cache Miss"
    assert sandbox.edge_url(path) not in sandbox.cache  # a ranged probe does not warm

    first = _edge_get(sandbox, path)
    assert first.headers["x-cache-lookup"] == "Cache Miss"
    assert first.content == sandbox.origin.lookup(path)[0]  # type: ignore[index]
    second = _edge_get(sandbox, path, Range="bytes=0-0")
    assert second.status_code == 206
    assert second.headers["x-cache-lookup"] == "Hit From MemCache"

    hits = [(r.range, r.hit) for r in sandbox.edge.requests]
    assert hits == [("bytes=0-0", False), (None, False), ("bytes=0-0", True)]


def test_edge_cache_key_includes_the_query(sandbox: Sandbox) -> None:
    sandbox.cache.add(sandbox.edge_url("/vod/demo-1/v0/seg0.ts?token=a"))
    assert (
        _edge_get(sandbox, "/vod/demo-1/v0/seg0.ts?token=a", Range="bytes=0-0")
        .headers["x-cache-lookup"]
        .startswith("Hit")
    )
    assert (
        _edge_get(sandbox, "/vod/demo-1/v0/seg0.ts", Range="bytes=0-0").headers["x-cache-lookup"]
        == "Cache Miss"
    )


def test_edge_404_for_what_the_origin_lacks(sandbox: Sandbox) -> None:
    response = _edge_get(sandbox, "/vod/demo-1/v0/seg99.ts")
    assert response.status_code == 404
    assert len(sandbox.cache) == 0
    assert sandbox.edge.requests[-1].status == 404


@pytest.mark.parametrize(
    ("vendor", "header", "hit", "miss"),
    [
        ("qiniu", "x-qnm-cache", "Hit", "Miss"),
        ("edgeone", "eo-cache-status", "HIT", "MISS"),  # edgeone.ai/document/54212
        ("aliyun", "x-cache", "HIT TCP_MEM_HIT dirn:-2:-2", "MISS TCP_MISS dirn:-2:-2"),
    ],
)
def test_edge_vendor_headers(vendor: str, header: str, hit: str, miss: str) -> None:
    origin, cache = Origin(videos=1, segments=2), EdgeCache()
    edge = Edge(origin, cache, vendor)  # type: ignore[arg-type]
    server = edge.bind().start()
    try:
        url = edge.url("/vod/demo-1/master.m3u8")
        assert httpx.get(url, headers={"Range": "bytes=0-0"}).headers[header] == miss
        cache.add(url)
        assert httpx.get(url, headers={"Range": "bytes=0-0"}).headers[header] == hit
    finally:
        server.stop()
