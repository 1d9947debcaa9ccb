"""Signed fetches from private origins, and the anti-leech parameters to drop.

When playlists sit in a private Qiniu bucket or behind Qiniu timestamp
anti-leech, the expander must fetch them with signed URLs, while the URLs it
pushes stay unsigned (a signature expires; the CDN caches by the bare URL).
:func:`make_signer` builds the ``sign_url`` callable the expander applies to
each fetch, from ``CDN_PREHEAT_ORIGIN_SIGNING``:

- ``none``: fetch URLs as they are;
- ``qiniu-private``: ``Auth.private_download_url`` (``?e=…&token=AK:sign``)
  with ``QINIU_ACCESS_KEY``/``QINIU_SECRET_KEY``;
- ``qiniu-timestamp``: ``create_timestamp_anti_leech_url`` (``?sign=…&t=…``)
  with ``CDN_PREHEAT_ORIGIN_ANTI_LEECH_KEY``.

Every signature expires ``CDN_PREHEAT_ORIGIN_SIGN_EXPIRES`` seconds after it
is made. The SDKs do the signing; nothing here hand-writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from cdn_preheat.config import require_secret
from cdn_preheat.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from cdn_preheat.config import Settings

SignUrl = Callable[[str], str]

# Timestamp anti-leech parameters: CDNs cache and refresh by the URL without them.
ANTI_LEECH_PARAMS = frozenset({"sign", "t"})


def make_signer(settings: Settings) -> SignUrl | None:
    """The ``sign_url`` callable the settings ask for; None when fetches go unsigned."""
    mode = settings.cdn_preheat_origin_signing
    expires = settings.cdn_preheat_origin_sign_expires
    if mode == "none":
        return None
    if mode == "qiniu-private":
        access_key = _required(settings.qiniu_access_key, "QINIU_ACCESS_KEY", mode)
        secret_key = _required(settings.qiniu_secret_key, "QINIU_SECRET_KEY", mode)
        return qiniu_private_signer(access_key, secret_key, expires)
    key = _required(
        settings.cdn_preheat_origin_anti_leech_key, "CDN_PREHEAT_ORIGIN_ANTI_LEECH_KEY", mode
    )
    return qiniu_timestamp_signer(key, expires)


def qiniu_private_signer(access_key: str, secret_key: str, expires: int) -> SignUrl:
    """Private-bucket download URLs, each valid ``expires`` seconds from when it is made."""
    import qiniu

    auth = qiniu.Auth(access_key, secret_key)

    def sign(url: str) -> str:
        return str(auth.private_download_url(url, expires=expires))

    return sign


def qiniu_timestamp_signer(key: str, expires: int) -> SignUrl:
    """Timestamp anti-leech URLs, each valid ``expires`` seconds from when it is made."""
    from qiniu.services.cdn.manager import create_timestamp_anti_leech_url

    def sign(url: str) -> str:
        parts = urlsplit(url)
        # The SDK percent-encodes the path itself: hand it the decoded one.
        path = unquote(parts.path.removeprefix("/"))
        deadline = int(time.time()) + expires
        host = f"{parts.scheme}://{parts.netloc}"
        return str(create_timestamp_anti_leech_url(host, path, parts.query, key, deadline))

    return sign


def strip_anti_leech(url: str) -> str:
    """The URL without timestamp anti-leech ``sign``/``t`` parameters.

    CDNs refresh by the cached key, which excludes them. The rest of the
    query is kept byte for byte, so its encoding does not change.
    """
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [p for p in parts.query.split("&") if p.split("=", 1)[0] not in ANTI_LEECH_PARAMS]
    return urlunsplit(parts._replace(query="&".join(kept)))


def _required(value: SecretStr | None, variable: str, mode: str) -> str:
    try:
        return require_secret(value, variable)
    except ConfigError:
        raise ConfigError(
            f"CDN_PREHEAT_ORIGIN_SIGNING={mode} needs {variable}; export it or put it in .env."
        ) from None
