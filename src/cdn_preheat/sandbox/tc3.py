"""Server-side check of Tencent Cloud's TC3-HMAC-SHA256 request signature.

The canonical request is rebuilt from what arrived on the wire (method, path,
query, the signed headers, the body's hash) and signed with the SDK's own
``Sign.sign_tc3``, so the emulator trusts nothing the client claims except the
SecretId it names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from tencentcloud.common.sign import Sign

ALGORITHM = "TC3-HMAC-SHA256"
MAX_CLOCK_SKEW_SECONDS = 300  # Tencent refuses requests signed more than 5 minutes away
_AUTHORIZATION = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)"
    r"/tc3_request, SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    """The request's signature is not acceptable; ``code`` is Tencent's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def verify_tc3(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str],
    service: str,
    now: float | None = None,
) -> str:
    """Check the request's ``Authorization``; the SecretId on success.

    ``now`` is the server's clock (POSIX seconds; default this machine's).

    ``target`` is the request line's path with any query; ``headers`` has
    lower-case names.
    """
    match = _AUTHORIZATION.match(headers.get("authorization", ""))
    if match is None:
        raise SignatureError(
            "AuthFailure.InvalidAuthorization", "Authorization header is malformed."
        )
    secret_id = match.group("id")
    secret_key = secrets.get(secret_id)
    if secret_key is None:
        raise SignatureError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
    timestamp = headers.get("x-tc-timestamp", "")
    if not timestamp.isdigit():
        raise SignatureError("AuthFailure.InvalidAuthorization", "X-TC-Timestamp is missing.")
    # Real time, not the sandbox's quota-day clock: the SDK signs with the machine's clock.
    server_now = time.time() if now is None else now
    if abs(server_now - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise SignatureError("AuthFailure.SignatureExpire", "The signature has expired.")
    date = match.group("date")
    signed_day = dt.datetime.fromtimestamp(int(timestamp), dt.UTC).date().isoformat()
    if date != signed_day or match.group("service") != service:
        raise SignatureError("AuthFailure.SignatureFailure", "The credential scope is wrong.")

    signed = match.group("headers").split(";")
    if not {"content-type", "host"} <= set(signed):
        raise SignatureError(
            "AuthFailure.InvalidAuthorization", "SignedHeaders must include content-type and host."
        )
    path, _, query = target.partition("?")
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    payload = (
        b"UNSIGNED-PAYLOAD"
        if headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD"
        else (b"" if method == "GET" else body)
    )
    canonical_request = "\n".join(
        [
            method,
            path,
            query,
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        [
            ALGORITHM,
            timestamp,
            f"{date}/{service}/tc3_request",
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    expected = Sign.sign_tc3(secret_key, date, service, string_to_sign)
    if not hmac.compare_digest(expected, match.group("sig")):
        raise SignatureError("AuthFailure.SignatureFailure", "The request signature is wrong.")
    return secret_id
