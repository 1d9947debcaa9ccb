"""AliyunProvider against the sandbox emulator: results, states and every error mapping."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cdn_preheat.config import Settings
from cdn_preheat.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    DomainError,
    InvalidUrls,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
    Unreconcilable,
)
from cdn_preheat.providers.aliyun import AliyunProvider, map_error
from cdn_preheat.providers.base import TaskState
from cdn_preheat.sandbox.aliyun import (
    INTERNAL_ERROR,
    ORIGIN_4XX,
    ORIGIN_5XX,
    ORIGIN_TIMED_OUT,
    ORIGIN_TIMEOUT,
    AliyunEmulator,
    AliyunLimits,
)
from cdn_preheat.sandbox.core import EdgeCache, Faults, LoopbackServer, SandboxClock

AK = "LTAIprovider000000000"
SECRET = "provider-secret-value-never-shown"
EDGE = "127.0.0.1:8999"
ORIGIN_FILES = {f"/v/1/seg{i}.ts" for i in range(200)} | {"/v/1/index.m3u8"}
# Paths whose pull the origin stand-in answers with an error status.
ORIGIN_ERRORS = {"/v/err/busy.ts": 503, "/v/err/slow.ts": ORIGIN_TIMED_OUT}


def origin_has(path: str) -> bool | int:
    """The origin stand-in: it ignores query strings, as most origins do."""
    bare = path.partition("?")[0]
    return ORIGIN_ERRORS.get(bare, bare in ORIGIN_FILES)


def instant(**options: object) -> AliyunLimits:
    """Alibaba's limits with tasks that finish at once unless a test says otherwise."""
    return AliyunLimits(**{"task_delay": 0.0, **options})


def url(path: str) -> str:
    return f"http://{EDGE}{path}"


@dataclass
class Account:
    api: AliyunEmulator
    server: LoopbackServer
    clock: SandboxClock
    cache: EdgeCache

    def provider(self, key_id: str = AK, secret: str = SECRET, **options: object) -> AliyunProvider:
        return AliyunProvider(settings(self.server.url, key_id, secret), **options)


def settings(endpoint: str, key_id: str | None = AK, secret: str | None = SECRET) -> Settings:
    return Settings(
        _env_file=None,
        aliyun_access_key_id=key_id,
        aliyun_access_key_secret=secret,
        aliyun_endpoint=endpoint,
    )


@pytest.fixture
def make_account() -> Iterator[object]:
    servers: list[LoopbackServer] = []

    def make(limits: AliyunLimits | None = None, faults: Faults | None = None) -> Account:
        clock, cache = SandboxClock(), EdgeCache()
        api = AliyunEmulator(
            clock, cache, origin_has, EDGE, AK, SECRET, limits or instant(), faults
        )
        servers.append(api.start())
        return Account(api, servers[-1], clock, cache)

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def account(make_account) -> Account:
    return make_account()


def assert_secret_hidden(error: Exception) -> None:
    assert SECRET not in str(error)
    assert SECRET not in repr(error.args)


# Configuration


def test_missing_keys_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="ALIYUN_ACCESS_KEY_ID"):
        AliyunProvider(settings("http://127.0.0.1:1", key_id=None))
    with pytest.raises(ConfigError, match="ALIYUN_ACCESS_KEY_SECRET"):
        AliyunProvider(settings("http://127.0.0.1:1", secret=None))


def test_limits_follow_alibaba() -> None:
    limits = AliyunProvider.limits
    assert (limits.batch_size, limits.purge_batch_size, limits.purge_dir_batch_size) == (100,) * 3
    assert limits.requests_per_second == 50
    assert limits.quota_utc_offset_hours == 8
    # Each API has its own budget, as each API's page documents.
    rates = {api: b.per_second for api, b in AliyunProvider.budgets.items()}
    assert rates == {
        "PushObjectCache": 50,
        "DescribeRefreshTaskById": 30,
        "DescribeRefreshTasks": 5,
        "DescribeRefreshQuota": 20,
        "RefreshObjectCaches": 50,
        "DescribeUserDomains": 5,  # doctor's domain check, once a run
    }
    assert all(b.source.startswith("https://") for b in AliyunProvider.budgets.values())


