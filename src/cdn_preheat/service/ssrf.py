"""What the service may fetch for its callers: no SSRF.

The service fetches playlist URLs that its callers send, so without a guard a
caller could make it read the cloud's metadata endpoint (169.254.169.254), an
admin page on loopback or a host inside the VPC. Two rules, applied to every
request of an expansion, redirects and variant playlists included:

1. The URL's host must match ``CDN_PREHEAT_ALLOWED_ORIGINS`` (host patterns;
   none configured: any host, which ``serve`` allows on loopback only).
2. Every address the host resolves to must be public (``ipaddress``'s
   ``is_global``, so loopback, link-local, private, shared, reserved and
   documentation ranges are refused, multicast too), unless it is in
   ``CDN_PREHEAT_ALLOWED_NETWORKS``.

Rule 2 is checked where the connection is made: the transport's network
backend resolves the host, checks every address and connects to the address
it checked, so a DNS answer that changes between a check and the connect
(rebinding) cannot slip through. The pieces are httpx's transport and
httpcore's network backend (``httpcore.AnyIOBackend``), both public interfaces;
only the connection pool is swapped in, since ``httpx.AsyncHTTPTransport``
takes no backend argument.
"""

from __future__ import annotations

import contextvars
import fnmatch
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx

from cdn_preheat.errors import PlaylistError
from cdn_preheat.service.settings import IPNetwork, ServiceSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The URL being fetched, for the refusal's sentence (the backend sees only host:port).
_FETCHING: contextvars.ContextVar[str] = contextvars.ContextVar("cdn_preheat_fetching", default="")


class OriginRefused(PlaylistError):
    """The service will not fetch this URL (host not allowed, or not a public address)."""


def _describe(address: IPAddress) -> str:
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private:
        return "a private address"
    return "a reserved address"


class OriginPolicy:
    """Which hosts and addresses the service may fetch."""

    def __init__(
        self, allowed_origins: Iterable[str] = (), allowed_networks: Iterable[IPNetwork] = ()
    ) -> None:
        self.allowed_origins = tuple(p.lower().rstrip(".") for p in allowed_origins if p)
        self.allowed_networks = tuple(allowed_networks)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> OriginPolicy:
        return cls(settings.allowed_origins, settings.allowed_networks)

    def host_allowed(self, host: str) -> bool:
        if not self.allowed_origins:
            return True
        host = host.lower().rstrip(".").strip("[]")
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.allowed_origins)

    def address_problem(self, address: IPAddress) -> str | None:
        """Why the service may not connect to ``address`` (None: it may)."""
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        if any(address in network for network in self.allowed_networks):
            return None
        if address.is_global and not address.is_multicast:
            return None
        return (
            f"{address} is {_describe(address)}, which the service does not fetch"
            " (CDN_PREHEAT_ALLOWED_NETWORKS lists the exceptions)"
        )

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` may not be fetched, as far as is known before resolving it."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return "not an http(s) URL"
        host = parts.hostname
        if not self.host_allowed(host):
            return f"host {host} is not in CDN_PREHEAT_ALLOWED_ORIGINS"
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            return None
        return self.address_problem(literal)

    def transport(self, *, max_connections: int = 16) -> GuardedTransport:
        """A new transport (each httpx client closes its own) enforcing this policy."""
        return GuardedTransport(self, max_connections=max_connections)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, and connects only to an address it checked."""

    def __init__(self, policy: OriginPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host} ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for text in addresses:
            problem = self._policy.address_problem(ipaddress.ip_address(text.partition("%")[0]))
            if problem is not None:
                where = _FETCHING.get() or f"{host}:{port}"
                raise OriginRefused(where, f"refused: {host} resolves to {problem}")
        error: httpcore.ConnectError | None = None
        for text in addresses:
            try:
                return await self._inner.connect_tcp(
                    text, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OriginRefused(path, "refused: the service fetches over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with the host rule per request and the address rule per
    connection. Proxies from the environment are not used (they would resolve for us)."""

    def __init__(self, policy: OriginPolicy, *, max_connections: int = 16) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        context = _ssl_context()
        super().__init__(verify=context, limits=limits, trust_env=False)
        self._policy = policy
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        problem = self._policy.url_problem(url)
        if problem is not None:
            raise OriginRefused(_shown(request.url), f"refused: {problem}")
        token = _FETCHING.set(_shown(request.url))
        try:
            return await super().handle_async_request(request)
        finally:
            _FETCHING.reset(token)


_SSL: list[ssl.SSLContext] = []
_SSL_LOCK = threading.Lock()


def _ssl_context() -> ssl.SSLContext:
    """One verifying context for every transport: making one loads the CA bundle,
    ~0.1 s of CPU, which a transport per request must not pay each time."""
    with _SSL_LOCK:
        if not _SSL:
            _SSL.append(httpx.create_ssl_context())
        return _SSL[0]


def _shown(url: httpx.URL) -> str:
    """The URL without its query (signatures of private origins stay out of messages)."""
    return str(url.copy_with(query=None, fragment=None))
