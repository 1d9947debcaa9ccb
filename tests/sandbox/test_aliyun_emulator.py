"""The official Alibaba Cloud CDN SDK against the sandbox emulator, over real HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from alibabacloud_cdn20180510 import models as cdn_models
from alibabacloud_cdn20180510.client import Client
from alibabacloud_tea_openapi import utils_models as openapi_models
from alibabacloud_tea_openapi.utils import Utils as OpenApiUtils
from darabonba.request import DaraRequest
from darabonba.runtime import RuntimeOptions
from Tea.exceptions import TeaException, UnretryableException

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

AK = "LTAItest0000000000000"
SECRET = "test-aliyun-secret"
EDGE = "cdn.example.com"
ORIGIN_FILES = {"/v/1/master.m3u8", "/v/1/seg0.ts", "/v/1/seg1.ts", "/v/2/seg0.ts"}
ORIGIN_ERRORS = {"/v/err/busy.ts": 502, "/v/err/slow.ts": ORIGIN_TIMED_OUT}


def origin_has(path: str) -> bool | int:
    """The origin stand-in: it ignores query strings, as most origins do."""
    bare = path.partition("?")[0]
    return ORIGIN_ERRORS.get(bare, bare in ORIGIN_FILES)


def instant(**options: object) -> AliyunLimits:
    """Alibaba's limits with tasks that finish at once unless a test says otherwise."""
    return AliyunLimits(**{"task_delay": 0.0, **options})


RUNTIME = RuntimeOptions(autoretry=False)


@dataclass
class Emulator:
    api: AliyunEmulator
    server: LoopbackServer
    clock: SandboxClock
    cache: EdgeCache

    def client(self, key_id: str = AK, secret: str = SECRET) -> Client:
        return Client(
            openapi_models.Config(
                access_key_id=key_id,
                access_key_secret=secret,
                endpoint=self.server.netloc,
                protocol="HTTP",
            )
        )


@pytest.fixture
def make_emulator() -> Iterator[object]:
    servers: list[LoopbackServer] = []

    def make(limits: AliyunLimits | None = None, faults: Faults | None = None) -> Emulator:
        clock, cache = SandboxClock(), EdgeCache()
        api = AliyunEmulator(
            clock, cache, origin_has, EDGE, AK, SECRET, limits or instant(), faults
        )
        server = api.start()
        servers.append(server)
        return Emulator(api, server, clock, cache)

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def emulator(make_emulator) -> Emulator:
    return make_emulator()


def push(client: Client, *paths: str, **options: object) -> str:
    request = cdn_models.PushObjectCacheRequest(object_path="\n".join(paths), **options)
    return str(client.push_object_cache_with_options(request, RUNTIME).body.push_task_id)


def quota(client: Client) -> cdn_models.DescribeRefreshQuotaResponseBody:
    request = cdn_models.DescribeRefreshQuotaRequest()
    return client.describe_refresh_quota_with_options(request, RUNTIME).body


def tasks_by_id(
    client: Client, task_id: str
) -> list[cdn_models.DescribeRefreshTaskByIdResponseBodyTasks]:
    request = cdn_models.DescribeRefreshTaskByIdRequest(task_id=task_id)
    return list(client.describe_refresh_task_by_id_with_options(request, RUNTIME).body.tasks)


def refresh(client: Client, object_type: str, *paths: str) -> str:
    request = cdn_models.RefreshObjectCachesRequest(
        object_path="\n".join(paths), object_type=object_type
    )
    return str(client.refresh_object_caches_with_options(request, RUNTIME).body.refresh_task_id)


def refused(call, *args: object, **kwargs: object) -> TeaException:
    with pytest.raises(TeaException) as info:
        call(*args, **kwargs)
    return info.value


# Authentication


def test_signed_push_is_accepted_and_logged(emulator: Emulator) -> None:
    task_id = push(emulator.client(), f"http://{EDGE}/v/1/seg0.ts", f"{EDGE}/v/1/seg1.ts?t=1")
    [call] = emulator.api.received
    assert call.task_id == task_id
    assert call.action == "PushObjectCache"
    assert call.urls == (f"http://{EDGE}/v/1/seg0.ts", f"http://{EDGE}/v/1/seg1.ts?t=1")
    assert emulator.api.counters == {"ok": 1}


