"""url_key: what a CDN may change in a URL it answers with, and nothing else."""

from __future__ import annotations

import pytest

from cdn_preheat.urlkey import match_urls, url_key

SUBMITTED = "http://cdn.example.com/vod/a/seg%2d1.ts?sig=%e4%b8%ad"


@pytest.mark.parametrize(
    "answered",
    [
        "https://cdn.example.com/vod/a/seg%2d1.ts?sig=%e4%b8%ad",  # scheme
        "cdn.example.com/vod/a/seg%2d1.ts?sig=%e4%b8%ad",  # no scheme (Alibaba's domain/file)
        "http://CDN.Example.COM/vod/a/seg%2d1.ts?sig=%e4%b8%ad",  # host case
        "http://cdn.example.com:80/vod/a/seg%2d1.ts?sig=%e4%b8%ad",  # default port
        "https://cdn.example.com:443/vod/a/seg%2d1.ts?sig=%e4%b8%ad",
        "http://cdn.example.com/vod/a/seg%2D1.ts?sig=%E4%B8%AD",  # percent-encoding case
        "http://cdn.example.com/vod/a/seg-1.ts?sig=%E4%B8%AD",  # unreserved char decoded
    ],
)
def test_normalisations_keep_the_key(answered: str) -> None:
    assert url_key(answered) == url_key(SUBMITTED)


@pytest.mark.parametrize(
    "other",
    [
        "http://cdn.example.com:8080/vod/a/seg%2d1.ts?sig=%e4%b8%ad",  # another port
        "http://cdn.example.com/vod/A/seg%2d1.ts?sig=%e4%b8%ad",  # path case matters
        "http://cdn.example.com/vod/a/seg%2d1.ts?sig=other",  # the query matters
        "http://cdn.example.org/vod/a/seg%2d1.ts?sig=%e4%b8%ad",  # another host
    ],
)
def test_real_differences_change_the_key(other: str) -> None:
    assert url_key(other) != url_key(SUBMITTED)


def test_match_prefers_the_exact_string_and_refuses_to_guess() -> None:
    a, b = "http://h/x?q=%2A", "http://h/x?q=*"
    assert url_key(a) == url_key(b)  # yarl decodes %2A; two ledger rows share the key
    candidates = {url_key(a): [a, b]}
    assert match_urls(a, candidates) == a
    assert match_urls("https://h/x?q=%2a", candidates) is None
    assert match_urls("https://H/x?q=%2A", {url_key(a): [a]}) == a
    assert match_urls("http://h/y", candidates) is None
