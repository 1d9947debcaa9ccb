"""Expansion of HLS playlists, against a scripted loopback origin."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest

from cdn_preheat.errors import PlaylistError
from cdn_preheat.hls import (
    ExpandedUrl,
    ExpandOptions,
    Expansion,
    UrlKind,
    UrlList,
    decode_playlist,
    expand,
    expand_many,
    expand_playlist,
    make_client,
    substitute_variables,
)
from scripted_origin import Reply, ScriptedOrigin

FAST = ExpandOptions(retry_backoff=0.01, timeout=5.0)
CDN = "cdn.example.com"

MASTER = """#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",DEFAULT=YES,URI="audio/en.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",URI="subs/en.m3u8"
#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="CC1",INSTREAM-ID="CC1"
#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,AUDIO="aud",SUBTITLES="subs"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,AUDIO="aud",SUBTITLES="subs"
360p/index.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI="720p/iframes.m3u8"
"""


def media(*segments: str, endlist: bool = True, head: str = "") -> str:
    """A media playlist with 4-second segments."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4", head.strip()]
    for segment in segments:
        lines += ["#EXTINF:4.0,", segment]
    if endlist:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(line for line in lines if line) + "\n"


@pytest.fixture(scope="module")
def shared_origin() -> Iterator[ScriptedOrigin]:
    # One server per module: stopping one waits out serve_forever's poll interval.
    with ScriptedOrigin() as server:
        yield server


@pytest.fixture
def origin(shared_origin: ScriptedOrigin) -> ScriptedOrigin:
    shared_origin.reset()
    return shared_origin


def urls(expansion: Expansion) -> list[str]:
    return [item.url for item in expansion.urls]


def paths(expansion: Expansion, origin: ScriptedOrigin) -> list[str]:
    """Output URLs with the origin's scheme and host cut off."""
    prefix = origin.url("")
    return [url.removeprefix(prefix) for url in urls(expansion)]


def skipped(expansion: Expansion) -> dict[str, str]:
    return {item.url: item.reason for item in expansion.skipped}


def serve_video(origin: ScriptedOrigin) -> None:
    origin.playlist("/v/master.m3u8", MASTER)
    origin.playlist("/v/audio/en.m3u8", media("a0.aac", "a1.aac"))
    origin.playlist("/v/subs/en.m3u8", media("s0.vtt"))
    origin.playlist("/v/720p/index.m3u8", media("s0.ts", "s1.ts", "s2.ts"))
    origin.playlist("/v/360p/index.m3u8", media("s0.ts", "s1.ts"))
    origin.playlist(
        "/v/720p/iframes.m3u8",
        media(head="#EXT-X-I-FRAMES-ONLY").replace("#EXT-X-ENDLIST", "")
        + "#EXT-X-BYTERANGE:500@0\n#EXTINF:4,\ns0.ts\n#EXT-X-BYTERANGE:500@0\n#EXTINF:4,\ns1.ts\n"
        + "#EXT-X-ENDLIST\n",
    )


# -- masters -----------------------------------------------------------------------


def test_master_expands_playlists_first_then_each_rendition_in_playback_order(
    origin: ScriptedOrigin,
) -> None:
    serve_video(origin)
    expansion = expand(origin.url("/v/master.m3u8"), FAST)
    assert paths(expansion, origin) == [
        "/v/master.m3u8",
        "/v/audio/en.m3u8",
        "/v/subs/en.m3u8",
        "/v/720p/index.m3u8",
        "/v/360p/index.m3u8",
        "/v/720p/iframes.m3u8",
        "/v/audio/a0.aac",
        "/v/audio/a1.aac",
        "/v/subs/s0.vtt",
        "/v/720p/s0.ts",
        "/v/720p/s1.ts",
        "/v/720p/s2.ts",
        "/v/360p/s0.ts",
        "/v/360p/s1.ts",
    ]
    assert expansion.skipped == []
    assert expansion.live_playlists == []
    assert not expansion.is_live
    assert expansion.source == origin.url("/v/master.m3u8")


def test_kinds_renditions_indexes_and_durations(origin: ScriptedOrigin) -> None:
    serve_video(origin)
    expansion = expand(origin.url("/v/master.m3u8"), FAST)
    by_url = {item.url: item for item in expansion.urls}
    master = origin.url("/v/master.m3u8")
    variant = origin.url("/v/720p/index.m3u8")
    assert by_url[master] == ExpandedUrl(master, UrlKind.PLAYLIST, master, -1, None)
    assert by_url[variant] == ExpandedUrl(variant, UrlKind.PLAYLIST, variant, -1, None)
    assert by_url[origin.url("/v/720p/s2.ts")] == ExpandedUrl(
        origin.url("/v/720p/s2.ts"), UrlKind.SEGMENT, variant, 2, 4.0
    )
    assert by_url[origin.url("/v/audio/a1.aac")].rendition == origin.url("/v/audio/en.m3u8")


def test_renditions_come_in_the_order_the_master_lists_them(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/m.m3u8",
        "#EXTM3U\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1\nb.m3u8\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="x",URI="a.m3u8"\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=2\nc.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=3\nb.m3u8\n",
    )
    for name in "abc":
        origin.playlist(f"/{name}.m3u8", media(f"{name}.ts"))
    expansion = expand(origin.url("/m.m3u8"), FAST)
    assert paths(expansion, origin) == [
        "/m.m3u8",
        "/b.m3u8",
        "/a.m3u8",
        "/c.m3u8",
        "/b.ts",
        "/a.ts",
        "/c.ts",
    ]
    assert origin.hits("/b.m3u8") == 1


