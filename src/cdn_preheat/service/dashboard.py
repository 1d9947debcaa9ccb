"""The dashboard at ``/``: server-rendered HTML, no build step, nothing from the internet.

Pages (Jinja2 templates in ``templates/``, inline CSS, no JavaScript):

- ``/``: today's quota per provider and area (used and left, as bars), the
  queue depth, the videos with their state and progress (paged, filtered by
  state), the webhook events of late, and a form that queues a video;
- ``/videos/{video_id}``: the video's record, its renditions (URLs grouped by
  folder, as ``verify`` groups them) with their states, its failures with
  reasons, and the last verify result (a button runs one).

With ``CDN_PREHEAT_TARGETS`` the quota table has a row per target (a pool's
members below it, a failing target's sentence in its row), and a video's page
shows its progress on each target and the last verify per target.

The form is validated by the API's own model (``VideoIn``) and queued through
the same engine call as ``POST /v1/videos``. A browser cannot send a bearer
header, so the dashboard asks for a token once (a login form, or ``?token=``)
and keeps it in an HttpOnly, SameSite=Strict cookie, which also keeps other
sites' pages from posting its forms; with no token configured, loopback
callers pass as on the API.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import anyio.to_thread
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from cdn_preheat import notify
from cdn_preheat.errors import InputError, PreheatError
from cdn_preheat.ledger.base import EventState, UrlState
from cdn_preheat.redact import redact
from cdn_preheat.service.auth import token_matches

if TYPE_CHECKING:
    from cdn_preheat.ledger.base import Ledger, UrlRecord
    from cdn_preheat.service.engine import ServiceEngine

COOKIE = "cdn_preheat_token"
PAGE_SIZE = 25
VERIFY_TOPIC = "verify"  # last verify results, kept in the ledger's outbox table
STATES = ("queued", "submitted", "done", "failed", "legacy")
REFRESH_SECONDS = 3  # pages showing work in progress reload themselves
PENDING_SHOWN = 1000  # webhook events waiting: counted up to this many

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
templates.env.filters["pct"] = lambda part, whole: (
    0 if not whole else max(0, min(100, math.floor(100 * part / whole)))
)
router = APIRouter(include_in_schema=False)


# Auth -----------------------------------------------------------------------


def _presented(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or request.query_params.get("token")


def _allowed(request: Request) -> bool:
    return token_matches(request, _presented(request))


def _login(request: Request, error: str | None = None, status: int = 401) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "login.html", {"error": error, "next": request.url.path}, status_code=status
    )


def _with_cookie(response: Response, request: Request, token: str) -> Response:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def _token_in_url(request: Request) -> Response | None:
    """``?token=`` once: keep it in the cookie, and drop it from the address bar."""
    token = request.query_params.get("token")
    if not token or not token_matches(request, token):
        return None
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
    return _with_cookie(RedirectResponse(target, status_code=303), request, token)


@router.post("/login")
async def login(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:
    if not token_matches(request, token.strip()):
        return _login(request, "That token is not one of CDN_PREHEAT_API_TOKENS.")
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    return _with_cookie(RedirectResponse(target, status_code=303), request, token.strip())


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# Reading the ledger (in worker threads) ---------------------------------


def _engine(request: Request) -> ServiceEngine:
    engine: ServiceEngine = request.app.state.engine
    return engine


def _overview(engine: ServiceEngine) -> dict[str, Any]:
    ledger = engine.ledger
    counts = ledger.counts()
    events = ledger.list_events(notify.TOPIC, limit=10)
    return {
        "queue_depth": counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0),
        "in_flight": counts.get(UrlState.SUBMITTED, 0),
        "url_counts": notify.record_counts(counts),
        "events": [
            {
                "id": e.event_id,
                "type": e.payload.get("type"),
                "subject": (e.payload.get("video") or {}).get("video_id")
                or (e.payload.get("quota") or {}).get("day", ""),
                "state": str(e.state),
                "attempts": e.attempts,
                "last_error": e.last_error,
                "created_at": e.created_at,
            }
            for e in events
        ],
        "webhooks_pending": len(
            ledger.list_events(notify.TOPIC, state=EventState.PENDING, limit=PENDING_SHOWN)
        ),
    }


def rendition_rows(records: list[UrlRecord]) -> list[dict[str, Any]]:
    """URLs grouped by folder (``verify.rendition_key``), each with its playlist and states."""
    from cdn_preheat.verify import rendition_key

    groups: dict[str, list[UrlRecord]] = defaultdict(list)
    for record in records:
        groups[rendition_key(record.url)].append(record)
    rows = []
    for folder, members in groups.items():
        states = Counter(str(m.state) for m in members)
        # Once each: with targets sharing a host, each target holds its own row of a URL.
        playlists = list(dict.fromkeys(m.url for m in members if m.kind == "playlist"))
        finished = states["done"] + states["failed"] + states["invalid"] + states["skipped"]
        rows.append(
            {
                "folder": folder,
                "playlists": playlists,
                "urls": len(members),
                "states": dict(sorted(states.items())),
                "done": states["done"],
                "finished": finished,
            }
        )
    return rows


def _video_page(engine: ServiceEngine, video: dict[str, Any]) -> dict[str, Any]:
    ledger = engine.ledger
    video_id = str(video["video_id"])
    failures = [
        {"url": f.url, "state": str(f.state), "reason": f.last_error or str(f.state),
         "attempts": f.attempts}
        for f in ledger.failures(video_id, limit=200)
    ]  # fmt: skip
    return {
        "video": video,
        "renditions": rendition_rows(ledger.url_records(video_id)),
        "failures": failures,
        "verify": last_verify(ledger, video_id),
    }


def last_verify(ledger: Ledger, video_id: str) -> dict[str, Any] | None:
    found = ledger.list_events(VERIFY_TOPIC, key_prefix=f"{video_id}\n", limit=1)
    return {**found[0].payload, "at": found[0].created_at} if found else None


def keep_verify(ledger: Ledger, video_id: str, result: dict[str, Any], now: dt.datetime) -> None:
    """Record a verify result as the video's latest (a delivered entry: nothing sends it)."""
    event, _ = ledger.enqueue_event(VERIFY_TOPIC, f"{video_id}\n{notify.iso(now)}", result, now)
    ledger.mark_event_delivered(event.event_id, now)


