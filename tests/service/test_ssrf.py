"""The SSRF guard: which hosts and addresses the service fetches, redirects included.

Real connections to a loopback origin; the refused addresses are never
connected to (the guard refuses before connecting), so no server is needed
behind them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import pytest

from cdn_preheat.app import expand_options
from cdn_preheat.config import load_settings
from cdn_preheat.hls import Expansion, expand_playlist, make_client
from cdn_preheat.service.ssrf import OriginPolicy, OriginRefused
from scripted_origin import Reply, ScriptedOrigin

MEDIA = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg0.ts\n#EXT-X-ENDLIST\n"
LOOPBACK_ONLY = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.fixture(scope="module")
def origin() -> Iterator[ScriptedOrigin]:
    with ScriptedOrigin() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(origin: ScriptedOrigin) -> None:
    origin.reset()


def fetch(policy: OriginPolicy, url: str) -> Expansion:
    options = expand_options(load_settings(cdn_preheat_allow_foreign_hosts=True), strict=True)
    options = type(options)(**{**options.__dict__, "retries": 0})

    async def run() -> Expansion:
        async with make_client(options, policy.transport()) as client:
            return await expand_playlist(url, options, client)

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1/a.m3u8", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://10.2.3.4/a.m3u8", "10.2.3.4 is a private address"),
        ("http://100.64.0.1/a.m3u8", "100.64.0.1 is a reserved address"),
        ("http://[::1]:8080/a.m3u8", "::1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]/a.m3u8", "127.0.0.1 is a loopback address"),
        ("http://[fd00::1]/a.m3u8", "fd00::1 is a private address"),
        ("http://0.0.0.0/a.m3u8", "0.0.0.0 is the unspecified address"),
        ("ftp://origin.example.com/a.m3u8", "not an http(s) URL"),
    ],
)
def test_literal_addresses_that_are_not_public_are_refused(url: str, problem: str) -> None:
    refused = OriginPolicy().url_problem(url)
    assert refused is not None and refused.startswith(problem)


def test_host_patterns_and_allowed_networks() -> None:
    policy = OriginPolicy(
        ["origin.example.com", "*.cdn.example.org"], [ipaddress.ip_network("10.1.0.0/16")]
    )
    assert policy.url_problem("https://origin.example.com/a.m3u8") is None
    assert policy.url_problem("https://ORIGIN.example.com./a.m3u8") is None
    assert policy.url_problem("https://v.cdn.example.org/a.m3u8") is None
    assert policy.url_problem("https://cdn.example.org/a.m3u8") == (
        "host cdn.example.org is not in CDN_PREHEAT_ALLOWED_ORIGINS"
    )
    assert policy.url_problem("https://evil.example.net/a.m3u8") == (
        "host evil.example.net is not in CDN_PREHEAT_ALLOWED_ORIGINS"
    )
    assert OriginPolicy([], policy.allowed_networks).url_problem("http://10.1.2.3/a") is None
    assert OriginPolicy().url_problem("https://origin.example.com/a.m3u8") is None


def test_an_allowed_network_is_fetched(origin: ScriptedOrigin) -> None:
    origin.playlist("/v/index.m3u8", MEDIA)
    expansion = fetch(OriginPolicy([], LOOPBACK_ONLY), origin.url("/v/index.m3u8"))
    assert [u.url.rsplit("/", 1)[1] for u in expansion.urls] == ["index.m3u8", "seg0.ts"]


def test_a_name_resolving_to_loopback_is_refused_before_connecting(
    origin: ScriptedOrigin,
) -> None:
    origin.playlist("/v/index.m3u8", MEDIA)
    url = f"http://localhost:{origin.netloc.rsplit(':', 1)[1]}/v/index.m3u8"
    with pytest.raises(OriginRefused, match=r"refused: localhost resolves to .* loopback"):
        fetch(OriginPolicy(), url)
    assert origin.requests == []


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("http://127.0.0.2:9/x.m3u8", "127.0.0.2 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ],
)
def test_a_redirect_to_an_address_that_is_not_public_is_refused(
    origin: ScriptedOrigin, target: str, problem: str
) -> None:
    origin.script("/v/index.m3u8", Reply(redirect=target))
    with pytest.raises(OriginRefused) as refused:
        fetch(OriginPolicy([], LOOPBACK_ONLY), origin.url("/v/index.m3u8"))
    assert problem in str(refused.value)
    assert str(refused.value).startswith(target.partition("?")[0])
    assert [r.target for r in origin.requests] == ["/v/index.m3u8"]


def test_a_redirect_to_a_host_not_allowed_is_refused(origin: ScriptedOrigin) -> None:
    port = origin.netloc.rsplit(":", 1)[1]
    origin.script("/v/index.m3u8", Reply(redirect=f"http://localhost:{port}/v/real.m3u8"))
    origin.playlist("/v/real.m3u8", MEDIA)
    with pytest.raises(OriginRefused, match="host localhost is not in CDN_PREHEAT_ALLOWED_ORIGINS"):
        fetch(OriginPolicy(["127.0.0.1"], LOOPBACK_ONLY), origin.url("/v/index.m3u8"))
    assert origin.hits("/v/real.m3u8") == 0


def test_a_variant_on_a_private_address_is_refused(origin: ScriptedOrigin) -> None:
    master = (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\nlow.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=200000\nhttp://10.9.8.7/internal/high.m3u8\n"
    )
    origin.playlist("/v/master.m3u8", master)
    origin.playlist("/v/low.m3u8", MEDIA)
    with pytest.raises(OriginRefused, match=r"10\.9\.8\.7 is a private address"):
        fetch(OriginPolicy([], LOOPBACK_ONLY), origin.url("/v/master.m3u8"))


def test_the_library_fetches_through_the_transport_it_is_given(origin: ScriptedOrigin) -> None:
    from cdn_preheat.api import Preheater

    origin.script("/v/index.m3u8", Reply(redirect="http://169.254.169.254/latest/meta-data/"))
    policy = OriginPolicy([], LOOPBACK_ONLY)
    settings = load_settings(cdn_preheat_allow_foreign_hosts=True)
    with (
        Preheater.from_settings(settings, fetch_transport=policy.transport) as preheater,
        pytest.raises(OriginRefused, match=r"169\.254\.169\.254 is a link-local address"),
    ):
        preheater.expand(origin.url("/v/index.m3u8"))
