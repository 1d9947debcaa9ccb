"""EdgeOneProvider beyond the contract: partial acceptance, quota, statuses, windows, errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract_env import settings_from

from cdn_preheat.errors import (
    AuthError,
    BatchRefused,
    BatchTooLarge,
    ConfigError,
    DomainError,
    InvalidUrls,
    PermissionDenied,
    QuotaExhausted,
    RateLimited,
    Transient,
    Unreconcilable,
    ZoneNotFound,
)
from cdn_preheat.ledger.base import QueuedUrl, UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers import edgeone as edgeone_module
from cdn_preheat.providers import make_provider
from cdn_preheat.providers.base import TaskState
from cdn_preheat.providers.edgeone import EdgeOneProvider
from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.edgeone import SANDBOX_ZONE_ID, EdgeOneLimits
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.scheduler import Scheduler, SchedulerOptions

FOREIGN = "http://not-in-the-zone.example.com/vod/demo-1/master.m3u8"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    limits = EdgeOneLimits(task_delay=30)
    with Sandbox(videos=2, segments=5, edgeone_limits=limits, edge_vendor="edgeone") as box:
        yield box


def provider(box: Sandbox, **overrides: str) -> EdgeOneProvider:
    return EdgeOneProvider(settings_from({**box.client_env("edgeone"), **overrides}))


def urls(box: Sandbox, count: int, video: str = "demo-1") -> list[str]:
    return [box.edge_url(p) for p in box.origin.catalog_paths(video)[:count]]


def finish(box: Sandbox) -> None:
    box.clock.advance(dt.timedelta(seconds=31))


def test_cdn_provider_edgeone_selects_it_and_needs_the_zone(sandbox: Sandbox) -> None:
    env = sandbox.client_env("edgeone")
    assert isinstance(make_provider(settings_from(env)), EdgeOneProvider)
    with pytest.raises(ConfigError, match="EO_ZONE_ID"):
        make_provider(settings_from({**env, "EO_ZONE_ID": ""}))


def test_failed_list_marks_those_urls_and_accepts_the_rest_under_the_job(sandbox: Sandbox) -> None:
    cdn = provider(sandbox)
    own = urls(sandbox, 2)
    with pytest.raises(InvalidUrls) as caught:
        cdn.submit([own[0], FOREIGN, own[1]])
    error = caught.value
    assert list(error.invalid) == [FOREIGN]
    assert "not-in-the-zone.example.com" in error.invalid[FOREIGN]
    (push,) = sandbox.edgeone.received()
    assert error.task_id == push.job_id
    assert push.urls == tuple(own) and push.failed == (FOREIGN,)
    finish(sandbox)
    states = {e.url: e.state for e in cdn.task_status([push.job_id])}
    assert states == dict.fromkeys(own, TaskState.DONE)


def test_a_request_every_target_of_which_fails_carries_no_job(sandbox: Sandbox) -> None:
    with pytest.raises(InvalidUrls) as caught:
        provider(sandbox).submit([FOREIGN])
    assert caught.value.task_id is None and list(caught.value.invalid) == [FOREIGN]


@pytest.mark.parametrize("foreign_host", ["failed_list", "error"])
def test_the_scheduler_pushes_the_zone_urls_either_way_a_foreign_host_is_refused(
    sandbox: Sandbox, tmp_path: Path, foreign_host: str
) -> None:
    """Undocumented whether a foreign host is a FailedList entry or a whole-request error."""
    sandbox.edgeone.limits.foreign_host = foreign_host  # type: ignore[assignment]
    cdn = provider(sandbox)
    own = urls(sandbox, 4)
    queue = [own[0], FOREIGN, *own[1:]]
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    now = dt.datetime.now(dt.UTC)
    ledger.put_video("v", own[0], len(queue), now)
    ledger.enqueue(
        "v", cdn.name, cdn.area, [QueuedUrl(u, "segment") for u in queue], now, dt.timedelta(days=3)
    )
    options = SchedulerOptions(concurrency=1, cdn_host=sandbox.edge.netloc)
    report = Scheduler(ledger, cdn, options).drain()
    assert report.stopped_by is None
    assert sorted(sandbox.edgeone.received_urls()) == sorted(own)
    states = {r.url: r.state for r in ledger.url_records("v")}
    assert states[FOREIGN] is UrlState.INVALID
    assert {u for u, s in states.items() if s is UrlState.SUBMITTED} == set(own)
    ledger.close()


def test_quota_is_the_zones_prefetch_url_entry(sandbox: Sandbox) -> None:
    sandbox.edgeone.limits.prefetch_batch = 200
    sandbox.edgeone.limits.prefetch_per_day = 5000
    cdn = provider(sandbox)
    cdn.submit(urls(sandbox, 3))
    quota = cdn.quota()
    assert (quota.area, quota.total, quota.available, quota.batch) == (
        SANDBOX_ZONE_ID,
        5000,
        4997,
        200,
    )


def test_edge_mode_has_its_own_quota_and_fills_the_edge(sandbox: Sandbox) -> None:
    cdn = provider(sandbox, EO_MODE="edge")
    quota = cdn.quota()
    assert quota.total is None and quota.available is None  # not listed by DescribeContentQuota
    (url,) = urls(sandbox, 1)
    cdn.submit([url])
    assert sandbox.edgeone.quota_used("prefetch_url") == 0
    assert sandbox.edgeone.quota_used("prefetch_edge") == 1
    finish(sandbox)
    sandbox.edgeone.settle()
    assert sandbox.cache.layer_of(url) == "edge"


def test_default_mode_sends_no_mode_and_fills_the_middle_layer(sandbox: Sandbox) -> None:
    settings = settings_from({**sandbox.client_env("edgeone"), "EO_ENCODE_URL": "true"})
    cdn = EdgeOneProvider(settings.model_copy(update={"eo_headers": {"X-Preheat": "1"}}))
    (url,) = urls(sandbox, 1)
    cdn.submit([url])
    (push,) = sandbox.edgeone.received()
    assert "Mode" not in push.options
    assert push.options["EncodeUrl"] is True
    assert push.options["Headers"] == [{"Name": "X-Preheat", "Value": "1"}]
    finish(sandbox)
    sandbox.edgeone.settle()
    assert sandbox.cache.layer_of(url) == "upper"


def test_timeout_and_canceled_are_retried_and_invalid_gets_one_more_try(sandbox: Sandbox) -> None:
    cdn = provider(sandbox)
    ok, slow, stopped = urls(sandbox, 3)
    missing = sandbox.edge_url("/vod/demo-1/v0/seg-missing.ts")
    for url, status in ((slow, "timeout"), (stopped, "canceled")):
        sandbox.edgeone.limits.forced[url.removeprefix(f"http://{sandbox.edge.netloc}")] = status
    job = cdn.submit([ok, slow, stopped, missing]).task_id
    assert {e.state for e in cdn.task_status([job])} == {TaskState.PROCESSING}
    finish(sandbox)
    entries = {e.url: e for e in cdn.task_status([job])}
    assert entries[ok].state is TaskState.DONE and entries[ok].reason is None
    assert entries[slow].state is TaskState.FAILED and "timed out" in (entries[slow].reason or "")
    assert entries[stopped].state is TaskState.FAILED
    assert "canceled" in (entries[stopped].reason or "")
    assert entries[missing].state is TaskState.INVALID and entries[missing].retry_once
    assert "non-2xx" in (entries[missing].reason or "")
    assert all(e.created_at is not None for e in entries.values())


def test_window_status_pages_with_limit_and_offset(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edgeone_module, "PAGE_SIZE", 2)
    cdn = provider(sandbox)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    sent = urls(sandbox, 5)
    jobs = {cdn.submit(sent[:3]).task_id, cdn.submit(sent[3:]).task_id}
    before = sandbox.edgeone.actions["DescribePrefetchTasks"]
    entries = cdn.window_status(since, dt.datetime.now(dt.UTC))
    assert sorted(e.url for e in entries) == sorted(sent)
    assert {e.task_id for e in entries} == jobs
    assert sandbox.edgeone.actions["DescribePrefetchTasks"] - before == 3  # 2 + 2 + 1


def test_find_submitted_reaches_back_past_one_seven_day_window(sandbox: Sandbox) -> None:
    """A query spans at most 7 days (InvalidParameter.ParameterError); older ones are split."""
    cdn = provider(sandbox)
    first, second = urls(sandbox, 2)
    sandbox.clock.advance(-dt.timedelta(days=9))  # the first push, 9 days ago
    old_job = cdn.submit([first]).task_id
    sandbox.clock.advance(dt.timedelta(days=9))
    new_job = cdn.submit([second]).task_id
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=9, minutes=1)
    assert cdn.find_submitted([first, second], since) == {first: old_job, second: new_job}
    assert sandbox.edgeone.outcomes["invalid"] == 0  # no window was refused


def test_find_submitted_picks_the_newest_push_of_a_url(sandbox: Sandbox) -> None:
    sandbox.edgeone.limits.task_order = "oldest_first"
    cdn = provider(sandbox)
    (url,) = urls(sandbox, 1)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    cdn.submit([url])
    sandbox.clock.advance(dt.timedelta(seconds=2))
    newer = cdn.submit([url]).task_id
    assert cdn.find_submitted([url], since) == {url: newer}


def test_find_submitted_refuses_a_batch_older_than_the_records(sandbox: Sandbox) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    with pytest.raises(Unreconcilable, match="30 days"):
        provider(sandbox).find_submitted(urls(sandbox, 1), long_ago)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("LimitExceeded.DailyQuota", QuotaExhausted),
        ("LimitExceeded.BatchQuota", BatchTooLarge),
        ("LimitExceeded.RateLimitExceeded", RateLimited),
        ("RequestLimitExceeded", RateLimited),
        ("AuthFailure.SecretIdNotFound", AuthError),
        ("UnauthorizedOperation.CamUnauthorized", PermissionDenied),
        ("UnauthorizedOperation.NoPermission", PermissionDenied),
        ("InvalidParameter.ZoneNotFound", ZoneNotFound),
        ("ResourceNotFound", ZoneNotFound),
        ("InvalidParameter.Target", BatchRefused),
        ("InternalError.BackendError", Transient),
        ("InternalError.QuotaSystem", Transient),
    ],
)
def test_error_codes_map_into_the_taxonomy(sandbox: Sandbox, code: str, kind: type) -> None:
    sandbox.edgeone.inject(code)
    with pytest.raises(kind) as caught:
        provider(sandbox).submit(urls(sandbox, 2))
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert sandbox.edgeone.received_urls() == []


def test_auth_and_zone_errors_name_the_variables(sandbox: Sandbox) -> None:
    sandbox.edgeone.inject("AuthFailure.SignatureFailure")
    with pytest.raises(AuthError) as auth:
        provider(sandbox).quota()
    assert "TENCENT_SECRET_ID" in str(auth.value) and "TENCENT_SECRET_KEY" in str(auth.value)
    with pytest.raises(ZoneNotFound) as zone:
        provider(sandbox, EO_ZONE_ID="zone-not-mine").submit(urls(sandbox, 1))
    assert "EO_ZONE_ID" in str(zone.value) and "zone-not-mine" in str(zone.value)
    assert zone.value.exit_code == 2


def test_a_domain_refusal_of_cdn_host_itself_names_cdn_host_and_the_zone(sandbox: Sandbox) -> None:
    sandbox.edgeone.inject("InvalidParameter.DomainNotFound")
    with pytest.raises(DomainError) as caught:
        provider(sandbox).submit(urls(sandbox, 1))
    assert "CDN_HOST" in str(caught.value) and "EO_ZONE_ID" in str(caught.value)


@pytest.mark.parametrize("code", ["LimitExceeded.RateLimitExceeded", "RequestLimitExceeded"])
def test_either_rate_limit_code_is_rate_limited(sandbox: Sandbox, code: str) -> None:
    """Not documented which of the two the gateway sends: both slow the push down."""
    sandbox.edgeone.limits.rate_limit_code = code
    sandbox.edgeone.limits.action_rates = {"CreatePrefetchTask": 1}
    sandbox.edgeone.limits.rate_window_seconds = 3600
    cdn = provider(sandbox)
    cdn.submit(urls(sandbox, 1))
    with pytest.raises(RateLimited) as caught:
        cdn.submit(urls(sandbox, 1))
    assert caught.value.code == code
    assert sandbox.edgeone.rate_refusals["CreatePrefetchTask"] == 1


def test_purge_urls_and_prefixes(sandbox: Sandbox) -> None:
    cdn = provider(sandbox)
    url, other = urls(sandbox, 2)
    job = cdn.submit([url, other]).task_id
    finish(sandbox)
    assert {e.state for e in cdn.task_status([job])} == {TaskState.DONE}
    purge = cdn.purge_urls([url])
    prefix = cdn.purge_dirs([sandbox.edge_url("/vod/demo-2/")], delete=True)
    finish(sandbox)
    assert [(e.url, e.state) for e in cdn.purge_status([purge])] == [(url, TaskState.DONE)]
    assert {e.state for e in cdn.purge_status([prefix])} == {TaskState.DONE}
    assert url not in sandbox.cache and other in sandbox.cache
    assert sandbox.edgeone.quota_used("purge_url") == 1
    assert sandbox.edgeone.quota_used("purge_prefix") == 1


def test_lost_answers_are_reconciled_without_a_duplicate_push(tmp_path: Path) -> None:
    """Pushes carried out whose answer was lost are found again in DescribePrefetchTasks."""
    faults = Faults(lost_answer=0.25, drop=0.1, server_error=0.1, seed=7)
    limits = EdgeOneLimits(task_delay=0)
    with Sandbox(videos=2, segments=10, edgeone_limits=limits, faults=faults) as box:
        cdn = provider(box)
        paths = [p for v in ("demo-1", "demo-2") for p in box.origin.catalog_paths(v)]
        queue = [box.edge_url(p) for p in dict.fromkeys(paths)]  # the videos share keys
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        now = dt.datetime.now(dt.UTC)
        ledger.put_video("v", queue[0], len(queue), now)
        ledger.enqueue(
            "v", cdn.name, cdn.area, [QueuedUrl(u, "segment") for u in queue], now,
            dt.timedelta(days=3),
        )  # fmt: skip
        options = SchedulerOptions(concurrency=2, batch_size=5, cdn_host=box.edge.netloc)
        report = Scheduler(ledger, cdn, options).drain()
        assert report.stopped_by is None
        received = box.edgeone.received_urls()
        assert box.edgeone.outcomes["lost_answer"] > 0
        assert sorted(received) == sorted(queue)  # every URL once: none lost, none repeated
        states = {r.url: r.state for r in ledger.url_records("v")}
        assert set(states.values()) == {UrlState.SUBMITTED}
        ledger.close()


def test_built_from_plain_arguments_without_the_environment(sandbox: Sandbox) -> None:
    from pydantic import SecretStr

    from cdn_preheat import config
    from cdn_preheat.providers.edgeone import EdgeOneConfig

    plain = EdgeOneConfig(
        secret_id=SecretStr(config.SANDBOX_TENCENT_SECRET_ID),
        secret_key=SecretStr(config.SANDBOX_TENCENT_SECRET_KEY),
        zone_id=SANDBOX_ZONE_ID,
        endpoint=sandbox.endpoints["edgeone"],
    )
    assert EdgeOneProvider(plain).quota().area == SANDBOX_ZONE_ID
    intl = EdgeOneProvider(plain.model_copy(update={"endpoint": "teo.intl.tencentcloudapi.com"}))
    http = intl._client.profile.httpProfile
    assert (http.scheme, http.endpoint) == ("https", "teo.intl.tencentcloudapi.com")


def test_find_submitted_asks_per_target_when_that_takes_fewer_calls(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edgeone_module, "PAGE_SIZE", 1)
    cdn = provider(sandbox)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    sent = urls(sandbox, 6)
    job = cdn.submit(sent).task_id
    before = sandbox.edgeone.actions["DescribePrefetchTasks"]
    assert cdn.find_submitted([sent[2]], since) == {sent[2]: job}
    # One page to learn TotalCount (6 pages of 1), then the target filter: 2 calls, not 6.
    assert sandbox.edgeone.actions["DescribePrefetchTasks"] - before == 2


def test_a_timed_out_prefetch_is_pushed_again_until_max_attempts(tmp_path: Path) -> None:
    """timeout (and canceled) are failures worth retrying, not final states."""
    from cdn_preheat.hls import ExpandOptions, expand
    from cdn_preheat.pipeline import RunOptions, queue_expansion, run_queue
    from cdn_preheat.tracker import TrackerOptions

    limits = EdgeOneLimits(task_delay=0)
    with Sandbox(videos=1, segments=2, edgeone_limits=limits) as box:
        expansion = expand(box.video_url("demo-1"), ExpandOptions(cdn_host=box.edge.netloc))
        stuck = expansion.urls[-1].url
        box.edgeone.limits.forced[stuck.removeprefix(f"http://{box.edge.netloc}")] = "timeout"
        cdn = provider(box)
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        queue_expansion(
            ledger, cdn.name, cdn.area, "demo-1", expansion, head_first=None,
            max_age=dt.timedelta(days=3),
        )  # fmt: skip
        options = RunOptions(
            scheduler=SchedulerOptions(concurrency=1, cdn_host=box.edge.netloc),
            tracker=TrackerOptions(poll_interval=0.05, max_attempts=3),
        )
        report = run_queue(ledger, cdn, options)
        received = box.edgeone.received_urls()
        assert received.count(stuck) == 3
        assert all(received.count(item.url) == 1 for item in expansion.urls if item.url != stuck)
        records = {r.url: r for r in ledger.url_records("demo-1")}
        assert records[stuck].state is UrlState.FAILED
        assert "timed out" in (records[stuck].last_error or "")
        assert report.done == len(expansion.urls) - 1
        ledger.close()