def test_image_playlists_are_renditions_too(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/m.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"
        '#EXT-X-IMAGE-STREAM-INF:BANDWIDTH=1,RESOLUTION=640x360,URI="thumbs.m3u8"\n',
    )
    origin.playlist("/v.m3u8", media("s.ts"))
    origin.playlist("/thumbs.m3u8", media("t0.jpg", head="#EXT-X-IMAGES-ONLY"))
    expansion = expand(origin.url("/m.m3u8"), FAST)
    assert paths(expansion, origin) == ["/m.m3u8", "/v.m3u8", "/thumbs.m3u8", "/s.ts", "/t0.jpg"]


def test_session_key_over_https_is_kept_and_skd_is_reported(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/m.m3u8",
        "#EXTM3U\n"
        '#EXT-X-SESSION-KEY:METHOD=AES-128,URI="keys/k1.bin"\n'
        '#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://fairplay-1",KEYFORMAT="com.apple.streamingkeydelivery"\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n",
    )
    origin.playlist("/v.m3u8", media("s.ts"))
    expansion = expand(origin.url("/m.m3u8"), FAST)
    key = next(item for item in expansion.urls if item.kind is UrlKind.KEY)
    assert key == ExpandedUrl(
        origin.url("/keys/k1.bin"), UrlKind.KEY, origin.url("/m.m3u8"), -1, None
    )
    assert paths(expansion, origin) == ["/m.m3u8", "/v.m3u8", "/keys/k1.bin", "/s.ts"]
    assert skipped(expansion) == {"skd://fairplay-1": "unsupported scheme skd"}


def test_nested_masters_are_bounded_by_max_depth(origin: ScriptedOrigin) -> None:
    for level in range(4):
        origin.playlist(
            f"/m{level}.m3u8", f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nm{level + 1}.m3u8\n"
        )
    origin.playlist("/m4.m3u8", media("s.ts"))
    deep = expand(origin.url("/m0.m3u8"), FAST)
    assert paths(deep, origin)[-1] == "/s.ts"
    shallow = expand(origin.url("/m0.m3u8"), ExpandOptions(max_depth=2, retry_backoff=0.01))
    assert paths(shallow, origin) == ["/m0.m3u8", "/m1.m3u8", "/m2.m3u8"]
    assert skipped(shallow) == {origin.url("/m3.m3u8"): "nested deeper than max_depth 2"}


def test_a_playlist_that_references_itself_or_a_cycle_terminates(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/a.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nb.m3u8\n",
    )
    origin.playlist(
        "/b.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\nc.m3u8\n",
    )
    origin.playlist("/c.m3u8", media("c.ts", "c.m3u8"))
    expansion = expand(origin.url("/a.m3u8"), FAST)
    assert paths(expansion, origin) == ["/a.m3u8", "/b.m3u8", "/c.m3u8", "/c.ts"]
    assert [origin.hits(f"/{name}.m3u8") for name in "abc"] == [1, 1, 1]


# -- media playlists ---------------------------------------------------------------


def test_fmp4_init_sections_precede_their_segments(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/v.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n"
        '#EXT-X-MAP:URI="init-a.mp4"\n#EXTINF:4,\na0.m4s\n#EXTINF:4,\na1.m4s\n'
        '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init-b.mp4",BYTERANGE="800@0"\n#EXTINF:4,\nb0.m4s\n'
        "#EXT-X-ENDLIST\n",
    )
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert [(item.url.rpartition("/")[2], item.kind, item.index) for item in expansion.urls] == [
        ("v.m3u8", UrlKind.PLAYLIST, -1),
        ("init-a.mp4", UrlKind.INIT, -1),
        ("a0.m4s", UrlKind.SEGMENT, 0),
        ("a1.m4s", UrlKind.SEGMENT, 1),
        ("init-b.mp4", UrlKind.INIT, -1),
        ("b0.m4s", UrlKind.SEGMENT, 2),
    ]


def test_aes_keys_over_http_are_kept_other_schemes_reported(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/v.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n"
        '#EXT-X-KEY:METHOD=AES-128,URI="https://KEYS.example.com/k1",IV=0x1\n#EXTINF:4,\ns0.ts\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="data:text/plain;base64,AAECAwQFBgcICQoLDA0ODw=="\n'
        "#EXTINF:4,\ns1.ts\n"
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://key-2",KEYFORMAT="com.apple.streamingkeydelivery"\n'
        "#EXTINF:4,\ns2.ts\n#EXT-X-ENDLIST\n",
    )
    expansion = expand(origin.url("/v.m3u8"), ExpandOptions(allow_foreign_hosts=True))
    assert paths(expansion, origin) == [
        "/v.m3u8",
        "https://keys.example.com/k1",
        "/s0.ts",
        "/s1.ts",
        "/s2.ts",
    ]
    assert skipped(expansion) == {
        "data:text/plain;base64,AAECAwQFBgcICQoLDA0ODw==": "unsupported scheme data",
        "skd://key-2": "unsupported scheme skd",
    }


