"""The official EdgeOne SDK (tencentcloud-sdk-python-teo) against the sandbox's teo emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from cdn_preheat import config
from cdn_preheat.sandbox.edgeone import SANDBOX_ZONE_ID, EdgeOneLimits
from cdn_preheat.sandbox.server import Sandbox

ZONE = SANDBOX_ZONE_ID


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    limits = EdgeOneLimits(task_delay=30)
    with Sandbox(videos=2, segments=5, edgeone_limits=limits, edge_vendor="edgeone") as box:
        yield box


def client(
    box: Sandbox, service: str = "teo", secret_key: str = config.SANDBOX_TENCENT_SECRET_KEY
) -> CommonClient:
    netloc = box.endpoints["edgeone"].removeprefix("http://")
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=netloc))
    credential = Credential(config.SANDBOX_TENCENT_SECRET_ID, secret_key)
    return CommonClient(service, "2022-09-01", credential, "", profile=profile)


def call(box: Sandbox, action: str, **params: Any) -> dict[str, Any]:
    answer: dict[str, Any] = client(box).call_json(action, params)
    return answer["Response"]


def code_of(box: Sandbox, action: str, *, sdk: CommonClient | None = None, **params: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as caught:
        (sdk or client(box)).call_json(action, params)
    return str(caught.value.code)


def edge_url(box: Sandbox, path: str) -> str:
    return box.edge_url(path)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_signatures_are_checked_for_service_teo(sandbox: Sandbox) -> None:
    assert call(sandbox, "DescribeContentQuota", ZoneId=ZONE)["PrefetchQuota"]
    signed_for_cdn = client(sandbox, service="cdn")
    assert code_of(sandbox, "DescribeContentQuota", sdk=signed_for_cdn, ZoneId=ZONE) == (
        "AuthFailure.SignatureFailure"
    )
    wrong_key = client(sandbox, secret_key="not-the-key")
    assert code_of(sandbox, "DescribeContentQuota", sdk=wrong_key, ZoneId=ZONE) == (
        "AuthFailure.SignatureFailure"
    )


def test_a_zone_that_is_not_the_accounts_is_refused(sandbox: Sandbox) -> None:
    target = edge_url(sandbox, "/vod/demo-1/master.m3u8")
    assert code_of(sandbox, "CreatePrefetchTask", ZoneId="zone-other", Targets=[target]) == (
        "InvalidParameter.ZoneNotFound"
    )


def test_prefetch_answers_a_job_and_a_failed_list_for_targets_outside_the_zone(
    sandbox: Sandbox,
) -> None:
    own = edge_url(sandbox, "/vod/demo-2/master.m3u8")
    foreign, ftp = "http://elsewhere.example.com/a.ts", "ftp://example.com/b.ts"
    used = sandbox.edgeone.quota_used()
    answer = call(sandbox, "CreatePrefetchTask", ZoneId=ZONE, Targets=[own, foreign, ftp])
    assert answer["JobId"]
    failed = {t: item["Reason"] for item in answer["FailedList"] for t in item["Targets"]}
    assert set(failed) == {foreign, ftp}
    assert sandbox.edgeone.quota_used() == used + 1  # only the accepted target is charged
    quota = call(sandbox, "DescribeContentQuota", ZoneId=ZONE)["PrefetchQuota"]
    assert quota == [
        {
            "Type": "prefetch_url",
            "Batch": 1000,
            "Daily": 100_000,
            "DailyAvailable": 100_000 - used - 1,
        }
    ]


def test_batch_and_daily_quota_refuse_the_whole_request(sandbox: Sandbox) -> None:
    limits = sandbox.edgeone.limits
    targets = [edge_url(sandbox, f"/vod/demo-1/v0/seg{i}.ts") for i in range(3)]
    limits.prefetch_batch = 2
    try:
        assert code_of(sandbox, "CreatePrefetchTask", ZoneId=ZONE, Targets=targets) == (
            "LimitExceeded.BatchQuota"
        )
    finally:
        limits.prefetch_batch = 1000
    limits.prefetch_per_day = sandbox.edgeone.quota_used() + 2
    try:
        assert code_of(sandbox, "CreatePrefetchTask", ZoneId=ZONE, Targets=targets) == (
            "LimitExceeded.DailyQuota"
        )
    finally:
        limits.prefetch_per_day = 100_000


def test_task_queries_need_a_window_or_a_job_and_keep_to_their_limits(sandbox: Sandbox) -> None:
    now = dt.datetime.now(dt.UTC)
    window = {"StartTime": iso(now - dt.timedelta(hours=1)), "EndTime": iso(now)}
    assert (
        code_of(sandbox, "DescribePrefetchTasks", ZoneId=ZONE) == "InvalidParameter.ParameterError"
    )
    assert code_of(sandbox, "DescribePrefetchTasks", ZoneId=ZONE, Limit=1001, **window) == (
        "InvalidParameter.ParameterError"
    )
    eight_days = {"StartTime": iso(now - dt.timedelta(days=8)), "EndTime": iso(now)}
    assert code_of(sandbox, "DescribePrefetchTasks", ZoneId=ZONE, **eight_days) == (
        "InvalidParameter.ParameterError"
    )
    two_jobs = [{"Name": "job-id", "Values": ["a", "b"]}]
    assert code_of(sandbox, "DescribePrefetchTasks", ZoneId=ZONE, Filters=two_jobs) == (
        "InvalidParameter.ParameterError"
    )
    assert (
        call(sandbox, "DescribePrefetchTasks", ZoneId=ZONE, Limit=1000, **window)["Tasks"]
        is not None
    )


def test_tasks_move_from_processing_to_their_statuses_and_filter(sandbox: Sandbox) -> None:
    good = edge_url(sandbox, "/vod/demo-1/v1/seg0.ts")
    missing = edge_url(sandbox, "/vod/demo-1/v1/seg-missing.ts")
    job = call(sandbox, "CreatePrefetchTask", ZoneId=ZONE, Targets=[good, missing])["JobId"]
    by_job = [{"Name": "job-id", "Values": [job]}]
    tasks = call(sandbox, "DescribePrefetchTasks", ZoneId=ZONE, Filters=by_job)["Tasks"]
    assert {t["Status"] for t in tasks} == {"processing"}
    sandbox.clock.advance(dt.timedelta(seconds=31))
    tasks = call(sandbox, "DescribePrefetchTasks", ZoneId=ZONE, Filters=by_job)["Tasks"]
    assert {t["Target"]: t["Status"] for t in tasks} == {good: "success", missing: "invalid"}
    created = dt.datetime.fromisoformat(tasks[0]["CreateTime"])
    assert created.utcoffset() == dt.timedelta(hours=8)  # ISO 8601, Beijing time
    invalid = [*by_job, {"Name": "statuses", "Values": ["invalid"]}]
    tasks = call(sandbox, "DescribePrefetchTasks", ZoneId=ZONE, Filters=invalid)["Tasks"]
    assert [t["Target"] for t in tasks] == [missing]
    # Prefetched to the middle layer ("default"); the edge answers EO-Cache-Status.
    assert httpx.get(good, headers={"Range": "bytes=0-0"}).headers["EO-Cache-Status"] == "HIT"
    cold = edge_url(sandbox, "/vod/demo-2/v1/seg0.ts")
    assert httpx.get(cold, headers={"Range": "bytes=0-0"}).headers["EO-Cache-Status"] == "MISS"


def test_windowed_query_pages_with_offset_and_total_count(sandbox: Sandbox) -> None:
    start = sandbox.clock.now() - dt.timedelta(seconds=1)  # other tests moved the clock on
    targets = [edge_url(sandbox, f"/vod/demo-2/v0/seg{i}.ts") for i in range(5)]
    call(sandbox, "CreatePrefetchTask", ZoneId=ZONE, Targets=targets)
    window = {
        "StartTime": iso(start),
        "EndTime": iso(sandbox.clock.now() + dt.timedelta(seconds=1)),
    }
    seen: list[str] = []
    offset = 0
    while True:
        page = call(sandbox, "DescribePrefetchTasks", ZoneId=ZONE, Offset=offset, Limit=2, **window)
        seen += [t["Target"] for t in page["Tasks"]]
        offset += len(page["Tasks"])
        if not page["Tasks"] or offset >= page["TotalCount"]:
            break
    assert set(targets) <= set(seen) and len(seen) == page["TotalCount"]


def test_rate_over_the_limit_is_refused_per_action(sandbox: Sandbox) -> None:
    limits = sandbox.edgeone.limits
    limits.action_rates = {"DescribePurgeTasks": 1}  # an action no other test calls
    limits.rate_window_seconds = 3600
    by_job = {"ZoneId": ZONE, "Filters": [{"Name": "job-id", "Values": ["x"]}]}
    try:
        call(sandbox, "DescribePurgeTasks", **by_job)
        assert code_of(sandbox, "DescribePurgeTasks", **by_job) == "RequestLimitExceeded"
        limits.rate_limit_code = "LimitExceeded.RateLimitExceeded"
        assert code_of(sandbox, "DescribePurgeTasks", **by_job) == "LimitExceeded.RateLimitExceeded"
        call(sandbox, "DescribeContentQuota", ZoneId=ZONE)  # other actions have their own
    finally:
        limits.action_rates, limits.rate_window_seconds = {}, 1.0
        limits.rate_limit_code = "RequestLimitExceeded"


def test_unknown_parameters_and_versions_are_refused(sandbox: Sandbox) -> None:
    assert code_of(sandbox, "DescribeContentQuota", ZoneId=ZONE, Area="mainland") == (
        "UnknownParameter"
    )
    netloc = sandbox.endpoints["edgeone"].removeprefix("http://")
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=netloc))
    credential = Credential(config.SANDBOX_TENCENT_SECRET_ID, config.SANDBOX_TENCENT_SECRET_KEY)
    old = CommonClient("teo", "2020-09-01", credential, "", profile=profile)
    assert code_of(sandbox, "DescribeContentQuota", sdk=old, ZoneId=ZONE) == "NoSuchVersion"


def test_acceleration_domains_list_the_zones_domains(sandbox: Sandbox) -> None:
    mine = [{"Name": "domain-name", "Values": [sandbox.edge.netloc]}]
    answer = call(sandbox, "DescribeAccelerationDomains", ZoneId=ZONE, Filters=mine)
    assert [(d["DomainName"], d["DomainStatus"]) for d in answer["AccelerationDomains"]] == [
        (sandbox.edge.netloc, "online")
    ]
    other = [{"Name": "domain-name", "Values": ["cdn.elsewhere.example.com"]}]
    assert (
        call(sandbox, "DescribeAccelerationDomains", ZoneId=ZONE, Filters=other)["TotalCount"] == 0
    )
    assert code_of(sandbox, "DescribeAccelerationDomains", ZoneId=ZONE, Limit=201) == (
        "InvalidParameter.ParameterError"
    )
