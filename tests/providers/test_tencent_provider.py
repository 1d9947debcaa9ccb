"""TencentProvider details beyond the contract: options, areas, error codes, stats."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from contract_env import settings_from

from cdn_preheat import config
from cdn_preheat.errors import (
    BatchRefused,
    ConfigError,
    DomainError,
    ProviderError,
    RateLimited,
    Transient,
    Unreconcilable,
)
from cdn_preheat.providers import tencent
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.core import LoopbackServer
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.sandbox.tencent import TencentLimits


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=2, segments=5, tencent_limits=TencentLimits(task_delay=0)) as box:
        yield box


def provider(box: Sandbox, **overrides: str) -> TencentProvider:
    return TencentProvider(settings_from({**box.client_env(), **overrides}))


def test_options_reach_the_api(sandbox: Sandbox) -> None:
    settings = settings_from(
        {
            **sandbox.client_env(),
            "TENCENT_LAYER": "middle",
            "TENCENT_USER_AGENT": "preheat-bot/1",
            "TENCENT_AREA": "overseas",
        }
    )
    cdn = TencentProvider(settings.model_copy(update={"tencent_headers": {"X-Preheat": "1"}}))
    cdn.submit([sandbox.edge_url("/vod/demo-1/master.m3u8")])
    (push,) = sandbox.tencent.received()
    assert push.area == "overseas"
    assert push.options["Layer"] == "middle"
    assert push.options["UserAgent"] == "preheat-bot/1"
    assert push.options["Headers"] == [{"Name": "X-Preheat", "Value": "1"}]


def test_global_quota_is_the_scarcer_area(sandbox: Sandbox) -> None:
    provider(sandbox, TENCENT_AREA="overseas").submit(
        [sandbox.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(3)]
    )
    quota = provider(sandbox, TENCENT_AREA="global").quota()
    assert (quota.area, quota.total, quota.available, quota.batch) == (
        "global",
        100_000,
        99_997,
        500,
    )


def test_find_submitted_pages_through_long_task_lists(sandbox: Sandbox) -> None:
    cdn = provider(sandbox)
    since = dt.datetime.now(dt.UTC)
    urls = [sandbox.edge_url(f"/vod/demo-1/v0/seg{i}.ts?n={i}") for i in range(1200)]
    task_ids = [cdn.submit(urls[i : i + 500]).task_id for i in range(0, 1200, 500)]
    found = cdn.find_submitted(urls, since)
    assert len(found) == 1200
    assert found[urls[0]] == task_ids[0] and found[urls[-1]] == task_ids[2]


@pytest.mark.parametrize("over_limit", ["reject", "cap"])
def test_find_submitted_copes_with_a_page_limit_either_way(sandbox: Sandbox, over_limit) -> None:
    """No maximum Limit is documented: a smaller one refused or silently capped both work."""
    sandbox.tencent.limits.push_tasks_max_limit = 100
    sandbox.tencent.limits.push_tasks_over_limit = over_limit
    cdn = provider(sandbox)
    since = dt.datetime.now(dt.UTC)
    urls = [sandbox.edge_url(f"/vod/demo-1/v0/seg{i}.ts?n={i}") for i in range(250)]
    task_id = cdn.submit(urls).task_id
    assert cdn.find_submitted(urls, since) == dict.fromkeys(urls, task_id)
    assert {e.url for e in cdn.task_status([task_id])} == set(urls)


def test_find_submitted_searches_by_url_rather_than_reading_the_account(sandbox: Sandbox) -> None:
    """With more pages in the window than URLs to find, one Keyword search per URL."""
    sandbox.tencent.limits.push_tasks_max_limit = 100
    sandbox.tencent.limits.push_tasks_over_limit = "cap"
    cdn = provider(sandbox)
    since = dt.datetime.now(dt.UTC)
    busy = [sandbox.edge_url(f"/vod/demo-1/v0/seg{i}.ts?n={i}") for i in range(1000)]
    cdn.submit(busy[:500])
    cdn.submit(busy[500:])
    wanted = [
        sandbox.edge_url("/vod/demo-2/v0/seg0.ts"),
        sandbox.edge_url("/vod/demo-2/v0/seg1.ts"),
    ]
    task_id = cdn.submit(wanted).task_id
    before = sandbox.tencent.actions["DescribePushTasks"]
    assert cdn.find_submitted(wanted, since) == dict.fromkeys(wanted, task_id)
    # One page told 11 pages of 100; two Keyword searches instead of ten more pages.
    assert sandbox.tencent.actions["DescribePushTasks"] - before == 3


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_find_submitted_picks_the_newest_push_in_any_order(sandbox: Sandbox, order) -> None:
    sandbox.tencent.limits.push_log_order = order
    cdn = provider(sandbox)
    since = dt.datetime.now(dt.UTC)
    url = sandbox.edge_url("/vod/demo-1/v0/seg0.ts")
    cdn.submit([url])
    sandbox.clock.advance(dt.timedelta(seconds=2))  # pushed again, a little later
    again = cdn.submit([url]).task_id
    assert cdn.find_submitted([url], since) == {url: again}


def test_find_submitted_beyond_30_days_is_unreconcilable(sandbox: Sandbox) -> None:
    cdn = provider(sandbox)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=30, minutes=1)
    with pytest.raises(Unreconcilable, match="30 days"):
        cdn.find_submitted([sandbox.edge_url("/vod/demo-1/v0/seg0.ts")], since)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("InternalError.CdnSystemError", Transient),
        ("InternalError", Transient),
        ("UnauthorizedOperation.OperationTooOften", RateLimited),
        ("LimitExceeded.CdnHostOpTooOften", RateLimited),
        ("RequestLimitExceeded.UinLimitExceeded", RateLimited),
        ("ResourceUnavailable.CdnHostIsNotOnline", DomainError),
        ("InvalidParameter.CdnHostInvalidParam", DomainError),
    ],
)
def test_error_codes_map_onto_the_taxonomy(
    sandbox: Sandbox, code: str, error: type[ProviderError]
) -> None:
    sandbox.tencent.inject(code)
    with pytest.raises(error) as caught:
        provider(sandbox).submit([sandbox.edge_url("/vod/demo-1/master.m3u8")])
    assert caught.value.code == code
    if error is DomainError:
        assert sandbox.edge.netloc in str(caught.value) and "CDN_HOST" in str(caught.value)


def test_other_codes_stay_provider_errors_with_the_code(sandbox: Sandbox) -> None:
    sandbox.tencent.inject("UnauthorizedOperation.CdnAccountUnauthorized")
    with pytest.raises(ProviderError) as caught:
        provider(sandbox).quota()
    assert type(caught.value) is ProviderError
    assert caught.value.code == "UnauthorizedOperation.CdnAccountUnauthorized"
    assert "UnauthorizedOperation.CdnAccountUnauthorized" in str(caught.value)


def test_unreachable_endpoint_is_transient(sandbox: Sandbox) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(Transient):
        provider(sandbox, TENCENT_ENDPOINT=f"http://127.0.0.1:{port}").quota()


def test_missing_secret_names_the_variable(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigError, match="TENCENT_SECRET_KEY"):
        provider(sandbox, TENCENT_SECRET_KEY="")


def test_flux_series_and_logs(sandbox: Sandbox) -> None:
    cdn = provider(sandbox)
    tz = dt.timezone(dt.timedelta(hours=8))
    start = dt.datetime(2024, 5, 1, tzinfo=tz)
    series = cdn.flux(sandbox.edge.netloc, start, start + dt.timedelta(hours=1), "5min")
    assert series.interval == "5min"
    assert [p.time for p in series.points] == [
        start + dt.timedelta(minutes=5 * i) for i in range(13)
    ]
    assert series.summary == sum(p.value for p in series.points)
    assert cdn.flux(sandbox.edge.netloc, start, start + dt.timedelta(hours=1)) == series

    logs = cdn.logs(sandbox.edge.netloc, dt.date(2024, 5, 1))
    assert len(logs) == 24
    assert logs[0].start == start and logs[0].end == start + dt.timedelta(hours=1)
    assert all(log.area == "mainland" and log.url and log.size for log in logs)
    with pytest.raises(DomainError):
        cdn.logs("cdn.example.com", dt.date(2024, 5, 1))


def test_a_foreign_host_refuses_the_batch_per_host_naming_the_host(sandbox: Sandbox) -> None:
    urls = [sandbox.edge_url("/vod/demo-1/master.m3u8"), "http://elsewhere.example.net/x.ts"]
    with pytest.raises(BatchRefused) as caught:
        provider(sandbox).submit(urls)
    assert caught.value.per_host
    assert caught.value.code == "ResourceNotFound.CdnHostNotExists"
    assert "elsewhere.example.net" in str(caught.value)
    assert sandbox.tencent.received() == []


def test_with_cdn_host_unset_the_origin_host_refuses_per_host(sandbox: Sandbox) -> None:
    origin_url = sandbox.video_url("demo-1")
    with pytest.raises(BatchRefused) as caught:
        provider(sandbox, CDN_HOST="").submit([origin_url])
    assert caught.value.per_host


def test_an_over_long_url_refuses_the_batch_unnamed(sandbox: Sandbox) -> None:
    sandbox.tencent.limits.max_url_length = 80
    urls = [sandbox.edge_url("/vod/demo-1/master.m3u8"), sandbox.edge_url("/" + "x" * 100)]
    with pytest.raises(BatchRefused) as caught:
        provider(sandbox).submit(urls)
    assert caught.value.code == "InvalidParameter.CdnUrlExceedLength"
    assert not caught.value.per_host
    assert sandbox.tencent.received() == []


@pytest.mark.parametrize(
    "scheme_code", ["InvalidParameter.CdnParamError", "InvalidParameter.CdnHostInvalidParam"]
)
def test_a_refused_scheme_refuses_the_batch_whichever_code_tencent_uses(
    sandbox: Sandbox, scheme_code: str
) -> None:
    sandbox.tencent.limits.scheme_error_code = scheme_code
    urls = [sandbox.edge_url("/vod/demo-1/master.m3u8"), f"ftp://{sandbox.edge.netloc}/x.ts"]
    with pytest.raises(BatchRefused) as caught:
        provider(sandbox).submit(urls)
    assert caught.value.code == scheme_code and not caught.value.per_host


def test_a_parameter_error_with_well_formed_urls_stays_a_provider_error(sandbox: Sandbox) -> None:
    sandbox.tencent.inject("InvalidParameter.CdnParamError")
    with pytest.raises(ProviderError) as caught:
        provider(sandbox).submit([sandbox.edge_url("/vod/demo-1/master.m3u8")])
    assert type(caught.value) is ProviderError


class _HtmlGateway(BaseHTTPRequestHandler):
    """A proxy in front of the API that answers every call with its own HTML page."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body>Gateway says hello</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.mark.parametrize("call", ["task_status", "window_status"])
def test_a_status_answer_that_is_not_json_is_a_provider_error_like_any_other(
    sandbox: Sandbox, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Push logs are read through the SDK's call_json, which (unlike the SDK's action
    # methods) lets a JSON decoding error through: it must still be a ProviderError
    # (a transient one, so a page is asked again: once is enough here).
    monkeypatch.setattr(tencent, "PAGE_ATTEMPTS", 1)
    gateway = LoopbackServer(_HtmlGateway, None).start()
    try:
        cdn = provider(sandbox, TENCENT_ENDPOINT=gateway.url)
        now = dt.datetime.now(dt.UTC)
        with pytest.raises(ProviderError) as caught:
            if call == "task_status":
                cdn.task_status(["1700000000-000001-abcdef01"])
            else:
                cdn.window_status(now - dt.timedelta(minutes=1), now)
        assert "JSONDecodeError" in str(caught.value) or caught.value.code == "JSONDecodeError"
        assert config.SANDBOX_TENCENT_SECRET_KEY not in str(caught.value)
    finally:
        gateway.stop()
