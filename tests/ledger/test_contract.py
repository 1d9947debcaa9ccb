"""The ledger contract: written only against ``Ledger``, run on every backend."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest

from cdn_preheat.ledger.base import (
    Claim,
    Ledger,
    Outcome,
    QueuedUrl,
    QuotaDay,
    UrlRecord,
    UrlState,
    VideoState,
)

P, A = "tencent", "mainland"
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
MAX_AGE = dt.timedelta(days=3)
LEASE = dt.timedelta(minutes=2)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def queued(*names: str, priority: int = 0) -> list[QueuedUrl]:
    return [QueuedUrl(url(name), "segment", priority) for name in names]


def url(name: str) -> str:
    return f"https://cdn.example.com/{name}"


def enqueue(ledger: Ledger, video_id: str, *names: str, now: dt.datetime = T0) -> object:
    return ledger.enqueue(video_id, P, A, queued(*names), now, MAX_AGE)


def claim_all(ledger: Ledger, now: dt.datetime = T0, limit: int = 1000) -> Claim:
    claim = ledger.claim(P, A, limit, "worker-1", now, LEASE)
    assert claim is not None
    return claim


def submit_all(ledger: Ledger, task_id: str, now: dt.datetime = T0) -> Claim:
    claim = claim_all(ledger, now)
    ledger.mark_submitted(claim, task_id, claim.urls, now)
    return claim


def states(ledger: Ledger, video_id: str) -> dict[str, UrlState]:
    return {record.url: record.state for record in ledger.url_records(video_id)}


# Videos -------------------------------------------------------------------


def test_unknown_video_is_none(ledger: Ledger) -> None:
    assert ledger.get_video("nope") is None
    assert ledger.list_videos() == []


def test_put_video_creates_then_updates(ledger: Ledger) -> None:
    ledger.put_video("v1", "https://o.example.com/v1.m3u8", 10, T0)
    ledger.put_video("v1", "https://o.example.com/v1b.m3u8", 12, at(5))

    video = ledger.get_video("v1")

    assert video is not None
    assert (video.video_id, video.m3u8_url, video.url_count) == (
        "v1",
        "https://o.example.com/v1b.m3u8",
        12,
    )
    assert video.state is VideoState.QUEUED
    assert (video.created_at, video.updated_at) == (T0, at(5))
    assert video.created_at.tzinfo is not None


def test_video_states_and_listing_oldest_first(ledger: Ledger) -> None:
    ledger.put_video("later", "https://o.example.com/b.m3u8", 1, at(1))
    ledger.put_video("first", "https://o.example.com/a.m3u8", 1, T0)
    ledger.set_video_state("first", VideoState.SUBMITTED, at(2))
    ledger.set_video_state("later", VideoState.DONE, at(3))

    videos = ledger.list_videos()

    assert [video.video_id for video in videos] == ["first", "later"]
    assert [video.state for video in videos] == [VideoState.SUBMITTED, VideoState.DONE]
    assert videos[1].updated_at == at(3)


def test_reset_forgets_the_video_and_its_urls(ledger: Ledger) -> None:
    ledger.put_video("v1", "https://o.example.com/v1.m3u8", 4, T0)
    enqueue(ledger, "v1", "a", "b", "c")
    ledger.mark_skipped("v1", P, A, {"https://elsewhere.example.org/x.ts": "foreign host"})
    submit_all(ledger, "task-1")

    forgotten = ledger.reset_video("v1")

    assert forgotten == 4
    assert ledger.get_video("v1") is None
    assert ledger.counts("v1") == {}
    assert ledger.url_records("v1") == []
    result = enqueue(ledger, "v1", "a", "b", "c", now=at(1))
    assert result.queued == 3  # type: ignore[attr-defined]


def test_cancel_takes_pending_urls_out_of_the_queue(ledger: Ledger) -> None:
    ledger.put_video("v1", "https://o.example.com/v1.m3u8", 5, T0)
    enqueue(ledger, "v1", "a", "b")
    submit_all(ledger, "task-1")  # a and b are on their way: they go on
    enqueue(ledger, "v1", "c", "d", "shared")
    enqueue(ledger, "v2", "shared")  # another video wants this one

    cancelled = ledger.cancel_video("v1")

    assert cancelled == 2
    assert ledger.counts("v1") == {UrlState.SUBMITTED: 2, UrlState.PENDING: 1, UrlState.SKIPPED: 2}
    skipped = {r.url: r.last_error for r in ledger.url_records("v1") if r.state is UrlState.SKIPPED}
    assert skipped == {url("c"): "cancelled", url("d"): "cancelled"}
    claim = ledger.claim(P, A, 100, "worker-2", at(1), LEASE)
    assert claim is not None and claim.urls == (url("shared"),)
    assert ledger.cancel_video("v1") == 0
    again = enqueue(ledger, "v1", "c", "d", now=at(2))
    assert again.queued == 2  # type: ignore[attr-defined]


# Enqueue and dedup --------------------------------------------------------


def test_enqueue_dedups_across_videos(ledger: Ledger) -> None:
    first = ledger.enqueue("v1", P, A, queued("a", "b", "c"), T0, MAX_AGE)
    second = ledger.enqueue("v2", P, A, queued("b", "c", "d"), T0, MAX_AGE)

    assert (first.queued, first.already_queued, first.already_done) == (3, 0, 0)
    assert (second.queued, second.already_queued, second.already_done) == (1, 2, 0)
    assert ledger.counts("v2") == {UrlState.PENDING: 3}
    assert ledger.counts() == {UrlState.PENDING: 4}


def test_done_url_is_not_queued_again_for_another_video(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    claim = submit_all(ledger, "task-1")
    ledger.record_outcomes(
        P, A, [Outcome(u, "task-1", UrlState.DONE) for u in claim.urls], at(1), MAX_AGE, 3
    )

    result = ledger.enqueue("v2", P, A, queued("a", "c"), at(2), MAX_AGE)

    assert (result.queued, result.already_done, result.already_queued) == (1, 1, 0)
    assert states(ledger, "v2") == {url("a"): UrlState.DONE, url("c"): UrlState.PENDING}


def test_reserved_and_submitted_urls_count_as_already_queued(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    submit_all(ledger, "task-1")
    enqueue(ledger, "v1", "b")
    claim_all(ledger)

    result = ledger.enqueue("v2", P, A, queued("a", "b"), T0, MAX_AGE)

    assert (result.queued, result.already_queued) == (0, 2)


def test_a_url_repeated_in_one_call_is_queued_once(ledger: Ledger) -> None:
    result = ledger.enqueue("v1", P, A, queued("a", "a", "b"), T0, MAX_AGE)

    assert result.queued == 2
    assert ledger.counts("v1") == {UrlState.PENDING: 2}


def test_same_url_for_another_area_is_another_push(ledger: Ledger) -> None:
    ledger.enqueue("v1", P, A, queued("a"), T0, MAX_AGE)
    result = ledger.enqueue("v1", P, "overseas", queued("a"), T0, MAX_AGE)

    assert result.queued == 1
    assert ledger.claim(P, "overseas", 10, "w", T0, LEASE) is not None


def test_done_url_is_queued_again_after_max_age(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    submit_all(ledger, "task-1")
    ledger.record_outcomes(P, A, [Outcome(url("a"), "task-1", UrlState.DONE)], T0, MAX_AGE, 3)
    (record,) = ledger.url_records("v1")
    assert record.expires_at == T0 + MAX_AGE

    early = ledger.enqueue("v2", P, A, queued("a"), T0 + dt.timedelta(days=1), MAX_AGE)
    late = ledger.enqueue("v2", P, A, queued("a"), T0 + dt.timedelta(days=3, seconds=1), MAX_AGE)

    assert (early.queued, early.already_done) == (0, 1)
    assert (late.queued, late.already_done) == (1, 0)
    assert states(ledger, "v1") == {url("a"): UrlState.PENDING}
    claim = claim_all(ledger, T0 + dt.timedelta(days=4))
    assert claim.urls == (url("a"),)


def test_done_urls_are_the_targets_fresh_done_urls_whichever_video_brought_them(
    ledger: Ledger,
) -> None:
    enqueue(ledger, "v1", "a", "b")
    submit_all(ledger, "task-1")
    done = [Outcome(url(name), "task-1", UrlState.DONE) for name in ("a", "b")]
    ledger.record_outcomes(P, A, done, T0, MAX_AGE, 3)
    enqueue(ledger, "v1", "c")  # pending
    ledger.enqueue("v1", P, "overseas", queued("a"), T0, MAX_AGE)
    asked = [url(name) for name in ("a", "b", "c", "never-seen", "a")]

    # Asked for another video's URLs: what enqueue would count as already done.
    assert ledger.done_urls(P, A, asked, at(1), MAX_AGE) == {url("a"), url("b")}
    assert ledger.done_urls(P, "overseas", asked, at(1), MAX_AGE) == set()  # pending there
    assert ledger.done_urls("qiniu", A, asked, at(1), MAX_AGE) == set()
    later = T0 + MAX_AGE + dt.timedelta(seconds=1)
    assert ledger.done_urls(P, A, asked, later, MAX_AGE) == set()  # expired
    assert ledger.done_urls(P, A, asked, at(120), dt.timedelta(hours=1)) == set()
    assert ledger.done_urls(P, A, [], at(1), MAX_AGE) == set()
    result = ledger.enqueue("v2", P, A, queued("a", "b", "c"), at(1), MAX_AGE)
    assert result.already_done == 2


def test_done_urls_reads_a_long_list_in_chunks(ledger: Ledger) -> None:
    names = [f"s{i}" for i in range(600)]  # past one chunk of the SQLite query (500)
    enqueue(ledger, "v1", *names)
    submit_all(ledger, "task-1")
    outcomes = [Outcome(url(name), "task-1", UrlState.DONE) for name in names[::2]]
    ledger.record_outcomes(P, A, outcomes, T0, MAX_AGE, 3)
    found = ledger.done_urls(P, A, (url(name) for name in names), at(1), MAX_AGE)
    assert found == {url(name) for name in names[::2]}


def test_a_shorter_max_age_applies_to_urls_already_done(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    submit_all(ledger, "task-1")
    ledger.record_outcomes(P, A, [Outcome(url("a"), "task-1", UrlState.DONE)], T0, MAX_AGE, 3)

    result = ledger.enqueue("v1", P, A, queued("a"), at(120), dt.timedelta(hours=1))

    assert result.queued == 1


def test_failed_and_invalid_urls_are_queued_again_with_fresh_attempts(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    submit_all(ledger, "task-1")
    ledger.record_outcomes(
        P,
        A,
        [
            Outcome(url("a"), "task-1", UrlState.FAILED, "origin 404"),
            Outcome(url("b"), "task-1", UrlState.INVALID, "bad host"),
        ],
        T0,
        MAX_AGE,
        max_attempts=1,
    )

    result = enqueue(ledger, "v1", "a", "b", now=at(1))

    assert result.queued == 2  # type: ignore[attr-defined]
    records = ledger.url_records("v1")
    assert [(r.state, r.attempts, r.last_error) for r in records] == [
        (UrlState.PENDING, 0, None),
        (UrlState.PENDING, 0, None),
    ]


def test_skipped_urls_are_recorded_per_video_and_never_claimed(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    foreign = "https://elsewhere.example.org/x.ts"
    ledger.mark_skipped("v1", P, A, {foreign: "foreign host", "skd://key": "scheme"})

    records = ledger.url_records("v1")

    assert [(r.url, r.state, r.last_error) for r in records] == [
        (url("a"), UrlState.PENDING, None),
        (foreign, UrlState.SKIPPED, "foreign host"),
        ("skd://key", UrlState.SKIPPED, "scheme"),
    ]
    assert ledger.counts("v1") == {UrlState.PENDING: 1, UrlState.SKIPPED: 2}
    assert ledger.counts("v2") == {}
    assert claim_all(ledger).urls == (url("a"),)
    assert ledger.claim(P, A, 10, "w", T0, LEASE) is None


def test_url_records_in_queue_order(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "m.m3u8", "s1.ts", "s2.ts")

    records = ledger.url_records("v1")

    assert [r.url for r in records] == [url("m.m3u8"), url("s1.ts"), url("s2.ts")]
    assert all((r.provider, r.area, r.kind) == (P, A, "segment") for r in records)
    assert all(r.task_id is None and r.pushed_at is None for r in records)


# Claims -------------------------------------------------------------------


def test_claim_takes_best_priority_then_insertion_order(ledger: Ledger) -> None:
    ledger.enqueue(
        "v1",
        P,
        A,
        [
            QueuedUrl(url("late-1"), "segment", 5),
            QueuedUrl(url("urgent-1"), "playlist", 0),
            QueuedUrl(url("late-2"), "segment", 5),
            QueuedUrl(url("urgent-2"), "playlist", 0),
        ],
        T0,
        MAX_AGE,
    )

    first = ledger.claim(P, A, 3, "w", T0, LEASE)
    second = ledger.claim(P, A, 3, "w", T0, LEASE)

    assert first is not None and second is not None
    assert first.urls == (url("urgent-1"), url("urgent-2"), url("late-1"))
    assert second.urls == (url("late-2"),)


def test_claim_describes_itself(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")

    claim = ledger.claim(P, A, 10, "host-7", T0, LEASE)

    assert claim is not None
    assert (claim.provider, claim.area, claim.worker) == (P, A, "host-7")
    assert (claim.claimed_at, claim.lease_until) == (T0, T0 + LEASE)
    assert states(ledger, "v1") == {url("a"): UrlState.RESERVED}


def test_claim_never_returns_the_same_url_twice(ledger: Ledger) -> None:
    names = [f"s{i:02d}.ts" for i in range(10)]
    enqueue(ledger, "v1", *names)

    claims = []
    while (claim := ledger.claim(P, A, 3, "w", T0, LEASE)) is not None:
        claims.append(claim)

    claimed = [u for claim in claims for u in claim.urls]
    assert [len(claim.urls) for claim in claims] == [3, 3, 3, 1]
    assert claimed == [url(name) for name in names]
    assert len({claim.claim_id for claim in claims}) == 4


def test_claim_is_per_provider_and_area(ledger: Ledger) -> None:
    ledger.enqueue("v1", P, "overseas", queued("a"), T0, MAX_AGE)
    ledger.enqueue("v1", "qiniu", A, queued("b"), T0, MAX_AGE)

    assert ledger.claim(P, A, 10, "w", T0, LEASE) is None
    other = ledger.claim("qiniu", A, 10, "w", T0, LEASE)
    assert other is not None and other.urls == (url("b"),)


def test_claim_filtered_by_video_takes_only_that_videos_urls(ledger: Ledger) -> None:
    enqueue(ledger, "a", "a1", "a2", "a3")
    enqueue(ledger, "b", "b1", "b2")

    claim = ledger.claim(P, A, 10, "w", T0, LEASE, video_id="b")

    assert claim is not None and claim.urls == (url("b1"), url("b2"))
    assert set(states(ledger, "a").values()) == {UrlState.PENDING}
    assert ledger.claim(P, A, 10, "w", T0, LEASE, video_id="b") is None
    rest = ledger.claim(P, A, 10, "w", T0, LEASE)
    assert rest is not None and rest.urls == (url("a1"), url("a2"), url("a3"))


def test_claim_filtered_by_video_keeps_priority_order(ledger: Ledger) -> None:
    enqueue(ledger, "a", "a1")
    ledger.enqueue(
        "b",
        P,
        A,
        [QueuedUrl(url("late"), "segment", 5), QueuedUrl(url("urgent"), "playlist", 0)],
        T0,
        MAX_AGE,
    )

    first = ledger.claim(P, A, 1, "w", T0, LEASE, video_id="b")
    second = ledger.claim(P, A, 1, "w", T0, LEASE, video_id="b")

    assert first is not None and second is not None
    assert (first.urls, second.urls) == ((url("urgent"),), (url("late"),))


def test_claim_filtered_by_video_is_per_provider_and_area(ledger: Ledger) -> None:
    ledger.enqueue("b", P, "overseas", queued("b1"), T0, MAX_AGE)
    enqueue(ledger, "a", "a1")

    assert ledger.claim(P, A, 10, "w", T0, LEASE, video_id="b") is None
    overseas = ledger.claim(P, "overseas", 10, "w", T0, LEASE, video_id="b")
    assert overseas is not None and overseas.urls == (url("b1"),)


def test_a_url_shared_by_two_videos_is_claimable_through_either(ledger: Ledger) -> None:
    enqueue(ledger, "a", "shared", "a1")
    enqueue(ledger, "b", "shared", "b1")

    through_b = ledger.claim(P, A, 10, "w", T0, LEASE, video_id="b")

    assert through_b is not None and through_b.urls == (url("shared"), url("b1"))
    through_a = ledger.claim(P, A, 10, "w", T0, LEASE, video_id="a")
    assert through_a is not None and through_a.urls == (url("a1"),)

    ledger.release(through_b, [url("shared")], None, count_attempt=False)
    again = ledger.claim(P, A, 10, "w", T0, LEASE, video_id="a")
    assert again is not None and again.urls == (url("shared"),)


def test_claim_of_an_unknown_video_finds_nothing(ledger: Ledger) -> None:
    enqueue(ledger, "a", "a1")

    assert ledger.claim(P, A, 10, "w", T0, LEASE, video_id="nope") is None
    assert states(ledger, "a") == {url("a1"): UrlState.PENDING}


def test_expired_leases_are_reported_by_claim(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    first = ledger.claim(P, A, 2, "w1", T0, LEASE)
    second = ledger.claim(P, A, 2, "w2", at(1), LEASE)
    assert first is not None and second is not None

    assert ledger.expired_claims(P, A, at(1)) == []
    assert ledger.expired_claims(P, A, at(2.5)) == [first]
    assert ledger.expired_claims(P, A, at(10)) == [first, second]
    assert ledger.expired_claims(P, "overseas", at(10)) == []


def test_submitted_or_released_urls_leave_the_expired_claim(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    claim = claim_all(ledger)
    ledger.mark_submitted(claim, "task-1", [url("a")], at(1))
    ledger.release(claim, [url("b")], None, count_attempt=False)

    (expired,) = ledger.expired_claims(P, A, at(10))

    assert expired.claim_id == claim.claim_id
    assert expired.urls == (url("c"),)


def test_renewing_a_lease_keeps_the_claim_from_expiring(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    claim = claim_all(ledger)  # lease until at(2)
    ledger.mark_submitted(claim, "task-1", [url("a")], at(1))

    renewed = ledger.renew_lease(claim, at(1.5), LEASE)

    assert renewed is not None
    assert renewed.urls == (url("b"), url("c"))
    assert renewed.lease_until == at(3.5)
    assert (renewed.claim_id, renewed.worker, renewed.claimed_at) == (
        claim.claim_id,
        claim.worker,
        claim.claimed_at,
    )
    assert ledger.expired_claims(P, A, at(3)) == []
    assert [c.urls for c in ledger.expired_claims(P, A, at(3.5))] == [renewed.urls]


def test_the_owner_may_renew_a_lease_that_ran_out_while_nobody_took_it(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    claim = claim_all(ledger)
    renewed = ledger.renew_lease(claim, at(5), LEASE)
    assert renewed is not None and renewed.lease_until == at(7)


def test_renewing_a_settled_claim_finds_nothing(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    claim = claim_all(ledger)
    ledger.mark_submitted(claim, "task-1", [url("a")], at(1))
    assert ledger.renew_lease(claim, at(1), LEASE) is None


def test_taking_over_needs_an_expired_lease(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    claim = claim_all(ledger)
    assert ledger.renew_lease(claim, at(1), LEASE, worker="worker-2") is None

    taken = ledger.renew_lease(claim, at(3), LEASE, worker="worker-2")

    assert taken is not None
    assert (taken.urls, taken.worker, taken.lease_until) == (claim.urls, "worker-2", at(5))
    assert taken.claimed_at == claim.claimed_at  # reconciliation searches from there
    # The dead worker's heartbeat, had it one, no longer holds anything.
    assert ledger.renew_lease(claim, at(3), LEASE) is None
    # Its answer, arriving late, is still recorded under the claim.
    ledger.mark_submitted(taken, "task-1", [url("a")], at(3))
    assert states(ledger, "v1")[url("a")] is UrlState.SUBMITTED


def test_an_expired_claim_is_taken_over_by_one_worker_only(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    claim = claim_all(ledger)
    (expired,) = ledger.expired_claims(P, A, at(3))

    first = ledger.renew_lease(expired, at(3), LEASE, worker="worker-2")
    second = ledger.renew_lease(expired, at(3), LEASE, worker="worker-3")

    assert first is not None and first.urls == claim.urls
    assert second is None


def test_release_returns_urls_to_the_queue(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    claim = claim_all(ledger)

    ledger.release(claim, [url("a")], "connection reset", count_attempt=True)
    ledger.release(claim, [url("b")], None, count_attempt=False)

    records = {r.url: r for r in ledger.url_records("v1")}
    assert (records[url("a")].state, records[url("a")].attempts) == (UrlState.PENDING, 1)
    assert records[url("a")].last_error == "connection reset"
    assert (records[url("b")].state, records[url("b")].attempts) == (UrlState.PENDING, 0)
    assert records[url("c")].state is UrlState.RESERVED
    again = claim_all(ledger, at(1))
    assert again.urls == (url("a"), url("b"))


def test_release_of_another_claim_changes_nothing(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    claim = claim_all(ledger)
    stale = Claim("not-this-one", P, A, claim.urls, "w", T0, T0 + LEASE)

    ledger.release(stale, claim.urls, "late", count_attempt=True)
    ledger.mark_submitted(stale, "task-x", claim.urls, T0)

    assert states(ledger, "v1") == {url("a"): UrlState.RESERVED}


# Submission, tasks and outcomes ------------------------------------------


def test_mark_submitted_records_an_open_task(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    claim = claim_all(ledger)

    ledger.mark_submitted(claim, "task-1", claim.urls, at(1))

    (task,) = ledger.open_tasks(P, A)
    assert (task.task_id, task.provider, task.area, task.kind) == ("task-1", P, A, "push")
    assert (task.url_count, task.created_at, task.open) == (2, at(1), True)
    records = ledger.url_records("v1")
    assert {(r.state, r.task_id, r.pushed_at) for r in records} == {
        (UrlState.SUBMITTED, "task-1", at(1))
    }
    assert ledger.expired_claims(P, A, at(60)) == []


def test_tasks_are_listed_oldest_first_per_kind(ledger: Ledger) -> None:
    ledger.record_task("t2", P, A, "push", 5, at(2))
    ledger.record_task("t1", P, A, "push", 5, at(1))
    ledger.record_task("p1", P, A, "purge", 1, at(1))
    ledger.record_task("t3", P, "overseas", "push", 5, at(1))

    assert [t.task_id for t in ledger.open_tasks(P, A)] == ["t1", "t2"]
    assert [t.task_id for t in ledger.open_tasks(P, A, kind="purge")] == ["p1"]

    ledger.close_task("t1", P)

    assert [t.task_id for t in ledger.open_tasks(P, A)] == ["t2"]


DAYS = dt.timedelta(days=1)


def test_earlier_pushes_are_the_urls_recorded_under_the_task(ledger: Ledger) -> None:
    """A failed push of "a" is an earlier push of "a"; a merged id another batch
    recorded ("b"'s task, Alibaba's PushTaskId of one second) is not one of "c"."""
    enqueue(ledger, "v1", "a", "b")
    first = claim_all(ledger, T0)
    ledger.mark_submitted(first, "t-1", first.urls, T0)
    ledger.record_outcomes(
        P, A, [Outcome(url("a"), "t-1", UrlState.FAILED, "origin")], at(2), DAYS, 3
    )
    enqueue(ledger, "v2", "c", now=at(3))

    found = {url("a"): "t-1", url("c"): "t-1", url("z"): "t-1", url("b"): "t-9"}
    assert ledger.earlier_pushes(P, A, found) == {url("a")}
    assert ledger.earlier_pushes(P, A, {url("b"): "t-1"}) == {url("b")}
    assert ledger.earlier_pushes(P, "overseas", {url("b"): "t-1"}) == set()
    assert ledger.earlier_pushes(P, A, {}) == set()


def test_known_tasks_are_those_recorded_for_the_provider(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    submit_all(ledger, "push-1")
    ledger.record_task("purge-1", P, A, "purge", 1, T0)
    ledger.record_task("other", "qiniu", A, "push", 1, T0)

    known = ledger.known_tasks(P, ["push-1", "purge-1", "other", "never"])

    assert known == {"push-1", "purge-1"}
    assert ledger.known_tasks(P, []) == set()


def test_record_outcomes_done_failed_and_invalid(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "ok", "flaky", "broken", "refused")
    submit_all(ledger, "task-1")

    ledger.record_outcomes(
        P,
        A,
        [
            Outcome(url("ok"), "task-1", UrlState.DONE),
            Outcome(url("flaky"), "task-1", UrlState.FAILED, "origin timeout"),
            Outcome(url("broken"), "task-1", UrlState.FAILED, "origin 404"),
            Outcome(url("refused"), "task-1", UrlState.INVALID, "not our domain"),
        ],
        at(5),
        MAX_AGE,
        max_attempts=2,
    )

    records = {r.url.rsplit("/", 1)[1]: r for r in ledger.url_records("v1")}
    assert records["ok"].state is UrlState.DONE
    assert records["ok"].expires_at == at(5) + MAX_AGE
    assert (records["flaky"].state, records["flaky"].attempts) == (UrlState.PENDING, 1)
    assert records["flaky"].last_error == "origin timeout"
    assert (records["refused"].state, records["refused"].last_error) == (
        UrlState.INVALID,
        "not our domain",
    )
    assert ledger.open_tasks(P, A) == []  # nothing of task-1 is still submitted

    retry = submit_all(ledger, "task-2", at(6))
    assert retry.urls == (url("flaky"), url("broken"))
    ledger.record_outcomes(
        P,
        A,
        [
            Outcome(url("flaky"), "task-2", UrlState.DONE),
            Outcome(url("broken"), "task-2", UrlState.FAILED, "origin 404 again"),
        ],
        at(7),
        MAX_AGE,
        max_attempts=2,
    )

    records = {r.url.rsplit("/", 1)[1]: r for r in ledger.url_records("v1")}
    assert records["flaky"].state is UrlState.DONE
    assert (records["broken"].state, records["broken"].attempts) == (UrlState.FAILED, 2)
    assert records["broken"].last_error == "origin 404 again"
    assert ledger.claim(P, A, 10, "w", at(8), LEASE) is None


def test_requeue_sends_finished_urls_to_the_back_of_the_queue(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "hit", "miss", "never")
    claim = ledger.claim(P, A, 2, "w", T0, LEASE)
    assert claim is not None
    ledger.mark_submitted(claim, "task-1", claim.urls, T0)
    ledger.record_outcomes(
        P, A, [Outcome(url("hit"), "task-1", UrlState.DONE),
               Outcome(url("miss"), "task-1", UrlState.DONE)], at(1), MAX_AGE, 3,
    )  # fmt: skip

    # "never" is still pending and an unknown URL is not ours: neither moves.
    moved = ledger.requeue(P, A, [url("miss"), url("never"), "http://cdn.test/unknown"])

    assert moved == 1
    assert states(ledger, "v1") == {
        url("hit"): UrlState.DONE, url("miss"): UrlState.PENDING, url("never"): UrlState.PENDING,
    }  # fmt: skip
    again = ledger.claim(P, A, 10, "w", at(2), LEASE)
    assert again is not None and again.urls == (url("never"), url("miss"))
    record = {r.url: r for r in ledger.url_records("v1")}[url("miss")]
    assert (record.task_id, record.expires_at, record.attempts) == (None, None, 0)


def test_task_stays_open_while_any_url_is_submitted(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    submit_all(ledger, "task-1")

    ledger.record_outcomes(P, A, [Outcome(url("a"), "task-1", UrlState.DONE)], T0, MAX_AGE, 3)

    assert [t.task_id for t in ledger.open_tasks(P, A)] == ["task-1"]


def test_outcomes_only_touch_urls_submitted_under_that_task(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    submit_all(ledger, "task-new")

    ledger.record_outcomes(
        P, A, [Outcome(url("a"), "task-old", UrlState.FAILED, "stale")], T0, MAX_AGE, 3
    )

    assert states(ledger, "v1") == {url("a"): UrlState.SUBMITTED}


def test_abandoned_task_closes_and_requeues_what_is_still_submitted(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    submit_all(ledger, "task-1")
    ledger.record_outcomes(P, A, [Outcome(url("a"), "task-1", UrlState.DONE)], T0, MAX_AGE, 3)

    assert ledger.abandon_task(P, "task-1", "too old to ask") == 2

    assert states(ledger, "v1") == {
        url("a"): UrlState.DONE,
        url("b"): UrlState.PENDING,
        url("c"): UrlState.PENDING,
    }
    assert ledger.open_tasks(P, A) == []
    records = {r.url: r for r in ledger.url_records("v1")}
    assert records[url("b")].last_error == "too old to ask"
    assert (records[url("b")].attempts, records[url("b")].task_id) == (0, None)
    again = claim_all(ledger, at(1))
    assert again.urls == (url("b"), url("c"))
    # A late answer for the abandoned task changes nothing.
    ledger.record_outcomes(P, A, [Outcome(url("b"), "task-1", UrlState.DONE)], T0, MAX_AGE, 3)
    assert states(ledger, "v1")[url("b")] is UrlState.RESERVED


def test_submitted_urls_by_task(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    first = claim_all(ledger, limit=2)
    ledger.mark_submitted(first, "task-1", first.urls, T0)
    second = claim_all(ledger)
    ledger.mark_submitted(second, "task-2", second.urls, T0)
    ledger.record_outcomes(P, A, [Outcome(url("a"), "task-1", UrlState.DONE)], T0, MAX_AGE, 3)

    assert ledger.submitted_urls(P, ["task-1", "task-2", "task-9"]) == {
        "task-1": [url("b")],
        "task-2": [url("c")],
    }
    assert ledger.submitted_urls("qiniu", ["task-1"]) == {}


def test_invalid_that_may_be_a_passing_fault_is_retried_once(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    submit_all(ledger, "task-1")
    reason = "the origin answered 4xx or 5xx"
    once = [Outcome(url("a"), "task-1", UrlState.INVALID, reason, retry_once=True)]
    ledger.record_outcomes(P, A, once, T0, MAX_AGE, 3)

    (record,) = ledger.url_records("v1")
    assert (record.state, record.attempts, record.last_error) == (UrlState.PENDING, 1, reason)
    assert ledger.open_tasks(P, A) == []

    submit_all(ledger, "task-2", at(1))
    again = [Outcome(url("a"), "task-2", UrlState.INVALID, reason, retry_once=True)]
    ledger.record_outcomes(P, A, again, at(2), MAX_AGE, 3)
    (record,) = ledger.url_records("v1")
    assert (record.state, record.last_error) == (UrlState.INVALID, reason)
    assert ledger.claim(P, A, 10, "worker-1", at(3), LEASE) is None


def test_invalid_stays_invalid(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a")
    submit_all(ledger, "task-1")
    ledger.record_outcomes(
        P, A, [Outcome(url("a"), "task-1", UrlState.INVALID, "refused")], T0, MAX_AGE, 3
    )

    ledger.record_outcomes(P, A, [Outcome(url("a"), "task-1", UrlState.DONE)], at(1), MAX_AGE, 3)

    assert states(ledger, "v1") == {url("a"): UrlState.INVALID}


def test_mark_invalid_takes_urls_out_of_the_queue(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    claim = claim_all(ledger)

    ledger.mark_invalid(P, A, {url("a"): "InvalidParameter.CdnUrlInvalid"}, T0)
    ledger.mark_submitted(claim, "task-1", [url("b")], T0)

    records = {r.url: r for r in ledger.url_records("v1")}
    assert records[url("a")].state is UrlState.INVALID
    assert records[url("a")].last_error == "InvalidParameter.CdnUrlInvalid"
    assert records[url("b")].state is UrlState.SUBMITTED
    assert ledger.expired_claims(P, A, at(60)) == []


# Reporting ---------------------------------------------------------------


def test_counts_per_video_and_in_total(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    enqueue(ledger, "v2", "c", "d")
    ledger.mark_skipped("v2", P, A, {"https://elsewhere.example.org/e": "foreign host"})
    claim = ledger.claim(P, A, 2, "w", T0, LEASE)
    assert claim is not None
    ledger.mark_submitted(claim, "task-1", claim.urls, T0)
    ledger.record_outcomes(P, A, [Outcome(url("a"), "task-1", UrlState.DONE)], T0, MAX_AGE, 3)

    assert ledger.counts("v1") == {
        UrlState.DONE: 1,
        UrlState.SUBMITTED: 1,
        UrlState.PENDING: 1,
    }
    assert ledger.counts("v2") == {UrlState.PENDING: 2, UrlState.SKIPPED: 1}
    assert ledger.counts() == {
        UrlState.DONE: 1,
        UrlState.SUBMITTED: 1,
        UrlState.PENDING: 2,
        UrlState.SKIPPED: 1,
    }


def test_failures_lists_failed_and_invalid_with_their_errors(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    enqueue(ledger, "v2", "x")
    submit_all(ledger, "task-1")
    ledger.record_outcomes(
        P,
        A,
        [
            Outcome(url("a"), "task-1", UrlState.FAILED, "origin 404"),
            Outcome(url("b"), "task-1", UrlState.INVALID, "bad url"),
            Outcome(url("c"), "task-1", UrlState.DONE),
            Outcome(url("x"), "task-1", UrlState.FAILED, "origin 500"),
        ],
        T0,
        MAX_AGE,
        max_attempts=1,
    )

    everything = ledger.failures()
    of_v1 = ledger.failures("v1")

    assert [(r.url, r.state, r.last_error) for r in everything] == [
        (url("a"), UrlState.FAILED, "origin 404"),
        (url("b"), UrlState.INVALID, "bad url"),
        (url("x"), UrlState.FAILED, "origin 500"),
    ]
    assert [r.url for r in of_v1] == [url("a"), url("b")]
    assert len(ledger.failures(limit=1)) == 1
    assert ledger.failures("v3") == []


# Quota -------------------------------------------------------------------

DAY = "2024-05-01"


def test_no_quota_day_until_one_is_recorded(ledger: Ledger) -> None:
    assert ledger.quota_day(P, A, DAY) is None


def test_sync_takes_the_providers_figures(ledger: Ledger) -> None:
    synced = ledger.sync_quota(P, A, DAY, 1000, 200)

    assert synced == QuotaDay(P, A, DAY, 1000, 200, 0)
    assert synced.remaining == 800
    assert ledger.quota_day(P, A, DAY) == synced


def test_reserve_grants_what_is_left(ledger: Ledger) -> None:
    ledger.sync_quota(P, A, DAY, 100, 40)

    assert ledger.reserve_quota(P, A, DAY, 50) == 50
    assert ledger.reserve_quota(P, A, DAY, 50) == 10
    assert ledger.reserve_quota(P, A, DAY, 50) == 0
    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 40, 60)


def test_reserve_without_a_known_limit_grants_everything(ledger: Ledger) -> None:
    assert ledger.reserve_quota(P, A, DAY, 500) == 500
    quota = ledger.quota_day(P, A, DAY)

    assert quota is not None
    assert (quota.limit, quota.inflight, quota.remaining) == (None, 500, None)


def test_settle_moves_a_reservation_into_used(ledger: Ledger) -> None:
    ledger.sync_quota(P, A, DAY, 100, 0)
    ledger.reserve_quota(P, A, DAY, 30)

    ledger.settle_quota(P, A, DAY, reserved=30, used=20)

    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 20, 0)
    assert ledger.reserve_quota(P, A, DAY, 100) == 80


def test_a_current_snapshot_may_lower_used_after_the_providers_day_reset(
    ledger: Ledger,
) -> None:
    ledger.sync_quota(P, A, DAY, 1000, 0)
    ledger.reserve_quota(P, A, DAY, 1000)
    ledger.settle_quota(P, A, DAY, reserved=1000, used=1000)
    book = ledger.quota_day(P, A, DAY)
    assert book is not None and book.remaining == 0

    # Nothing in flight and nothing settled since the count was read: current.
    reset = ledger.sync_quota(P, A, DAY, 1000, 0, settles_seen=book.settles)

    assert reset == QuotaDay(P, A, DAY, 1000, 0, 0)
    assert ledger.reserve_quota(P, A, DAY, 1000) == 1000


def test_a_snapshot_taken_before_a_settle_cannot_lower_used(ledger: Ledger) -> None:
    ledger.sync_quota(P, A, DAY, 100, 0)
    book = ledger.quota_day(P, A, DAY)
    assert book is not None
    # Another worker's batch arrives and settles while our snapshot is on its way.
    ledger.reserve_quota(P, A, DAY, 30)
    ledger.settle_quota(P, A, DAY, reserved=30, used=30)

    stale = ledger.sync_quota(P, A, DAY, 100, 0, settles_seen=book.settles)

    assert stale.used == 30
    assert ledger.reserve_quota(P, A, DAY, 100) == 70


def test_a_snapshot_cannot_lower_used_while_a_batch_is_in_flight(ledger: Ledger) -> None:
    ledger.sync_quota(P, A, DAY, 100, 50)
    book = ledger.quota_day(P, A, DAY)
    assert book is not None
    ledger.reserve_quota(P, A, DAY, 20)

    synced = ledger.sync_quota(P, A, DAY, 100, 10, settles_seen=book.settles)
    assert (synced.used, synced.inflight) == (50, 20)
    # Without a settle count, a snapshot can only ever raise the count.
    assert ledger.sync_quota(P, A, DAY, 100, 0).used == 50
    assert ledger.sync_quota(P, A, DAY, 100, 60).used == 60


def test_exhaust_stops_reservations(ledger: Ledger) -> None:
    ledger.sync_quota(P, A, DAY, 1000, 10)

    ledger.exhaust_quota(P, A, DAY)

    quota = ledger.quota_day(P, A, DAY)
    assert quota is not None
    assert (quota.used, quota.remaining) == (1000, 0)
    assert ledger.reserve_quota(P, A, DAY, 1) == 0


def test_exhaust_with_an_unknown_limit_stops_reservations_too(ledger: Ledger) -> None:
    ledger.reserve_quota(P, A, DAY, 5)

    ledger.exhaust_quota(P, A, "2024-05-01")

    assert ledger.reserve_quota(P, A, DAY, 1) == 0
    quota = ledger.quota_day(P, A, DAY)
    assert quota is not None and quota.remaining == 0


def test_quota_days_and_areas_are_separate(ledger: Ledger) -> None:
    ledger.sync_quota(P, A, DAY, 10, 10)

    assert ledger.reserve_quota(P, A, "2024-05-02", 5) == 5
    assert ledger.reserve_quota(P, "overseas", DAY, 5) == 5
    assert ledger.reserve_quota(P, A, DAY, 5) == 0


@pytest.mark.parametrize("seed", range(3))
def test_reservations_never_exceed_the_limit(ledger: Ledger, seed: int) -> None:
    rng = random.Random(seed)
    limit = rng.randint(50, 500)
    ledger.sync_quota(P, A, DAY, limit, rng.randint(0, 40))
    open_reservations: list[int] = []

    for _ in range(60):
        if open_reservations and rng.random() < 0.4:
            reserved = open_reservations.pop(rng.randrange(len(open_reservations)))
            ledger.settle_quota(P, A, DAY, reserved, rng.randint(0, reserved))
        else:
            granted = ledger.reserve_quota(P, A, DAY, rng.randint(1, 80))
            open_reservations.append(granted)
        quota = ledger.quota_day(P, A, DAY)
        assert quota is not None
        assert quota.inflight == sum(open_reservations)
        assert quota.used + quota.inflight <= limit


# Quota and claim in one step, submit and settle in one step ---------------


def test_claim_with_quota_reserves_what_it_claims(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    ledger.sync_quota(P, A, DAY, 100, 10)

    claim, granted = ledger.claim_with_quota(P, A, DAY, 5, "worker-1", T0, LEASE)

    assert claim is not None
    assert (granted, claim.urls, claim.lease_until) == (5, (url("a"), url("b")), T0 + LEASE)
    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 10, 2)
    assert set(states(ledger, "v1").values()) == {UrlState.RESERVED}


def test_claim_with_quota_grants_no_more_than_is_left(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    ledger.sync_quota(P, A, DAY, 12, 10)

    claim, granted = ledger.claim_with_quota(P, A, DAY, 5, "worker-1", T0, LEASE)

    assert claim is not None and (granted, len(claim.urls)) == (2, 2)
    assert ledger.claim_with_quota(P, A, DAY, 5, "worker-1", T0, LEASE) == (None, 0)
    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 12, 10, 2)


def test_claim_with_quota_filtered_by_video_reserves_only_its_urls(ledger: Ledger) -> None:
    enqueue(ledger, "a", "a1", "a2", "a3")
    enqueue(ledger, "b", "b1", "b2")
    ledger.sync_quota(P, A, DAY, 100, 10)

    claim, granted = ledger.claim_with_quota(P, A, DAY, 5, "w", T0, LEASE, video_id="b")

    assert claim is not None
    assert (granted, claim.urls) == (5, (url("b1"), url("b2")))
    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 10, 2)
    assert set(states(ledger, "a").values()) == {UrlState.PENDING}
    assert ledger.claim_with_quota(P, A, DAY, 5, "w", T0, LEASE, video_id="b") == (None, 5)
    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 10, 2)


def test_claim_with_quota_filtered_by_video_grants_no_more_than_is_left(
    ledger: Ledger,
) -> None:
    enqueue(ledger, "a", "a1")
    enqueue(ledger, "b", "b1", "b2", "b3")
    ledger.sync_quota(P, A, DAY, 12, 10)

    claim, granted = ledger.claim_with_quota(P, A, DAY, 5, "w", T0, LEASE, video_id="b")

    assert claim is not None and (granted, claim.urls) == (2, (url("b1"), url("b2")))
    assert ledger.claim_with_quota(P, A, DAY, 5, "w", T0, LEASE, video_id="b") == (None, 0)
    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 12, 10, 2)
    assert states(ledger, "a") == {url("a1"): UrlState.PENDING}


def test_claim_with_quota_and_nothing_pending_keeps_no_reservation(ledger: Ledger) -> None:
    ledger.sync_quota(P, A, DAY, 100, 0)

    claim, granted = ledger.claim_with_quota(P, A, DAY, 5, "worker-1", T0, LEASE)

    assert (claim, granted) == (None, 5)
    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 0)


def test_mark_submitted_settling_submits_and_settles(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    ledger.sync_quota(P, A, DAY, 100, 0)
    claim, _ = ledger.claim_with_quota(P, A, DAY, 3, "worker-1", T0, LEASE)
    assert claim is not None
    settles = ledger.quota_day(P, A, DAY).settles  # type: ignore[union-attr]

    ledger.mark_submitted_settling(claim, "task-1", claim.urls[:2], at(1), DAY, reserved=3)

    book = ledger.quota_day(P, A, DAY)
    assert book == QuotaDay(P, A, DAY, 100, 2, 0)
    assert book is not None and book.settles == settles + 1
    assert ledger.submitted_urls(P, ["task-1"]) == {"task-1": [url("a"), url("b")]}
    assert [t.task_id for t in ledger.open_tasks(P, A)] == ["task-1"]
    assert states(ledger, "v1")[url("c")] is UrlState.RESERVED


def reconcile(ledger: Ledger, now: dt.datetime, arrived: dict[str, str]) -> None:
    """What the scheduler does with expired claims, with ``arrived`` as the provider's list."""
    for claim in ledger.expired_claims(P, A, now):
        earlier = ledger.known_tasks(P, set(arrived.values()))
        found = {u: t for u, t in arrived.items() if u in claim.urls and t not in earlier}
        by_task = {
            task_id: [u for u in claim.urls if found.get(u) == task_id]
            for task_id in sorted(set(found.values()))
        }
        rest = [u for u in claim.urls if u not in found]
        # One step, as Scheduler._recover does: a recovery killed half-way is
        # itself recovered later, never settled twice.
        ledger.settle_claim(
            claim, now, DAY, len(claim.urls), len(found), submitted=by_task, released=rest
        )