def test_wrong_secret_is_refused(emulator: Emulator) -> None:
    error = refused(push, emulator.client(secret="not-the-secret"), f"{EDGE}/v/1/seg0.ts")
    assert error.code == "SignatureDoesNotMatch"
    assert error.data["statusCode"] == 400
    assert set(error.data) >= {"RequestId", "HostId", "Code", "Message"}
    assert emulator.api.received == []
    assert emulator.api.counters == {"SignatureDoesNotMatch": 1}


def test_unknown_access_key_id_is_refused(emulator: Emulator) -> None:
    error = refused(quota, emulator.client(key_id="LTAIsomeoneelse"))
    assert error.code == "InvalidAccessKeyId.NotFound"
    assert error.data["statusCode"] == 404


def signed_request(netloc: str, object_path: str) -> dict[str, str]:
    """A PushObjectCache request signed with the SDK's own ACS3 helper."""
    request = DaraRequest()
    request.method = "POST"
    request.pathname = "/"
    request.query = {"ObjectPath": object_path}
    request.headers = {
        "host": netloc,
        "x-acs-action": "PushObjectCache",
        "x-acs-version": "2018-05-10",
        "x-acs-date": OpenApiUtils.get_timestamp(),
        "x-acs-signature-nonce": OpenApiUtils.get_nonce(),
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    request.headers["Authorization"] = OpenApiUtils.get_authorization(
        request, "ACS3-HMAC-SHA256", hashlib.sha256(b"").hexdigest(), AK, SECRET
    )
    return request.headers


def test_tampered_or_replayed_request_is_refused(emulator: Emulator) -> None:
    headers = signed_request(emulator.server.netloc, f"{EDGE}/v/1/seg0.ts")
    url = emulator.server.url + "/"
    with httpx.Client() as http:
        tampered = http.post(url, params={"ObjectPath": f"{EDGE}/v/2/seg0.ts"}, headers=headers)
        assert tampered.status_code == 400
        assert tampered.json()["Code"] == "SignatureDoesNotMatch"

        genuine = http.post(url, params={"ObjectPath": f"{EDGE}/v/1/seg0.ts"}, headers=headers)
        assert genuine.status_code == 200, genuine.text
        assert genuine.json()["PushTaskId"]

        replayed = http.post(url, params={"ObjectPath": f"{EDGE}/v/1/seg0.ts"}, headers=headers)
        assert replayed.json()["Code"] == "SignatureNonceUsed"

        extra_body = http.post(
            url, params={"ObjectPath": f"{EDGE}/v/1/seg0.ts"}, headers=headers, content=b"x=1"
        )
        assert extra_body.json()["Code"] == "SignatureDoesNotMatch"

        unsigned = http.post(url, params={"ObjectPath": f"{EDGE}/v/1/seg0.ts"})
        assert unsigned.json()["Code"] == "IncompleteSignature"
    assert [call.urls for call in emulator.api.received] == [(f"http://{EDGE}/v/1/seg0.ts",)]


# Limits and codes


def test_more_than_100_paths_a_call_is_refused(emulator: Emulator) -> None:
    paths = [f"{EDGE}/v/1/seg{i}.ts" for i in range(101)]
    error = refused(push, emulator.client(), *paths)
    assert error.code == "InvalidObjectPath.ExceedsMaximum"
    assert quota(emulator.client()).preload_remain == "100000"
    assert push(emulator.client(), *paths[:100])


def test_domain_outside_the_account_is_refused(emulator: Emulator) -> None:
    error = refused(push, emulator.client(), f"{EDGE}/v/1/seg0.ts", "other.example.org/x.ts")
    assert error.code == "InvalidDomain.NotFound"
    assert error.data["statusCode"] == 404
    assert emulator.api.received == []


@pytest.mark.parametrize(
    ("paths", "options", "code"),
    [
        (["ftp://cdn.example.com/x.ts"], {}, "InvalidObjectPath.Malformed"),
        (["\n"], {}, "MissingParameter"),
        ([f"{EDGE}/v/1/seg0.ts"], {"area": "mars"}, "InvalidArea.ValueNotSupported"),
        ([f"{EDGE}/v/1/seg0.ts"], {"with_header": "not json"}, "InvalidWithHeader.Malformed"),
    ],
)
def test_bad_parameters_are_refused(emulator: Emulator, paths, options, code: str) -> None:
    assert refused(push, emulator.client(), *paths, **options).code == code


def test_options_are_accepted(emulator: Emulator) -> None:
    task_id = push(
        emulator.client(),
        f"{EDGE}/v/1/seg0.ts",
        area="overseas",
        l_2preload=True,
        with_header='{"Accept-Encoding": ["gzip"]}',
    )
    assert [t.status for t in tasks_by_id(emulator.client(), task_id)] == ["Complete"]


def test_daily_quota_is_enforced_and_resets_at_midnight_utc8(make_emulator) -> None:
    emulator = make_emulator(instant(preload_quota=3))
    client = emulator.client()
    push(client, f"{EDGE}/v/1/seg0.ts", f"{EDGE}/v/1/seg1.ts")
    error = refused(push, client, f"{EDGE}/v/2/seg0.ts", f"{EDGE}/v/1/master.m3u8")
    assert error.code == "QuotaExceeded.Preload"
    left = quota(client)
    assert (left.preload_quota, left.preload_remain) == ("3", "1")

    emulator.clock.next_day(8)
    assert quota(client).preload_remain == "3"
    push(client, f"{EDGE}/v/2/seg0.ts", f"{EDGE}/v/1/master.m3u8")
    assert quota(client).preload_remain == "1"


def test_refresh_has_its_own_quota(make_emulator) -> None:
    emulator = make_emulator(instant(refresh_url_quota=1, refresh_dir_quota=1))
    client = emulator.client()
    refresh(client, "File", f"{EDGE}/v/1/seg0.ts")
    assert refused(refresh, client, "File", f"{EDGE}/v/1/seg1.ts").code == "QuotaExceeded.Refresh"
    refresh(client, "Directory", f"{EDGE}/v/1/")
    assert refused(refresh, client, "Directory", f"{EDGE}/v/2/").code == "QuotaExceeded.Refresh"
    left = quota(client)
    assert (left.url_remain, left.dir_remain, left.preload_remain) == ("0", "0", "100000")


def test_calls_beyond_the_rate_are_throttled(make_emulator) -> None:
    # A one-hour window makes "2 calls a window" independent of how fast the test runs.
    emulator = make_emulator(instant(calls_per_second=2, rate_window_seconds=3600))
    client = emulator.client()
    push(client, f"{EDGE}/v/1/seg0.ts")
    push(client, f"{EDGE}/v/1/seg1.ts")
    assert refused(push, client, f"{EDGE}/v/2/seg0.ts").code == "Throttling.User"
    assert quota(client).preload_remain == "99998"  # other actions have their own budget
    assert emulator.api.counters == {"ok": 3, "Throttling.User": 1}


# Tasks and the edge cache


def test_tasks_finish_after_the_delay_on_the_clock(make_emulator) -> None:
    emulator = make_emulator(instant(task_delay=300))
    client = emulator.client()
    task_id = push(client, f"{EDGE}/v/1/seg0.ts?token=a", f"{EDGE}/v/9/missing.ts")
    assert {t.status for t in tasks_by_id(client, task_id)} == {"Refreshing"}
    assert len(emulator.cache) == 0

    emulator.clock.advance(dt.timedelta(minutes=6))
    emulator.api.settle()
    assert f"http://{EDGE}/v/1/seg0.ts?token=a" in emulator.cache
    assert f"http://{EDGE}/v/9/missing.ts" not in emulator.cache
    found = {t.object_path: t for t in tasks_by_id(client, task_id)}
    done, missing = (
        found[f"http://{EDGE}/v/1/seg0.ts?token=a"],
        found[f"http://{EDGE}/v/9/missing.ts"],
    )
    assert (done.status, done.process, done.object_type) == ("Complete", "100%", "preload")
    assert missing.status == "Failed"
    # The origin's 404 is reported in one of Alibaba's documented descriptions.
    assert missing.description == INTERNAL_ERROR
    assert done.task_id == task_id
    assert dt.datetime.strptime(done.creation_time, "%Y-%m-%dT%H:%M:%SZ")


def test_task_lookup_takes_up_to_ten_ids(emulator: Emulator) -> None:
    client = emulator.client()
    first = push(client, f"{EDGE}/v/1/seg0.ts")
    second = push(client, f"{EDGE}/v/1/seg1.ts")
    assert {t.task_id for t in tasks_by_id(client, f"{first},{second}")} == {first, second}
    assert tasks_by_id(client, "12345") == []
    assert refused(tasks_by_id, client, ",".join(["1"] * 11)).code == "InvalidTaskId.Malformed"


def test_refresh_clears_the_edge_cache(emulator: Emulator) -> None:
    client = emulator.client()
    push(client, f"{EDGE}/v/1/seg0.ts", f"{EDGE}/v/1/seg1.ts", f"{EDGE}/v/2/seg0.ts")
    assert len(emulator.cache) == 3

    file_task = refresh(client, "File", f"{EDGE}/v/1/seg0.ts")
    assert f"http://{EDGE}/v/1/seg0.ts" not in emulator.cache
    assert [(t.object_type, t.status) for t in tasks_by_id(client, file_task)] == [
        ("file", "Complete")
    ]

    refresh(client, "Directory", f"{EDGE}/v/1/")
    assert f"http://{EDGE}/v/1/seg1.ts" not in emulator.cache
    assert f"http://{EDGE}/v/2/seg0.ts" in emulator.cache
    assert (
        refused(refresh, client, "Directory", f"{EDGE}/v/2").code == "InvalidObjectPath.Malformed"
    )
    assert refused(refresh, client, "Regex", f"{EDGE}/v/.*").code == (
        "InvalidObjectType.ValueNotSupported"
    )


def test_task_list_filters_and_pages(make_emulator) -> None:
    # More listings than DescribeRefreshTasks' 5 a second: lift the per-action budgets.
    emulator = make_emulator(instant(action_rates={}))
    client = emulator.client()
    before = emulator.clock.now() - dt.timedelta(seconds=5)
    first = push(client, f"{EDGE}/v/1/seg0.ts", f"{EDGE}/v/1/seg1.ts")
    second = push(client, f"{EDGE}/v/2/seg0.ts")
    refresh(client, "File", f"{EDGE}/v/1/seg0.ts")

    def listing(**query: object) -> cdn_models.DescribeRefreshTasksResponseBody:
        request = cdn_models.DescribeRefreshTasksRequest(**query)
        return client.describe_refresh_tasks_with_options(request, RUNTIME).body

    page = listing(object_type="preload", page_size=2, page_number=1)
    assert page.total_count == 3
    assert [t.task_id for t in page.tasks.cdntask] == [second, first]  # newest first
    assert len(listing(object_type="preload", page_size=2, page_number=2).tasks.cdntask) == 1

    exact = listing(object_path=f"http://{EDGE}/v/1/seg1.ts")
    assert [(t.task_id, t.object_type) for t in exact.tasks.cdntask] == [(first, "preload")]
    assert listing(task_id=second).total_count == 1
    assert listing(object_type="file").total_count == 1

    stamp = "%Y-%m-%dT%H:%M:%SZ"
    now = emulator.clock.now() + dt.timedelta(seconds=5)
    window = {"start_time": before.strftime(stamp), "end_time": now.strftime(stamp)}
    assert listing(**window).total_count == 4
    later = emulator.clock.now() + dt.timedelta(minutes=1)
    after = {"start_time": later.strftime(stamp), "end_time": (later + HOUR).strftime(stamp)}
    assert listing(**after).total_count == 0
    bad = {"start_time": "yesterday", "end_time": now.strftime(stamp)}
    assert refused(listing, **bad).code == "InvalidStartTime.Malformed"
    assert refused(listing, page_size=500).code == "InvalidPageSize.ValueNotSupported"


HOUR = dt.timedelta(hours=1)
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def test_task_list_demands_start_and_end_time_together(emulator: Emulator) -> None:
    """help.aliyun.com/document_detail/448062.htm: 400 MissingTimeParameter."""
    client = emulator.client()
    push(client, f"{EDGE}/v/1/seg0.ts")
    start = (emulator.clock.now() - HOUR).strftime(STAMP)
    end = (emulator.clock.now() + HOUR).strftime(STAMP)
    query = cdn_models.DescribeRefreshTasksRequest
    for request in (query(start_time=start), query(end_time=end)):
        error = refused(client.describe_refresh_tasks_with_options, request, RUNTIME)
        assert (error.code, error.status_code if hasattr(error, "status_code") else 400) == (
            "MissingTimeParameter",
            400,
        )
    both = query(start_time=start, end_time=end)
    assert client.describe_refresh_tasks_with_options(both, RUNTIME).body.total_count == 1
    # Neither: the last 3 days.
    assert client.describe_refresh_tasks_with_options(query(), RUNTIME).body.total_count == 1


@pytest.mark.parametrize("mode", ["refuse", "clamp"])
def test_task_list_reaches_back_three_days_only(make_emulator, mode: str) -> None:
    """91158: "只能查询最近 3 天内的数据"; refusing an older StartTime is not documented."""
    emulator = make_emulator(instant(old_start_time=mode))
    client = emulator.client()
    push(client, f"{EDGE}/v/1/seg0.ts")
    now = emulator.clock.now()
    old = cdn_models.DescribeRefreshTasksRequest(
        start_time=(now - dt.timedelta(days=4)).strftime(STAMP),
        end_time=(now + HOUR).strftime(STAMP),
    )
    if mode == "refuse":
        assert refused(client.describe_refresh_tasks_with_options, old, RUNTIME).code == (
            "InvalidTime"
        )
    else:
        assert client.describe_refresh_tasks_with_options(old, RUNTIME).body.total_count == 1


def test_tasks_are_forgotten_after_three_days(emulator: Emulator) -> None:
    client = emulator.client()
    old = push(client, f"{EDGE}/v/1/seg0.ts")
    emulator.clock.advance(dt.timedelta(days=2, hours=23))
    recent = push(client, f"{EDGE}/v/1/seg1.ts")
    assert {t.task_id for t in tasks_by_id(client, f"{old},{recent}")} == {old, recent}
    emulator.clock.advance(dt.timedelta(hours=2))
    assert {t.task_id for t in tasks_by_id(client, f"{old},{recent}")} == {recent}
    listing = client.describe_refresh_tasks_with_options(
        cdn_models.DescribeRefreshTasksRequest(object_type="preload"), RUNTIME
    ).body
    assert [t.task_id for t in listing.tasks.cdntask] == [recent]


def test_each_action_has_its_own_rate(make_emulator) -> None:
    """DescribeRefreshTasks 5/s (91158), DescribeRefreshTaskById 30/s (448062), push 50/s."""
    emulator = make_emulator(instant(rate_window_seconds=3600))
    client = emulator.client()
    listing = cdn_models.DescribeRefreshTasksRequest()
    for _ in range(5):
        client.describe_refresh_tasks_with_options(listing, RUNTIME)
    error = refused(client.describe_refresh_tasks_with_options, listing, RUNTIME)
    assert error.code == "Throttling.User"
    task_id = push(client, f"{EDGE}/v/1/seg0.ts")
    for _ in range(30):
        tasks_by_id(client, task_id)
    assert refused(tasks_by_id, client, task_id).code == "Throttling.User"
    for i in range(49):
        push(client, f"{EDGE}/v/1/seg0.ts?n={i}")
    assert refused(push, client, f"{EDGE}/v/1/seg1.ts").code == "Throttling.User"


@pytest.mark.parametrize("origin_4xx", [INTERNAL_ERROR, ORIGIN_4XX])
def test_failed_prefetches_carry_documented_descriptions(make_emulator, origin_4xx: str) -> None:
    emulator = make_emulator(instant(origin_4xx_description=origin_4xx))
    client = emulator.client()
    task_id = push(
        client, f"{EDGE}/v/err/busy.ts", f"{EDGE}/v/err/slow.ts", f"{EDGE}/v/9/missing.ts"
    )
    found = {t.object_path.rsplit("/", 1)[-1]: t for t in tasks_by_id(client, task_id)}
    assert {name: (t.status, t.description) for name, t in found.items()} == {
        "busy.ts": ("Failed", ORIGIN_5XX),
        "slow.ts": ("Failed", ORIGIN_TIMEOUT),
        "missing.ts": ("Failed", origin_4xx),
    }


# Faults


@pytest.mark.parametrize("kind", ["server_error", "drop"])
def test_transport_faults_reach_the_sdk_as_unretryable(make_emulator, kind: str) -> None:
    emulator = make_emulator(faults=Faults(**{kind: 1.0}))
    with pytest.raises(UnretryableException):
        push(emulator.client(), f"{EDGE}/v/1/seg0.ts")
    assert emulator.api.counters == {f"fault:{kind}": 1}
    assert emulator.api.received == []


def test_throttling_fault_uses_alibabas_code(make_emulator) -> None:
    emulator = make_emulator(faults=Faults(rate_limited=1.0))
    error = refused(push, emulator.client(), f"{EDGE}/v/1/seg0.ts")
    assert (error.code, error.data["statusCode"]) == ("Throttling", 503)
    assert emulator.api.counters == {"fault:rate_limited": 1}
