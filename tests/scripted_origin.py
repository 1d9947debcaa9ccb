"""A loopback HTTP origin that answers with scripted replies, for expansion tests.

Each path (optionally with its query) gets a list of replies: one is used per
request and the last one repeats. Anything unscripted is a 404 HTML page.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Self

from cdn_preheat.sandbox.core import LoopbackServer

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    body: bytes | str = b""
    status: int = 200
    content_type: str = PLAYLIST_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    gzip: bool = False  # send the body gzip-encoded with Content-Encoding: gzip
    redirect: str | None = None  # Location; status defaults to 302
    delay: float = 0.0  # seconds to wait before answering
    drip: float = 0.0  # seconds between body bytes: an origin that trickles, never stalls


@dataclass(frozen=True)
class Request:
    """What the origin received."""

    target: str  # path and query
    headers: dict[str, str]  # lower-cased names


class ScriptedOrigin:
    """Serves :class:`Reply` scripts on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.dripped: dict[str, int] = {}  # target: body bytes a drip reply got out, once done
        self._server = LoopbackServer(_Handler, self)

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    @property
    def netloc(self) -> str:
        return self._server.netloc

    def url(self, target: str) -> str:
        return f"{self._server.url}{target}"

    def reset(self) -> None:
        """Forget every script and request, so one server can serve many tests."""
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def script(self, target: str, *replies: Reply) -> None:
        """Answer ``target`` (a path, or path?query for an exact match) with ``replies``."""
        with self._lock:
            self._scripts[target] = list(replies)

    def playlist(self, target: str, text: str | bytes, **options: object) -> None:
        """Serve ``text`` at ``target`` on every request."""
        self.script(target, Reply(body=text, **options))  # type: ignore[arg-type]

    def hits(self, target: str) -> int:
        """How many requests asked for ``target`` (path and query)."""
        with self._lock:
            return sum(1 for request in self.requests if request.target == target)

    def take(self, target: str, headers: dict[str, str]) -> Reply | None:
        """Record a request and return its next reply."""
        with self._lock:
            self.requests.append(Request(target, headers))
            script = self._scripts.get(target) or self._scripts.get(target.partition("?")[0])
            if not script:
                return None
            return script.pop(0) if len(script) > 1 else script[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real origins do
    server_version = "scripted-origin"

    def do_GET(self) -> None:
        origin: ScriptedOrigin = self.server.app  # type: ignore[attr-defined]
        received = {name.lower(): value for name, value in self.headers.items()}
        reply = origin.take(self.path, received)
        if reply is None:
            reply = Reply(b"<html><body>404 Not Found</body></html>", 404, "text/html")
        if reply.delay:
            time.sleep(reply.delay)
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        status = reply.status
        headers = {"Content-Type": reply.content_type, **reply.headers}
        if reply.redirect is not None:
            status = status if 300 <= status < 400 else 302
            headers["Location"] = reply.redirect
        if reply.gzip:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The client may have given up (size cap, timeout): that is what some tests do.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if not reply.drip:
                self.wfile.write(body)
                return
            sent = 0
            try:
                for offset in range(len(body)):
                    self.wfile.write(body[offset : offset + 1])
                    self.wfile.flush()
                    sent += 1
                    time.sleep(reply.drip)
            finally:
                origin.dripped[self.path] = sent

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest owns the terminal."""
