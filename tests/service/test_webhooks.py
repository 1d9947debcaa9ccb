"""Signed webhooks: events made where video states change, delivered from the outbox.

The receiver is a real HTTP server on 127.0.0.1:0 that verifies every
signature; clocks are injected so retries are due without sleeping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from receiver import Receiver

from cdn_preheat import notify, pipeline
from cdn_preheat.ledger.base import EventState, Ledger, Outcome, QueuedUrl, UrlState, VideoState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.service.webhooks import (
    SIGNATURE_HEADER,
    OutboxRunner,
    Topic,
    WebhookSender,
    event_body,
    quota_probe,
    retry_schedule,
    signature_header,
    verify_signature,
)

SECRET = "whsec-test-0123456789"
P, A = "tencent", "mainland"
T0 = dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)
MAX_AGE = dt.timedelta(days=3)
LEASE = dt.timedelta(seconds=60)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(SECRET).start()
    yield receiver
    if receiver.hold is not None:
        receiver.hold.set()
    receiver.down()


def queue_video(ledger: Ledger, video_id: str, n: int = 2, now: dt.datetime = T0) -> list[str]:
    urls = [f"https://cdn.example.com/{video_id}/seg{i}.ts" for i in range(n)]
    ledger.put_video(video_id, f"https://origin.example.com/{video_id}.m3u8", n, now)
    ledger.enqueue(video_id, P, A, [QueuedUrl(u, "segment") for u in urls], now, MAX_AGE)
    pipeline.refresh_video_state(ledger, video_id, now)
    return urls


def finish(ledger: Ledger, video_id: str, now: dt.datetime, failed: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    claim = ledger.claim(P, A, 100, "w", now, LEASE, video_id=video_id)
    assert claim is not None
    ledger.mark_submitted(claim, "task-" + video_id, claim.urls, now)
    outcomes = [
        Outcome(u, "task-" + video_id, UrlState.FAILED if u in failed else UrlState.DONE,
                "origin 404" if u in failed else None)
        for u in claim.urls
    ]  # fmt: skip
    ledger.record_outcomes(P, A, outcomes, now, MAX_AGE, max_attempts=1)
    pipeline.refresh_video_state(ledger, video_id, now)


def webhook_events(ledger: Ledger) -> list[dict[str, object]]:
    return [e.payload for e in ledger.list_events(notify.TOPIC)]


# Signing ------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1","type":"video.done"}'
    header = signature_header(SECRET, body, 1764637200)
    expected = hmac.new(SECRET.encode(), b"1764637200." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1764637200,v1={expected}"
    assert verify_signature(SECRET, body, header, now=1764637200 + 10)
    assert not verify_signature(SECRET, body + b" ", header, now=1764637200)
    assert not verify_signature("another-secret", body, header, now=1764637200)
    assert not verify_signature(SECRET, body, header, now=1764637200 + 3600)  # replayed late
    assert not verify_signature(SECRET, body, "v1=" + expected, now=1764637200)  # no t


# Producing ---------------------------------------------------------------


def test_a_finished_video_makes_one_event_per_generation(ledger: SqliteLedger) -> None:
    urls = queue_video(ledger, "film-1")
    assert webhook_events(ledger) == []  # queued is not an event
    finish(ledger, "film-1", T0 + dt.timedelta(minutes=1))
    [event] = ledger.list_events(notify.TOPIC)
    assert event.payload["type"] == notify.VIDEO_DONE
    video = event.payload["video"]
    assert isinstance(video, dict)
    assert video["video_id"] == "film-1" and video["state"] == "done"
    assert video["counts"] == {"pending": 0, "submitted": 0, "done": 2, "failed": 0,
                               "invalid": 0, "skipped": 0}  # fmt: skip
    assert set(video) == {"video_id", "m3u8_url", "state", "counts", "created_at",
                          "updated_at", "errors"}  # fmt: skip
    # Refreshing a finished video again (every worker round does) makes nothing new.
    for minute in (2, 3):
        pipeline.refresh_video_state(ledger, "film-1", T0 + dt.timedelta(minutes=minute))
    assert len(ledger.list_events(notify.TOPIC)) == 1
    # Queued again (verify --requeue) and finished again: a new generation, a new event.
    pipeline.requeue_missed(ledger, P, A, "film-1", urls)
    assert ledger.get_video("film-1").state is VideoState.QUEUED  # type: ignore[union-attr]
    finish(ledger, "film-1", T0 + dt.timedelta(minutes=5))
    events = ledger.list_events(notify.TOPIC)
    assert len(events) == 2 and events[0].event_id != events[1].event_id


def test_a_crash_between_the_event_and_the_state_makes_no_second_event(
    ledger: SqliteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_video(ledger, "film-2")
    claim = ledger.claim(P, A, 100, "w", T0, LEASE)
    assert claim is not None
    ledger.mark_submitted(claim, "t1", claim.urls, T0)
    ledger.record_outcomes(P, A, [Outcome(u, "t1", UrlState.DONE) for u in claim.urls], T0,
                           MAX_AGE, 1)  # fmt: skip

    def killed(*args: object) -> None:
        raise KeyboardInterrupt("killed after the outbox write")

    monkeypatch.setattr(ledger, "set_video_state", killed)
    with pytest.raises(KeyboardInterrupt):
        pipeline.refresh_video_state(ledger, "film-2", T0)
    monkeypatch.undo()
    pipeline.refresh_video_state(ledger, "film-2", T0 + dt.timedelta(seconds=1))
    assert len(ledger.list_events(notify.TOPIC)) == 1
    assert ledger.get_video("film-2").state is VideoState.DONE  # type: ignore[union-attr]


def test_failures_make_a_video_failed_event_with_their_reasons(ledger: SqliteLedger) -> None:
    urls = queue_video(ledger, "film-3")
    finish(ledger, "film-3", T0, failed={urls[1]})
    [payload] = webhook_events(ledger)
    assert payload["type"] == notify.VIDEO_FAILED
    video = payload["video"]
    assert isinstance(video, dict)
    assert video["counts"]["failed"] == 1 and video["counts"]["done"] == 1  # type: ignore[index]
    assert video["errors"] == [{"url": urls[1], "reason": "origin 404"}]


def test_quota_exhausted_once_a_day_while_work_is_queued(ledger: SqliteLedger) -> None:
    queue_video(ledger, "film-4")
    day = "2026-12-02"
    ledger.sync_quota(P, A, day, 100, 10)
    assert notify.quota_spent(ledger, P, A, day, T0) is None  # quota left
    ledger.exhaust_quota(P, A, day)
    first = notify.quota_spent(ledger, P, A, day, T0)
    again = notify.quota_spent(ledger, P, A, day, T0 + dt.timedelta(minutes=1))
    assert first is not None and first == again
    [payload] = webhook_events(ledger)
    assert payload == {"type": "quota.exhausted", "video": None,
                       "quota": {"provider": P, "area": A, "day": day, "limit": 100,
                                 "used": 100, "queued": 2}}  # fmt: skip
    assert notify.quota_spent(ledger, P, A, "2026-12-03", T0) is None  # no bookkeeping yet


def test_quota_exhausted_waits_for_the_spending_batch_and_counts_pending_urls_only(
    ledger: SqliteLedger,
) -> None:
    """The probe runs between the claim that takes the last of the quota and its settling.

    The interleaving is forced step by step on the ledger, as the scheduler goes:
    claim_with_quota spends what is left, the probe looks, the claim settles, the
    probe looks again. While the batch is in flight nothing is spent yet; after,
    the event counts the URLs still pending, not those the batch pushed.
    """
    day = "2026-12-02"
    queue_video(ledger, "film-6", n=5)
    ledger.sync_quota(P, A, day, 12, 10)  # 2 left
    claim, granted = ledger.claim_with_quota(P, A, day, 100, "w", T0, LEASE)
    assert claim is not None and granted == 2 and len(claim.urls) == 2
    book = ledger.quota_day(P, A, day)
    assert book is not None and book.remaining == 0 and book.inflight == 2
    assert notify.quota_spent(ledger, P, A, day, T0) is None  # in flight: not spent yet

    # The push failed: the batch goes back, its quota too; nothing was spent.
    ledger.settle_claim(claim, T0, day, 2, 0, released=claim.urls, error="timeout")
    assert notify.quota_spent(ledger, P, A, day, T0) is None
    assert webhook_events(ledger) == []

    # Claimed again, and this time pushed: now the day is spent, 3 URLs still queued.
    claim, granted = ledger.claim_with_quota(P, A, day, 100, "w", T0, LEASE)
    assert claim is not None and granted == 2
    assert notify.quota_spent(ledger, P, A, day, T0) is None
    ledger.settle_claim(claim, T0, day, 2, 2, submitted={"task-1": claim.urls})
    assert notify.quota_spent(ledger, P, A, day, T0) is not None
    [payload] = webhook_events(ledger)
    assert payload["quota"] == {"provider": P, "area": A, "day": day, "limit": 12,
                                "used": 12, "queued": 3}  # fmt: skip


def test_quota_exhausted_of_a_target_names_it(ledger: SqliteLedger) -> None:
    day = "2026-12-02"
    queue_video(ledger, "film-7")
    ledger.exhaust_quota(P, A, day)
    assert notify.quota_spent(ledger, P, A, day, T0, target=True) is not None
    [payload] = webhook_events(ledger)
    assert payload["targets"] == [P] and payload["video"] is None
    assert payload["quota"]["provider"] == P and payload["quota"]["queued"] == 2  # type: ignore[index]


def test_no_event_without_queued_work_when_the_quota_is_spent(ledger: SqliteLedger) -> None:
    queue_video(ledger, "film-5")
    finish(ledger, "film-5", T0)
    ledger.exhaust_quota(P, A, "2026-12-02")
    assert notify.quota_spent(ledger, P, A, "2026-12-02", T0) is None


# Delivering --------------------------------------------------------------


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def runner(ledger: Ledger, url: str, clock: Clock) -> OutboxRunner:
    sender = WebhookSender(url, SECRET, timeout=5.0)  # signs with the real time
    topic = Topic(sender, schedule=retry_schedule(initial=1.0, longest=10.0))
    return OutboxRunner(ledger, {notify.TOPIC: topic}, lease=LEASE, clock=clock)


def test_events_reach_a_receiver_that_fails_goes_down_and_comes_back(
    ledger: SqliteLedger, receiver: Receiver
) -> None:
    queue_video(ledger, "a")
    finish(ledger, "a", T0)
    made = {e.event_id for e in ledger.list_events(notify.TOPIC)}
    clock = Clock(T0)
    outbox = runner(ledger, receiver.url, clock)
    receiver.status = 503  # up, but failing
    assert outbox.run_once() == 1
    receiver.down()  # connection refused
    queue_video(ledger, "b")
    finish(ledger, "b", T0)  # made while the receiver is down
    made |= {e.event_id for e in ledger.list_events(notify.TOPIC)}
    clock.advance(20)
    assert outbox.run_once() == 2
    pending = ledger.list_events(notify.TOPIC, state=EventState.PENDING)
    assert len(pending) == 2
    assert all(e.last_error is not None and SECRET not in e.last_error for e in pending)
    receiver.status = 204
    receiver.up()
    clock.advance(20)
    assert outbox.run_once() == 2
    outbox.stop()
    assert all(delivery.signature_ok for delivery in receiver.deliveries)
    # Every event arrived, each under its one id; the 503 attempt was the same id too.
    assert set(receiver.ids) == made and len(made) == 2
    first = receiver.deliveries[0]
    assert first.headers["x-cdn-preheat-event-id"] == first.body["id"]
    assert receiver.ids.count(first.body["id"]) == 2
    assert {d.body["type"] for d in receiver.deliveries} == {"video.done"}
    states = {e.event_id: (e.state, e.attempts) for e in ledger.list_events(notify.TOPIC)}
    assert states[first.body["id"]] == (EventState.DELIVERED, 3)
    assert {state for state, _ in states.values()} == {EventState.DELIVERED}
    assert outbox.run_once() == 0  # nothing is sent twice once delivered


def test_the_runners_quota_probe_sends_quota_exhausted_once_a_day(
    ledger: SqliteLedger, receiver: Receiver
) -> None:
    queue_video(ledger, "q")
    ledger.sync_quota(P, A, "2026-12-02", 50, 0)
    ledger.exhaust_quota(P, A, "2026-12-02")
    clock = Clock(T0)
    outbox = runner(ledger, receiver.url, clock)
    outbox.probes = [quota_probe(ledger, lambda now: [(P, A, "2026-12-02")])]
    assert outbox.run_once() == 1
    clock.advance(60)
    assert outbox.run_once() == 0  # the same day again: nothing new
    [delivery] = receiver.deliveries
    assert delivery.signature_ok and delivery.body["type"] == "quota.exhausted"
    assert delivery.body["video"] is None
    assert delivery.body["quota"] == {"provider": P, "area": A, "day": "2026-12-02",
                                      "limit": 50, "used": 50, "queued": 2}  # fmt: skip


def test_an_event_is_given_up_a_day_after_it_was_made(
    ledger: SqliteLedger, receiver: Receiver
) -> None:
    queue_video(ledger, "c")
    finish(ledger, "c", T0)
    receiver.status = 500
    clock = Clock(T0)
    outbox = runner(ledger, receiver.url, clock)
    outbox.run_once()
    clock.advance(24 * 3600)
    outbox.run_once()
    [event] = ledger.list_events(notify.TOPIC)
    assert event.state is EventState.FAILED and event.attempts == 2
    assert event.last_error == "the webhook receiver answered HTTP 500"
    clock.advance(3600)
    assert outbox.run_once() == 0


def test_settled_events_are_forgotten_after_the_retention(
    ledger: SqliteLedger, receiver: Receiver
) -> None:
    queue_video(ledger, "old")
    finish(ledger, "old", T0)
    clock = Clock(T0)
    outbox = runner(ledger, receiver.url, clock)
    assert outbox.run_once() == 1  # delivered
    clock.advance(29 * 24 * 3600)
    outbox.run_once()
    assert len(ledger.list_events(notify.TOPIC)) == 1  # kept for 30 days
    clock.advance(2 * 24 * 3600)
    outbox.run_once()
    assert ledger.list_events(notify.TOPIC) == []


def test_the_body_is_the_event_and_the_same_bytes_on_every_attempt(ledger: SqliteLedger) -> None:
    queue_video(ledger, "d")
    finish(ledger, "d", T0)
    [event] = ledger.list_events(notify.TOPIC)
    body = json.loads(event_body(event))
    assert set(body) == {"id", "type", "video", "created_at"}
    assert body["id"] == event.event_id and body["created_at"] == T0.isoformat()
    assert event_body(ledger.get_event(event.event_id)) == event_body(event)  # type: ignore[arg-type]


DELIVER_ONCE = textwrap.dedent(
    """
    import datetime as dt, os, sys
    from cdn_preheat.ledger.sqlite import SqliteLedger
    from cdn_preheat.service.webhooks import OutboxRunner, Topic, WebhookSender
    ledger = SqliteLedger(sys.argv[1])
    sender = WebhookSender(sys.argv[2], os.environ["HOOK_SECRET"])
    OutboxRunner(ledger, {"webhook": Topic(sender)}, lease=dt.timedelta(seconds=60)).run_once()
    """
)


def test_a_deliverer_killed_between_send_and_mark_delivers_again_with_the_same_id(
    ledger: SqliteLedger, receiver: Receiver, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    queue_video(ledger, "e", now=now)
    finish(ledger, "e", now)
    [event] = ledger.list_events(notify.TOPIC)
    receiver.hold = __import__("threading").Event()  # the answer never comes in time
    deliverer = subprocess.Popen(
        [sys.executable, "-c", DELIVER_ONCE, str(tmp_path / "ledger.sqlite3"), receiver.url],
        env={**os.environ, "HOOK_SECRET": SECRET},
    )
    try:
        assert receiver.arrived.wait(60), "the deliverer never sent"
    finally:
        deliverer.kill()
        deliverer.wait()
    receiver.hold.set()
    receiver.hold = None
    leased = ledger.get_event(event.event_id)
    assert leased is not None and leased.state is EventState.PENDING
    assert leased.worker is not None and leased.lease_until is not None
    clock = Clock(leased.lease_until)  # the dead deliverer's lease has run out
    assert runner(ledger, receiver.url, clock).run_once() == 1
    assert receiver.ids == [event.event_id, event.event_id]  # at least once, same id
    assert all(d.signature_ok for d in receiver.deliveries)
    assert receiver.deliveries[0].headers[SIGNATURE_HEADER.lower()].startswith("t=")
    assert ledger.get_event(event.event_id).state is EventState.DELIVERED  # type: ignore[union-attr]


def test_the_readme_verification_snippet_accepts_our_signatures_only() -> None:
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = readme.split("## Webhooks, storage events and the dashboard", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(code, namespace)  # noqa: S102 - the README's own example
    verify = namespace["verify"]
    assert callable(verify)
    body = b'{"id":"evt_1","type":"video.done"}'
    header = signature_header(SECRET, body, int(time.time()))
    assert verify(SECRET, body, header)
    assert not verify(SECRET, body + b"x", header)
    assert not verify("wrong", body, header)
    assert not verify(SECRET, body, signature_header(SECRET, body, int(time.time()) - 3600))


def test_the_receiver_url_and_secret_never_reach_a_log_line(tmp_path: Path) -> None:
    from cdn_preheat.config import load_settings
    from cdn_preheat.redact import redact

    url = "https://hooks.example.com/services/T0/B0/s3cr3tpath?key=abc123"
    settings = load_settings(
        cdn_preheat_db=str(tmp_path / "l.sqlite3"),
        cdn_preheat_webhook_url=url,
        cdn_preheat_webhook_secret=SECRET,
    )
    sender = WebhookSender.from_settings(settings)
    assert sender is not None and sender.url == url
    line = redact(f"HTTP Request: POST {url} 'HTTP/1.1 500' signed with {SECRET}")
    assert url not in line and SECRET not in line
    assert SECRET not in repr(sender)
