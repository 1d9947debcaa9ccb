"""Pieces every sandbox emulator shares: a settable clock, fault injection,
the edge's cache, and a threaded HTTP server on loopback.

The emulators are real HTTP servers so the official SDKs talk to them
unmodified; these helpers keep each emulator module about its own vendor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import random
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, Protocol

from yarl import URL


class SandboxClock:
    """Wall-clock time plus a settable offset, so tests can cross a quota day.

    ``wall_skew`` (seconds) is something else: how far the API servers' own
    clock is from this machine's. Signature checks (TC3, ACS3) and the
    ``Date`` header of every emulator answer use it, so ``cdn-preheat doctor``
    can be tested against a server whose clock disagrees with the client's.
    The quota-day offset leaves signatures alone: the SDKs sign with the
    machine's clock.
    """

    def __init__(self) -> None:
        self._offset = dt.timedelta(0)
        self._lock = threading.Lock()
        self.wall_skew = 0.0

    def wall_time(self) -> float:
        """The API servers' clock (POSIX seconds): this machine's plus ``wall_skew``."""
        return time.time() + self.wall_skew

    def now(self) -> dt.datetime:
        with self._lock:
            return dt.datetime.now(dt.UTC) + self._offset

    def advance(self, delta: dt.timedelta) -> None:
        with self._lock:
            self._offset += delta

    def day(self, utc_offset_hours: int) -> str:
        """The calendar day (YYYY-MM-DD) in the given UTC offset."""
        local = self.now().astimezone(dt.timezone(dt.timedelta(hours=utc_offset_hours)))
        return local.date().isoformat()

    def next_day(self, utc_offset_hours: int = 8) -> None:
        """Jump to just after the next midnight in the given offset."""
        tz = dt.timezone(dt.timedelta(hours=utc_offset_hours))
        local = self.now().astimezone(tz)
        midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        self.advance(midnight - local + dt.timedelta(seconds=1))


# How an emulator counts "N requests a second". No vendor document names the algorithm;
# what they say:
# - Tencent Cloud ("API 频率限制说明", cloud.tencent.com/document/product/1278/109059):
#   with the default 20 次/秒 "每一秒钟的前20次请求都能成功到达业务后端。之后的请求则会因超出
#   频率限制被云 API 拦截", and "限频的时间窗口是以请求到达服务器的时间计算,而不是客户端发出的
#   时间". Counted on arrival (the emulators count when they handle a request), and a
#   burst within a second is accepted; whether "each second" is the clock's second
#   (fixed windows) or any second (a sliding one) is not said.
# - Alibaba Cloud ("流量控制与配额管理", help.aliyun.com/document_detail/2391389.html):
#   "请求速率:5/1(s),指每1秒钟,最多允许请求接口5次". ECS's own page
#   (help.aliyun.com/zh/ecs/developer-reference/api-throttling) describes clock-aligned
#   windows for its per-minute limits ("在第T分钟时被流量控制,则该接口需要在第T+1分钟时才会被
#   允许继续调用"); the CDN pages say nothing.
# - Qiniu (developer.qiniu.com/fusion/13367): "url/dir 总量每秒 ≤ 240", nothing more.
# No source settles this, so the sandbox offers the plausible readings:
# - "sliding": at most N in any one second (the default: the strictest reading of
#   "at most N each second");
# - "fixed": at most N in each second of the clock, [k, k+1) -- 2N may pass across a
#   boundary;
# - "bucket": a token bucket holding N (full at the start) refilled at N a second.
# Every sequence of arrivals a sliding window accepts, the other two accept (a clock
# second is one of the sliding window's seconds; any span of L seconds holds at most
# N x (floor(L) + 1) <= N + N x L of them, which a full bucket admits). A spacing rule
# (a leaky bucket without burst, a call every 1/N s) or a bucket that starts empty is
# left out: both refuse two calls in a row, which every source's "N each second"
# accepts.
RateCounting = Literal["sliding", "fixed", "bucket"]
RATE_COUNTINGS: tuple[RateCounting, ...] = ("sliding", "fixed", "bucket")


class RateWindows:
    """Each key's (an API, or a budget several APIs share) rate, counted as a vendor might.

    ``allow(key, limit, units)`` admits a request spending ``units`` (1 for a
    call; Qiniu counts URLs) when ``counting`` (:data:`RateCounting`) lets it:

    - ``sliding`` (the default): the last ``window`` seconds hold no more than
      ``limit - units``;
    - ``fixed``: the current window of the clock (``floor((now + phase) /
      window)``, aligned to the wall clock's seconds unless ``phase`` is given)
      holds no more than ``limit - units``;
    - ``bucket``: a bucket of ``limit`` tokens, full when the key is first seen
      and refilled at ``limit / window`` a second, holds ``units`` tokens.

    Refused requests are not counted: no document says they are (a limiter that
    counted them would only refuse further a client it already refused). The
    clock is the machine's monotonic one by default (SDKs send in real time), and
    tests stretch the window (``window``) so that "N calls in a window" does not
    depend on how fast a test runs.
    """

    def __init__(
        self,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        counting: RateCounting = "sliding",
        phase: float | None = None,
    ) -> None:
        if counting not in RATE_COUNTINGS:
            raise ValueError(f"unknown rate counting {counting!r}")
        self.window = window
        self.counting: RateCounting = counting
        self.clock = clock
        # Fixed windows start on the wall clock's seconds (the monotonic clock's own
        # zero is arbitrary).
        self.phase = time.time() - time.monotonic() if phase is None else phase
        self._hits: dict[str, deque[tuple[float, int]]] = {}
        self._totals: dict[str, int] = {}
        self._fixed: dict[str, tuple[int, int]] = {}  # key -> (window number, units in it)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def tune(self, window: float, counting: RateCounting) -> None:
        """Follow an emulator's (mutable) limits; a new way of counting starts afresh."""
        if counting not in RATE_COUNTINGS:
            raise ValueError(f"unknown rate counting {counting!r}")
        with self._lock:
            self.window = window
            if counting != self.counting:
                self.counting = counting
                self._hits.clear()
                self._totals.clear()
                self._fixed.clear()
                self._buckets.clear()

    def allow(self, key: str, limit: float, units: int = 1) -> bool:
        now = self.clock()
        with self._lock:
            if self.counting == "fixed":
                return self._allow_fixed(key, limit, units, now)
            if self.counting == "bucket":
                return self._allow_bucket(key, limit, units, now)
            hits = self._hits.setdefault(key, deque())
            total = self._totals.get(key, 0)
            while hits and hits[0][0] <= now - self.window:
                total -= hits.popleft()[1]
            if total + units > limit:
                self._totals[key] = total
                return False
            hits.append((now, units))
            self._totals[key] = total + units
            return True

    def _allow_fixed(self, key: str, limit: float, units: int, now: float) -> bool:
        number = math.floor((now + self.phase) / self.window)
        current, total = self._fixed.get(key, (number, 0))
        if current != number:
            total = 0
        if total + units > limit:
            self._fixed[key] = (number, total)
            return False
        self._fixed[key] = (number, total + units)
        return True

    def _allow_bucket(self, key: str, limit: float, units: int, now: float) -> bool:
        tokens, when = self._buckets.get(key, (limit, now))
        tokens = min(limit, tokens + max(0.0, now - when) * limit / self.window)
        # A hair of tolerance: after a full burst, exactly a window later the refill is
        # ``limit`` tokens in exact arithmetic, which a sliding window admits too.
        if tokens + 1e-9 < units:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - units, now)
        return True