def test_every_key_of_a_segment_is_kept_not_only_the_last(origin: ScriptedOrigin) -> None:
    # m3u8's segment.key keeps only the last EXT-X-KEY before a segment.
    origin.playlist(
        "/v.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n"
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k/identity-1.bin",KEYFORMAT="identity"\n'
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k/widevine-1",KEYFORMAT="urn:uuid:edef8ba9"\n'
        "#EXTINF:4,\ns0.ts\n#EXTINF:4,\ns1.ts\n"
        '#EXT-X-KEY:METHOD=AES-128,URI="k/rotated-2.bin"\n#EXTINF:4,\ns2.ts\n'
        "#EXT-X-ENDLIST\n",
    )
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert paths(expansion, origin) == [
        "/v.m3u8",
        "/k/identity-1.bin",
        "/k/widevine-1",
        "/s0.ts",
        "/s1.ts",
        "/k/rotated-2.bin",
        "/s2.ts",
    ]
    assert {item.kind for item in expansion.urls if "/k/" in item.url} == {UrlKind.KEY}


def test_byte_range_segments_sharing_one_file_give_one_url(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/v.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-VERSION:4\n"
        + "".join(f"#EXTINF:4,\n#EXT-X-BYTERANGE:1000@{n * 1000}\nall.ts\n" for n in range(5))
        + "#EXTINF:4,\n#EXT-X-BYTERANGE:1000\nother.ts\n#EXT-X-ENDLIST\n",
    )
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert paths(expansion, origin) == ["/v.m3u8", "/all.ts", "/other.ts"]
    assert [item.index for item in expansion.urls] == [-1, 0, 5]


def test_iframe_playlist_segments_shared_with_the_variant_appear_once(
    origin: ScriptedOrigin,
) -> None:
    serve_video(origin)
    expansion = expand(origin.url("/v/master.m3u8"), FAST)
    assert len(urls(expansion)) == len(set(urls(expansion)))
    s0 = next(item for item in expansion.urls if item.url.endswith("/720p/s0.ts"))
    assert s0.rendition == origin.url("/v/720p/index.m3u8")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("../x.ts", "/v/x.ts"),
        ("/abs/x.ts", "/abs/x.ts"),
        ("seg.ts?token=x", "/v/d/seg.ts?token=x"),
        ("?seg=1", "/v/d/index.m3u8?seg=1"),
        ("sub dir/片.ts", "/v/d/sub%20dir/%E7%89%87.ts"),
        (".//x.ts", "/v/d//x.ts"),
        ("a%20b.ts", "/v/d/a%20b.ts"),
    ],
)
def test_segment_references_resolve_like_a_browser(
    origin: ScriptedOrigin, line: str, expected: str
) -> None:
    origin.playlist("/v/d/index.m3u8", media(line))
    expansion = expand(origin.url("/v/d/index.m3u8?sig=1"), FAST)
    assert paths(expansion, origin)[1:] == [expected]


def test_full_url_and_scheme_relative_lines(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/v.m3u8",
        media(
            origin.url("/full/a.ts"),
            f"//{origin.netloc}/sr/b.ts",
            "https://cdn2.example.com/c.ts",
            "//cdn2.example.com/d.ts",
        ),
    )
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert paths(expansion, origin) == ["/v.m3u8", "/full/a.ts", "/sr/b.ts"]
    assert skipped(expansion) == {
        "https://cdn2.example.com/c.ts": "foreign host cdn2.example.com",
        "http://cdn2.example.com/d.ts": "foreign host cdn2.example.com",
    }


def test_cdn_host_rewrites_playlist_host_urls_and_keeps_others_when_allowed(
    origin: ScriptedOrigin,
) -> None:
    origin.playlist(
        "/v.m3u8", media("a.ts?t=1", "https://cdn2.example.com/b.ts", f"http://{CDN}/c.ts")
    )
    options = ExpandOptions(cdn_host=CDN, allow_foreign_hosts=True)
    expansion = expand(origin.url("/v.m3u8"), options)
    assert urls(expansion) == [
        f"http://{CDN}/v.m3u8",
        f"http://{CDN}/a.ts?t=1",
        "https://cdn2.example.com/b.ts",
        f"http://{CDN}/c.ts",
    ]
    assert expansion.urls[1].rendition == f"http://{CDN}/v.m3u8"
    strict = expand(origin.url("/v.m3u8"), ExpandOptions(cdn_host=CDN))
    assert urls(strict) == [f"http://{CDN}/v.m3u8", f"http://{CDN}/a.ts?t=1", f"http://{CDN}/c.ts"]
    assert skipped(strict) == {"https://cdn2.example.com/b.ts": "foreign host cdn2.example.com"}


def test_a_variant_on_a_foreign_host_is_reported_not_fetched(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/m.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://127.0.0.2:1/v.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2\nv.m3u8\n",
    )
    origin.playlist("/v.m3u8", media("s.ts"))
    expansion = expand(origin.url("/m.m3u8"), FAST)
    assert paths(expansion, origin) == ["/m.m3u8", "/v.m3u8", "/s.ts"]
    assert skipped(expansion) == {"http://127.0.0.2:1/v.m3u8": "foreign host 127.0.0.2:1"}


def test_live_playlists_are_reported(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/m.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlive.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nvod.m3u8\n",
    )
    origin.playlist("/live.m3u8", media("l0.ts", "l1.ts", endlist=False))
    origin.playlist("/vod.m3u8", media("v0.ts"))
    expansion = expand(origin.url("/m.m3u8"), FAST)
    assert expansion.live_playlists == [origin.url("/live.m3u8")]
    assert expansion.is_live
    assert paths(expansion, origin)[-3:] == ["/l0.ts", "/l1.ts", "/v0.ts"]


