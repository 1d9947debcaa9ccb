"""The sandbox's CDN edge: the origin's files, answered with a vendor's cache header.

A URL is a hit iff its full URL (``http://<edge netloc><path>[?query]``) is in
the :class:`EdgeCache`, which the prefetch emulators fill. Like a real CDN, a
plain full GET on a miss fills the cache too (the HTTP warm provider relies on
that); a ranged request does not, so ``verify``'s ``Range: bytes=0-0`` probe
never warms what it checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Literal

from cdn_preheat.sandbox.core import EdgeCache, LoopbackServer
from cdn_preheat.sandbox.origin import Origin, send_body, send_not_found

Vendor = Literal["tencent", "qiniu", "aliyun"]

# (header, value on hit, value on miss), as each vendor's edges send them.
CACHE_HEADERS: dict[str, tuple[str, str, str]] = {
    "tencent": ("X-Cache-Lookup", "Hit From MemCache", "Cache Miss"),
    "qiniu": ("X-Qnm-Cache", "Hit", "Miss"),
    "aliyun": ("X-Cache", "HIT TCP_MEM_HIT dirn:-2:-2", "MISS TCP_MISS dirn:-2:-2"),
}


@dataclass(frozen=True)
class EdgeRequest:
    """One request the edge answered."""

    method: str
    path: str
    range: str | None
    hit: bool
    status: int


class Edge:
    """The edge's behaviour and request log; thread-safe."""

    def __init__(self, origin: Origin, cache: EdgeCache, vendor: Vendor = "tencent") -> None:
        if vendor not in CACHE_HEADERS:
            raise ValueError(f"unknown edge vendor {vendor!r}")
        self.origin = origin
        self.cache = cache
        self.vendor: Vendor = vendor
        self.netloc = ""  # set by bind()
        # Called before each request, so emulator tasks due by now land in the cache first.
        self.before_request: list[Callable[[], None]] = []
        self._log: list[EdgeRequest] = []
        self._lock = threading.Lock()

    def bind(self, port: int = 0) -> LoopbackServer:
        """Bind (not yet start) the edge's server; its netloc is known from here on."""
        server = LoopbackServer(EdgeHandler, self, port)
        self.netloc = server.netloc
        return server

    def url(self, path: str) -> str:
        """The full URL of ``path`` (with any query) on this edge."""
        return f"http://{self.netloc}{path}"

    @property
    def requests(self) -> list[EdgeRequest]:
        with self._lock:
            return list(self._log)

    def cache_header(self, hit: bool) -> dict[str, str]:
        name, on_hit, on_miss = CACHE_HEADERS[self.vendor]
        return {name: on_hit if hit else on_miss}

    def record(self, entry: EdgeRequest) -> None:
        with self._lock:
            self._log.append(entry)


class EdgeHandler(BaseHTTPRequestHandler):
    """GET/HEAD of the origin's files with the vendor's cache header."""

    protocol_version = "HTTP/1.1"
    server_version = "cdn-preheat-sandbox-edge"

    def do_GET(self) -> None:
        edge: Edge = self.server.app  # type: ignore[attr-defined]
        for hook in edge.before_request:
            hook()
        url = edge.url(self.path)
        byte_range = self.headers.get("Range")
        hit = url in edge.cache
        found = edge.origin.lookup(self.path)
        if found is None:
            edge.record(EdgeRequest(self.command, self.path, byte_range, False, 404))
            send_not_found(self, edge.cache_header(False))
            return
        if not hit and self.command == "GET" and byte_range is None:
            edge.cache.add(url)
        headers = edge.cache_header(hit)
        if hit:
            headers["Age"] = "1"
        edge.record(
            EdgeRequest(self.command, self.path, byte_range, hit, 206 if byte_range else 200)
        )
        send_body(self, found[0], found[1], headers)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests and the CLI own the terminal."""
