"""Bearer-token authentication for the ``/v1`` routes (and any router that reuses it).

Tokens come from ``CDN_PREHEAT_API_TOKENS`` / ``CDN_PREHEAT_API_TOKENS_FILE``
(see :mod:`cdn_preheat.service.settings`). Every configured token is compared
with :func:`hmac.compare_digest`, all of them on every request, so the time an
answer takes says nothing about a token. Tokens are registered with
:mod:`cdn_preheat.redact` and never logged.

With no token configured, ``serve`` listens on loopback only, and then only
callers on loopback are let through.

Routers mount the check as a dependency::

    from cdn_preheat.service.auth import require_token, require_token_or_query
    router = APIRouter(dependencies=[Depends(require_token)])
    # senders that cannot set headers (storage event notifications):
    @router.post("/v1/events/s3", dependencies=[Depends(require_token_or_query)])
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="A token of CDN_PREHEAT_API_TOKENS.")
QUERY_PARAMETER = "token"


def token_matches(request: Request, presented: str | None) -> bool:
    """Whether ``presented`` is one of the app's tokens (constant time per token).

    No token configured: only loopback callers pass.
    """
    tokens: tuple[str, ...] = request.app.state.api_tokens
    if not tokens:
        return _loopback(request)
    if not presented:
        return False
    given = presented.encode("utf-8", "surrogateescape")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode("utf-8", "surrogateescape"))
    return matched


def _loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def _refuse() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="a valid API token is required;"
        " send it as a bearer token in the Authorization header.",
        headers={"WWW-Authenticate": "Bearer"},
    )


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def require_token(request: Request, credentials: Credentials) -> None:
    """The ``Authorization: Bearer TOKEN`` check."""
    if not token_matches(request, credentials.credentials if credentials else None):
        raise _refuse()


async def require_token_or_query(request: Request, credentials: Credentials) -> None:
    """Bearer, or ``?token=TOKEN`` for senders that cannot set headers."""
    presented = (
        credentials.credentials if credentials else request.query_params.get(QUERY_PARAMETER)
    )
    if not token_matches(request, presented):
        raise _refuse()
