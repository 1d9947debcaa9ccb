"""The provider contract: what every CDN provider does, checked on the sandbox.

Written only against :class:`Provider` and :class:`ProviderEnv`; a new
provider is done when this suite passes for its kind. The tests marked
``live_safe`` also run on a real account (the ``live`` kind, see conftest.py):
they spend at most one quota unit per URL of ``CDN_PREHEAT_LIVE_URLS``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from contract_env import ProviderEnv, wait_for

from cdn_preheat.errors import (
    AuthError,
    BatchRefused,
    BatchTooLarge,
    DomainError,
    InvalidUrls,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from cdn_preheat.hls import ExpandOptions, expand
from cdn_preheat.ledger.base import QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers.base import TaskEntry, TaskState
from cdn_preheat.scheduler import Scheduler, SchedulerOptions


def _states(entries: list[TaskEntry]) -> dict[str, TaskState]:
    return {entry.url: entry.state for entry in entries}


def _all_settled(entries: list[TaskEntry]) -> bool:
    return bool(entries) and all(e.state is not TaskState.PROCESSING for e in entries)


def test_submit_within_batch_reaches_the_cdn_exactly(provider_env: ProviderEnv) -> None:
    urls = provider_env.urls(3)
    result = provider_env.provider.submit(urls)
    assert result.task_id
    assert result.accepted == tuple(urls)
    assert provider_env.received_urls() == urls


def test_task_goes_from_processing_to_done(provider_env: ProviderEnv) -> None:
    provider = provider_env.provider
    urls = provider_env.urls(3)
    task_id = provider.submit(urls).task_id
    before = provider.task_status([task_id])
    first = TaskState.DONE if provider_env.tasks_finish_on_submit else TaskState.PROCESSING
    assert _states(before) == dict.fromkeys(urls, first)
    assert {e.task_id for e in before} == {task_id}

    provider_env.finish_tasks()
    after = wait_for(lambda: provider.task_status([task_id]), _all_settled)
    assert _states(after) == dict.fromkeys(urls, TaskState.DONE)
    assert all(provider_env.edge_hits(url) for url in urls)


def test_url_the_origin_lacks_becomes_invalid(provider_env: ProviderEnv) -> None:
    provider = provider_env.provider
    good, missing = provider_env.urls(1)[0], provider_env.missing_url()
    task_id = provider.submit([good, missing]).task_id
    provider_env.finish_tasks()
    after = wait_for(lambda: provider.task_status([task_id]), _all_settled)
    assert _states(after) == {good: TaskState.DONE, missing: provider_env.missing_file_state}
    assert [e.reason for e in after if e.url == missing] != [None]


def test_quota_reflects_submissions(provider_env: ProviderEnv) -> None:
    provider = provider_env.provider
    if not provider_env.quota_known_before_submit:
        unknown = provider.quota()
        assert unknown.available is None and not unknown.unlimited
        provider.submit(provider_env.urls(1, video="demo-2"))  # its answer reports the quota
    before = provider.quota()
    if before.unlimited:
        pytest.skip(f"{provider_env.kind} has no daily quota")
    assert before.area == provider.area
    assert before.batch is None or before.batch >= 1
    provider.submit(provider_env.urls(4))
    after = provider.quota()
    assert before.available is not None and after.available is not None
    assert after.available == before.available - 4


def test_oversize_batch_is_refused(provider_env: ProviderEnv) -> None:
    provider = provider_env.provider
    size = provider.limits.batch_size + 1
    urls = [provider_env.sandbox.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(size)]
    with pytest.raises(BatchTooLarge):
        provider.submit(urls)
    assert provider_env.received_urls() == []


@pytest.mark.live_safe
def test_wrong_secret_names_the_variables_without_leaking(provider_env: ProviderEnv) -> None:
    if provider_env.secret_variable is None:
        pytest.skip(f"{provider_env.kind} has no credentials")
    wrong = "wrong-secret-0123456789"
    provider = provider_env.make_provider({provider_env.secret_variable: wrong})
    with pytest.raises(AuthError) as caught:
        if provider_env.live:  # a read-only call: a real account spends nothing on it
            provider.find_submitted(provider_env.push_urls()[:1], dt.datetime.now(dt.UTC))
        else:
            provider.submit(provider_env.urls(1))
    message = str(caught.value)
    for variable in provider_env.credential_variables:
        assert variable in message
    right = provider_env.right_secret()
    assert right and wrong not in message and right not in message
    assert provider_env.received_urls() == []


@pytest.mark.live_safe
def test_pushed_urls_end_done_found_and_cached_in_the_cdn(provider_env: ProviderEnv) -> None:
    """The one test that spends quota on a real account: each listed URL once."""
    provider = provider_env.provider
    urls = provider_env.push_urls()
    assert len(urls) <= provider.limits.batch_size, "list at most one batch of live URLs"
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    before = provider.quota() if provider_env.quota_known_before_submit else None
    result = provider.submit(urls)
    assert result.accepted == tuple(urls)
    if before is not None and before.available is not None and not provider_env.live:
        # A real account may push from elsewhere at the same time: exact only here.
        assert provider.quota().available == before.available - len(urls)

    provider_env.finish_tasks()
    after = wait_for(
        lambda: provider.task_status([result.task_id]),
        _all_settled,
        timeout=provider_env.settle_timeout,
        interval=provider_env.poll_interval,
    )
    assert _states(after) == dict.fromkeys(urls, TaskState.DONE)
    found = provider.find_submitted(urls, since)
    assert found == dict.fromkeys(urls, result.task_id)
    # Cached in the CDN, at the edge or in the middle/L2 layer prefetches fill.
    assert all(provider_env.edge_hits(url) for url in urls)


def test_foreign_host_is_refused_in_a_form_the_scheduler_isolates(
    provider_env: ProviderEnv,
) -> None:
    foreign = "http://not-our-cdn.example.com/vod/demo-1/master.m3u8"
    with pytest.raises((DomainError, BatchRefused, InvalidUrls)) as caught:
        provider_env.provider.submit([*provider_env.urls(1), foreign])
    error = caught.value
    if isinstance(error, DomainError):
        assert "CDN_HOST" in str(error)
    elif isinstance(error, BatchRefused):
        assert error.per_host and "not-our-cdn.example.com" in str(error)
    else:
        assert isinstance(error, InvalidUrls) and list(error.invalid) == [foreign]


def test_the_scheduler_isolates_a_foreign_host_and_pushes_the_rest(
    provider_env: ProviderEnv, tmp_path: Path
) -> None:
    own = provider_env.urls(5)
    foreign = ["http://not-our-cdn.example.com/a.ts", "http://other.example.org/b.ts"]
    queue = [own[0], foreign[0], *own[1:3], foreign[1], *own[3:]]
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    now = dt.datetime.now(dt.UTC)
    ledger.put_video("v", own[0], len(queue), now)
    ledger.enqueue(
        "v", provider_env.provider.name, provider_env.provider.area,
        [QueuedUrl(url, "segment") for url in queue], now, dt.timedelta(days=3),
    )  # fmt: skip
    options = SchedulerOptions(concurrency=1, cdn_host=provider_env.sandbox.edge.netloc)
    report = Scheduler(ledger, provider_env.provider, options).drain()
    assert report.stopped_by is None
    assert report.submitted == len(own) and report.invalid == len(foreign)
    assert sorted(provider_env.received_urls()) == sorted(own)
    states = {r.url: r.state for r in ledger.url_records("v")}
    assert {u for u, s in states.items() if s is UrlState.INVALID} == set(foreign)
    assert {u for u, s in states.items() if s is UrlState.SUBMITTED} == set(own)
    for record in ledger.url_records("v"):
        if record.state is UrlState.INVALID:
            assert record.last_error
    ledger.close()


def test_exhausted_quota_stops(provider_env: ProviderEnv) -> None:
    if provider_env.set_daily_quota is None:
        pytest.skip(f"{provider_env.kind} has no daily quota")
    provider_env.set_daily_quota(2)
    with pytest.raises(QuotaExhausted):
        provider_env.provider.submit(provider_env.urls(3))
    assert provider_env.received_urls() == []


def test_rate_limit_answer_is_rate_limited(provider_env: ProviderEnv) -> None:
    if not provider_env.api_faults:
        pytest.skip(f"{provider_env.kind} has no API for the sandbox to fault")
    provider_env.sandbox.faults.rate_limited = 1.0
    with pytest.raises(RateLimited):
        provider_env.provider.submit(provider_env.urls(1))
    provider_env.sandbox.faults.rate_limited = 0.0
    assert provider_env.provider.submit(provider_env.urls(1)).task_id


@pytest.mark.parametrize("fault", ["server_error", "drop"])
def test_server_error_and_dropped_connection_are_transient(
    provider_env: ProviderEnv, fault: str
) -> None:
    if not provider_env.api_faults:
        pytest.skip(f"{provider_env.kind} has no API for the sandbox to fault")
    setattr(provider_env.sandbox.faults, fault, 1.0)
    with pytest.raises(Transient):
        provider_env.provider.submit(provider_env.urls(1))
    if provider_env.quota_calls_api:
        with pytest.raises(Transient):
            provider_env.provider.quota()
    setattr(provider_env.sandbox.faults, fault, 0.0)
    assert provider_env.provider.submit(provider_env.urls(1)).task_id


def test_find_submitted_finds_only_what_was_submitted(provider_env: ProviderEnv) -> None:
    provider = provider_env.provider
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    sent, unsent = provider_env.urls(3), provider_env.urls(2, video="demo-2")
    first = provider.submit(sent[:2]).task_id
    second = provider.submit(sent[2:]).task_id
    found = provider.find_submitted([*sent, *unsent], since)
    assert found == {sent[0]: first, sent[1]: first, sent[2]: second}


def test_find_request_finds_one_request_taken_and_nothing_of_one_not_taken(
    provider_env: ProviderEnv,
) -> None:
    """find_request: the URLs of one submit call whose answer was lost (issue 10 item 5)."""
    provider = provider_env.provider
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    taken, never = provider_env.urls(3), provider_env.urls(2, video="demo-2")
    task_id = provider.submit(taken).task_id
    assert provider.find_request(taken, since) == dict.fromkeys(taken, task_id)
    assert provider.find_request(never, since) == {}


def test_another_provider_finds_the_submission_where_it_asks_the_vendor(
    provider_env: ProviderEnv,
) -> None:
    """A batch whose answer was lost in a process that then died is reconciled by the
    next process only if find_submitted asks the vendor (``Features.task_list``)."""
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    sent = provider_env.urls(2)
    task_id = provider_env.provider.submit(sent).task_id
    other = provider_env.make_provider({})  # as a restarted process builds it
    try:
        found = other.find_submitted(sent, since)
    finally:
        other.close()
    if provider_env.reconciles_from_vendor:
        assert found == dict.fromkeys(sent, task_id)
    else:
        assert found == {}  # it finds only what it submitted itself: the batch goes again


def test_purge_urls_empties_the_edge(provider_env: ProviderEnv) -> None:
    if not provider_env.can_purge:
        pytest.skip(f"{provider_env.kind} cannot purge")
    provider = provider_env.provider
    urls = provider_env.urls(2)
    task_id = provider.submit(urls).task_id
    provider_env.finish_tasks()
    wait_for(lambda: provider.task_status([task_id]), _all_settled)
    assert all(provider_env.edge_hits(url) for url in urls)

    purge_id = provider.purge_urls(urls[:1])
    assert purge_id
    provider_env.finish_tasks()
    done = wait_for(lambda: provider.purge_status([purge_id]), _all_settled)
    assert _states(done) == {urls[0]: TaskState.DONE}
    assert not provider_env.edge_hits(urls[0])
    assert provider_env.edge_hits(urls[1])


@pytest.mark.parametrize("delete", [False, True])
def test_purge_dirs_empties_the_edge_below_them(provider_env: ProviderEnv, delete: bool) -> None:
    if not provider_env.can_purge:
        pytest.skip(f"{provider_env.kind} cannot purge")
    provider = provider_env.provider
    inside = provider_env.sandbox.edge_url("/vod/demo-1/v0/seg0.ts")
    outside = provider_env.sandbox.edge_url("/vod/demo-2/v0/seg0.ts")
    task_id = provider.submit([inside, outside]).task_id
    provider_env.finish_tasks()
    wait_for(lambda: provider.task_status([task_id]), _all_settled)

    directory = provider_env.sandbox.edge_url("/vod/demo-1/")
    purge_id = provider.purge_dirs([directory], delete=delete)
    provider_env.finish_tasks()
    done = wait_for(lambda: provider.purge_status([purge_id]), _all_settled)
    assert {e.state for e in done} == {TaskState.DONE}
    assert not provider_env.edge_hits(inside)
    assert provider_env.edge_hits(outside)


def test_a_dash_video_is_preheated_end_to_end(provider_env: ProviderEnv) -> None:
    """An MPD expands to the sandbox's DASH catalog, every URL is pushed and lands at the edge."""
    sandbox, provider = provider_env.sandbox, provider_env.provider
    expansion = expand(sandbox.dash_url("demo-2"), ExpandOptions(cdn_host=sandbox.edge.netloc))
    urls = [item.url for item in expansion.urls]
    assert urls == [sandbox.edge_url(p) for p in sandbox.origin.dash_catalog_paths("demo-2")]
    assert urls[0].endswith(".mpd") and any(url.endswith(".vtt") for url in urls)
    size = provider.limits.batch_size
    task_ids = [provider.submit(urls[i : i + size]).task_id for i in range(0, len(urls), size)]
    provider_env.finish_tasks()
    after = wait_for(lambda: provider.task_status(task_ids), _all_settled)
    assert _states(after) == dict.fromkeys(urls, TaskState.DONE)
    assert provider_env.received_urls() == urls
    assert all(provider_env.edge_hits(url) for url in urls)