def test_gap_segments_and_gap_parts_are_skipped(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/v.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1.0\n"
        "#EXTINF:4,\ns0.ts\n#EXT-X-GAP\n#EXTINF:4,\ns1.ts\n"
        '#EXT-X-PART:DURATION=1.0,URI="p2.0.m4s"\n'
        '#EXT-X-PART:DURATION=1.0,URI="p2.1.m4s",GAP=YES\n'
        "#EXTINF:2,\ns2.ts\n"
        '#EXT-X-PART:DURATION=1.0,URI="p3.0.m4s",INDEPENDENT=YES\n',
    )
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert [(item.url.rpartition("/")[2], item.kind) for item in expansion.urls] == [
        ("v.m3u8", UrlKind.PLAYLIST),
        ("s0.ts", UrlKind.SEGMENT),
        ("p2.0.m4s", UrlKind.PART),
        ("s2.ts", UrlKind.SEGMENT),
        ("p3.0.m4s", UrlKind.PART),
    ]
    assert skipped(expansion) == {
        origin.url("/s1.ts"): "gap segment",
        origin.url("/p2.1.m4s"): "gap part",
    }
    assert expansion.is_live


def test_tags_players_fetch_per_session_are_not_output(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/m.m3u8",
        "#EXTM3U\n"
        '#EXT-X-CONTENT-STEERING:SERVER-URI="steering.json",PATHWAY-ID="A"\n'
        '#EXT-X-SESSION-DATA:DATA-ID="com.example.meta",URI="meta.json"\n'
        '#EXT-X-SESSION-DATA:DATA-ID="com.example.title",VALUE="Hello"\n'
        "#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nw.m3u8\n",
    )
    origin.playlist(
        "/v.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1\n"
        '#EXT-X-DATERANGE:ID="ad1",CLASS="com.apple.hls.interstitial",START-DATE="2024-01-01T00:00:00Z",'
        'X-ASSET-URI="https://ads.example.com/ad.m3u8"\n'
        '#EXT-X-DATERANGE:ID="ad2",CLASS="com.apple.hls.interstitial",START-DATE="2024-01-01T00:00:04Z",'
        'X-ASSET-LIST="ads/list.json"\n'
        "#EXTINF:4,\ns0.ts\n"
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s1.part0.m4s"\n'
        '#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="next-init.mp4"\n'
        '#EXT-X-RENDITION-REPORT:URI="w.m3u8",LAST-MSN=1,LAST-PART=0\n'
        '#EXT-X-RENDITION-REPORT:URI="x.m3u8",LAST-MSN=1,LAST-PART=0\n',
    )
    origin.playlist("/w.m3u8", media("w0.ts"))
    expansion = expand(origin.url("/m.m3u8"), ExpandOptions(allow_foreign_hosts=True))
    assert paths(expansion, origin) == ["/m.m3u8", "/v.m3u8", "/w.m3u8", "/s0.ts", "/w0.ts"]
    assert skipped(expansion) == {
        origin.url("/steering.json"): "content steering manifest",
        origin.url("/meta.json"): "session data",
        "https://ads.example.com/ad.m3u8": "interstitial asset",
        origin.url("/ads/list.json"): "interstitial list",
        origin.url("/s1.part0.m4s"): "preload hint",
        origin.url("/next-init.mp4"): "preload hint",
        origin.url("/x.m3u8"): "rendition report",
    }


# -- EXT-X-DEFINE ------------------------------------------------------------------


def test_define_substitutes_uri_lines_and_quoted_attributes(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/m.m3u8",
        "#EXTM3U\n"
        '#EXT-X-DEFINE:NAME="base",VALUE="streams"\n'
        '#EXT-X-DEFINE:QUERYPARAM="token"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="{$base}/audio.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO="a"\n{$base}/video.m3u8?token={$token}\n',
    )
    origin.playlist(
        "/streams/video.m3u8",
        '#EXTM3U\n#EXT-X-DEFINE:IMPORT="token"\n#EXT-X-DEFINE:NAME="seg",VALUE="chunk"\n'
        '#EXT-X-TARGETDURATION:4\n#EXT-X-KEY:METHOD=AES-128,URI="key.bin?t={$token}"\n'
        "#EXTINF:4,\n{$seg}-0.ts?t={$token}\n#EXT-X-ENDLIST\n",
    )
    origin.playlist("/streams/audio.m3u8", media("a.aac"))
    expansion = expand(origin.url("/m.m3u8?token=T%201"), FAST)
    assert paths(expansion, origin) == [
        "/m.m3u8?token=T%201",
        "/streams/audio.m3u8",
        "/streams/video.m3u8?token=T%201",
        "/streams/a.aac",
        "/streams/key.bin?t=T%201",
        "/streams/chunk-0.ts?t=T%201",
    ]


def test_undefined_variables_and_failed_imports_are_errors() -> None:
    text = '#EXTM3U\n#EXT-X-DEFINE:NAME="a",VALUE="1"\n#EXTINF:4,\n{$b}.ts\n'
    with pytest.raises(PlaylistError, match=r"variable \{\$b\} is used but not defined"):
        substitute_variables(text, "http://h/v.m3u8", {})
    with pytest.raises(PlaylistError, match="IMPORT x is not defined by the parent"):
        substitute_variables('#EXTM3U\n#EXT-X-DEFINE:IMPORT="x"\n', "http://h/v.m3u8", {})
    with pytest.raises(PlaylistError, match="QUERYPARAM q is not in the URL's query"):
        substitute_variables('#EXTM3U\n#EXT-X-DEFINE:QUERYPARAM="q"\n', "http://h/v.m3u8?r=1", {})