@pytest.mark.parametrize("point", ["reserved, not claimed", "claimed, hold not trimmed"])
def test_a_kill_inside_claim_with_quota_leaks_no_quota(
    ledger: Ledger,
    crash_at: Callable[[str], type[Exception]],
    reopen: Callable[[], Ledger],
    point: str,
) -> None:
    enqueue(ledger, "v1", "a", "b", "c", "d", "e")
    ledger.sync_quota(P, A, DAY, 100, 0)
    with pytest.raises(crash_at(point)):
        ledger.claim_with_quota(P, A, DAY, 3, "worker-1", T0, LEASE)
    after_crash = ledger.quota_day(P, A, DAY)

    survivor = reopen()
    # While the dead worker's lease runs, nothing is taken from it.
    reconcile(survivor, at(1), {})
    assert survivor.quota_day(P, A, DAY) == after_crash

    reconcile(survivor, at(3), {})
    reconcile(survivor, at(4), {})  # a second recovery finds nothing more

    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 0)
    assert set(states(survivor, "v1").values()) == {UrlState.PENDING}
    claim, granted = survivor.claim_with_quota(P, A, DAY, 100, "worker-2", at(4), LEASE)
    assert claim is not None and (len(claim.urls), granted) == (5, 100)
    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 5)


@pytest.mark.parametrize("point", ["held, not submitted", "submitted, not settled"])
def test_a_kill_inside_mark_submitted_settling_settles_once(
    ledger: Ledger,
    crash_at: Callable[[str], type[Exception]],
    reopen: Callable[[], Ledger],
    point: str,
) -> None:
    enqueue(ledger, "v1", "a", "b", "c")
    ledger.sync_quota(P, A, DAY, 100, 0)
    claim, _ = ledger.claim_with_quota(P, A, DAY, 3, "worker-1", T0, LEASE)
    assert claim is not None
    # The provider took the batch as task-1; the worker dies recording it.
    with pytest.raises(crash_at(point)):
        ledger.mark_submitted_settling(claim, "task-1", claim.urls, at(1), DAY, reserved=3)

    survivor = reopen()
    arrived = dict.fromkeys(claim.urls, "task-1")
    reconcile(survivor, at(3), arrived)
    reconcile(survivor, at(4), arrived)

    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 3, 0)
    assert set(states(survivor, "v1").values()) == {UrlState.SUBMITTED}
    assert survivor.submitted_urls(P, ["task-1"]) == {"task-1": list(claim.urls)}
    assert [t.task_id for t in survivor.open_tasks(P, A)] == ["task-1"]
    assert survivor.claim_with_quota(P, A, DAY, 100, "worker-2", at(4), LEASE) == (None, 97)