# Pages ------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, state: str = "", cursor: str = "") -> Response:
    if (moved := _token_in_url(request)) is not None:
        return moved
    if not _allowed(request):
        return _login(request)
    return await _render_index(request, state, cursor)


async def _render_index(
    request: Request,
    state: str,
    cursor: str,
    *,
    form: dict[str, Any] | None = None,
    form_error: str | None = None,
    status: int = 200,
) -> Response:
    engine = _engine(request)
    chosen = state if state in STATES else None
    error = None
    try:
        videos, next_cursor = await engine.videos(chosen, PAGE_SIZE, cursor or None)
    except InputError as exc:  # a cursor this page did not make
        videos, next_cursor, error = [], None, str(exc)
    overview = await anyio.to_thread.run_sync(_overview, engine)
    quota, quota_error = await _quota(engine)
    context = {
        **overview,
        "videos": [v.as_dict() for v in videos],
        "next_cursor": next_cursor,
        "state": chosen or "",
        "states": STATES,
        "quota": quota,
        "quota_error": quota_error,
        "error": error,
        "form": form or {},
        "form_error": form_error,
        "refresh": REFRESH_SECONDS if overview["queue_depth"] or overview["in_flight"] else None,
        "webhooks_configured": request.app.state.settings.cdn_preheat_webhook_url is not None,
        "quote": quote,
    }
    return templates.TemplateResponse(request, "index.html", context, status_code=status)


async def _quota(engine: ServiceEngine) -> tuple[list[dict[str, Any]], str | None]:
    try:
        rows = await engine.quota()
    except PreheatError as exc:
        return [], redact(str(exc))
    shown = []
    for row in rows:
        total, left = row.get("total"), row.get("available")
        used = (
            row.get("used_today")
            if total is None or left is None
            else max(0, int(total) - int(left))
        )
        shown.append({**row, "used": used, "left": left})
    return shown, None


@router.post("/videos")
async def queue_video(
    request: Request,
    video_id: str = Form(""),
    m3u8_url: str = Form(""),
    head_first: str = Form(""),
    reset: str = Form(""),
) -> Response:
    """The form's POST: the API's validation (``VideoIn``), then the API's queueing call."""
    from cdn_preheat.service.api import VideoIn
    from cdn_preheat.service.app import _validation_sentence

    if not _allowed(request):
        return _login(request)
    form = {"video_id": video_id, "m3u8_url": m3u8_url, "head_first": head_first,
            "reset": bool(reset)}  # fmt: skip
    try:
        body = VideoIn(
            video_id=video_id,
            m3u8_url=m3u8_url,
            reset=bool(reset),
            head_first=head_first.strip() or None,
        )
    except ValidationError as exc:
        from fastapi.exceptions import RequestValidationError

        sentence = _validation_sentence(RequestValidationError(exc.errors()))
        return await _render_index(request, "", "", form=form, form_error=sentence, status=422)
    try:
        await _engine(request).submit(
            body.video_id, body.m3u8_url, reset=body.reset, head_first=body.head_first
        )
    except PreheatError as exc:
        sentence = redact(str(exc))
        return await _render_index(request, "", "", form=form, form_error=sentence, status=422)
    return RedirectResponse(f"/videos/{quote(body.video_id, safe='')}", status_code=303)


@router.get("/videos/{video_id:path}", response_class=HTMLResponse)
async def video_page(request: Request, video_id: str) -> Response:
    if (moved := _token_in_url(request)) is not None:
        return moved
    if not _allowed(request):
        return _login(request)
    engine = _engine(request)
    view = await engine.video(video_id)
    if view is None:
        return templates.TemplateResponse(
            request, "missing.html", {"video_id": video_id}, status_code=404
        )
    page = await anyio.to_thread.run_sync(_video_page, engine, view.as_dict())
    busy = page["video"]["state"] in ("queued", "submitted")
    context = {**page, "refresh": REFRESH_SECONDS if busy else None, "quote": quote}
    return templates.TemplateResponse(request, "video.html", context)


@router.post("/videos/{video_id:path}/verify")
async def verify_video(request: Request, video_id: str, sample: int = Form(20)) -> Response:
    if not _allowed(request):
        return _login(request)
    engine = _engine(request)
    sample = max(1, min(sample, 10_000))
    try:
        result = await engine.verify(video_id, sample)
    except PreheatError as exc:
        result = {"video_id": video_id, "passed": False, "reason": redact(str(exc)),
                  "overall": None, "renditions": {}, "urls": []}  # fmt: skip
    if result is None:
        return templates.TemplateResponse(
            request, "missing.html", {"video_id": video_id}, status_code=404
        )
    now = dt.datetime.now(dt.UTC)
    await anyio.to_thread.run_sync(keep_verify, engine.ledger, video_id, result, now)
    return RedirectResponse(f"/videos/{quote(video_id, safe='')}", status_code=303)