# Prefetch, quota and task states


def test_quota_reports_preload_quota(make_account) -> None:
    account = make_account(instant(preload_quota=500))
    provider = account.provider(area="overseas")
    provider.submit([url("/v/1/seg0.ts"), url("/v/1/seg1.ts")])
    quota = provider.quota()
    assert (quota.area, quota.total, quota.available, quota.batch) == ("overseas", 500, 498, 100)


def test_submit_then_task_status(account: Account) -> None:
    provider = account.provider(l2_preload=True)
    urls = [url("/v/1/index.m3u8"), url("/v/1/seg0.ts?token=x"), url("/v/9/gone.ts")]
    result = provider.submit(urls)
    assert result.accepted == tuple(urls)
    assert result.invalid == {}
    assert url("/v/1/seg0.ts?token=x") in account.cache

    entries = {e.url: e for e in provider.task_status([result.task_id])}
    assert set(entries) == set(urls)
    assert entries[url("/v/1/index.m3u8")].state is TaskState.DONE
    assert entries[url("/v/1/index.m3u8")].task_id == result.task_id
    assert entries[url("/v/1/index.m3u8")].created_at is not None
    assert entries[url("/v/9/gone.ts")].state is not TaskState.DONE


@pytest.mark.parametrize(
    ("origin_4xx", "missing_state"),
    [(INTERNAL_ERROR, TaskState.FAILED), (ORIGIN_4XX, TaskState.INVALID)],
    ids=["4xx-reported-as-internal-error", "4xx-reported-as-4XX"],
)
def test_failures_are_classified_on_alibabas_documented_descriptions(
    make_account, origin_4xx: str, missing_state: TaskState
) -> None:
    """Documented descriptions (5XX, timeout, internal) are retried; only a 4xx is final.

    What Alibaba says for an origin 404 is not documented: the emulator offers both a
    documented generic text and a 4XX twin of the 5XX text, and the provider copes with each.
    """
    account = make_account(instant(origin_4xx_description=origin_4xx))
    provider = account.provider()
    busy, slow, gone = url("/v/err/busy.ts"), url("/v/err/slow.ts"), url("/v/9/gone.ts")
    entries = {
        e.url: e for e in provider.task_status([provider.submit([busy, slow, gone]).task_id])
    }
    assert (entries[busy].state, entries[busy].reason) == (TaskState.FAILED, ORIGIN_5XX)
    assert (entries[slow].state, entries[slow].reason) == (TaskState.FAILED, ORIGIN_TIMEOUT)
    assert (entries[gone].state, entries[gone].reason) == (missing_state, origin_4xx)


def test_task_status_while_processing(make_account) -> None:
    account = make_account(instant(task_delay=600))
    provider = account.provider()
    task_id = provider.submit([url("/v/1/seg0.ts")]).task_id
    assert [e.state for e in provider.task_status([task_id])] == [TaskState.PROCESSING]
    account.clock.advance(dt.timedelta(minutes=11))
    assert [e.state for e in provider.task_status([task_id])] == [TaskState.DONE]


def test_task_status_of_many_tasks_is_queried_in_chunks(account: Account) -> None:
    provider = account.provider()
    task_ids = [provider.submit([url(f"/v/1/seg{i}.ts")]).task_id for i in range(23)]
    entries = provider.task_status(task_ids)
    assert sorted(e.task_id for e in entries) == sorted(task_ids)
    assert {e.state for e in entries} == {TaskState.DONE}


def test_locally_invalid_urls_are_split_off(account: Account) -> None:
    provider = account.provider()
    good, bad = url("/v/1/seg0.ts"), "ftp://elsewhere/x.ts"
    result = provider.submit([good, bad])
    assert result.accepted == (good,)
    assert set(result.invalid) == {bad}
    with pytest.raises(InvalidUrls) as info:
        provider.submit([bad, url("/v/1/with space.ts")])
    assert set(info.value.invalid) == {bad, url("/v/1/with space.ts")}
    assert len(account.api.received) == 1


