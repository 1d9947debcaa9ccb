"""Signatures the sandbox origin can demand: a private Qiniu bucket, or timestamp anti-leech.

Both are checked by recomputing them with the ``qiniu`` SDK's own functions,
so the origin accepts exactly what the SDK produces:

- ``qiniu-private``: ``?e=DEADLINE&token=AK:SIGN`` as made by
  ``Auth.private_download_url``; a missing, wrong or expired token is 401.
- ``qiniu-timestamp``: ``?sign=MD5&t=HEXDEADLINE`` as made by
  ``create_timestamp_anti_leech_url``; missing, wrong or expired is 403.

Only requests to the origin's HTTP server are checked: the sandbox edge and
CDN emulators read the origin in-process, as a CDN's back-to-origin pull
holds its own credentials.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from qiniu import Auth
from qiniu.services.cdn.manager import create_timestamp_anti_leech_url

SignatureMode = Literal["qiniu-private", "qiniu-timestamp"]


@dataclass(frozen=True)
class Denial:
    status: int
    reason: str


@dataclass(frozen=True)
class OriginSignatures:
    """What the origin demands. ``now`` is seconds since the epoch (a test may move it)."""

    mode: SignatureMode
    access_key: str = ""
    secret_key: str = ""
    anti_leech_key: str = ""
    now: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if self.mode == "qiniu-private" and not (self.access_key and self.secret_key):
            raise ValueError("qiniu-private needs access_key and secret_key")
        if self.mode == "qiniu-timestamp" and not self.anti_leech_key:
            raise ValueError("qiniu-timestamp needs anti_leech_key")

    def denial(self, host: str, path: str) -> Denial | None:
        """Why a request for ``path`` (with query) on ``host`` is refused; None: allowed."""
        if self.mode == "qiniu-private":
            return self._private(f"http://{host}{path}")
        return self._timestamp(host, path)

    def _private(self, url: str) -> Denial | None:
        signed, found, token = url.rpartition("&token=")
        if not found:
            return Denial(401, "missing download token")
        deadline = parse_qs(urlsplit(signed).query).get("e", [""])[-1]
        if not deadline.isdigit():
            return Denial(401, "missing download deadline")
        expected = Auth(self.access_key, self.secret_key).token(signed)
        if not hmac.compare_digest(str(expected).encode(), token.encode()):
            return Denial(401, "bad token")
        if int(deadline) < self.now():
            return Denial(401, "token out of date")
        return None

    def _timestamp(self, host: str, path: str) -> Denial | None:
        parts = urlsplit(path)
        sign = deadline = None
        rest = []
        for param in parts.query.split("&") if parts.query else []:
            name, _, value = param.partition("=")
            if name == "sign":
                sign = value
            elif name == "t":
                deadline = value
            else:
                rest.append(param)
        if not sign or not deadline:
            return Denial(403, "missing anti-leech sign or t")
        try:
            expires = int(deadline, 16)
        except ValueError:
            return Denial(403, "malformed t")
        expected_url = create_timestamp_anti_leech_url(
            f"http://{host}",
            unquote(parts.path.removeprefix("/")),
            "&".join(rest),
            self.anti_leech_key,
            expires,
        )
        expected = parse_qs(urlsplit(str(expected_url)).query).get("sign", [""])[-1]
        if not hmac.compare_digest(expected.encode(), sign.encode()):
            return Denial(403, "bad anti-leech sign")
        if expires < self.now():
            return Denial(403, "anti-leech link expired")
        return None
