"""Browser-like URL resolution and host mapping."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdn_preheat.urlresolve import (
    HostMap,
    Resolver,
    UnusableUrl,
    normalize_url,
    parse_url,
    resolve,
    resolve_url,
)

BASE = "http://origin.example.com/videos/v1/720p/index.m3u8?sig=abc"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("seg.ts", "http://origin.example.com/videos/v1/720p/seg.ts"),
        ("../x.ts", "http://origin.example.com/videos/v1/x.ts"),
        ("../../../../../x.ts", "http://origin.example.com/x.ts"),
        ("/abs/x.ts", "http://origin.example.com/abs/x.ts"),
        ("//other.example.com/x.ts", "http://other.example.com/x.ts"),
        ("https://cdn2.example.com/a/b.ts", "https://cdn2.example.com/a/b.ts"),
        ("seg.ts?token=x", "http://origin.example.com/videos/v1/720p/seg.ts?token=x"),
        ("?seg=1", "http://origin.example.com/videos/v1/720p/index.m3u8?seg=1"),
        ("", BASE),
        ("#chapter", BASE),
        ("seg.ts#t=10", "http://origin.example.com/videos/v1/720p/seg.ts"),
        ("./a/./b/../c.ts", "http://origin.example.com/videos/v1/720p/a/c.ts"),
        (".", "http://origin.example.com/videos/v1/720p/"),
        ("..", "http://origin.example.com/videos/v1/"),
        ("a/..", "http://origin.example.com/videos/v1/720p/"),
    ],
)
def test_resolves_relative_references(ref: str, expected: str) -> None:
    assert resolve_url(BASE, ref) == expected


def test_the_playlist_query_is_not_inherited_by_path_references() -> None:
    assert "sig=abc" not in resolve_url(BASE, "seg.ts")
    assert resolve_url(BASE, "seg.ts?") == "http://origin.example.com/videos/v1/720p/seg.ts?"


def test_query_only_reference_resolves_against_the_file_not_its_folder() -> None:
    # urljoin agrees; m3u8's base_uri (the folder) would give ".../720p/?seg=1".
    assert resolve_url(BASE, "?seg=1") == urljoin(BASE, "?seg=1")
    assert not resolve_url(BASE, "?seg=1").endswith("/?seg=1")


def test_empty_path_segments_are_kept_where_urljoin_collapses_them() -> None:
    resolved = resolve_url("http://h.example/a/b/index.m3u8", ".//x.ts")
    assert resolved == "http://h.example/a/b//x.ts"
    assert urljoin("http://h.example/a/b/index.m3u8", ".//x.ts") != resolved
    assert resolve_url("http://h.example/a/", "b//c/./d.ts") == "http://h.example/a/b//c/d.ts"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("  seg.ts \t", "http://h.example/d/seg.ts"),
        ("se\tg.ts", "http://h.example/d/seg.ts"),
        ("my seg.ts", "http://h.example/d/my%20seg.ts"),
        ("片段/一.ts", "http://h.example/d/%E7%89%87%E6%AE%B5/%E4%B8%80.ts"),
        ("a%20b.ts", "http://h.example/d/a%20b.ts"),
        ("a%2Fb.ts", "http://h.example/d/a%2Fb.ts"),
        ("100%.ts", "http://h.example/d/100%.ts"),
        ('q"<>`{}^.ts', "http://h.example/d/q%22%3C%3E%60%7B%7D%5E.ts"),
        ("s.ts?name=a b&t='x'", "http://h.example/d/s.ts?name=a%20b&t=%27x%27"),
        ("s.ts?q=é", "http://h.example/d/s.ts?q=%C3%A9"),
        ("s.ts?a={b}|c", "http://h.example/d/s.ts?a={b}|c"),
        ("a\\b\\c.ts", "http://h.example/d/a/b/c.ts"),
        ("%2e%2E/x.ts", "http://h.example/x.ts"),
        ("http:seg.ts", "http://h.example/d/seg.ts"),
        ("HTTP://H.Example:80/x.ts", "http://h.example/x.ts"),
        ("https://h.example:443/x.ts", "https://h.example/x.ts"),
        ("https://h.example:8443/x.ts", "https://h.example:8443/x.ts"),
        ("///h.example/x.ts", "http://h.example/x.ts"),
        ("//user:pw@h.example/x.ts", "http://user:pw@h.example/x.ts"),
        ("http://bücher.example/x.ts", "http://xn--bcher-kva.example/x.ts"),
        ("http://[::1]:8080/x.ts", "http://[::1]:8080/x.ts"),
        ("http://h.example", "http://h.example/"),
        ("http://h.example?x=1", "http://h.example/?x=1"),
    ],
)
def test_normalises_like_a_browser(ref: str, expected: str) -> None:
    assert resolve_url("http://h.example/d/index.m3u8", ref) == expected


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("skd://key-id-1", "unsupported scheme skd"),
        ("data:text/plain;base64,AAAA", "unsupported scheme data"),
        ("ftp://h.example/x.ts", "unsupported scheme ftp"),
        ("seg:1.ts", "unsupported scheme seg"),
        ("http://", "invalid URL: no host"),
        ("http://h.example:99999/x.ts", "invalid URL: bad port '99999'"),
        ("http://h.example:8o/x.ts", "invalid URL: bad port '8o'"),
        ("http://a b.example/x.ts", "invalid URL: bad host 'a b.example'"),
    ],
)
def test_unusable_references_say_why(ref: str, reason: str) -> None:
    with pytest.raises(UnusableUrl) as caught:
        resolve_url("http://h.example/d/index.m3u8", ref)
    assert caught.value.reason == reason


def test_parse_url_refuses_relative_and_foreign_schemes() -> None:
    with pytest.raises(UnusableUrl, match="not an absolute URL"):
        parse_url("/x/index.m3u8")
    with pytest.raises(UnusableUrl, match="unsupported scheme file"):
        parse_url("file:///x/index.m3u8")
    assert normalize_url(" HTTP://Origin.Example/a b/index.m3u8 ") == (
        "http://origin.example/a%20b/index.m3u8"
    )


def test_parsed_url_parts() -> None:
    url = parse_url("https://u@H.example:8443/a/b/c.m3u8?x=1#f")
    assert (url.scheme, url.netloc, url.path, url.query) == (
        "https",
        "u@h.example:8443",
        "/a/b/c.m3u8",
        "x=1",
    )
    assert url.hostport == "h.example:8443"
    assert url.directory == "https://u@h.example:8443/a/b/"


# -- host mapping ------------------------------------------------------------------

ORIGIN = HostMap("origin.example.com", cdn_host="cdn.example.com")


def test_host_map_rewrites_the_playlist_host_keeping_path_and_query() -> None:
    assert ORIGIN.apply(parse_url("https://origin.example.com/a/s.ts?t=1")) == (
        "https://cdn.example.com/a/s.ts?t=1"
    )


def test_host_map_keeps_urls_already_on_the_cdn_host() -> None:
    assert ORIGIN.apply(parse_url("http://cdn.example.com/a.ts")) == "http://cdn.example.com/a.ts"


def test_host_map_refuses_foreign_hosts_unless_allowed() -> None:
    with pytest.raises(UnusableUrl) as caught:
        ORIGIN.apply(parse_url("http://cdn2.example.com/a.ts"))
    assert caught.value.reason == "foreign host cdn2.example.com"
    allowed = HostMap("origin.example.com", "cdn.example.com", allow_foreign=True)
    assert (
        allowed.apply(parse_url("http://cdn2.example.com/a.ts")) == "http://cdn2.example.com/a.ts"
    )


def test_host_map_compares_host_and_port() -> None:
    hosts = HostMap("127.0.0.1:8080", cdn_host="cdn.example.com")
    assert hosts.apply(parse_url("http://127.0.0.1:8080/a.ts")) == "http://cdn.example.com/a.ts"
    with pytest.raises(UnusableUrl, match=r"foreign host 127\.0\.0\.1:9090"):
        hosts.apply(parse_url("http://127.0.0.1:9090/a.ts"))


def test_host_map_without_cdn_host_keeps_origin_urls() -> None:
    hosts = HostMap("origin.example.com")
    assert hosts.apply(parse_url("http://origin.example.com/a.ts")) == (
        "http://origin.example.com/a.ts"
    )
    with pytest.raises(UnusableUrl):
        hosts.apply(parse_url("http://elsewhere.example.com/a.ts"))


def test_resolver_maps_and_locates() -> None:
    resolver = Resolver(BASE, ORIGIN)
    assert resolver.output("seg.ts") == "http://cdn.example.com/videos/v1/720p/seg.ts"
    assert resolver.output("../a b.ts") == "http://cdn.example.com/videos/v1/a%20b.ts"
    assert str(resolver.locate("seg.ts")) == "http://origin.example.com/videos/v1/720p/seg.ts"
    with pytest.raises(UnusableUrl, match="foreign host"):
        resolver.output("//cdn2.example.com/x.ts")


def test_resolver_on_a_foreign_base_skips_even_simple_references() -> None:
    resolver = Resolver("http://storage.example.net/v/index.m3u8", ORIGIN)
    with pytest.raises(UnusableUrl, match=r"foreign host storage\.example\.net"):
        resolver.output("seg.ts")


# -- properties --------------------------------------------------------------------

_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~"
_segment = st.one_of(
    st.text(alphabet=_SAFE + ".", min_size=1, max_size=8),
    st.sampled_from([".", ".."]),
)
_relative_path = st.lists(_segment, min_size=1, max_size=6).map("/".join)
_reference = st.builds(
    lambda lead, path, query: lead + path + query,
    st.sampled_from(["", "/", "./", "../"]),
    _relative_path,
    # A bare "?" is kept by browsers and dropped by urljoin: queries are non-empty here.
    st.one_of(
        st.just(""), st.text(alphabet=_SAFE + "=&", min_size=1, max_size=10).map("?".__add__)
    ),
)
_base = st.sampled_from(
    [
        "http://origin.example.com/index.m3u8",
        "http://origin.example.com/a/b/c/index.m3u8?token=1",
        "https://origin.example.com:8443/a/",
        "http://127.0.0.1:8000/v/720p/index.m3u8",
    ]
)


@given(base=_base, ref=_reference)
def test_paths_without_empty_segments_resolve_as_urljoin_does(base: str, ref: str) -> None:
    assert resolve_url(base, ref) == urljoin(base, ref)


_any_ref = st.text(
    alphabet=st.sampled_from(list(_SAFE + "./?%:#@!$&'()*+,;= \\é")), min_size=0, max_size=20
)


@given(base=_base, ref=_any_ref)
def test_fast_path_agrees_with_full_resolution(base: str, ref: str) -> None:
    hosts = HostMap(parse_url(base).hostport, cdn_host="cdn.example.com")
    resolver = Resolver(base, hosts)
    try:
        expected = hosts.apply(resolve(parse_url(base), ref))
    except UnusableUrl as exc:
        with pytest.raises(UnusableUrl) as caught:
            resolver.output(ref)
        assert caught.value.reason == exc.reason
    else:
        assert resolver.output(ref) == expected