def records(ledger: Ledger, video_id: str) -> dict[str, UrlRecord]:
    return {record.url: record for record in ledger.url_records(video_id)}


def test_settle_claim_ends_every_url_as_told_and_settles_once(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b", "c", "d", "e")
    ledger.sync_quota(P, A, DAY, 100, 0)
    claim, _ = ledger.claim_with_quota(P, A, DAY, 5, "worker-1", T0, LEASE)
    assert claim is not None
    settles = ledger.quota_day(P, A, DAY).settles  # type: ignore[union-attr]

    ledger.settle_claim(
        claim,
        at(1),
        DAY,
        4,
        1,
        submitted={"task-1": [url("a")]},
        invalid={url("b"): "refused by the provider"},
        released=[url("c"), url("d")],
        error="rate limited",
        count_attempt=True,
    )

    book = ledger.quota_day(P, A, DAY)
    # e was not named: it stays reserved, and so does its share of the reservation.
    assert book == QuotaDay(P, A, DAY, 100, 1, 1)
    assert book is not None and book.settles == settles + 1
    urls = records(ledger, "v1")
    assert {u: r.state for u, r in urls.items()} == {
        url("a"): UrlState.SUBMITTED,
        url("b"): UrlState.INVALID,
        url("c"): UrlState.PENDING,
        url("d"): UrlState.PENDING,
        url("e"): UrlState.RESERVED,
    }
    assert urls[url("a")].task_id == "task-1"
    assert urls[url("b")].last_error == "refused by the provider"
    assert [(urls[url(n)].attempts, urls[url(n)].last_error) for n in "cd"] == [
        (1, "rate limited"),
        (1, "rate limited"),
    ]
    assert ledger.submitted_urls(P, ["task-1"]) == {"task-1": [url("a")]}
    assert [t.task_id for t in ledger.open_tasks(P, A)] == ["task-1"]
    again, granted = ledger.claim_with_quota(P, A, DAY, 100, "worker-2", at(1), LEASE)
    assert again is not None and (again.urls, granted) == ((url("c"), url("d")), 98)


def test_settle_claim_releasing_without_counting_keeps_the_attempts(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    ledger.sync_quota(P, A, DAY, 100, 0)
    claim, _ = ledger.claim_with_quota(P, A, DAY, 5, "worker-1", T0, LEASE)
    assert claim is not None

    ledger.settle_claim(claim, at(1), DAY, 2, 0, released=claim.urls)

    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 0)
    assert [(r.state, r.attempts, r.last_error) for r in ledger.url_records("v1")] == [
        (UrlState.PENDING, 0, None),
        (UrlState.PENDING, 0, None),
    ]


def test_settle_claim_without_a_day_leaves_the_book_alone(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    claim = claim_all(ledger)

    ledger.settle_claim(
        claim, at(1), None, 2, 0, invalid={url("a"): "refused"}, released=[url("b")]
    )

    assert ledger.quota_day(P, A, DAY) is None
    assert states(ledger, "v1") == {url("a"): UrlState.INVALID, url("b"): UrlState.PENDING}


def _two_claims(ledger: Ledger) -> tuple[Claim, Claim]:
    """worker-1's claim of a, b, c; worker-2's of d, e, alive for the whole test."""
    enqueue(ledger, "v1", "a", "b", "c", "d", "e")
    ledger.sync_quota(P, A, DAY, 100, 0)
    dying, _ = ledger.claim_with_quota(P, A, DAY, 3, "worker-1", T0, LEASE)
    alive, _ = ledger.claim_with_quota(P, A, DAY, 2, "worker-2", T0, dt.timedelta(hours=1))
    assert dying is not None and alive is not None
    assert ledger.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 5)
    return dying, alive


@pytest.mark.parametrize("point", ["held, not released", "released, not settled"])
def test_a_kill_inside_settle_claim_releasing_leaks_no_quota(
    ledger: Ledger,
    crash_at: Callable[[str], type[Exception]],
    reopen: Callable[[], Ledger],
    point: str,
) -> None:
    dying, _ = _two_claims(ledger)
    # The provider refused the batch for now (or the run stops): the worker gives
    # it back and dies doing so.
    with pytest.raises(crash_at(point)):
        ledger.settle_claim(dying, at(1), DAY, 3, 0, released=dying.urls, error="throttled")

    survivor = reopen()
    # While the dead worker's lease runs, its share stays reserved: nothing is lost.
    reconcile(survivor, at(1), {})
    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 5)

    reconcile(survivor, at(4), {})
    reconcile(survivor, at(6), {})  # a second recovery finds nothing more

    # Exactly the dead worker's share came back; worker-2's stays in flight.
    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 2)
    assert [states(survivor, "v1")[url(n)] for n in "abc"] == [UrlState.PENDING] * 3
    claim, granted = survivor.claim_with_quota(P, A, DAY, 100, "worker-3", at(6), LEASE)
    assert claim is not None and (claim.urls, granted) == (dying.urls, 98)


