"""``cdn-preheat serve``: the app on uvicorn, and the queue worker beside it.

Exposure rules, checked before anything listens (a ConfigError, exit 2):
without an API token the service listens on loopback only, and beyond
loopback ``CDN_PREHEAT_ALLOWED_ORIGINS`` is required too (the service fetches
what its callers send).

SIGTERM or Ctrl-C: the worker is told at once (its batches in flight are
settled, nothing more is claimed), uvicorn stops accepting and finishes the
requests it has, then the app's lifespan waits for the worker. The exit code
is 0, as for ``worker``; a worker that stopped on a fatal error (wrong
credentials, say) stops the service and its error is the exit code.

Logs go to stderr through :class:`cdn_preheat.redact.RedactingFilter`, the
access log included, so neither a token in a query (``?token=``) nor a
registered secret is ever written.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from cdn_preheat import stopping
from cdn_preheat.errors import ConfigError, PreheatError

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.service.settings import ServiceSettings

log = logging.getLogger("cdn_preheat.service")

# Seconds uvicorn waits for requests in progress after a stop before cancelling them.
GRACEFUL_SECONDS = 30


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the service to this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, tokens: tuple[str, ...], service: ServiceSettings) -> None:
    """Refuse to listen beyond loopback without a token, or without allowed origins."""
    if is_loopback(host):
        return
    if not tokens:
        raise ConfigError(
            f"serve --host {host} listens beyond loopback, so it needs an API token: set "
            "CDN_PREHEAT_API_TOKENS (or CDN_PREHEAT_API_TOKENS_FILE), or serve on 127.0.0.1."
        )
    if not service.allowed_origins:
        raise ConfigError(
            f"serve --host {host} listens beyond loopback, so it needs "
            "CDN_PREHEAT_ALLOWED_ORIGINS: the host patterns of the origins it may fetch "
            "playlists from, e.g. origin.example.com,*.example.com."
        )


def log_config(debug: bool = False) -> dict[str, Any]:
    """uvicorn's logging: one stderr handler, every record redacted first."""
    level = "DEBUG" if debug else "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "cdn_preheat.redact.RedactingFilter"}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
            "cdn_preheat": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def serve(
    settings: Settings,
    service: ServiceSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    worker: bool = True,
    idle: float = 30.0,
    debug: bool = False,
    on_listening: Any = None,
) -> int:
    """Serve until SIGTERM/Ctrl-C; the exit code. ``on_listening(url)`` once bound."""
    tokens = service.api_tokens()
    check_exposure(host, tokens, service)  # before anything is imported or opened

    import uvicorn

    from cdn_preheat.service.app import WorkerThread, create_app
    from cdn_preheat.service.engine import ServiceEngine

    engine = ServiceEngine(settings, service)
    stopping.STOP.clear()
    thread = WorkerThread(settings, stopping.STOP, idle=idle) if worker else None
    app = create_app(engine, settings, service, worker=thread)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=log_config(debug),
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    server = _Server(config, on_listening=on_listening)
    if thread is not None:
        thread.on_fatal = server.stop
    if not tokens:
        log.warning("no CDN_PREHEAT_API_TOKENS: /v1 answers callers on this machine only")
    with _quiet_signals():
        server.run()
    if thread is not None and thread.error is not None:
        error = thread.error
        if isinstance(error, PreheatError):
            raise error
        raise ConfigError(f"the worker stopped: {type(error).__name__}: {error}") from error
    if not server.started:
        raise ConfigError(f"cannot listen on {host}:{port}; is the port in use?")
    return 0


class _Server:
    """uvicorn's Server, telling the worker to stop the moment a signal arrives."""

    def __init__(self, config: Any, *, on_listening: Any = None) -> None:
        import uvicorn

        outer = self

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                stopping.STOP.set()
                super().handle_exit(sig, frame)

            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if self.should_exit or not self.servers:
                    return
                bound = self.servers[0].sockets[0].getsockname()
                shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
                outer.url = f"http://{shown}:{bound[1]}"
                sys.stderr.write(f"cdn-preheat serve: listening on {outer.url} (docs: /docs)\n")
                sys.stderr.flush()
                if on_listening is not None:
                    on_listening(outer.url)

        self.server = Server(config)
        self.url = ""

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    def stop(self) -> None:
        stopping.STOP.set()
        self.server.should_exit = True

    def run(self) -> None:
        try:
            self.server.run()
        except SystemExit:
            # uvicorn exits with its STARTUP_FAILURE, 3, when it cannot bind: the
            # README's "quota spent" code. serve() says what happened instead (exit 2).
            if self.server.started:
                raise


class _quiet_signals:
    """While serving: SIGINT/SIGTERM handled by uvicorn, and harmless once it re-raises them.

    uvicorn restores the handlers it found and raises the signals it caught
    again after a graceful stop; with the default handlers that would kill
    the process (SIGTERM) or raise KeyboardInterrupt (SIGINT) after the clean
    shutdown. Outside the main thread nothing is installed.
    """

    def __enter__(self) -> None:
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in stopping.SIGNALS:
                self.previous[signum] = signal.signal(signum, _ignore)

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _ignore(signum: int, frame: FrameType | None) -> None:
    stopping.STOP.set()