def test_define_leaves_unquoted_attributes_and_undefined_text_alone() -> None:
    text = (
        '#EXTM3U\r\n#EXT-X-DEFINE:NAME="n",VALUE="v"\r\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="{$n}.key"\r\n#EXTINF:4,{$n}\r\n{$n}.ts\r\n'
    )
    substituted, variables = substitute_variables(text, "http://h/v.m3u8", {})
    assert variables == {"n": "v"}
    assert substituted.splitlines()[2:] == [
        '#EXT-X-KEY:METHOD=AES-128,URI="v.key"',
        "#EXTINF:4,{$n}",
        "v.ts",
    ]
    assert substitute_variables("#EXTM3U\n{$n}.ts\n", "http://h/v.m3u8", {}) == (
        "#EXTM3U\n{$n}.ts\n",
        {},
    )


# -- fetching ----------------------------------------------------------------------


def test_a_redirect_changes_the_base_url(origin: ScriptedOrigin) -> None:
    origin.script("/old/index.m3u8", Reply(redirect="/new/dir/index.m3u8", status=301))
    origin.playlist("/new/dir/index.m3u8", media("s0.ts", "../up.ts"))
    expansion = expand(origin.url("/old/index.m3u8"), FAST)
    assert paths(expansion, origin) == [
        "/old/index.m3u8",
        "/new/dir/index.m3u8",
        "/new/dir/s0.ts",
        "/new/up.ts",
    ]
    assert expansion.urls[1].rendition == origin.url("/old/index.m3u8")


def test_gzip_bodies_are_decoded(origin: ScriptedOrigin) -> None:
    origin.playlist("/v.m3u8", media("s0.ts"), gzip=True)
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert paths(expansion, origin) == ["/v.m3u8", "/s0.ts"]
    assert "gzip" in origin.requests[0].headers["accept-encoding"]


def test_crlf_line_endings_and_a_byte_order_mark(origin: ScriptedOrigin) -> None:
    body = "\ufeff" + media("s0.ts", "s1.ts").replace("\n", "\r\n")
    origin.playlist("/v.m3u8", body.encode("utf-8"))
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert paths(expansion, origin) == ["/v.m3u8", "/s0.ts", "/s1.ts"]


def test_retries_server_errors_then_succeeds(origin: ScriptedOrigin) -> None:
    origin.script("/v.m3u8", Reply(status=503), Reply(status=502), Reply(media("s.ts")))
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert paths(expansion, origin) == ["/v.m3u8", "/s.ts"]
    assert origin.hits("/v.m3u8") == 3


def test_gives_up_after_the_configured_retries(origin: ScriptedOrigin) -> None:
    origin.script("/v.m3u8", Reply(status=500))
    options = ExpandOptions(retries=2, retry_backoff=0.01)
    with pytest.raises(PlaylistError) as caught:
        expand(origin.url("/v.m3u8"), options)
    assert caught.value.url == origin.url("/v.m3u8")
    assert caught.value.reason == "HTTP 500 after 3 attempts"
    assert origin.hits("/v.m3u8") == 3


def test_retries_a_timeout(origin: ScriptedOrigin) -> None:
    origin.script("/v.m3u8", Reply(media("s.ts"), delay=2.0), Reply(media("s.ts")))
    expansion = expand(origin.url("/v.m3u8"), ExpandOptions(timeout=0.2, retry_backoff=0.01))
    assert paths(expansion, origin) == ["/v.m3u8", "/s.ts"]
    assert origin.hits("/v.m3u8") == 2


def test_connection_refused_is_an_error_naming_the_url() -> None:
    with ScriptedOrigin() as closed:
        url = closed.url("/v.m3u8")
    with pytest.raises(PlaylistError, match="connection failed") as caught:
        expand(url, ExpandOptions(retries=1, retry_backoff=0.01))
    assert caught.value.url == url


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (
            Reply(b"<!DOCTYPE html><html><body>Oops</body></html>", content_type="text/html"),
            "got an HTML page, not a playlist",
        ),
        (Reply(b"\x47\x40\x00\x10\x00\x00\xb0\x0d", content_type="video/mp2t"), "binary body"),
        (Reply(b"\xff\xd8\xff\xe0garbage"), "body is not UTF-8 text"),
        (Reply(b"hello world\n"), "does not start with #EXTM3U"),
        (Reply(b"#extm3u\n#extinf:4,\ns.ts\n"), "does not start with #EXTM3U"),
        (Reply(b"#EXTM3U\n#extinf:4,\n#ext-x-endlist\n"), "no segments or variant streams"),
        (
            Reply(b'#EXTM3U\n#EXT-X-KEY:URI="k"\n#EXTINF:4,\ns.ts\n'),
            "line 2: EXT-X-KEY lacks METHOD",
        ),
        (
            Reply(b"#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1\n"),
            "malformed playlist: a tag lacks URI on line 2",
        ),
        (Reply(status=404), "HTTP 404 Not Found"),
        (Reply(status=403, body="denied"), "HTTP 403 Forbidden"),
    ],
)
def test_what_is_not_a_playlist_is_an_error_naming_the_url(
    origin: ScriptedOrigin, reply: Reply, reason: str
) -> None:
    origin.script("/v.m3u8", reply)
    with pytest.raises(PlaylistError) as caught:
        expand(origin.url("/v.m3u8"), FAST)
    assert caught.value.url == origin.url("/v.m3u8")
    assert reason in caught.value.reason
    assert origin.url("/v.m3u8") in str(caught.value)


TWO_VARIANTS = (
    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nok.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\ngone.m3u8\n"
)


