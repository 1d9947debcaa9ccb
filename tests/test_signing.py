"""Private origins: signed playlist fetches, unsigned output, and an origin that checks.

The origin is the sandbox's, over real HTTP, demanding Qiniu private-bucket
tokens or timestamp anti-leech signatures, verified with the SDK's own code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from cdn_preheat.app import expand_options
from cdn_preheat.config import Settings
from cdn_preheat.errors import ConfigError, PlaylistError
from cdn_preheat.hls import expand
from cdn_preheat.sandbox.core import LoopbackServer
from cdn_preheat.sandbox.origin import Origin, serve_origin
from cdn_preheat.sandbox.origin_auth import OriginSignatures
from cdn_preheat.signing import make_signer, qiniu_timestamp_signer, strip_anti_leech

AK, SK = "origin-access-key", "origin-secret-key"
LEECH_KEY = "anti-leech-key-0123"
SIGNATURE_PARAMS = ("token=", "e=", "sign=", "t=")


@dataclass
class SigningOrigin:
    origin: Origin
    server: LoopbackServer

    def url(self, path: str = "/vod/demo-2/master.m3u8") -> str:
        return f"{self.server.url}{path}"


@pytest.fixture
def served() -> Iterator[SigningOrigin]:
    origin = Origin(videos=2, segments=4)
    server = serve_origin(origin)
    yield SigningOrigin(origin, server)
    server.stop()


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


PRIVATE = {
    "cdn_preheat_origin_signing": "qiniu-private",
    "qiniu_access_key": AK,
    "qiniu_secret_key": SK,
}
TIMESTAMP = {
    "cdn_preheat_origin_signing": "qiniu-timestamp",
    "cdn_preheat_origin_anti_leech_key": LEECH_KEY,
}


def urls_of(url: str, config: Settings) -> list[str]:
    return [item.url for item in expand(url, expand_options(config)).urls]


@pytest.mark.parametrize(
    ("rule", "config", "refusal"),
    [
        (OriginSignatures("qiniu-private", access_key=AK, secret_key=SK), PRIVATE, "HTTP 401"),
        (OriginSignatures("qiniu-timestamp", anti_leech_key=LEECH_KEY), TIMESTAMP, "HTTP 403"),
    ],
    ids=["private-bucket", "timestamp-anti-leech"],
)
def test_expansion_succeeds_only_with_signing_and_pushes_unsigned_urls(
    served: SigningOrigin, rule: OriginSignatures, config: dict[str, str], refusal: str
) -> None:
    open_urls = urls_of(served.url(), settings())
    served.origin.signatures = rule

    with pytest.raises(PlaylistError) as caught:
        urls_of(served.url(), settings())
    assert refusal in str(caught.value)

    signed_urls = urls_of(served.url(), settings(**config))
    assert signed_urls == open_urls  # every playlist fetched, nothing signed in the output
    assert not any(param in url for url in signed_urls for param in SIGNATURE_PARAMS)


def test_timestamp_signing_keeps_the_playlist_query(served: SigningOrigin) -> None:
    served.origin.signatures = OriginSignatures("qiniu-timestamp", anti_leech_key=LEECH_KEY)
    urls = urls_of(served.url("/vod/demo-1/v0/index.m3u8?v=2"), settings(**TIMESTAMP))
    assert urls[0].endswith("/vod/demo-1/v0/index.m3u8?v=2")
    assert len(urls) == 1 + 4


@pytest.mark.parametrize(
    ("rule", "config", "status"),
    [
        (
            OriginSignatures("qiniu-private", access_key=AK, secret_key=SK),
            {**PRIVATE, "qiniu_secret_key": "not-the-key"},
            401,
        ),
        (
            OriginSignatures("qiniu-timestamp", anti_leech_key=LEECH_KEY),
            {**TIMESTAMP, "cdn_preheat_origin_anti_leech_key": "not-the-key"},
            403,
        ),
    ],
    ids=["private-bucket", "timestamp-anti-leech"],
)
def test_origin_refuses_wrong_and_expired_signatures(
    served: SigningOrigin, rule: OriginSignatures, config: dict[str, str], status: int
) -> None:
    served.origin.signatures = rule
    wrong = make_signer(settings(**config))
    assert wrong is not None
    assert httpx.get(wrong(served.url())).status_code == status

    right_config = settings(**{**config, **(PRIVATE if status == 401 else TIMESTAMP)})
    right = make_signer(right_config)
    assert right is not None
    signed = right(served.url())
    assert httpx.get(signed).status_code == 200
    # Two hours on, the one-hour signature has expired.
    served.origin.signatures = OriginSignatures(
        rule.mode,
        access_key=rule.access_key,
        secret_key=rule.secret_key,
        anti_leech_key=rule.anti_leech_key,
        now=lambda: time.time() + 7200,
    )
    assert httpx.get(signed).status_code == status


def test_tampered_path_breaks_a_timestamp_signature(served: SigningOrigin) -> None:
    served.origin.signatures = OriginSignatures("qiniu-timestamp", anti_leech_key=LEECH_KEY)
    signed = qiniu_timestamp_signer(LEECH_KEY, 600)(served.url("/vod/demo-1/master.m3u8"))
    assert httpx.get(signed).status_code == 200
    assert httpx.get(signed.replace("demo-1", "demo-2")).status_code == 403


def test_signing_settings_name_what_is_missing() -> None:
    assert make_signer(settings()) is None
    with pytest.raises(ConfigError) as private:
        make_signer(settings(cdn_preheat_origin_signing="qiniu-private", qiniu_access_key=AK))
    assert "QINIU_SECRET_KEY" in str(private.value)
    with pytest.raises(ConfigError) as timestamp:
        make_signer(settings(cdn_preheat_origin_signing="qiniu-timestamp"))
    assert "CDN_PREHEAT_ORIGIN_ANTI_LEECH_KEY" in str(timestamp.value)
    assert LEECH_KEY not in repr(settings(**TIMESTAMP))


@pytest.mark.parametrize(
    ("url", "stripped"),
    [
        ("http://cdn.test/a.ts?sign=abc&t=65f0a1b2", "http://cdn.test/a.ts"),
        ("http://cdn.test/a.ts?v=1&sign=abc&t=65f0a1b2", "http://cdn.test/a.ts?v=1"),
        ("http://cdn.test/a.ts?t2=1&sign_in=x", "http://cdn.test/a.ts?t2=1&sign_in=x"),
        ("http://cdn.test/a%20b.ts?q=%2F", "http://cdn.test/a%20b.ts?q=%2F"),
    ],
)
def test_strip_anti_leech(url: str, stripped: str) -> None:
    assert strip_anti_leech(url) == stripped