def test_find_submitted_reconciles_from_the_task_list(account: Account) -> None:
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    first = provider.submit([url("/v/1/seg0.ts"), url("/v/1/seg1.ts")]).task_id
    second = provider.submit([url("/v/1/seg2.ts")]).task_id
    provider.purge_urls([url("/v/1/seg3.ts")])  # a refresh is not a prefetch

    found = provider.find_submitted(
        [url("/v/1/seg1.ts"), url("/v/1/seg2.ts"), url("/v/1/seg3.ts")], since
    )
    assert found == {url("/v/1/seg1.ts"): first, url("/v/1/seg2.ts"): second}
    # The scheme does not matter for matching; https was never submitted but is the same object.
    assert provider.find_submitted([f"https://{EDGE}/v/1/seg0.ts"], since) == {
        f"https://{EDGE}/v/1/seg0.ts": first
    }
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert provider.find_submitted([url("/v/1/seg1.ts")], later) == {}


def test_find_submitted_pages_through_many_tasks(account: Account) -> None:
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    oldest = provider.submit([url("/v/1/seg0.ts")]).task_id
    for start in range(1, 151, 50):
        provider.submit([url(f"/v/1/seg{i}.ts") for i in range(start, start + 50)])
    assert provider.find_submitted([url("/v/1/seg0.ts")], since) == {url("/v/1/seg0.ts"): oldest}


def test_find_submitted_reads_past_the_pages_that_pushes_arriving_meanwhile_add(
    account: Account,
) -> None:
    """Other batches push while the list is read: the oldest tasks move to a later page.

    The list comes newest first; a count taken from the first page alone stopped one
    page short and missed the oldest task, so a lost push was pushed again.
    """
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    oldest = provider.submit([url("/v/2/seg0.ts")]).task_id
    for start in range(1, 151, 50):
        provider.submit([url(f"/v/2/seg{i}.ts") for i in range(start, start + 50)])
    read = provider._tasks_page  # the real call over HTTP, with another batch pushed after it

    def page_then_push(window: tuple[dt.datetime, dt.datetime], page: int, **kw: object) -> object:
        body = read(window, page, **kw)  # type: ignore[arg-type]
        if page == 1:
            provider.submit([url(f"/v/2/more{i}.ts") for i in range(100)])
        return body

    provider._tasks_page = page_then_push  # type: ignore[method-assign]
    assert provider.find_submitted([url("/v/2/seg0.ts")], since) == {url("/v/2/seg0.ts"): oldest}
    assert account.api.action_calls["DescribeRefreshTasks"] == 3  # 151 tasks, then 251