def test_a_failing_variant_is_reported_and_the_other_renditions_kept(
    origin: ScriptedOrigin,
) -> None:
    origin.playlist("/m.m3u8", TWO_VARIANTS)
    origin.playlist("/ok.m3u8", media("s.ts"))
    expansion = expand(origin.url("/m.m3u8"), FAST)
    assert paths(expansion, origin) == ["/m.m3u8", "/ok.m3u8", "/s.ts"]
    assert expansion.is_partial
    [failure] = expansion.failed
    assert failure.url == origin.url("/gone.m3u8")
    assert failure.reason == "HTTP 404 Not Found"
    assert skipped(expansion) == {origin.url("/gone.m3u8"): "HTTP 404 Not Found"}


def test_a_video_whose_every_variant_fails_fails(origin: ScriptedOrigin) -> None:
    origin.playlist("/m.m3u8", TWO_VARIANTS)
    with pytest.raises(PlaylistError) as caught:
        expand(origin.url("/m.m3u8"), FAST)
    assert caught.value.url in (origin.url("/ok.m3u8"), origin.url("/gone.m3u8"))


def test_strict_fails_the_video_on_a_failing_variant_and_names_it(origin: ScriptedOrigin) -> None:
    origin.playlist("/m.m3u8", TWO_VARIANTS)
    origin.playlist("/ok.m3u8", media("s.ts"))
    with pytest.raises(PlaylistError) as caught:
        expand(origin.url("/m.m3u8"), ExpandOptions(retry_backoff=0.01, strict=True))
    assert caught.value.url == origin.url("/gone.m3u8")
    assert caught.value.reason == "HTTP 404 Not Found"


def test_an_html_content_type_with_a_real_playlist_is_accepted(origin: ScriptedOrigin) -> None:
    origin.playlist("/v.m3u8", media("s.ts"), content_type="text/html")
    assert paths(expand(origin.url("/v.m3u8"), FAST), origin) == ["/v.m3u8", "/s.ts"]


def test_a_declared_size_over_the_cap_is_refused_before_reading(origin: ScriptedOrigin) -> None:
    origin.playlist("/v.m3u8", media(*(f"segment-{n}.ts" for n in range(200))))
    with pytest.raises(PlaylistError, match="over the 2048-byte cap") as caught:
        expand(origin.url("/v.m3u8"), ExpandOptions(max_bytes=2048))
    assert caught.value.url == origin.url("/v.m3u8")


def test_the_size_cap_counts_decoded_bytes_while_streaming(origin: ScriptedOrigin) -> None:
    # Compresses to far less than the cap; decoded, it is far more.
    origin.playlist("/v.m3u8", media(*(["same.ts"] * 20_000)), gzip=True)
    with pytest.raises(PlaylistError, match="over the 65536-byte cap"):
        expand(origin.url("/v.m3u8"), ExpandOptions(max_bytes=65536))


def test_sign_url_signs_fetches_but_output_stays_unsigned(origin: ScriptedOrigin) -> None:
    origin.playlist("/m.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n")
    origin.playlist("/v.m3u8", media("s.ts"))
    options = ExpandOptions(sign_url=lambda url: f"{url}?sign=secret", retry_backoff=0.01)
    expansion = expand(origin.url("/m.m3u8"), options)
    assert [request.target for request in origin.requests] == [
        "/m.m3u8?sign=secret",
        "/v.m3u8?sign=secret",
    ]
    assert not any("secret" in url for url in urls(expansion))
    assert paths(expansion, origin) == ["/m.m3u8", "/v.m3u8", "/s.ts"]


def test_a_source_that_is_not_http_is_an_error() -> None:
    with pytest.raises(PlaylistError, match="unsupported scheme ftp"):
        expand("ftp://h.example/v.m3u8", FAST)


def test_decode_playlist_accepts_leading_whitespace_and_bom() -> None:
    assert decode_playlist("u", b"\xef\xbb\xbf \n#EXTM3U\n") == " \n#EXTM3U\n"


# -- async API ---------------------------------------------------------------------


def test_expand_playlist_reuses_a_given_client(origin: ScriptedOrigin) -> None:
    origin.playlist("/a.m3u8", media("a.ts"))
    origin.playlist("/b.m3u8", media("b.ts"))

    async def run() -> list[Expansion]:
        async with make_client(FAST) as client:
            first = await expand_playlist(origin.url("/a.m3u8"), FAST, client)
            second = await expand_playlist(origin.url("/b.m3u8"), FAST, client)
            assert not client.is_closed
            return [first, second]

    first, second = asyncio.run(run())
    assert paths(first, origin) == ["/a.m3u8", "/a.ts"]
    assert paths(second, origin) == ["/b.m3u8", "/b.ts"]


def test_expand_many_yields_every_video_and_failures_do_not_stop_others(
    origin: ScriptedOrigin,
) -> None:
    for n in range(6):
        origin.playlist(f"/v{n}.m3u8", media(f"s{n}.ts"))
    items = [(n, origin.url(f"/v{n}.m3u8")) for n in range(6)] + [
        ("bad", origin.url("/missing.m3u8"))
    ]

    async def run() -> dict[object, Expansion | PlaylistError]:
        options = ExpandOptions(concurrency=2, retry_backoff=0.01)
        return {key: result async for key, result in expand_many(iter(items), options)}

    results = asyncio.run(run())
    assert set(results) == {0, 1, 2, 3, 4, 5, "bad"}
    bad = results.pop("bad")
    assert isinstance(bad, PlaylistError)
    assert bad.url == origin.url("/missing.m3u8")
    for key, result in results.items():
        assert isinstance(result, Expansion)
        assert paths(result, origin) == [f"/v{key}.m3u8", f"/s{key}.ts"]