# How an emulator writes back the URLs it was given. The vendors do not document
# whether their task lists echo the submitted string; they may normalise it (RFC 3986
# §6.2.2: host case, percent-encoding case, default port; Alibaba documents ObjectPath
# as "加速域名/文件", domain/file without a scheme). Emulators offer both.
UrlEcho = Literal["echo", "normalise"]


def normalised_url(url: str, *, scheme: bool = True) -> str:
    """``url`` as a normalising vendor might answer it; without ``scheme``: host/path."""
    parsed = URL(url)
    text = str(parsed)  # yarl lower-cases scheme and host, re-quotes, drops default ports
    return text.split("://", 1)[1] if not scheme and "://" in text else text


FaultKind = Literal["ok", "server_error", "rate_limited", "drop", "lost_answer", "late_answer"]


@dataclass
class Faults:
    """Faults injected on API requests, each a probability in [0, 1]."""

    latency: float = 0.0  # seconds added to every API request
    server_error: float = 0.0  # answer HTTP 502 with an HTML body
    rate_limited: float = 0.0  # answer the vendor's rate-limit error
    drop: float = 0.0  # close the connection without answering
    # Carry the request out, then close the connection without answering: the
    # client cannot tell this from ``drop`` although its request took effect.
    # Emulators that do not support it treat it as "ok".
    lost_answer: float = 0.0
    # Answer late: this share of requests waits ``slow_seconds`` more (a congested API)
    # before it is carried out, so it takes effect late too.
    slow: float = 0.0
    slow_seconds: float = 3.0
    # Carry the request out at once, then answer ``slow_seconds`` later: past a
    # client's deadline, the request took effect although the client saw a timeout.
    # Emulators that do not support it treat it as "ok".
    late_answer: float = 0.0
    seed: int | None = None
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def pause(self) -> None:
        """Wait the latency, plus ``slow_seconds`` for the ``slow`` share of requests."""
        delay = self.latency
        if self.slow:
            with self._lock:
                if self._random.random() < self.slow:
                    delay += self.slow_seconds
        if delay:
            time.sleep(delay)

    def draw(self) -> FaultKind:
        with self._lock:
            roll = self._random.random()
        for kind, chance in (
            ("server_error", self.server_error),
            ("rate_limited", self.rate_limited),
            ("drop", self.drop),
            ("lost_answer", self.lost_answer),
            ("late_answer", self.late_answer),
        ):
            if roll < chance:
                return kind  # type: ignore[return-value]
            roll -= chance
        return "ok"


