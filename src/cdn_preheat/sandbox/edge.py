"""The sandbox's CDN edge: the origin's files, answered with a vendor's cache headers.

The CDN behind the edge has two layers (:class:`EdgeCache`): the edge that
answers viewers and an upper layer (Tencent's middle layer, Alibaba's L2)
that edges fetch from. A prefetch fills the layer each vendor documents
(:func:`prefetched`): for Tencent mainland and Alibaba that is the upper
layer, so the first edge answer after a prefetch is an upper-layer hit and a
viewer's GET then copies the file to the edge.

What a GET fills:

- a full GET fills the edge from whichever layer answered (the origin: both
  layers), as any CDN stores what it fetched; the HTTP warm provider relies
  on that;
- a ranged GET (``verify``'s ``Range: bytes=0-0`` probe) fills nothing by
  default. Tencent's "Range 回源" (range origin-pull) is off by default except
  for COS origins, and with it off a ranged request that misses is forwarded
  with its Range and only the slice comes back
  (cloud.tencent.com/document/product/228/7184). With it on, "仅拉取用户需要的部分
  文件至节点缓存": the slice is stored. No document settles what every domain
  does, so ``Edge(range_fills=True)`` models the second behaviour: then a
  second ``verify`` reports edge hits where the first reported upper-layer
  hits or misses.

One edge may answer on several hosts (:meth:`Edge.bind_host`): each host is a
port of its own with its own vendor's headers, and cached files are keyed by
the host they were asked on, so a prefetch through one account's domain warms
that domain only (a CDN caches per domain: the cache key starts with the host).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Literal

from cdn_preheat.sandbox.core import EdgeCache, EmulatorSpec, Layer, LoopbackServer
from cdn_preheat.sandbox.origin import Origin, send_body, send_not_found

# An emulated vendor's name: a registered provider whose emulator module declares
# its edges' cache headers and prefetch layers (EmulatorSpec).
Vendor = str
# What the edge answered from: its own copy, the upper layer's, or the origin.
Served = Literal["edge", "upper", "origin"]


@functools.cache
def emulated_edge(vendor: str) -> EmulatorSpec:
    """The emulator of ``vendor``, which declares its edges' headers and prefetch layers.

    Remembered per vendor: every finished prefetch asks, and reading the registry
    imports each provider's emulator module again (a tenth of the emulator's time
    in the push bench).
    """
    from cdn_preheat.sandbox.core import emulator_specs

    spec = emulator_specs().get(vendor)
    if spec is None:
        raise ValueError(f"unknown CDN vendor {vendor!r}")
    return spec


def default_prefetch_layer(vendor: str, area: str = "", layer_option: str = "") -> Layer:
    """The layer a finished prefetch fills, as each vendor documents it (its emulator's)."""
    return emulated_edge(vendor).prefetch_layer(area, layer_option)


def prefetched(
    cache: EdgeCache, vendor: str, url: str, *, area: str = "", layer_option: str = ""
) -> None:
    """A prefetch of ``url`` finished: fill the vendor's layer (or the override)."""
    layer = cache.prefetch_layer.get(vendor) or default_prefetch_layer(vendor, area, layer_option)
    cache.fill(url, layer)


@dataclass(frozen=True)
class EdgeRequest:
    """One request the edge answered. ``hit``: the edge's own copy served it."""

    method: str
    path: str
    range: str | None
    hit: bool
    status: int
    served: Served = "origin"

    @property
    def cached(self) -> bool:
        """Served from a CDN layer (the edge's or the upper layer's copy)."""
        return self.served != "origin"


def _edge_headers(vendor: str) -> Mapping[str, list[tuple[str, str]]]:
    try:
        return emulated_edge(vendor).cache_headers
    except ValueError:
        raise ValueError(f"unknown edge vendor {vendor!r}") from None


class Edge:
    """The edge's behaviour and request log; thread-safe."""

    def __init__(
        self,
        origin: Origin,
        cache: EdgeCache,
        vendor: Vendor = "tencent",
        *,
        range_fills: bool = False,
    ) -> None:
        headers = _edge_headers(vendor)
        self.origin = origin
        self.cache = cache
        self.vendor: Vendor = vendor
        self.range_fills = range_fills  # see the module docstring
        # Headers that replace the vendor's for an answer served from a layer, for what no
        # document settles (EdgeOne names no layer in EO-Cache-Status: a middle-layer copy
        # may read HIT, the default, or MISS at the edge).
        self.header_overrides: dict[Served, list[tuple[str, str]]] = {}
        self.netloc = ""  # set by bind(): the first host
        self.vendors: dict[str, Vendor] = {}  # every host this edge answers on -> its vendor
        self._headers: dict[str, Mapping[str, list[tuple[str, str]]]] = {"": headers}
        # Called before each request, so emulator tasks due by now land in the cache first.
        self.before_request: list[Callable[[], None]] = []
        self._log: list[EdgeRequest] = []
        self._lock = threading.Lock()

    def bind(self, port: int = 0) -> LoopbackServer:
        """Bind (not yet start) the edge's server; its netloc is known from here on."""
        server = LoopbackServer(EdgeHandler, self, port)
        self.netloc = server.netloc
        self.vendors[server.netloc] = self.vendor
        self._headers[server.netloc] = self._headers[""]
        return server

    def bind_host(self, vendor: Vendor, port: int = 0) -> LoopbackServer:
        """Bind a further host of this edge (another account's domain) with ``vendor``'s headers.

        Files are cached under the host they are asked on, so each host is warm only
        in what was prefetched through it.
        """
        headers = _edge_headers(vendor)
        server = LoopbackServer(EdgeHandler, self, port)
        self.vendors[server.netloc] = vendor
        self._headers[server.netloc] = headers
        return server

    def url(self, path: str) -> str:
        """The full URL of ``path`` (with any query) on this edge."""
        return f"http://{self.netloc}{path}"

    @property
    def requests(self) -> list[EdgeRequest]:
        with self._lock:
            return list(self._log)

    def cache_headers(self, served: Served, netloc: str | None = None) -> list[tuple[str, str]]:
        """Host ``netloc``'s vendor's cache headers for an answer served from ``served``."""
        headers = self._headers.get(netloc or self.netloc, self._headers[""])
        return list(self.header_overrides.get(served) or headers[served])

    def cache_header(self, hit: bool) -> dict[str, str]:
        """The first cache header of an edge hit (``hit``) or a miss."""
        name, value = self.cache_headers("edge" if hit else "origin")[0]
        return {name: value}

    def record(self, entry: EdgeRequest) -> None:
        with self._lock:
            self._log.append(entry)


class EdgeHandler(BaseHTTPRequestHandler):
    """GET/HEAD of the origin's files with the vendor's cache headers."""

    protocol_version = "HTTP/1.1"
    server_version = "cdn-preheat-sandbox-edge"

    def do_GET(self) -> None:
        edge: Edge = self.server.app  # type: ignore[attr-defined]
        for hook in edge.before_request:
            hook()
        # The host this port answers as: the cache key's host (one edge, several domains).
        netloc = f"127.0.0.1:{self.connection.getsockname()[1]}"
        url = f"http://{netloc}{self.path}"
        byte_range = self.headers.get("Range")
        found = edge.origin.lookup(self.path)
        if found is None:
            edge.record(EdgeRequest(self.command, self.path, byte_range, False, 404))
            send_not_found(self, dict(edge.cache_headers("origin", netloc)))
            return
        served: Served = edge.cache.layer_of(url) or "origin"
        fills = self.command == "GET" and (byte_range is None or edge.range_fills)
        if served != "edge" and fills:
            edge.cache.add(url)  # the edge keeps what it fetched (from the origin: both layers)
        headers = edge.cache_headers(served, netloc)
        if served != "origin":
            headers.append(("Age", "1"))
        status = 206 if byte_range else 200
        edge.record(
            EdgeRequest(self.command, self.path, byte_range, served == "edge", status, served)
        )
        send_body(self, found[0], found[1], headers)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests and the CLI own the terminal."""