def test_expand_many_stops_cleanly_when_the_consumer_stops(origin: ScriptedOrigin) -> None:
    for n in range(10):
        origin.playlist(f"/v{n}.m3u8", media("s.ts"))

    async def run() -> int:
        seen = 0
        results = expand_many(((n, origin.url(f"/v{n}.m3u8")) for n in range(10)), FAST)
        async for _ in results:
            seen += 1
            break
        await results.aclose()  # type: ignore[attr-defined]
        return seen

    assert asyncio.run(run()) == 1


def test_an_origin_that_trickles_fails_at_the_total_deadline(origin: ScriptedOrigin) -> None:
    # One byte every 0.2 s never trips the per-read timeout; the whole body would take ~20 s.
    origin.script("/v.m3u8", Reply(media(*(f"s{n}.ts" for n in range(8))), drip=0.2))
    options = ExpandOptions(timeout=5.0, deadline=1.0, retry_backoff=0.01)
    with pytest.raises(PlaylistError) as caught:
        expand(origin.url("/v.m3u8"), options)
    assert caught.value.url == origin.url("/v.m3u8")
    assert caught.value.reason == (
        "timed out: no complete answer within the 1 s deadline (CDN_PREHEAT_FETCH_DEADLINE)"
    )


# playlists as players (hls.js) read them -------------------------------------------


def test_a_segment_without_extinf_is_listed_as_players_request_it(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/v.m3u8",
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\nbare-0.ts\n#EXTINF:4,\ns1.ts\nbare-2.ts\n"
        "#EXT-X-ENDLIST\n",
    )
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert paths(expansion, origin) == ["/v.m3u8", "/bare-0.ts", "/s1.ts", "/bare-2.ts"]
    segments = [item for item in expansion.urls if item.kind is UrlKind.SEGMENT]
    assert [item.index for item in segments] == [0, 1, 2]
    assert expansion.warnings == []


@pytest.mark.parametrize(
    ("tag", "warning"),
    [
        ("#EXT-X-TARGETDURATION:6.006", "line 2: EXT-X-TARGETDURATION value '6.006' is not valid"),
        ("#EXT-X-VERSION:three", "line 2: EXT-X-VERSION value 'three' is not valid"),
        ("#EXT-X-MEDIA-SEQUENCE:-x", "line 2: EXT-X-MEDIA-SEQUENCE value '-x' is not valid"),
        (
            "#EXT-X-PROGRAM-DATE-TIME:yesterday",
            "line 2: EXT-X-PROGRAM-DATE-TIME value 'yesterday' is not valid",
        ),
        ("#EXT-X-DISCONTINUITY-SEQUENCE:", "line 2: EXT-X-DISCONTINUITY-SEQUENCE value '' is"),
        ("#EXTINF:abc,", "line 2: #EXTINF duration 'abc' is not a number"),
    ],
)
def test_a_malformed_tag_without_a_url_is_a_warning(
    origin: ScriptedOrigin, tag: str, warning: str
) -> None:
    origin.playlist("/v.m3u8", f"#EXTM3U\n{tag}\n#EXTINF:4,\ns0.ts\n#EXTINF:4,\ns1.ts\n")
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert paths(expansion, origin) == ["/v.m3u8", "/s0.ts", "/s1.ts"]
    [message] = expansion.warnings
    assert message.startswith(f"{origin.url('/v.m3u8')}: {warning}")
    with pytest.raises(PlaylistError, match="malformed playlist: line 2: "):
        expand(origin.url("/v.m3u8"), ExpandOptions(retry_backoff=0.01, strict=True))


@pytest.mark.parametrize(
    ("stream_inf", "warning"),
    [
        ("#EXT-X-STREAM-INF:RESOLUTION=1x1", "line 2: EXT-X-STREAM-INF has no BANDWIDTH"),
        (
            "#EXT-X-STREAM-INF:BANDWIDTH=fast,RESOLUTION=1x1",
            "line 2: EXT-X-STREAM-INF BANDWIDTH='fast' is not a number",
        ),
        (
            '#EXT-X-STREAM-INF:BANDWIDTH=1,FRAME-RATE="25",CODECS="a,b"',
            "line 2: EXT-X-STREAM-INF FRAME-RATE='\"25\"' is not a number",
        ),
    ],
)
def test_a_variant_with_a_malformed_bandwidth_is_followed_with_a_warning(
    origin: ScriptedOrigin, stream_inf: str, warning: str
) -> None:
    origin.playlist("/m.m3u8", f"#EXTM3U\n{stream_inf}\nv.m3u8\n")
    origin.playlist("/v.m3u8", media("s.ts"))
    expansion = expand(origin.url("/m.m3u8"), FAST)
    assert paths(expansion, origin) == ["/m.m3u8", "/v.m3u8", "/s.ts"]
    assert expansion.warnings[0] == f"{origin.url('/m.m3u8')}: {warning}"


def test_a_malformed_iframe_bandwidth_keeps_the_iframe_playlist(origin: ScriptedOrigin) -> None:
    origin.playlist(
        "/m.m3u8",
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"
        '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1.5,URI="i.m3u8"\n',
    )
    origin.playlist("/v.m3u8", media("s.ts"))
    origin.playlist("/i.m3u8", media("i.ts"))
    expansion = expand(origin.url("/m.m3u8"), FAST)
    assert paths(expansion, origin) == ["/m.m3u8", "/v.m3u8", "/i.m3u8", "/s.ts", "/i.ts"]
    assert len(expansion.warnings) == 1