@pytest.mark.parametrize("point", ["held, not invalidated", "invalidated, not settled"])
def test_a_kill_inside_settle_claim_refusing_settles_once(
    ledger: Ledger,
    backend: str,
    crash_at: Callable[[str], type[Exception]],
    reopen: Callable[[], Ledger],
    point: str,
) -> None:
    dying, _ = _two_claims(ledger)
    refused = {url("a"): "refused", url("b"): "refused"}
    with pytest.raises(crash_at(point)):
        ledger.settle_claim(dying, at(1), DAY, 3, 0, invalid=refused, released=[url("c")])

    survivor = reopen()
    reconcile(survivor, at(1), {})
    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 5)
    reconcile(survivor, at(4), {})
    reconcile(survivor, at(6), {})

    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 2)
    # All or nothing: SQLite rolled the step back (a and b are pushed again and
    # refused again); MongoDB rolled it forward from its journal.
    refused_state = UrlState.PENDING if backend == "sqlite" else UrlState.INVALID
    assert [states(survivor, "v1")[url(n)] for n in "abc"] == [
        refused_state,
        refused_state,
        UrlState.PENDING,
    ]


@pytest.mark.parametrize("point", ["held, not submitted", "submitted, not settled"])
def test_a_kill_recording_a_partly_refused_batch_settles_once(
    ledger: Ledger,
    backend: str,
    crash_at: Callable[[str], type[Exception]],
    reopen: Callable[[], Ledger],
    point: str,
) -> None:
    dying, _ = _two_claims(ledger)
    # The provider took a and c as task-1 and refused b in the same answer
    # (Qiniu's invalidUrls); the worker dies recording it.
    with pytest.raises(crash_at(point)):
        ledger.settle_claim(
            dying,
            at(1),
            DAY,
            3,
            2,
            submitted={"task-1": [url("a"), url("c")]},
            invalid={url("b"): "refused"},
        )

    survivor = reopen()
    arrived = {url("a"): "task-1", url("c"): "task-1"}
    reconcile(survivor, at(1), arrived)
    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 5)
    reconcile(survivor, at(4), arrived)
    reconcile(survivor, at(6), arrived)

    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 2, 2)
    assert survivor.submitted_urls(P, ["task-1"]) == {"task-1": [url("a"), url("c")]}
    # SQLite rolled back (b is pushed again); MongoDB rolled forward (b refused).
    refused_state = UrlState.PENDING if backend == "sqlite" else UrlState.INVALID
    assert states(survivor, "v1")[url("b")] is refused_state


