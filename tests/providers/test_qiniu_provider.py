"""QiniuProvider against the Qiniu emulator: every answer mapped, end to end."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from qiniu.services.cdn.manager import create_timestamp_anti_leech_url

from cdn_preheat.config import Settings
from cdn_preheat.errors import (
    AuthError,
    BatchTooLarge,
    ConfigError,
    DomainError,
    InvalidUrls,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from cdn_preheat.providers.base import Quota, TaskState
from cdn_preheat.providers.qiniu import QiniuProvider, strip_anti_leech
from cdn_preheat.sandbox.core import EdgeCache, Faults, SandboxClock
from cdn_preheat.sandbox.qiniu import QiniuEmulator, QiniuLimits

AK, SK = "provider-access-key", "provider-secret-key-value"
EDGE = "cdn.example.test:8080"
TASK_DELAY = 5.0
CHINA = dt.timezone(dt.timedelta(hours=8))


def url(path: str) -> str:
    return f"http://{EDGE}{path}"


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
def api(clock: SandboxClock) -> Iterator[QiniuEmulator]:
    emulator = QiniuEmulator(
        clock,
        EdgeCache(),
        lambda path: not path.startswith("/missing/"),
        EDGE,
        AK,
        SK,
        QiniuLimits(task_delay=TASK_DELAY, refresh_dir_enabled=True),
        Faults(seed=2),
    )
    server = emulator.start()
    yield emulator
    server.stop()


def settings(api: QiniuEmulator, secret_key: str | None = SK) -> Settings:
    assert api.server is not None
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        qiniu_access_key=SecretStr(AK),
        qiniu_secret_key=SecretStr(secret_key) if secret_key else None,
        qiniu_endpoint=api.server.url,
        qiniu_rsf_endpoint=api.server.url,
        cdn_host=EDGE,
    )


@pytest.fixture
def provider(api: QiniuEmulator) -> QiniuProvider:
    return QiniuProvider(settings(api))


def finish_tasks(clock: SandboxClock) -> None:
    clock.advance(dt.timedelta(seconds=TASK_DELAY + 1))


# Construction and quota -----------------------------------------------------------


def test_missing_secret_names_the_variable(api: QiniuEmulator) -> None:
    with pytest.raises(ConfigError, match="QINIU_SECRET_KEY"):
        QiniuProvider(settings(api, secret_key=None))


def test_quota_is_unknown_until_the_first_answer(provider: QiniuProvider) -> None:
    before = provider.quota()
    assert before == Quota("global", 100, None, 20)
    assert not before.unlimited
    result = provider.submit([url("/v/a.ts"), url("/v/b.ts")])
    assert result.quota == Quota("global", 100, 98, 20)
    assert provider.quota() == Quota("global", 100, 98, 20)


# Submit -------------------------------------------------------------------------------


def test_submit_returns_the_request_id_and_accepted_urls(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    urls = [url("/v/a.ts"), url("/v/b.ts?token=1")]
    result = provider.submit(urls)
    assert result.task_id == api.received()[0].request_id
    assert result.accepted == tuple(urls)
    assert result.invalid == {}
    assert api.received_urls() == urls


def test_invalid_urls_in_an_accepted_batch_are_reported(provider: QiniuProvider) -> None:
    result = provider.submit([url("/v/a.ts"), "ftp://x/a.ts"])
    assert result.accepted == (url("/v/a.ts"),)
    assert result.invalid == {"ftp://x/a.ts": "invalid url"}


def test_all_invalid_is_invalid_urls(provider: QiniuProvider) -> None:
    with pytest.raises(InvalidUrls) as caught:
        provider.submit(["ftp://x/a.ts", "nonsense"])
    assert caught.value.code == "400031"
    assert caught.value.invalid == {"ftp://x/a.ts": "invalid url", "nonsense": "invalid url"}


def test_oversized_batch_is_refused_before_any_request(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    with pytest.raises(BatchTooLarge):
        provider.submit([url(f"/v/{i}.ts") for i in range(21)])
    assert sum(api.outcomes.values()) == 0


def test_foreign_host_is_a_domain_error_naming_cdn_host(provider: QiniuProvider) -> None:
    with pytest.raises(DomainError, match="CDN_HOST") as caught:
        provider.submit(["http://elsewhere.test/v/a.ts"])
    assert caught.value.code == "400032"


def test_bad_secret_is_an_auth_error_naming_both_variables(api: QiniuEmulator) -> None:
    wrong = "a-wrong-secret-that-must-not-leak"
    provider = QiniuProvider(settings(api, secret_key=wrong))
    with pytest.raises(AuthError) as caught:
        provider.submit([url("/v/a.ts")])
    message = str(caught.value)
    assert "QINIU_ACCESS_KEY" in message and "QINIU_SECRET_KEY" in message
    assert wrong not in message and SK not in message


def test_prefetch_quota_spent_is_quota_exhausted(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    api.limits.prefetch_quota = 20
    provider.submit([url(f"/v/{i}.ts") for i in range(15)])
    with pytest.raises(QuotaExhausted) as caught:
        provider.submit([url(f"/w/{i}.ts") for i in range(10)])
    assert caught.value.code == "400033"


def test_refresh_quota_spent_is_quota_exhausted(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    api.limits.refresh_url_quota = 1
    with pytest.raises(QuotaExhausted) as caught:
        provider.purge_urls([url("/v/a.ts"), url("/v/b.ts")])
    assert caught.value.code == "400034"


def test_too_many_urls_a_second_is_rate_limited(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    api.limits.urls_per_second = 25
    provider.submit([url(f"/v/{i}.ts") for i in range(20)])
    with pytest.raises(RateLimited) as caught:
        provider.submit([url(f"/w/{i}.ts") for i in range(20)])
    assert caught.value.code == "403024"
    assert caught.value.retry_after is not None


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (403022, RateLimited),
        (403024, RateLimited),
        (400033, QuotaExhausted),
        (400034, QuotaExhausted),
        (400031, InvalidUrls),
        (400032, DomainError),
        (500000, Transient),
    ],
)
def test_every_code_maps_onto_the_taxonomy(
    provider: QiniuProvider, api: QiniuEmulator, code: int, error: type[Exception]
) -> None:
    api.inject(code)
    with pytest.raises(error):
        provider.submit([url("/v/a.ts")])
    assert api.received() == []


def test_bad_gateway_and_dropped_connections_are_transient(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    api.faults.server_error = 1.0
    with pytest.raises(Transient, match="502"):
        provider.submit([url("/v/a.ts")])
    api.faults.server_error, api.faults.drop = 0.0, 1.0
    with pytest.raises(Transient, match="before an answer"):
        provider.submit([url("/v/a.ts")])
    assert api.received() == []


def test_unreachable_endpoint_is_transient(api: QiniuEmulator) -> None:
    provider = QiniuProvider(settings(api))
    assert api.server is not None
    api.server.stop()
    with pytest.raises(Transient):
        provider.task_status(["whatever"])


# 400037: already being prefetched -------------------------------------------------------


def test_resubmitting_a_processing_batch_is_success(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    urls = [url("/v/a.ts"), url("/v/b.ts")]
    first = provider.submit(urls)
    again = provider.submit(urls)
    assert again.task_id == first.task_id
    assert again.accepted == tuple(urls)
    assert Counter(api.received_urls()) == dict.fromkeys(urls, 1)


def test_partly_processing_batch_submits_only_the_rest(
    provider: QiniuProvider, api: QiniuEmulator, clock: SandboxClock
) -> None:
    first = provider.submit([url("/v/a.ts")])
    result = provider.submit([url("/v/a.ts"), url("/v/b.ts"), url("/missing/c.ts")])
    assert result.accepted == (url("/v/a.ts"), url("/v/b.ts"), url("/missing/c.ts"))
    assert result.task_id.split(",")[0] == first.task_id
    assert Counter(api.received_urls()) == {
        url("/v/a.ts"): 1,
        url("/v/b.ts"): 1,
        url("/missing/c.ts"): 1,
    }
    finish_tasks(clock)
    states = {e.url: (e.task_id, e.state) for e in provider.task_status([result.task_id])}
    assert states == {
        url("/v/a.ts"): (result.task_id, TaskState.DONE),
        url("/v/b.ts"): (result.task_id, TaskState.DONE),
        url("/missing/c.ts"): (result.task_id, TaskState.INVALID),
    }


# Status ------------------------------------------------------------------------------------


def test_task_status_follows_the_list_query(
    provider: QiniuProvider, api: QiniuEmulator, clock: SandboxClock
) -> None:
    result = provider.submit([url("/v/a.ts"), url("/missing/b.ts")])
    entries = provider.task_status([result.task_id])
    assert {e.state for e in entries} == {TaskState.PROCESSING}
    assert all(e.created_at is not None for e in entries)
    finish_tasks(clock)
    by_url = {e.url: e for e in provider.task_status([result.task_id])}
    assert by_url[url("/v/a.ts")].state is TaskState.DONE
    assert by_url[url("/missing/b.ts")].state is TaskState.INVALID
    assert "404" in (by_url[url("/missing/b.ts")].reason or "")
    assert api.outcomes["ok"] == 3


def test_task_status_pages_through_large_answers(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    api.limits.list_page_max = 7  # the emulator caps pages; the provider must follow them
    result = provider.submit([url(f"/v/{i}.ts") for i in range(20)])
    assert len(provider.task_status([result.task_id])) == 20


def test_find_submitted_maps_urls_to_request_ids(
    provider: QiniuProvider, clock: SandboxClock
) -> None:
    since = clock.now() - dt.timedelta(minutes=1)
    first = provider.submit([url("/v/a.ts")])
    second = provider.submit([url("/v/b.ts")])
    found = provider.find_submitted([url("/v/a.ts"), url("/v/b.ts"), url("/v/never.ts")], since)
    assert found == {url("/v/a.ts"): first.task_id, url("/v/b.ts"): second.task_id}
    later = clock.now() + dt.timedelta(days=1)
    assert provider.find_submitted([url("/v/a.ts")], later) == {}


# Refresh -------------------------------------------------------------------------------------


def test_strip_anti_leech_keeps_everything_else() -> None:
    assert strip_anti_leech("http://h/a.ts?sign=abc&t=5f") == "http://h/a.ts"
    assert strip_anti_leech("http://h/a.ts?x=%2F1&sign=abc&t=5f&y") == "http://h/a.ts?x=%2F1&y"
    assert strip_anti_leech("http://h/a.ts?tt=1&signature=2") == "http://h/a.ts?tt=1&signature=2"
    assert strip_anti_leech("http://h/a.ts") == "http://h/a.ts"


def test_purge_urls_refreshes_without_anti_leech_params(
    provider: QiniuProvider, api: QiniuEmulator, clock: SandboxClock
) -> None:
    signed = create_timestamp_anti_leech_url(
        f"http://{EDGE}", "v/a.ts", "quality=hd", "leech-key", 1_900_000_000
    )
    assert "sign=" in signed
    task_id = provider.purge_urls([signed, url("/v/a.ts?quality=hd")])
    finish_tasks(clock)
    entries = provider.purge_status([task_id])
    assert [(e.url, e.state) for e in entries] == [(url("/v/a.ts?quality=hd"), TaskState.DONE)]


def test_purge_dirs_and_status(provider: QiniuProvider, clock: SandboxClock) -> None:
    task_id = provider.purge_dirs([url("/v/"), url("/w/")])
    assert {e.state for e in provider.purge_status([task_id])} == {TaskState.PROCESSING}
    finish_tasks(clock)
    entries = provider.purge_status([task_id])
    assert sorted(e.url for e in entries) == [url("/v/"), url("/w/")]
    assert {e.state for e in entries} == {TaskState.DONE}
    with pytest.raises(BatchTooLarge):
        provider.purge_dirs([url(f"/d{i}/") for i in range(6)])


# Traffic, logs and storage -------------------------------------------------------------------


def test_flux_and_bandwidth_series(provider: QiniuProvider) -> None:
    start = dt.datetime(2024, 3, 1, tzinfo=CHINA)
    flux = provider.flux(EDGE, start, start + dt.timedelta(hours=23), "hour")
    assert (flux.metric, flux.interval) == ("flux", "hour")
    assert len(flux.points) == 24
    assert flux.points[0].time == start
    assert all(p.value > 0 for p in flux.points)
    assert provider.flux(EDGE, start, start + dt.timedelta(hours=23), "hour") == flux
    # Qiniu answers whole days; the provider keeps only the asked-for window.
    evening = provider.flux(
        EDGE, start + dt.timedelta(hours=18), start + dt.timedelta(days=1), metric="bandwidth"
    )
    assert evening.metric == "bandwidth"
    assert len(evening.points) == 6 * 12 + 1
    with pytest.raises(DomainError):
        provider.flux("other.test", start, start)


def test_logs_list_the_day_files(provider: QiniuProvider) -> None:
    files = provider.logs(EDGE, dt.date(2024, 3, 1))
    assert len(files) == 24
    first = files[0]
    assert (first.start, first.end) == (
        dt.datetime(2024, 3, 1, tzinfo=CHINA),
        dt.datetime(2024, 3, 1, 1, tzinfo=CHINA),
    )
    assert first.url.startswith("http://127.0.0.1:")
    assert first.size and first.size > 0
    assert first.area == "global"


def test_iter_keys_finds_playlists_among_thousands(
    provider: QiniuProvider, api: QiniuEmulator
) -> None:
    playlists = [f"vod/{v}/index.m3u8" for v in range(5)]
    segments = [f"vod/{v}/{s:04d}.ts" for v in range(5) for s in range(700)]
    api.put_objects("media", playlists + segments + ["elsewhere/x.m3u8"])
    found = list(provider.iter_keys("media", prefix="vod/", suffix=".m3u8"))
    assert found == sorted(playlists)
    assert api.outcomes["ok"] == 4  # 3,505 keys in pages of 1,000
