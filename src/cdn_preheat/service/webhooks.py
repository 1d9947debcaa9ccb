"""Signed webhook delivery from the ledger's outbox, and the loop that drives the outbox.

Events are produced where video states change (``cdn_preheat.notify``) and
kept in the ledger (``Ledger.enqueue_event``), so a crash or a receiver that
is down loses none. The service's :class:`OutboxRunner` (a thread started by
the app's lifespan) claims due events under a lease, POSTs each to
``CDN_PREHEAT_WEBHOOK_URL`` and marks it delivered on a 2xx answer; anything
else is retried on tenacity's exponential schedule with full jitter for a day
after the event was made, then given up (state ``failed``, kept for a look).
A deliverer killed between the POST and the mark leaves the event leased; once
the lease runs out it is sent again with the same id: at least once.

Body: ``{"id", "type", "created_at", "video", ...}`` (``video`` is the record
as ``GET /v1/videos/{id}`` returns it; ``quota.exhausted`` carries ``quota``
and ``video: null``; with targets every event also has ``targets``, the names
of the targets it is about: see :mod:`cdn_preheat.notify`). Header
``X-CDN-Preheat-Signature: t=UNIX,v1=HEX``,
HEX = HMAC-SHA256(secret, f"{t}.{body}"), the scheme Stripe documents
(https://docs.stripe.com/webhooks#verify-manually), so receivers can reuse
their verification code and reject replays by ``t``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from tenacity import RetryCallState, Retrying, wait_random_exponential
from tenacity.wait import wait_base

from cdn_preheat import notify, redact
from cdn_preheat.errors import ConfigError, PreheatError
from cdn_preheat.ledger.base import EventState
from cdn_preheat.service.auth import require_token

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger, OutboxEvent
    from cdn_preheat.service.engine import ServiceEngine

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-CDN-Preheat-Signature"
EVENT_ID_HEADER = "X-CDN-Preheat-Event-Id"
DEFAULT_TOLERANCE = 300  # seconds a receiver accepts between t and its clock
RETRY_FOR = dt.timedelta(days=1)
RETENTION = dt.timedelta(days=30)
PRUNE_EVERY = dt.timedelta(hours=1)
# The runner's outcomes as the delivery counter of service.metrics names them.
METRIC_OUTCOMES = {"delivered": "delivered", "retried": "failed", "failed": "gave_up"}


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """``t=UNIX,v1=HEX``: HMAC-SHA256 of ``t.body`` with the shared secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """What a receiver does: recompute the HMAC, compare in constant time, check ``t``."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature_header(secret, body, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))


def event_body(event: OutboxEvent) -> bytes:
    """The JSON body of an event: the same bytes on every attempt."""
    document = {"id": event.event_id, "created_at": notify.iso(event.created_at), **event.payload}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def retry_schedule(initial: float = 5.0, longest: float = 3600.0) -> wait_base:
    """Seconds before attempt n+1: exponential from ``initial`` up to ``longest``, full jitter."""
    return wait_random_exponential(multiplier=initial, max=longest)


def next_wait(schedule: wait_base, attempts: int) -> float:
    """The schedule's wait after ``attempts`` failed attempts (tenacity's own arithmetic)."""
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = max(1, attempts)
    return float(schedule(state))


class DeliveryError(Exception):
    """One attempt failed; the message (no secret in it) is kept as the event's last error."""


class GiveUp(DeliveryError):
    """The event can never be handled (a refused URL): failed at once, not retried."""