@pytest.mark.parametrize("point", ["held, not released", "released, not settled"])
def test_a_recovery_killed_half_way_is_recovered_once(
    ledger: Ledger,
    crash_at: Callable[[str], type[Exception]],
    reopen: Callable[[], Ledger],
    point: str,
) -> None:
    dying, _ = _two_claims(ledger)
    # worker-1 died holding a, b, c; the first recovery dies too, releasing them.
    with pytest.raises(crash_at(point)):
        reconcile(ledger, at(3), {})

    survivor = reopen()
    for minutes in (4, 6, 8):
        reconcile(survivor, at(minutes), {})

    assert survivor.quota_day(P, A, DAY) == QuotaDay(P, A, DAY, 100, 0, 2)
    assert [states(survivor, "v1")[url(n)] for n in "abc"] == [UrlState.PENDING] * 3
    claim, granted = survivor.claim_with_quota(P, A, DAY, 100, "worker-3", at(8), LEASE)
    assert claim is not None and (claim.urls, granted) == (dying.urls, 98)


# Workers sharing an account's rate limits --------------------------------------


def test_heartbeats_count_the_live_workers_of_a_scope(ledger: Ledger) -> None:
    ttl = dt.timedelta(seconds=5)
    later = T0 + dt.timedelta(seconds=1)
    assert ledger.heartbeat("tencent", "a", T0, ttl) == {"a": T0}
    assert ledger.heartbeat("tencent", "b", later, ttl) == {"a": T0, "b": later}
    # The same worker again: still two, each with when it joined.
    assert ledger.heartbeat("tencent", "a", later, ttl) == {"a": T0, "b": later}
    assert ledger.heartbeat("qiniu", "a", T0, ttl) == {"a": T0}  # scopes are separate


