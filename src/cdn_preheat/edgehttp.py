"""Requests to CDN edges as a player makes them, optionally pinned to one edge.

Verify and the HTTP warm provider both talk to edges, not APIs: they send the
headers a player sends (an edge may refuse or key its cache on them) and can
address one edge by IP while keeping the URL's host name, the way ``curl
--resolve`` does, so each listed edge is checked or warmed in turn.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

# hls.js in a desktop browser is the most common HLS player; a CDN's
# User-Agent filters and cache rules are set up for browsers first.
DEFAULT_PLAYER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
BROWSER_ACCEPT_ENCODING = "gzip, deflate, br"


@dataclass(frozen=True)
class EdgeAddress:
    """An edge to connect to: an IP and, if given, a port (else the URL's)."""

    ip: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> EdgeAddress:
        """``1.2.3.4``, ``1.2.3.4:8080``, ``2001:db8::1`` or ``[2001:db8::1]:443``."""
        text = text.strip()
        host, port = text, None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = _port(rest[1:], text) if rest.startswith(":") else None
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            port = _port(port_text, text)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"edge address {text!r} is not an IP address") from None
        return cls(host, port)

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return host if self.port is None else f"{host}:{self.port}"


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"edge address {whole!r} has a bad port")
    return int(text)


def parse_edge_addresses(
    value: str | list[str] | tuple[str, ...] | None,
) -> tuple[EdgeAddress, ...]:
    """Edge addresses from a comma-separated string or a list of them."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(EdgeAddress.parse(item) for item in items if item.strip())


def player_headers(
    user_agent: str,
    accept_encoding: str,
    referer: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The request headers of a player fetching media."""
    headers = {"User-Agent": user_agent, "Accept": "*/*", "Accept-Encoding": accept_encoding}
    if referer:
        headers["Referer"] = referer
    headers.update(extra or {})
    return headers


def edge_request(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    edge: EdgeAddress | None = None,
) -> httpx.Request:
    """A GET for ``url``; with ``edge``, sent to that address under the URL's host name.

    The connection goes to the edge's IP, while ``Host`` (and the TLS SNI
    name, which the certificate is checked against) stay the URL's.
    """
    target = httpx.URL(url)
    if edge is None:
        return client.build_request("GET", target, headers=headers)
    pinned = target.copy_with(host=edge.ip, port=edge.port or target.port)
    headers = {**headers, "Host": target.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else None
    return client.build_request("GET", pinned, headers=headers, extensions=extensions)


def edge_client(*, concurrency: int, timeout: float, verify_tls: bool = True) -> httpx.AsyncClient:
    """A client for edges: no redirects followed, no proxy from the environment.

    A proxy would put its own cache between us and the edge, and a redirect
    would leave the edge that is being checked.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        follow_redirects=False,
        trust_env=False,
        verify=verify_tls,
    )


def describe_transport_error(exc: Exception) -> str:
    """One line for a request that got no HTTP answer."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {exc}" if str(exc) else "could not connect"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
