"""A real webhook receiver on 127.0.0.1:0 that verifies signatures, for the webhook tests.

It can go down (the port closes: connections are refused) and come back on
the same port, answer errors, or hold a request until told to answer (so a
test can kill the sender between the send and the mark).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cdn_preheat.service.webhooks import SIGNATURE_HEADER, verify_signature


@dataclass
class Delivery:
    body: dict[str, Any]
    signature_ok: bool
    headers: dict[str, str]


@dataclass
class Receiver:
    secret: str
    status: int = 204
    deliveries: list[Delivery] = field(default_factory=list)
    hold: threading.Event | None = None  # set: answer; unset: keep the sender waiting
    arrived: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/cdn"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = verify_signature(receiver.secret, raw, self.headers.get(SIGNATURE_HEADER, ""))
                receiver.deliveries.append(
                    Delivery(json.loads(raw), ok, {k.lower(): v for k, v in self.headers.items()})
                )
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(30)
                self.send_response(receiver.status if ok else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def down(self) -> None:
        """Close the port: senders get connection refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def up(self) -> None:
        """Listen again on the same port."""
        self.start()

    @property
    def ids(self) -> list[str]:
        return [delivery.body["id"] for delivery in self.deliveries]
