"""The ASGI app: ``create_app(engine, settings)`` builds it, ``serve`` runs it on uvicorn.

Mounting a router (the dashboard, webhooks and storage events do this): a
module under ``cdn_preheat.service`` exposes ``router`` (a FastAPI
``APIRouter``) and, optionally, ``lifespan(app)`` (an async context manager
for background work: it is entered at start-up and left at shutdown, before
the worker stops); add its name to :data:`ROUTER_MODULES`. Routes reach the
engine and the settings through :mod:`cdn_preheat.service.deps` and protect
themselves with :mod:`cdn_preheat.service.auth`.

Every error answer is ``{"error": "one sentence"}``; bodies over
:data:`MAX_BODY_BYTES` are refused with 413 before they are read whole.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdn_preheat import __version__, redact
from cdn_preheat.errors import (
    AuthError,
    ConfigError,
    InputError,
    LedgerError,
    PlaylistError,
    PreheatError,
    QuotaExhausted,
    RateLimited,
)
from cdn_preheat.service.engine import ServiceEngine
from cdn_preheat.service.settings import ServiceSettings

if TYPE_CHECKING:
    from cdn_preheat.config import Settings

log = logging.getLogger("cdn_preheat.service")

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB
# Router modules mounted in this order (see the module docstring).
ROUTER_MODULES: tuple[str, ...] = (
    "cdn_preheat.service.api",
    "cdn_preheat.service.webhooks",  # the signed webhook delivery loop
    "cdn_preheat.service.events",  # storage notifications
    "cdn_preheat.service.dashboard",  # the HTML dashboard at /
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def error_response(
    status: int, sentence: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": sentence}, status_code=status, headers=headers)


def _sentence(text: str) -> str:
    text = " ".join(str(text).split()).strip()
    if not text:
        return "the request failed."
    return text if text.endswith((".", "?", "!")) else f"{text}."


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets 413 and is not passed on.

    A declared Content-Length over the limit is refused before anything is
    read; a chunked body is counted as it arrives.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.strip().isdigit() and int(value) > self.limit:
                await self._refuse(scope, receive, send)
                return
        seen = 0
        refused = False
        started = False

        async def counted() -> Message:
            # Past the limit: answer 413 here, and tell the app the client left,
            # so it stops reading and whatever it sends is dropped.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    if not started:
                        await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted, tracked)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, f"the request body is over {self.limit // 1024} KiB; send less at a time."
        )
        await response(scope, receive, send)


def _status_of(error: PreheatError) -> int:
    if isinstance(error, InputError | PlaylistError):
        return 422
    if isinstance(error, QuotaExhausted | RateLimited):
        return 429
    if isinstance(error, ConfigError | LedgerError | AuthError):
        return 503
    return 502  # the CDN refused or failed


def _validation_sentence(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is invalid."
    first = errors[0]
    kind = str(first.get("type", ""))
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    where = ".".join(loc)
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind == "json_invalid":
        return "the body is not valid JSON."
    if kind == "extra_forbidden":
        return f"unknown field {where!r}; see /docs for the fields this route takes."
    if kind == "missing":
        return f"{where or 'the body'} is required."
    return _sentence(f"{where}: {message}" if where else message)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_sentence(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else ""
        if exc.status_code == 404 and detail in ("", "Not Found"):
            detail = f"no such route: {request.method} {request.url.path}"
        elif exc.status_code == 405 and detail in ("", "Method Not Allowed"):
            detail = f"{request.method} is not allowed on {request.url.path}"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, _sentence(redact.redact(detail)), headers)

    @app.exception_handler(PreheatError)
    async def preheat_error(request: Request, exc: PreheatError) -> JSONResponse:
        return error_response(_status_of(exc), _sentence(redact.redact(str(exc))))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected failure on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(
            500, f"internal error ({type(exc).__name__}); the service log has the details."
        )


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for module in app.state.router_modules:
            hook = getattr(module, "lifespan", None)
            if hook is not None:
                await stack.enter_async_context(hook(app))
        worker: WorkerThread | None = app.state.worker
        if worker is not None:
            worker.start()
            stack.push_async_callback(anyio.to_thread.run_sync, worker.stop)
        yield
    app.state.engine.close()


class WorkerThread:
    """The queue worker (:meth:`cdn_preheat.api.Preheater.work`) beside the app, on the
    same ledger.

    It has its own preheater (ledger connection and provider); ``stop()`` sets its stop
    event and waits: batches in flight are settled, no lease is left.

    With ``CDN_PREHEAT_TARGETS`` it drains every target side by side
    (:meth:`cdn_preheat.targets.TargetsPreheater.work`): a target whose loop stops
    (wrong keys) stops alone, its sentence in ``target_errors`` (and given to the
    ``on_target_error`` hooks); only when every target has stopped is that the
    worker's error.
    """

    def __init__(self, settings: Settings, stop: threading.Event, *, idle: float = 30.0) -> None:
        self.settings = settings
        self.stop_event = stop
        self.wake = threading.Event()  # set when a video is queued: no idle wait
        self.idle = idle
        self.error: BaseException | None = None
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._main, name="cdn-preheat-worker", daemon=True)
        self.on_provider: list[Callable[[Any], None]] = []
        self.on_fatal: Callable[[], None] | None = None  # serve stops the server
        self.target_errors: dict[str, str] = {}
        self.on_target_error: list[Callable[[str, str], None]] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _target_failed(self, name: str, sentence: str) -> None:
        self.target_errors[name] = redact.redact(sentence)
        for hook in self.on_target_error:
            hook(name, self.target_errors[name])

    def _targets_main(self) -> None:
        from cdn_preheat.targets import TargetsPreheater

        with TargetsPreheater.from_settings(self.settings) as targets:
            for unit in targets.units:
                for hook in self.on_provider:
                    hook(unit.provider)
            self.exit_code = targets.work(
                stop=self.stop_event, idle=self.idle, wake=self.wake, on_error=self._target_failed
            )
        if not self.stop_event.is_set():  # every target's loop has stopped on its error
            sentences = "; ".join(self.target_errors.values()) or "every target stopped"
            raise ConfigError(f"every target stopped: {sentences}")

    def _main(self) -> None:
        from cdn_preheat.api import Preheater

        try:
            if self.settings.cdn_preheat_targets:
                self._targets_main()
                return
            with Preheater.from_settings(self.settings) as preheater:
                provider = preheater.provider
                for hook in self.on_provider:
                    hook(provider)
                self.exit_code = preheater.work(
                    stop=self.stop_event, idle=self.idle, wake=self.wake
                )
        except BaseException as exc:  # recorded for /readyz and serve's exit code
            self.error = exc
            log.error("the worker stopped: %s", redact.redact(str(exc)))
            if self.on_fatal is not None:
                self.on_fatal()


def create_app(
    engine: ServiceEngine | Settings,
    settings: Settings | None = None,
    service_settings: ServiceSettings | None = None,
    *,
    worker: WorkerThread | None = None,
) -> FastAPI:
    """The app over ``engine`` (or a new :class:`ServiceEngine` over ``engine`` as settings).

    ``worker``: run this queue worker for the app's lifetime (``serve`` does
    unless ``--no-worker``).
    """
    from cdn_preheat.service.metrics import Metrics

    if not isinstance(engine, ServiceEngine):
        engine = ServiceEngine(engine, service_settings)
    settings = settings or engine.settings
    service_settings = service_settings or engine.service_settings
    app = FastAPI(
        title="cdn-preheat",
        version=__version__,
        summary="Queue videos for CDN preheating, follow them, verify and purge.",
        lifespan=_lifespan,
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.service_settings = service_settings
    app.state.api_tokens = service_settings.api_tokens()
    app.state.worker = worker
    app.state.metrics = metrics = Metrics(engine)
    engine.on_provider.append(metrics.instrument)
    if worker is not None:
        worker.on_provider.append(metrics.instrument)
        engine.on_queued.append(worker.wake.set)
        worker.on_target_error.append(engine.target_errors.__setitem__)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _health_routes(app)
    metrics.mount(app)
    app.state.router_modules = []
    for name in ROUTER_MODULES:
        module = importlib.import_module(name)
        app.include_router(module.router)
        app.state.router_modules.append(module)
    return app


def _health_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"], summary="The process lives (no token).")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Settings valid, ledger answers (no token).")
    async def readyz(request: Request) -> JSONResponse:
        engine: ServiceEngine = request.app.state.engine
        worker: WorkerThread | None = request.app.state.worker
        try:
            await engine.ready()
        except PreheatError as exc:
            return error_response(503, _sentence(redact.redact(str(exc))))
        if worker is not None and worker.error is not None:
            reason = redact.redact(str(worker.error)) or type(worker.error).__name__
            return error_response(503, _sentence(f"the worker stopped: {reason}"))
        return JSONResponse({"status": "ready"})