def test_a_silent_worker_stops_counting_after_the_ttl(ledger: Ledger) -> None:
    ttl = dt.timedelta(seconds=5)
    ledger.heartbeat("tencent", "dead", T0, ttl)
    ledger.heartbeat("tencent", "live", T0 + dt.timedelta(seconds=4), ttl)
    live = ledger.heartbeat("tencent", "live", T0 + dt.timedelta(seconds=6), ttl)
    assert set(live) == {"live"}


def test_a_worker_that_leaves_stops_counting_at_once_and_joins_anew(ledger: Ledger) -> None:
    ttl = dt.timedelta(seconds=5)
    ledger.heartbeat("tencent", "a", T0, ttl)
    ledger.heartbeat("tencent", "b", T0, ttl)
    ledger.leave("tencent", "b")
    ledger.leave("tencent", "never-there")
    assert set(ledger.heartbeat("tencent", "a", T0, ttl)) == {"a"}
    back = T0 + dt.timedelta(seconds=2)
    assert ledger.heartbeat("tencent", "b", back, ttl)["b"] == back


def test_a_turn_goes_to_one_holder_until_it_expires(ledger: Ledger) -> None:
    ttl = dt.timedelta(seconds=2)
    assert ledger.take_turn("poll/tencent", "a", T0, ttl)
    assert not ledger.take_turn("poll/tencent", "b", T0 + dt.timedelta(seconds=1), ttl)
    assert ledger.take_turn("poll/tencent", "a", T0 + dt.timedelta(seconds=1), ttl)  # renewed
    assert ledger.take_turn("poll/qiniu", "b", T0, ttl)  # another turn
    assert not ledger.take_turn("poll/tencent", "b", T0 + dt.timedelta(seconds=2.5), ttl)
    assert ledger.take_turn("poll/tencent", "b", T0 + dt.timedelta(seconds=3.5), ttl)  # expired
    assert not ledger.take_turn("poll/tencent", "a", T0 + dt.timedelta(seconds=4), ttl)