def test_an_error_m3u8_raises_itself_names_the_line(origin: ScriptedOrigin) -> None:
    origin.playlist("/v.m3u8", "#EXTM3U\n#EXTINF:4,\ns.ts\n#EXT-X-KEY:METHOD=AES-128,URI\n")
    with pytest.raises(PlaylistError, match=r"malformed playlist \(ValueError: .*\) on line 4"):
        expand(origin.url("/v.m3u8"), FAST)


def test_a_video_over_the_url_limit_is_an_error_naming_it(origin: ScriptedOrigin) -> None:
    origin.playlist("/m.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n")
    origin.playlist("/v.m3u8", media(*(f"s{n}.ts" for n in range(10))))
    assert len(expand(origin.url("/m.m3u8"), ExpandOptions(max_urls_per_video=12)).urls) == 12
    with pytest.raises(PlaylistError) as caught:
        expand(origin.url("/m.m3u8"), ExpandOptions(max_urls_per_video=11))
    assert caught.value.url == origin.url("/v.m3u8")
    assert caught.value.reason == (
        f"video {origin.url('/m.m3u8')} lists more than 11 URLs"
        " (CDN_PREHEAT_MAX_URLS_PER_VIDEO); nothing of it was queued"
    )


def gzip_bomb(decoded_mb: int) -> bytes:
    """``#EXTM3U`` and then ``decoded_mb`` MB of newlines, gzip-compressed (about 1000:1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b"#EXTM3U\n")]
    block = b"\n" * 1_000_000
    parts += [packer.compress(block) for _ in range(decoded_mb)]
    return b"".join([*parts, packer.flush()])


def test_a_gzip_bomb_is_refused_at_the_cap_without_being_inflated(origin: ScriptedOrigin) -> None:
    bomb = gzip_bomb(200)
    assert len(bomb) < 1_000_000
    origin.script("/v.m3u8", Reply(bomb, headers={"Content-Encoding": "gzip"}))
    tracemalloc.start()
    try:
        with pytest.raises(PlaylistError) as caught:
            expand(origin.url("/v.m3u8"), ExpandOptions(max_bytes=8 * 1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "response is over the 8388608-byte cap (decoded)"
    # httpx inflated each 64 KiB network read whole (~64 MB of newlines) before any check.
    assert peak < 24 * 1024 * 1024, peak


def test_deflate_and_identity_bodies_are_decoded(origin: ScriptedOrigin) -> None:
    text = media("s0.ts", "s1.ts").encode()
    origin.script("/d.m3u8", Reply(zlib.compress(text), headers={"Content-Encoding": "deflate"}))
    origin.playlist("/i.m3u8", text)
    assert paths(expand(origin.url("/d.m3u8"), FAST), origin) == ["/d.m3u8", "/s0.ts", "/s1.ts"]
    assert paths(expand(origin.url("/i.m3u8"), FAST), origin) == ["/i.m3u8", "/s0.ts", "/s1.ts"]
    assert origin.requests[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(b"#EXTM3U", headers={"Content-Encoding": "br"}), "unsupported Content-Encoding"),
        (Reply(b"not gzip at all", headers={"Content-Encoding": "gzip"}), "does not decode as"),
        (Reply(gzip.compress(b"#EXTM3U\n" * 100)[:30], headers={"Content-Encoding": "gzip"}),
         "gzip body ends early"),
    ],
)  # fmt: skip
def test_a_body_that_does_not_decode_is_an_error_naming_the_url(
    origin: ScriptedOrigin, reply: Reply, reason: str
) -> None:
    origin.script("/v.m3u8", reply)
    with pytest.raises(PlaylistError, match=reason) as caught:
        expand(origin.url("/v.m3u8"), FAST)
    assert caught.value.url == origin.url("/v.m3u8")


def test_url_list_keeps_every_field_and_its_repr_stays_short() -> None:
    items = [
        ExpandedUrl("http://cdn/m.m3u8", UrlKind.PLAYLIST, "http://cdn/m.m3u8", -1, None),
        ExpandedUrl("http://cdn/k.key", UrlKind.KEY, "http://cdn/v.m3u8", -1, None),
        *(
            ExpandedUrl(f"http://cdn/s{n}.ts", UrlKind.SEGMENT, "http://cdn/v.m3u8", n, 4.5)
            for n in range(1000)
        ),
    ]
    stored = UrlList(items)
    assert len(stored) == len(items) and stored == items and list(stored) == items
    assert stored[1] == items[1] and stored[-1] == items[-1] and stored[2:4] == items[2:4]
    # asyncio reprs a finished task's result: a full repr would cost more than the URLs.
    assert len(repr(stored)) < 200 and "1,002 URLs" in repr(stored)


def test_warnings_are_capped_per_playlist_and_the_rest_counted(origin: ScriptedOrigin) -> None:
    body = "#EXTM3U\n" + "".join(f"#EXTINF:x{n},\ns{n}.ts\n" for n in range(25))
    origin.playlist("/v.m3u8", body)
    expansion = expand(origin.url("/v.m3u8"), FAST)
    assert len(expansion.urls) == 26
    assert len(expansion.warnings) == 11
    assert expansion.warnings[-1] == f"{origin.url('/v.m3u8')}: and 15 more malformed tags"