@dataclass
class WebhookSender:
    """POSTs one event to the receiver, signed; raises DeliveryError unless it answered 2xx."""

    url: str
    secret: str = field(repr=False)
    timeout: float = 10.0
    clock: Callable[[], float] = time.time
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender | None:
        """None without ``CDN_PREHEAT_WEBHOOK_URL``; a ConfigError when its secret is missing."""
        url = settings.cdn_preheat_webhook_url
        if url is None:
            return None
        secret = settings.cdn_preheat_webhook_secret
        if secret is None or not secret.get_secret_value().strip():
            raise ConfigError(
                "CDN_PREHEAT_WEBHOOK_URL is set but CDN_PREHEAT_WEBHOOK_SECRET is not; "
                "set a shared secret so the receiver can verify the events."
            )
        # Receivers often carry a credential in the URL itself (a path or query
        # token): the URL is masked like a key wherever a log line would show it.
        redact.register(url)
        return cls(url, secret.get_secret_value().strip(), settings.cdn_preheat_webhook_timeout)

    def __call__(self, event: OutboxEvent) -> None:
        body = event_body(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "cdn-preheat-webhooks",
            EVENT_ID_HEADER: event.event_id,
            SIGNATURE_HEADER: signature_header(self.secret, body, int(self.clock())),
        }
        if self._client is None:
            # No redirects: a receiver that moved answers 3xx, which is retried (and shown).
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        try:
            answer = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__} from the webhook receiver") from None
        if not 200 <= answer.status_code < 300:
            raise DeliveryError(f"the webhook receiver answered HTTP {answer.status_code}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


Handler = Callable[["OutboxEvent"], None]


@dataclass
class Topic:
    """How the runner treats one outbox topic."""

    handler: Handler
    schedule: wait_base = field(default_factory=retry_schedule)
    retry_for: dt.timedelta = RETRY_FOR
    max_attempts: int | None = None  # None: as many as ``retry_for`` allows
    # Delivered and given-up events are forgotten this long after they settled.
    retention: dt.timedelta | None = RETENTION


class OutboxRunner:
    """Claims due outbox events and hands them to their topic's handler, until stopped.

    ``probes`` run once a round before claiming (the quota check that makes
    ``quota.exhausted`` events). ``on_outcome(topic, outcome)`` sees each
    attempt's outcome (``delivered``, ``retried``, ``failed``), for metrics.
    """

    def __init__(
        self,
        ledger: Ledger,
        topics: Mapping[str, Topic],
        *,
        poll: float = 1.0,
        lease: dt.timedelta = dt.timedelta(seconds=60),
        batch: int = 20,
        probes: Iterable[Callable[[dt.datetime], object]] = (),
        on_outcome: Callable[[str, str], None] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.ledger = ledger
        self.topics = dict(topics)
        self.poll = poll
        self.lease = lease
        self.batch = batch
        self.probes = list(probes)
        self.on_outcome = on_outcome
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.worker = f"outbox-{uuid.uuid4().hex[:12]}"
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at: dt.datetime | None = None

    # One round ----------------------------------------------------------
    def run_once(self) -> int:
        """Probe, then handle every due event once; how many events were handled."""
        now = self.clock()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            for name, topic in self.topics.items():
                if topic.retention is not None:
                    self.ledger.prune_events(name, now - topic.retention)
        for probe in self.probes:
            try:
                probe(now)
            except PreheatError as exc:
                log.warning("outbox probe failed: %s", exc)
        handled = 0
        for name, topic in self.topics.items():
            while not self.stop_event.is_set():
                events = self.ledger.claim_events(
                    name, self.clock(), self.lease, self.batch, self.worker
                )
                for event in events:
                    self._handle(name, topic, event)
                handled += len(events)
                if len(events) < self.batch:
                    break
        return handled

    def _handle(self, name: str, topic: Topic, event: OutboxEvent) -> None:
        try:
            topic.handler(event)
        except Exception as exc:
            error = (
                str(exc) if isinstance(exc, DeliveryError | PreheatError) else type(exc).__name__
            )
            self._failed(name, topic, event, error, final=isinstance(exc, GiveUp))
            return
        self.ledger.mark_event_delivered(event.event_id, self.clock())
        self._count(name, "delivered")

    def _failed(
        self, name: str, topic: Topic, event: OutboxEvent, error: str, *, final: bool = False
    ) -> None:
        now = self.clock()
        attempts = event.attempts + 1
        due = now + dt.timedelta(seconds=next_wait(topic.schedule, attempts))
        out_of_attempts = topic.max_attempts is not None and attempts >= topic.max_attempts
        if final or out_of_attempts or due > event.created_at + topic.retry_for:
            log.warning("outbox %s: gave %s up after %d attempts: %s", name, event.event_id,
                        attempts, error)  # fmt: skip
            self.ledger.fail_event(event.event_id, error, now)
            self._count(name, "failed")
            return
        log.info("outbox %s: %s attempt %d failed (%s); again at %s", name, event.event_id,
                 attempts, error, notify.iso(due))  # fmt: skip
        self.ledger.reschedule_event(event.event_id, due, error)
        self._count(name, "retried")

    def _count(self, name: str, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(name, outcome)

    # The thread ---------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.worker, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.run_once()
            except PreheatError as exc:  # the ledger is unreachable: try again next round
                log.warning("outbox round failed: %s", exc)
            self.wake.wait(self.poll)
            self.wake.clear()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the event in hand (its lease covers a kill in the middle)."""
        self.stop_event.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for topic in self.topics.values():
            close = getattr(topic.handler, "close", None)
            if callable(close):
                close()


def quota_probe(
    ledger: Ledger,
    targets: Callable[[dt.datetime], Iterable[tuple[str, str, str]]],
    *,
    named: bool = False,
) -> Callable[[dt.datetime], object]:
    """A probe making ``quota.exhausted`` for each (provider, area, day) ``targets(now)`` names.

    ``named``: the providers are targets (``CDN_PREHEAT_TARGETS``); each event names its own.
    """

    def probe(now: dt.datetime) -> object:
        return [notify.quota_spent(ledger, *key, now, target=named) for key in targets(now)]

    return probe


# Mounted by the app ---------------------------------------------------------

router = APIRouter(prefix="/v1", tags=["v1"], dependencies=[Depends(require_token)])


@router.get("/webhooks/events", summary="Recent webhook events and their delivery state.")
async def recent_events(request: Request, state: EventState | None = None, limit: int = 50) -> Any:
    engine: ServiceEngine = request.app.state.engine
    limit = max(1, min(limit, 500))
    events = await anyio.to_thread.run_sync(
        lambda: engine.ledger.list_events(notify.TOPIC, state=state, limit=limit)
    )
    return {
        "events": [
            {
                "id": e.event_id,
                "type": e.payload.get("type"),
                "state": str(e.state),
                "attempts": e.attempts,
                "created_at": notify.iso(e.created_at),
                "next_attempt_at": notify.iso(e.due_at) if e.state is EventState.PENDING else None,
                "last_error": e.last_error,
            }
            for e in events
        ]
    }


def quota_targets(engine: ServiceEngine) -> Callable[[dt.datetime], list[tuple[str, str, str]]]:
    """The (provider, area, provider-local day) the service pushes to.

    With ``CDN_PREHEAT_TARGETS``: one per target (a pool once), under its ledger
    key (target name, area), so each target's spent quota is its own event.
    """
    from cdn_preheat.clock import quota_day

    def targets(now: dt.datetime) -> list[tuple[str, str, str]]:
        return [(name, area, quota_day(now, offset)) for name, area, offset in engine.quota_keys()]

    return targets


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Deliver webhook events in a thread for the app's lifetime (when a receiver is set)."""
    engine: ServiceEngine = app.state.engine
    sender = WebhookSender.from_settings(app.state.settings)
    if sender is None:
        yield
        return
    metrics = getattr(app.state, "metrics", None)
    count = getattr(metrics, "webhook_delivery", None)
    runner = OutboxRunner(
        engine.ledger,
        {notify.TOPIC: Topic(sender)},
        poll=float(getattr(app.state, "outbox_poll", 1.0)),
        probes=[
            quota_probe(engine.ledger, quota_targets(engine), named=engine.targets is not None)
        ],
        on_outcome=(lambda _topic, outcome: count(outcome)) if callable(count) else None,
    )
    app.state.webhook_runner = runner
    runner.start()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(runner.stop)