Layer = Literal["edge", "upper"]


class EdgeCache:
    """What the sandbox CDN holds, by full URL (scheme://host:port/path?query), per layer.

    Two layers, as the CDNs build them: the ``edge`` that answers viewers and
    an ``upper`` (Tencent's middle layer, Alibaba's L2) that edges fetch from.
    ``add``/``in`` and ``len`` are about the edge; a purge (``discard``) drops
    both copies. Which layer a prefetch fills is each vendor's rule:
    :func:`cdn_preheat.sandbox.edge.prefetched`; ``prefetch_layer`` overrides it
    per vendor, for behaviours no document settles.
    """

    def __init__(self) -> None:
        self._edge: set[str] = set()
        self._upper: set[str] = set()
        self._lock = threading.Lock()
        self.prefetch_layer: dict[str, Layer] = {}

    def add(self, url: str) -> None:
        """Hold ``url`` at the edge (and so, as a fetch through it, in the upper layer)."""
        self.fill(url, "edge")

    def fill(self, url: str, layer: Layer) -> None:
        with self._lock:
            self._upper.add(url)
            if layer == "edge":
                self._edge.add(url)

    def layer_of(self, url: str) -> Layer | None:
        """The nearest layer holding ``url``: ``edge``, ``upper`` or None."""
        with self._lock:
            if url in self._edge:
                return "edge"
            return "upper" if url in self._upper else None

    def at_edge(self, url: str) -> bool:
        with self._lock:
            return url in self._edge

    def discard(self, url: str) -> None:
        with self._lock:
            self._edge.discard(url)
            self._upper.discard(url)

    def evict_edge(self, url: str) -> None:
        """The edge dropped its copy (space, heat); the upper layer keeps its own."""
        with self._lock:
            self._edge.discard(url)

    def discard_prefix(self, prefix: str) -> None:
        with self._lock:
            self._edge = {u for u in self._edge if not u.startswith(prefix)}
            self._upper = {u for u in self._upper if not u.startswith(prefix)}

    def __contains__(self, url: object) -> bool:
        with self._lock:
            return url in self._upper  # every edge copy has an upper-layer copy

    def __len__(self) -> int:
        with self._lock:
            return len(self._upper)


# Sandbox-only: every API emulator answers ``GET /_sandbox/received`` (no signature)
# with what it accepted, so a deployment can be checked from outside Python. No
# vendor API has this path.
RECEIVED_PATH = "/_sandbox/received"


def received_document(
    vendor: str,
    accepted: list[dict[str, Any]],
    outcomes: Mapping[str, int],
    rate_counting: RateCounting,
) -> bytes:
    """The JSON body of ``GET /_sandbox/received`` (and how the API counts its rate)."""
    document = {
        "vendor": vendor,
        "accepted": accepted,
        "urls": sum(len(item.get("urls", ())) for item in accepted),
        "outcomes": dict(outcomes),
        "rate_counting": rate_counting,
    }
    return json.dumps(document).encode()


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 served from a daemon thread.

    ``handler`` is a BaseHTTPRequestHandler subclass; it reaches the emulator
    through ``self.server.app`` (set here).
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], app: object, port: int = 0) -> None:
        # Nagle's algorithm holds small answers back ~40 ms behind delayed ACKs,
        # which skews every emulator's latency and its per-second rate window.
        clock = getattr(app, "clock", None)
        members: dict[str, object] = {"disable_nagle_algorithm": True}
        if isinstance(clock, SandboxClock):
            # The Date header from the server's (possibly skewed) clock, as doctor reads it.
            members["date_time_string"] = lambda self, timestamp=None: (
                BaseHTTPRequestHandler.date_time_string(
                    self, clock.wall_time() if timestamp is None else timestamp
                )
            )
        no_delay = type(handler.__name__, (handler,), members)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), no_delay)
        self._httpd.daemon_threads = True
        self._httpd.app = app  # type: ignore[attr-defined]
        # A short poll makes stop() quick; tests start and stop many servers.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# -- the wire: one way every emulator takes a request and answers it ---------------