def test_find_submitted_pages_at_describe_refresh_tasks_own_rate(make_account) -> None:
    """5 calls a second (help.aliyun.com/document_detail/91158.html), in a real 1 s window.

    Unpaced, the sixth page in a second draws Throttling.User and the scan never ends.
    """
    account = make_account(instant())
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    paths = [f"/v/1/seg{i}.ts?n={n}" for n in range(6) for i in range(200)]
    tasks = [
        provider.submit([url(p) for p in paths[i : i + 100]]).task_id for i in range(0, 1200, 100)
    ]
    wanted = [url(paths[i]) for i in range(0, 1200, 80)]  # 15 URLs, 12 pages: read the pages
    found = provider.find_submitted(wanted, since)
    assert found == {u: tasks[paths.index(u.removeprefix(f"http://{EDGE}")) // 100] for u in wanted}
    assert account.api.action_calls["DescribeRefreshTasks"] == 12
    assert "Throttling.User" not in account.api.counters


def test_find_submitted_asks_per_url_when_the_window_is_long(make_account) -> None:
    account = make_account(instant())
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    for n in range(3):
        provider.submit([url(f"/v/1/seg{i}.ts?n={n}") for i in range(100)])
    wanted = url("/v/1/seg7.ts?n=1")
    target = provider.submit([wanted]).task_id  # a second push of it: the newest wins
    assert provider.find_submitted([wanted], since) == {wanted: target}
    # The first page told 4 pages; one ObjectPath query is cheaper than 3 more pages.
    assert account.api.action_calls["DescribeRefreshTasks"] == 2


@pytest.mark.parametrize("old_start_time", ["refuse", "clamp"])
def test_find_submitted_beyond_three_days_is_unreconcilable(make_account, old_start_time) -> None:
    account = make_account(instant(old_start_time=old_start_time))
    provider = account.provider()
    provider.submit([url("/v/1/seg0.ts")])
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=3, minutes=1)
    with pytest.raises(Unreconcilable, match="3 days"):
        provider.find_submitted([url("/v/1/seg0.ts")], since)
    assert "DescribeRefreshTasks" not in account.api.action_calls
    # Within the 3 days, the query carries both times and stays inside them.
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(days=2, hours=23)
    assert provider.find_submitted([url("/v/1/seg0.ts")], recent) != {}


def batch(n: int, size: int = 100) -> list[str]:
    """``size`` URLs of their own (the origin need not have them: a failed task is a task)."""
    return [url(f"/v/1/seg{i}.ts?b={n}") for i in range(size)]


def test_find_request_finds_a_lost_push_with_two_calls_not_a_page_per_100_tasks(
    account: Account,
) -> None:
    """One URL by ObjectPath, then the URLs of its task by id: 2 calls, whatever the list.

    find_submitted reads the list, 100 tasks a page at 5 calls a second (or one call
    per URL): 11 calls here, and more the more was pushed since the claim.
    """
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    for n in range(10):
        provider.submit(batch(n))
    lost = batch(99)
    task_id = provider.submit(lost).task_id  # its answer "lost": ask what arrived
    calls = account.api.action_calls
    assert provider.find_request(lost, since) == dict.fromkeys(lost, task_id)
    after = account.api.action_calls
    assert after["DescribeRefreshTasks"] - calls.get("DescribeRefreshTasks", 0) == 1
    assert after["DescribeRefreshTaskById"] - calls.get("DescribeRefreshTaskById", 0) == 1
    assert provider.find_submitted(lost, since) == dict.fromkeys(lost, task_id)
    assert account.api.action_calls["DescribeRefreshTasks"] == 1 + 11  # the list: 1,100 tasks


def test_find_request_of_a_request_never_taken_costs_one_call(account: Account) -> None:
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    for n in range(5):
        provider.submit(batch(n))
    assert provider.find_request(batch(7), since) == {}  # dropped before it arrived
    assert account.api.action_calls["DescribeRefreshTasks"] == 1
    assert "DescribeRefreshTaskById" not in account.api.action_calls


def test_find_request_reports_an_earlier_push_and_the_newest_one(account: Account) -> None:
    """An earlier push of the same URLs is reported (the caller's ledger knows it for an
    earlier push); once the lost one arrived, its task is the newest of each URL."""
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    urls = batch(1, size=20)
    earlier = provider.submit(urls).task_id
    assert provider.find_request(urls, since) == dict.fromkeys(urls, earlier)
    newest = provider.submit(urls).task_id
    assert provider.find_request(urls, since) == dict.fromkeys(urls, newest)
    # Each time one ObjectPath query; the second reads both ids in one call.
    assert account.api.action_calls["DescribeRefreshTasks"] == 2
    assert account.api.action_calls["DescribeRefreshTaskById"] == 2


def test_find_request_looks_up_a_url_submit_would_send(account: Account) -> None:
    """A URL submit() refuses locally never left: looked up, it would say "not taken"."""
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    good = batch(2, size=10)
    bad = f"http://{EDGE}/v/1/" + "x" * 1100 + ".ts"  # longer than ObjectPath's 1,024
    result = provider.submit([bad, *good])
    assert provider.find_request([bad, *good], since) == dict.fromkeys(good, result.task_id)


def test_find_request_finds_a_push_under_two_merged_task_ids(make_account) -> None:
    """Pushes of one second share an id, 500 URLs an id (SDK PushObjectCacheResponseBody):
    a push that crosses the 500th URL of its second answers "id1,id2". Each id's URLs
    are found by looking up one URL the first id did not hold."""
    account = make_account(instant(merge_task_ids=True))
    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    for n in range(4):
        provider.submit(batch(n))
    provider.submit(batch(4, size=50))
    lost = batch(5)
    answer = provider.submit(lost).task_id  # "id1,id2" unless a new second began
    ids = answer.split(",")
    found = provider.find_request(lost, since)
    assert set(found) == set(lost) and set(found.values()) == set(ids)
    assert account.api.action_calls["DescribeRefreshTasks"] == len(ids)
    assert account.api.action_calls["DescribeRefreshTaskById"] == len(ids)


def test_find_request_reads_the_list_for_urls_past_its_lookups(account: Account) -> None:
    """URLs each under an id of its own (earlier pushes, one URL each): after
    REQUEST_PROBES lookups, the rest is read as find_submitted reads it."""
    from cdn_preheat.providers.aliyun import REQUEST_PROBES

    provider = account.provider()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    urls = batch(3, size=REQUEST_PROBES + 3)
    ids = [provider.submit([u]).task_id for u in urls]
    assert provider.find_request(urls, since) == dict(zip(urls, ids, strict=True))
    # The lookups, then the list's one page (7 tasks) for the last three.
    assert account.api.action_calls["DescribeRefreshTasks"] == REQUEST_PROBES + 1


def test_status_polling_stays_under_describe_refresh_task_by_id_rate(make_account) -> None:
    """30 calls a second (help.aliyun.com/document_detail/448062.htm), 10 ids a call."""
    account = make_account(instant())
    provider = account.provider()
    task_ids = [provider.submit([url(f"/v/1/seg{i}.ts")]).task_id for i in range(50)]
    for _ in range(8):  # 40 calls: more than one second's budget
        assert len(provider.task_status(task_ids)) == 50
    assert account.api.action_calls["DescribeRefreshTaskById"] == 40
    assert "Throttling.User" not in account.api.counters


# Purge


def test_purge_urls_and_dirs(account: Account) -> None:
    provider = account.provider()
    provider.submit([url("/v/1/seg0.ts"), url("/v/1/seg1.ts"), url("/v/1/index.m3u8")])

    task_id = provider.purge_urls([url("/v/1/index.m3u8")])
    assert url("/v/1/index.m3u8") not in account.cache
    [entry] = provider.purge_status([task_id])
    assert (entry.url, entry.state) == (url("/v/1/index.m3u8"), TaskState.DONE)

    dir_task = provider.purge_dirs([url("/v/1")], delete=True)
    assert len(account.cache) == 0
    [entry] = provider.purge_status([dir_task])
    assert (entry.url, entry.state) == (url("/v/1/"), TaskState.DONE)


# Error mapping


def test_wrong_secret_is_an_auth_error_naming_both_variables(account: Account) -> None:
    provider = account.provider(secret="wrong-secret")
    with pytest.raises(AuthError) as info:
        provider.quota()
    assert info.value.code == "SignatureDoesNotMatch"
    assert "ALIYUN_ACCESS_KEY_ID" in str(info.value)
    assert "ALIYUN_ACCESS_KEY_SECRET" in str(info.value)
    assert "wrong-secret" not in str(info.value)


def test_unknown_key_id_is_an_auth_error(account: Account) -> None:
    with pytest.raises(AuthError) as info:
        account.provider(key_id="LTAIunknown").submit([url("/v/1/seg0.ts")])
    assert info.value.code == "InvalidAccessKeyId.NotFound"
    assert_secret_hidden(info.value)


def test_spent_quota_is_quota_exhausted(make_account) -> None:
    account = make_account(instant(preload_quota=1))
    provider = account.provider()
    provider.submit([url("/v/1/seg0.ts")])
    with pytest.raises(QuotaExhausted) as info:
        provider.submit([url("/v/1/seg1.ts")])
    assert info.value.code == "QuotaExceeded.Preload"
    assert_secret_hidden(info.value)
    account.clock.next_day(8)
    assert provider.quota().available == 1


def test_refresh_quota_is_quota_exhausted(make_account) -> None:
    account = make_account(instant(refresh_dir_quota=0))
    with pytest.raises(QuotaExhausted):
        account.provider().purge_dirs([url("/v/1/")])


def test_throttling_is_rate_limited(make_account) -> None:
    account = make_account(instant(calls_per_second=1, rate_window_seconds=3600))
    provider = account.provider()
    provider.submit([url("/v/1/seg0.ts")])
    with pytest.raises(RateLimited) as info:
        provider.submit([url("/v/1/seg1.ts")])
    assert info.value.code == "Throttling.User"
    assert_secret_hidden(info.value)


def test_foreign_domain_is_a_domain_error_naming_cdn_host(account: Account) -> None:
    with pytest.raises(DomainError) as info:
        account.provider().submit(["http://video.example.org/v/1/seg0.ts"])
    assert info.value.code == "InvalidDomain.NotFound"
    assert "CDN_HOST" in str(info.value)


def test_oversized_batch_is_refused_locally(account: Account) -> None:
    with pytest.raises(BatchTooLarge):
        account.provider().submit([url(f"/v/1/seg{i}.ts") for i in range(101)])
    assert account.api.received == []


def test_server_batch_limit_is_batch_too_large(make_account) -> None:
    account = make_account(instant(preload_batch=2))
    with pytest.raises(BatchTooLarge) as info:
        account.provider().submit([url(f"/v/1/seg{i}.ts") for i in range(3)])
    assert info.value.code == "InvalidObjectPath.ExceedsMaximum"


@pytest.mark.parametrize(
    ("faults", "expected", "code"),
    [
        (Faults(server_error=1.0), Transient, None),
        (Faults(drop=1.0), Transient, None),
        (Faults(rate_limited=1.0), RateLimited, "Throttling"),
    ],
)
def test_faults_map_to_retryable_errors(make_account, faults, expected, code) -> None:
    account = make_account(faults=faults)
    with pytest.raises(expected) as info:
        account.provider().submit([url("/v/1/seg0.ts")])
    assert info.value.code == code
    assert_secret_hidden(info.value)


@pytest.mark.parametrize(
    ("faults", "timed_out"),
    [
        # Taken, answered after the deadline: the request may have taken effect.
        (Faults(late_answer=1.0, slow_seconds=1.0), True),
        # Hung up on before it ran: the client knows it was not a timeout.
        (Faults(drop=1.0), False),
    ],
)
def test_a_call_past_its_deadline_is_a_timed_out_transient(make_account, faults, timed_out) -> None:
    """The scheduler gives a timed-out push one more deadline to take effect before it
    looks the push up: the SDK's read timeout must say so (Transient.timed_out)."""
    account = make_account(faults=faults)
    base = settings(account.server.url)
    provider = AliyunProvider(base.model_copy(update={"cdn_preheat_api_timeout": 0.3}))
    assert provider.call_timeout == 0.3
    with pytest.raises(Transient) as info:
        provider.submit([url("/v/1/seg0.ts")])
    assert info.value.timed_out is timed_out
    assert_secret_hidden(info.value)


def test_unreachable_endpoint_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = AliyunProvider(settings(f"http://127.0.0.1:{port}"))
    with pytest.raises(Transient) as info:
        provider.quota()
    assert_secret_hidden(info.value)


def test_other_vendor_errors_stay_provider_errors(account: Account) -> None:
    with pytest.raises(ProviderError) as info:
        account.provider(area="mars").submit([url("/v/1/seg0.ts")])
    assert type(info.value) is ProviderError
    assert info.value.code == "InvalidArea.ValueNotSupported"


def test_non_sdk_exceptions_are_not_mapped() -> None:
    assert map_error(ValueError("boom"), "PushObjectCache") is None