def test_a_released_turn_is_free_at_once_but_only_its_holder_releases_it(ledger: Ledger) -> None:
    ttl = dt.timedelta(seconds=30)
    assert ledger.take_turn("poll/tencent", "a", T0, ttl)
    ledger.release_turn("poll/tencent", "b")  # not b's: nothing changes
    assert not ledger.take_turn("poll/tencent", "b", T0, ttl)
    ledger.release_turn("poll/tencent", "a")
    assert ledger.take_turn("poll/tencent", "b", T0, ttl)


# Per-target views (several targets share one ledger) -------------------------


def test_counts_by_target_separates_providers_and_areas(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    ledger.enqueue("v1", "tencent-b", A, queued("a"), T0, MAX_AGE)
    ledger.enqueue("v2", "qiniu", "global", queued("c"), T0, MAX_AGE)
    ledger.mark_skipped("v1", "qiniu", "global", {url("x"): "foreign host x"})
    submit_all(ledger, "t1")  # P/A's two URLs only

    everything = ledger.counts_by_target()
    assert everything[(P, A)] == {UrlState.SUBMITTED: 2}
    assert everything[("tencent-b", A)] == {UrlState.PENDING: 1}
    assert everything[("qiniu", "global")] == {UrlState.PENDING: 1, UrlState.SKIPPED: 1}
    first = ledger.counts_by_target("v1")
    assert first == {
        (P, A): {UrlState.SUBMITTED: 2},
        ("tencent-b", A): {UrlState.PENDING: 1},
        ("qiniu", "global"): {UrlState.SKIPPED: 1},
    }


def test_pending_groups_follow_claim_order(ledger: Ledger) -> None:
    ledger.enqueue("v1", P, A, [*queued("h1", priority=1), *queued("t1", "t2", priority=2)],
                   T0, MAX_AGE)  # fmt: skip
    ledger.enqueue("v2", P, A, [*queued("h2", priority=1), *queued("t3", priority=2)], T0, MAX_AGE)
    ledger.enqueue("v2", P, A, queued("t1", priority=2), T0, MAX_AGE)  # shared with v1
    ledger.enqueue("v3", "tencent-b", A, queued("z"), T0, MAX_AGE)  # another target
    claim = ledger.claim(P, A, 1, "worker-1", T0, LEASE)  # h1 leaves the pending rows
    assert claim is not None and claim.urls == (url("h1"),)

    groups = ledger.pending_groups(P, A)
    assert [(g.video_id, g.priority, g.count) for g in groups] == [
        ("v2", 1, 1),
        ("v1", 2, 2),  # t1 counts once, for v1
        ("v2", 2, 1),
    ]
    assert ledger.pending_groups("nobody", A) == []


def test_counts_of_one_target_leave_the_other_targets_rows_out(ledger: Ledger) -> None:
    enqueue(ledger, "v1", "a", "b")
    ledger.enqueue("v1", "tencent-b", A, queued("a", "c"), T0, MAX_AGE)  # same URL, other target
    ledger.enqueue("v2", "tencent-b", A, queued("d"), T0, MAX_AGE)
    ledger.enqueue("v1", P, "global", queued("e"), T0, MAX_AGE)  # same provider, other area
    ledger.mark_skipped("v1", "tencent-b", A, {url("x"): "foreign host x"})
    ledger.mark_skipped("v1", P, A, {url("y"): "foreign host y"})
    submit_all(ledger, "t1")  # P/A's two URLs

    assert ledger.counts(target=(P, A)) == {UrlState.SUBMITTED: 2, UrlState.SKIPPED: 1}
    assert ledger.counts(target=("tencent-b", A)) == {UrlState.PENDING: 3, UrlState.SKIPPED: 1}
    assert ledger.counts("v1", target=("tencent-b", A)) == {
        UrlState.PENDING: 2,
        UrlState.SKIPPED: 1,
    }
    assert ledger.counts("v2", target=(P, A)) == {}
    assert ledger.counts(target=("qiniu", "global")) == {}
    # The same figures as the per-target view of every target at once.
    for key, figures in ledger.counts_by_target().items():
        assert ledger.counts(target=key) == figures
    for key, figures in ledger.counts_by_target("v1").items():
        assert ledger.counts("v1", target=key) == figures


def test_has_pending_asks_about_one_target_and_video(ledger: Ledger) -> None:
    assert not ledger.has_pending(P, A)
    enqueue(ledger, "v1", "a", "b")
    ledger.enqueue("v2", "tencent-b", A, queued("c"), T0, MAX_AGE)
    ledger.enqueue("v3", "tencent-b", A, queued("d"), T0, MAX_AGE)
    assert ledger.has_pending(P, A) and ledger.has_pending(P, A, "v1")
    assert not ledger.has_pending(P, A, "v2")  # v2's URL is another target's
    assert not ledger.has_pending(P, "global") and not ledger.has_pending("qiniu", A)

    claim = ledger.claim(P, A, 1, "worker-1", T0, LEASE)  # reserved is not pending
    assert claim is not None
    assert ledger.has_pending(P, A, "v1")
    submit_all(ledger, "t1")  # the rest: nothing of P/A pending now
    assert not ledger.has_pending(P, A) and not ledger.has_pending(P, A, "v1")

    assert ledger.has_pending("tencent-b", A, "v3")
    other = ledger.claim("tencent-b", A, 1, "worker-1", T0, LEASE)  # the first: v2's URL
    assert other is not None
    ledger.mark_submitted(other, "t2", other.urls, T0)
    assert ledger.has_pending("tencent-b", A) and ledger.has_pending("tencent-b", A, "v3")
    assert not ledger.has_pending("tencent-b", A, "v2")