BAD_GATEWAY = (
    b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"
)


@dataclass(frozen=True)
class Request:
    """One HTTP request as it arrived (header names lower-cased)."""

    method: str
    target: str  # path and query
    headers: Mapping[str, str]
    body: bytes
    request_line: str = ""  # "POST /path?query HTTP/1.1", for request-line limits


@dataclass(frozen=True)
class Reply:
    """One HTTP answer."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


class InFlight:
    """Requests an emulator is serving at once, and the most so far (a sandbox-only count).

    What tests and benches read to see how many calls a client keeps in flight,
    counted where the requests arrive rather than inferred from timings.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0
        self._peak = 0

    @property
    def peak(self) -> int:
        with self._lock:
            return self._peak

    def reset(self) -> None:
        """Count the most from now on (the requests being served still count)."""
        with self._lock:
            self._peak = self._now

    def __enter__(self) -> None:
        with self._lock:
            self._now += 1
            self._peak = max(self._peak, self._now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._now -= 1


_IN_FLIGHT_LOCK = threading.Lock()


class EmulatorBase(ABC):
    """A vendor API emulator: a request in, a reply (or a dropped connection) out.

    :meth:`serve` applies the sandbox's :class:`Faults` the same way for every
    vendor, around the vendor's own :meth:`answer`:

    - ``latency`` and ``slow``: the request waits first (a congested API);
    - ``drop``: the connection closes before the request runs;
    - ``server_error``: a gateway's 502 before the request runs;
    - ``rate_limited``: the vendor's own rate-limit answer (``answer(rate_limited=True)``);
    - ``lost_answer``: the request is carried out, then the connection closes
      unanswered, so the client cannot tell it from ``drop``;
    - ``late_answer``: carried out at once, answered ``slow_seconds`` later.

    A vendor module implements :meth:`answer` (and :meth:`received_json`),
    names itself and its ``Server`` header, and counts faults in :meth:`on_fault`.
    """

    name: ClassVar[str]
    server_version: ClassVar[str] = "cdn-preheat-sandbox"
    faults: Faults

    @property
    def in_flight(self) -> InFlight:
        """The API requests this emulator is serving at once (its latency included)."""
        counter = self.__dict__.get("_in_flight")
        if not isinstance(counter, InFlight):
            with _IN_FLIGHT_LOCK:
                counter = self.__dict__.setdefault("_in_flight", InFlight())
        assert isinstance(counter, InFlight)
        return counter

    def serve(self, request: Request) -> Reply | None:
        """The reply to ``request``; None: close the connection without one."""
        early = self.unfaulted(request)
        if early is not None:
            return early
        with self.in_flight:
            return self._faulted(request)

    def _faulted(self, request: Request) -> Reply | None:
        """``answer`` with the sandbox's faults around it (see the class docstring)."""
        self.faults.pause()
        fault = self.faults.draw()
        if fault != "ok":
            self.on_fault(fault)
        if fault == "drop":
            return None
        if fault == "server_error":
            return Reply(502, BAD_GATEWAY, "text/html")
        reply = self.answer(request, rate_limited=fault == "rate_limited")
        if fault == "lost_answer":
            return None  # done, but the client never hears of it
        if fault == "late_answer":
            time.sleep(self.faults.slow_seconds)  # done, answered after the client's deadline
        return reply

    def unfaulted(self, request: Request) -> Reply | None:
        """Answers no fault reaches: the sandbox-only ``GET /_sandbox/received``."""
        if request.method == "GET" and request.target == RECEIVED_PATH:
            return Reply(200, self.received_json())
        return None

    @abstractmethod
    def answer(self, request: Request, *, rate_limited: bool) -> Reply:
        """Carry the request out as the vendor would; ``rate_limited``: refuse it as too fast."""

    @abstractmethod
    def received_json(self) -> bytes:
        """The body of ``GET /_sandbox/received``."""

    def on_fault(self, kind: FaultKind) -> None:  # noqa: B027 - counting is optional
        """A fault other than "ok" was drawn for a request (count it)."""

    def start(self, port: int = 0) -> LoopbackServer:
        """Serve the API on 127.0.0.1:``port`` (0: any free port)."""
        return LoopbackServer(EmulatorHandler, self, port).start()


class CountedOutcomes:
    """The ``outcomes`` an emulator reports at ``GET /_sandbox/received``, faults included.

    For an :class:`EmulatorBase` subclass that keeps ``outcomes`` and ``_lock``.
    Hang-ups and 502s before the request ran are "fault"; a lost or late answer
    (the request ran) is counted under its own name.
    """

    outcomes: Counter[str]
    _lock: contextlib.AbstractContextManager[Any]

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def on_fault(self, kind: FaultKind) -> None:
        if kind in ("drop", "server_error"):
            self._count("fault")
        elif kind in ("lost_answer", "late_answer"):
            self._count(kind)


class EmulatorHandler(BaseHTTPRequestHandler):
    """Hands every request to :meth:`EmulatorBase.serve` and writes its reply."""

    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        app: EmulatorBase = self.server.app  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = app.serve(Request(self.command, self.path, headers, body, self.requestline))
        if reply is None:
            self.close_connection = True  # hang up without a word
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = _serve

    def version_string(self) -> str:
        app: EmulatorBase = self.server.app  # type: ignore[attr-defined]
        return f"{app.server_version} {self.sys_version}"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests and the CLI own the terminal."""


# -- registration: how the sandbox builds each vendor's emulator ------------------


class Emulator(Protocol):
    """What the sandbox needs from a vendor API emulator."""

    def start(self, port: int = 0) -> LoopbackServer: ...

    def received_urls(self) -> list[str]:
        """Every URL a prefetch request delivered, in arrival order."""
        ...


@dataclass(frozen=True)
class Shared:
    """What every emulator of one sandbox is built from."""

    clock: SandboxClock
    cache: EdgeCache
    origin: Any  # cdn_preheat.sandbox.origin.Origin
    edge_netloc: str  # the CDN domain every emulator's account owns
    faults: Faults


@dataclass(frozen=True)
class EmulatorSpec:
    """One vendor's emulator, as its module declares it (``EMULATOR``).

    ``build(shared, credentials, limits)`` makes it (``limits`` None: the
    emulator's sandbox defaults); ``limits_type`` is the dataclass of its
    limits, whose ``task_delay`` and ``rate_counting`` the sandbox may override; ``client_env``
    gives the variables that point a client at it; ``set_limits`` sets its daily
    prefetch quota and request rate (``sandbox --quota/--rate``).

    Its edge (``sandbox/edge.py``): ``cache_headers`` are the headers the vendor's
    edges send for an edge hit, an upper-layer hit and a miss (keys ``edge``,
    ``upper``, ``origin``); ``prefetch_layer(area, layer_option)`` is the layer a
    finished prefetch fills, as the vendor documents it.
    """

    name: str
    build: Callable[[Shared, tuple[str, str], Any], Any]
    limits_type: type[Any]
    credentials: tuple[str, str]
    client_env: Callable[[str, tuple[str, str]], dict[str, str]]
    set_limits: Callable[[Any, int | None, int | None], None]
    cache_headers: Mapping[str, list[tuple[str, str]]]
    prefetch_layer: Callable[[str, str], Layer]
    default_limits: Callable[[], Any] | None = None

    def limits(
        self, given: Any, task_delay: float | None, rate_counting: RateCounting | None = None
    ) -> Any:
        """``given`` (or the defaults), with ``task_delay`` and ``rate_counting`` when set."""
        limits = given
        if limits is None:
            limits = self.default_limits() if self.default_limits else self.limits_type()
        if task_delay is not None:
            limits = dataclasses.replace(limits, task_delay=task_delay)
        if rate_counting is not None:
            limits = dataclasses.replace(limits, rate_counting=rate_counting)
        return limits


def emulator_specs() -> dict[str, EmulatorSpec]:
    """Every registered provider's emulator, by provider name, in registry order."""
    import importlib

    from cdn_preheat.providers import provider_specs

    specs: dict[str, EmulatorSpec] = {}
    for provider in provider_specs():
        if provider.emulator:
            specs[provider.name] = importlib.import_module(provider.emulator).EMULATOR
    return specs
