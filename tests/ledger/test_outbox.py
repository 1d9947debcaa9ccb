"""The outbox contract (webhook events, storage notifications), on every backend."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable

from cdn_preheat.ledger.base import EventState, Ledger

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=30)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_enqueue_once_per_key_with_a_stable_id(ledger: Ledger) -> None:
    first, new = ledger.enqueue_event("webhook", "v1\nvideo.done\ng1", {"video": "v1"}, T0)
    again, new_again = ledger.enqueue_event("webhook", "v1\nvideo.done\ng1", {"video": "x"}, at(5))
    other, other_new = ledger.enqueue_event("webhook", "v1\nvideo.done\ng2", {"video": "v1"}, T0)
    assert new and not new_again and other_new
    assert first.event_id == again.event_id != other.event_id
    assert first.event_id.startswith("evt_") and len(first.event_id) == 36
    assert again.payload == {"video": "v1"}  # the first payload is kept
    assert first.state is EventState.PENDING and first.attempts == 0
    assert first.created_at == T0 and first.due_at == T0
    # The same key in another topic is another event.
    storage, storage_new = ledger.enqueue_event("storage", "v1\nvideo.done\ng1", {}, T0)
    assert storage_new and storage.event_id != first.event_id


def test_a_delivered_key_is_not_queued_again(ledger: Ledger) -> None:
    event, _ = ledger.enqueue_event("webhook", "k", {"n": 1}, T0)
    [claimed] = ledger.claim_events("webhook", T0, LEASE, 10, "w1")
    ledger.mark_event_delivered(claimed.event_id, at(1))
    again, new = ledger.enqueue_event("webhook", "k", {"n": 2}, at(2))
    assert not new and again.event_id == event.event_id
    assert again.state is EventState.DELIVERED and again.attempts == 1
    assert ledger.claim_events("webhook", at(3), LEASE, 10, "w1") == []


def test_claim_takes_due_events_earliest_first_under_a_lease(ledger: Ledger) -> None:
    ledger.enqueue_event("webhook", "later", {}, T0, due=at(60))
    ledger.enqueue_event("webhook", "b", {}, at(2))
    ledger.enqueue_event("webhook", "a", {}, at(1))
    ledger.enqueue_event("storage", "s", {}, T0)
    claimed = ledger.claim_events("webhook", at(10), LEASE, 10, "w1")
    assert [event.key for event in claimed] == ["a", "b"]
    assert all(e.worker == "w1" and e.lease_until == at(10) + LEASE for e in claimed)
    # Leased: nobody else gets them until the lease runs out.
    assert ledger.claim_events("webhook", at(11), LEASE, 10, "w2") == []
    for event in claimed:
        ledger.mark_event_delivered(event.event_id, at(12))
    assert [e.key for e in ledger.claim_events("webhook", at(61), LEASE, 5, "w2")] == ["later"]


def test_a_lease_that_runs_out_hands_the_event_out_again(ledger: Ledger) -> None:
    """The deliverer died between sending and marking: at least once, same id."""
    event, _ = ledger.enqueue_event("webhook", "k", {}, T0)
    [first] = ledger.claim_events("webhook", T0, LEASE, 10, "dead")
    [second] = ledger.claim_events("webhook", T0 + LEASE, LEASE, 10, "alive")
    assert first.event_id == second.event_id == event.event_id
    assert second.worker == "alive"
    ledger.mark_event_delivered(second.event_id, T0 + LEASE)
    assert ledger.get_event(event.event_id).state is EventState.DELIVERED  # type: ignore[union-attr]


def test_reschedule_with_backoff_then_give_up(ledger: Ledger) -> None:
    event, _ = ledger.enqueue_event("webhook", "k", {}, T0)
    ledger.claim_events("webhook", T0, LEASE, 10, "w1")
    ledger.reschedule_event(event.event_id, at(20), "HTTP 503")
    stored = ledger.get_event(event.event_id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.last_error) == (EventState.PENDING, 1, "HTTP 503")
    assert stored.due_at == at(20) and stored.lease_until is None
    assert ledger.claim_events("webhook", at(19), LEASE, 10, "w1") == []  # not due yet
    [again] = ledger.claim_events("webhook", at(20), LEASE, 10, "w1")
    ledger.fail_event(again.event_id, "gave up after a day", at(21))
    failed = ledger.get_event(event.event_id)
    assert failed is not None and failed.state is EventState.FAILED and failed.attempts == 2
    assert failed.last_error == "gave up after a day"
    assert ledger.claim_events("webhook", at(99), LEASE, 10, "w1") == []
    # Marking a given-up event delivered changes nothing.
    ledger.mark_event_delivered(event.event_id, at(100))
    assert ledger.get_event(event.event_id).state is EventState.FAILED  # type: ignore[union-attr]


def test_list_events_newest_first_by_state(ledger: Ledger) -> None:
    ids = [ledger.enqueue_event("webhook", f"k{n}", {"n": n}, at(n))[0].event_id for n in range(3)]
    ledger.claim_events("webhook", at(5), LEASE, 1, "w1")
    ledger.mark_event_delivered(ids[0], at(5))
    assert [e.event_id for e in ledger.list_events("webhook")] == ids[::-1]
    pending = ledger.list_events("webhook", state=EventState.PENDING)
    assert [e.payload["n"] for e in pending] == [2, 1]
    assert ledger.list_events("storage") == []
    assert ledger.get_event("evt_missing") is None
    ledger.enqueue_event("webhook", "k1.*x", {"n": 9}, at(9))
    assert [e.key for e in ledger.list_events("webhook", key_prefix="k1")] == ["k1.*x", "k1"]
    assert [e.key for e in ledger.list_events("webhook", key_prefix="k1.*")] == ["k1.*x"]


def test_events_outlive_the_process(ledger: Ledger, reopen: Callable[[], Ledger]) -> None:
    event, _ = ledger.enqueue_event("storage", "bucket\nvod/a.m3u8\nv1", {"key": "a"}, T0)
    ledger.claim_events("storage", T0, LEASE, 10, "dead")
    other = reopen()
    assert other.enqueue_event("storage", "bucket\nvod/a.m3u8\nv1", {}, at(1))[1] is False
    [recovered] = other.claim_events("storage", T0 + LEASE, LEASE, 10, "w2")
    assert recovered.event_id == event.event_id and recovered.payload == {"key": "a"}


def test_concurrent_claims_hand_each_event_to_one_worker(ledger: Ledger) -> None:
    for n in range(40):
        ledger.enqueue_event("webhook", f"k{n}", {}, T0)
    got: Counter[str] = Counter()
    lock = threading.Lock()

    def claim(worker: str) -> None:
        while batch := ledger.claim_events("webhook", at(1), LEASE, 3, worker):
            with lock:
                got.update(event.event_id for event in batch)

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 40 and set(got.values()) == {1}


def test_concurrent_enqueues_of_one_key_make_one_event(ledger: Ledger) -> None:
    ids: list[str] = []
    news: list[bool] = []
    lock = threading.Lock()

    def enqueue() -> None:
        event, new = ledger.enqueue_event("webhook", "same", {}, T0)
        with lock:
            ids.append(event.event_id)
            news.append(new)

    threads = [threading.Thread(target=enqueue) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1 and news.count(True) == 1


def test_prune_forgets_settled_events_only(ledger: Ledger) -> None:
    delivered, _ = ledger.enqueue_event("webhook", "delivered", {}, T0)
    failed, _ = ledger.enqueue_event("webhook", "failed", {}, T0)
    ledger.enqueue_event("webhook", "pending", {}, T0)
    late, _ = ledger.enqueue_event("webhook", "late", {}, T0)
    other, _ = ledger.enqueue_event("storage", "other", {}, T0)
    ledger.claim_events("webhook", T0, LEASE, 10, "w1")
    ledger.claim_events("storage", T0, LEASE, 10, "w1")
    ledger.mark_event_delivered(delivered.event_id, at(1))
    ledger.fail_event(failed.event_id, "gave up", at(2))
    ledger.mark_event_delivered(late.event_id, at(100))
    ledger.mark_event_delivered(other.event_id, at(1))
    assert ledger.prune_events("webhook", at(50)) == 2
    left = {e.key for e in ledger.list_events("webhook")}
    assert left == {"pending", "late"}
    assert ledger.get_event(other.event_id) is not None  # another topic is kept
    # A pruned key is a new event when it comes again.
    again, new = ledger.enqueue_event("webhook", "delivered", {}, at(60))
    assert new and again.event_id != delivered.event_id
