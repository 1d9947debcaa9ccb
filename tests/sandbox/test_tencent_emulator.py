"""The official Tencent Cloud SDK against the sandbox's CDN API emulator."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from tencentcloud.cdn.v20180606 import cdn_client, models
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from cdn_preheat import config
from cdn_preheat.sandbox.core import LoopbackServer
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.sandbox.tencent import UTC8, TencentLimits

DELAY = 30.0  # task delay on the sandbox clock; tests advance the clock past it


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=2, segments=5, tencent_limits=TencentLimits(task_delay=DELAY)) as box:
        yield box


def client(
    box: Sandbox,
    secret_id: str = config.SANDBOX_TENCENT_SECRET_ID,
    secret_key: str = config.SANDBOX_TENCENT_SECRET_KEY,
    proxy: str | None = None,
) -> cdn_client.CdnClient:
    netloc = box.endpoints["tencent"].removeprefix("http://")
    http = HttpProfile(protocol="http", endpoint=netloc, reqTimeout=10, proxy=proxy)
    return cdn_client.CdnClient(
        Credential(secret_id, secret_key), "", ClientProfile(httpProfile=http)
    )


def call(cdn: cdn_client.CdnClient, action: str, **params: Any) -> Any:
    request = getattr(models, f"{action}Request")()
    for name, value in params.items():
        setattr(request, name, value)
    return getattr(cdn, action)(request)


def error_code(cdn: cdn_client.CdnClient, action: str, **params: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as caught:
        call(cdn, action, **params)
    return str(caught.value.code)


def edge_urls(box: Sandbox, count: int, video: str = "demo-1") -> list[str]:
    return [box.edge_url(p) for p in box.origin.catalog_paths(video)[:count]]


def finish_tasks(box: Sandbox) -> None:
    box.clock.advance(dt.timedelta(seconds=DELAY + 1))


# -- signatures ---------------------------------------------------------------------


def test_good_signature_is_accepted_and_answer_is_json(sandbox: Sandbox) -> None:
    answer = call(client(sandbox), "DescribePushQuota")
    assert {q.Area for q in answer.UrlPush} == {"mainland", "overseas"}
    assert all(q.Batch == 500 and q.Available == q.Total == 100_000 for q in answer.UrlPush)
    assert answer.RequestId
    assert sandbox.tencent.outcomes["ok"] == 1


def test_wrong_key_and_unknown_id_are_refused(sandbox: Sandbox) -> None:
    wrong_key = client(sandbox, secret_key="not-the-key")
    assert error_code(wrong_key, "DescribePushQuota") == "AuthFailure.SignatureFailure"
    unknown_id = client(sandbox, secret_id="AKIDnobody")
    assert error_code(unknown_id, "DescribePushQuota") == "AuthFailure.SecretIdNotFound"
    assert sandbox.tencent.outcomes["auth"] == 2


class _Recorder(BaseHTTPRequestHandler):
    """Keeps the one request the SDK sends, answers 500 so the SDK gives up."""

    def do_POST(self) -> None:
        recorded = self.server.app  # type: ignore[attr-defined]
        recorded["headers"] = dict(self.headers.items())
        recorded["body"] = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_replayed_request_is_checked_against_the_wire(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK signs for the emulator and sends through the recorder as its HTTP proxy.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    recorded: dict[str, Any] = {}
    recorder = LoopbackServer(_Recorder, recorded).start()
    try:
        with pytest.raises(TencentCloudSDKException):
            call(client(sandbox, proxy=recorder.url), "PushUrlsCache", Urls=edge_urls(sandbox, 1))
    finally:
        recorder.stop()
    headers = {k: v for k, v in recorded["headers"].items() if k.lower() != "content-length"}
    url = sandbox.endpoints["tencent"] + "/"

    genuine = httpx.post(url, headers=headers, content=recorded["body"]).json()["Response"]
    assert "TaskId" in genuine

    body = json.loads(recorded["body"])
    body["Urls"] = edge_urls(sandbox, 2)[1:]
    tampered = httpx.post(url, headers=headers, content=json.dumps(body)).json()["Response"]
    assert tampered["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert sandbox.tencent.received_urls() == edge_urls(sandbox, 1)


# -- limits ---------------------------------------------------------------------------


def test_batch_limit(sandbox: Sandbox) -> None:
    urls = [sandbox.edge_url(f"/vod/demo-1/v0/seg{i}.ts") for i in range(501)]
    assert error_code(client(sandbox), "PushUrlsCache", Urls=urls) == (
        "LimitExceeded.CdnPushExceedBatchLimit"
    )
    assert sandbox.tencent.received() == []
    assert sandbox.tencent.quota_used() == 0


def test_rate_limit_per_action(sandbox: Sandbox) -> None:
    sandbox.tencent.limits.requests_per_second = 2
    cdn = client(sandbox)
    codes = []
    for _ in range(12):
        try:
            call(cdn, "DescribePushQuota")
            codes.append("ok")
        except TencentCloudSDKException as exc:
            codes.append(exc.code)
    assert "RequestLimitExceeded" in codes
    assert sandbox.tencent.outcomes["rate_limited"] == codes.count("RequestLimitExceeded")
    # Another action has its own budget.
    call(cdn, "DescribePurgeQuota")


def test_daily_quota_rejects_whole_request_and_resets_at_midnight_utc8(sandbox: Sandbox) -> None:
    sandbox.tencent.limits.push_per_day = 5
    cdn = client(sandbox)
    call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 3))
    assert error_code(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 3)) == (
        "LimitExceeded.CdnPushExceedDayLimit"
    )
    quota = {q.Area: q.Available for q in call(cdn, "DescribePushQuota").UrlPush}
    assert quota == {"mainland": 2, "overseas": 5}
    assert sandbox.tencent.outcomes["quota"] == 1

    sandbox.clock.next_day(8)
    call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 5))
    assert sandbox.tencent.quota_used("mainland") == 5


def test_global_push_spends_both_areas(sandbox: Sandbox) -> None:
    cdn = client(sandbox)
    call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 4), Area="global")
    quota = {q.Area: q.Available for q in call(cdn, "DescribePushQuota").UrlPush}
    assert quota == {"mainland": 99_996, "overseas": 99_996}


def test_foreign_host_is_refused(sandbox: Sandbox) -> None:
    urls = [*edge_urls(sandbox, 1), "http://cdn.example.com/vod/demo-1/master.m3u8"]
    assert error_code(client(sandbox), "PushUrlsCache", Urls=urls) == (
        "ResourceNotFound.CdnHostNotExists"
    )
    assert sandbox.tencent.received() == []


def test_unknown_parameter_and_action(sandbox: Sandbox) -> None:
    cdn = client(sandbox)
    assert cdn.call_json("DescribePushQuota", {})["Response"]["UrlPush"]
    with pytest.raises(TencentCloudSDKException) as caught:
        cdn.call_json("DescribePushQuota", {"Bogus": 1})
    assert caught.value.code == "UnknownParameter"
    with pytest.raises(TencentCloudSDKException) as caught:
        cdn.call_json("PushObjectCache", {})
    assert caught.value.code == "InvalidAction"


# -- tasks ----------------------------------------------------------------------------


def test_task_moves_from_process_to_done_or_invalid(sandbox: Sandbox) -> None:
    cdn = client(sandbox)
    good = edge_urls(sandbox, 2)
    missing = sandbox.edge_url("/vod/demo-1/v0/seg404.ts")
    task_id = call(cdn, "PushUrlsCache", Urls=[*good, missing]).TaskId

    logs = call(cdn, "DescribePushTasks", TaskId=task_id).PushLogs
    assert {log.Status for log in logs} == {"process"}
    assert good[0] not in sandbox.cache

    finish_tasks(sandbox)
    logs = call(cdn, "DescribePushTasks", TaskId=task_id).PushLogs
    assert {log.Url: log.Status for log in logs} == {
        good[0]: "done",
        good[1]: "done",
        missing: "invalid",
    }
    assert all(log.Percent == 100 for log in logs if log.Status == "done")
    assert good[0] in sandbox.cache and missing not in sandbox.cache
    # A mainland prefetch fills the middle layer: the edge's first answer is a miss
    # served by the inner cluster (SDK PushUrlsCacheRequest.Layer), its next a hit.
    probe = {"Range": "bytes=0-0"}
    first = httpx.get(good[0], headers=probe).headers.get_list("x-cache-lookup")
    assert first == ["Cache Miss", "Hit From Inner Cluster"]
    assert httpx.get(good[0]).headers.get_list("x-cache-lookup") == first  # fills the edge
    assert httpx.get(good[0], headers=probe).headers["x-cache-lookup"] == "Hit From MemCache"


def test_fail_rate_makes_urls_fail(sandbox: Sandbox) -> None:
    sandbox.tencent.limits.fail_rate = 1.0
    cdn = client(sandbox)
    task_id = call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 2)).TaskId
    finish_tasks(sandbox)
    assert {log.Status for log in call(cdn, "DescribePushTasks", TaskId=task_id).PushLogs} == {
        "fail"
    }
    assert len(sandbox.cache) == 0


def test_describe_push_tasks_filters_and_pages(sandbox: Sandbox) -> None:
    cdn = client(sandbox)
    first = edge_urls(sandbox, 6)
    second = edge_urls(sandbox, 3, video="demo-2")
    call(cdn, "PushUrlsCache", Urls=first)
    call(cdn, "PushUrlsCache", Urls=second, Area="overseas")
    now = sandbox.clock.now()
    window = {
        "StartTime": (now - dt.timedelta(minutes=1)).astimezone(UTC8).strftime("%Y-%m-%d %H:%M:%S"),
        "EndTime": (now + dt.timedelta(minutes=1)).astimezone(UTC8).strftime("%Y-%m-%d %H:%M:%S"),
    }
    everything = call(cdn, "DescribePushTasks", **window, Limit=100)
    assert everything.TotalCount == 9
    assert [log.Url for log in everything.PushLogs][:3] == list(reversed(second))  # newest first

    pages = [call(cdn, "DescribePushTasks", **window, Offset=o, Limit=4) for o in (0, 4, 8)]
    assert [len(p.PushLogs) for p in pages] == [4, 4, 1]
    assert {log.Url for p in pages for log in p.PushLogs} == set(first + second)

    overseas = call(cdn, "DescribePushTasks", **window, Area="overseas")
    assert {log.Url for log in overseas.PushLogs} == set(second)
    one = call(cdn, "DescribePushTasks", **window, Keyword=first[0])
    assert [log.Url for log in one.PushLogs] == [first[0]]
    assert call(cdn, "DescribePushTasks", **window, Status="done").TotalCount == 0

    later = (now + dt.timedelta(hours=1)).astimezone(UTC8).strftime("%Y-%m-%d %H:%M:%S")
    assert call(cdn, "DescribePushTasks", StartTime=later, EndTime=later).TotalCount == 0
    assert error_code(cdn, "DescribePushTasks") == "MissingParameter"


def _window(box: Sandbox, minutes: int = 1) -> dict[str, str]:
    now = box.clock.now()
    stamp = "%Y-%m-%d %H:%M:%S"
    return {
        "StartTime": (now - dt.timedelta(minutes=minutes)).astimezone(UTC8).strftime(stamp),
        "EndTime": (now + dt.timedelta(minutes=1)).astimezone(UTC8).strftime(stamp),
    }


def test_describe_push_tasks_limit_has_no_documented_maximum(sandbox: Sandbox) -> None:
    """SDK DescribePushTasksRequest.Limit: "默认为 20", no maximum; settable to reject or cap."""
    cdn = client(sandbox)
    call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 12))
    assert len(call(cdn, "DescribePushTasks", **_window(sandbox)).PushLogs) == 12
    assert len(call(cdn, "DescribePushTasks", **_window(sandbox), Limit=5000).PushLogs) == 12
    sandbox.tencent.limits.push_tasks_max_limit = 5
    code = error_code(cdn, "DescribePushTasks", **_window(sandbox), Limit=6)
    assert code == "InvalidParameter.CdnParamError"
    sandbox.tencent.limits.push_tasks_over_limit = "cap"
    capped = call(cdn, "DescribePushTasks", **_window(sandbox), Limit=1000)
    assert (len(capped.PushLogs), capped.TotalCount) == (5, 12)


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_window_pages_are_the_filtered_log_paged(sandbox: Sandbox, order: str) -> None:
    """A window alone is answered from the time index: the same pages as a full filter.

    A Keyword (the edge's domain, which every log matches) makes the emulator
    filter the whole log; the pages must not differ, and logs pushed outside
    the window stay out of both.
    """
    sandbox.tencent.limits.push_log_order = order  # type: ignore[assignment]
    cdn = client(sandbox)
    stamp = "%Y-%m-%d %H:%M:%S"
    call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 4))
    sandbox.clock.advance(dt.timedelta(seconds=10))
    inside = call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 5, video="demo-2")).TaskId
    sandbox.clock.advance(dt.timedelta(seconds=1))
    also = call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 3)).TaskId
    sandbox.clock.advance(dt.timedelta(seconds=10))
    call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 2, video="demo-2"))
    now = sandbox.clock.now().astimezone(UTC8)
    window = {
        "StartTime": (now - dt.timedelta(seconds=11)).strftime(stamp),
        "EndTime": (now - dt.timedelta(seconds=10)).strftime(stamp),
    }
    domain = sandbox.edge_url("/").split("/")[2]

    def pages(**criteria: Any) -> list[list[tuple[str, str]]]:
        return [
            [(log.TaskId, log.Url) for log in call(
                cdn, "DescribePushTasks", **window, **criteria, Offset=offset, Limit=3
            ).PushLogs]
            for offset in (0, 3, 6, 9)
        ]  # fmt: skip

    indexed, scanned = pages(), pages(Keyword=domain)
    assert indexed == scanned
    assert [len(page) for page in indexed] == [3, 3, 2, 0]
    assert {task for page in indexed for task, _ in page} == {inside, also}
    assert call(cdn, "DescribePushTasks", **window).TotalCount == 8


def test_push_logs_are_forgotten_after_30_days(sandbox: Sandbox) -> None:
    """ "预热记录保存30天" (cloud.tencent.com/document/api/228/12840)."""
    cdn = client(sandbox)
    old = call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 2)).TaskId
    sandbox.clock.advance(dt.timedelta(days=29, hours=23))
    recent = call(cdn, "PushUrlsCache", Urls=edge_urls(sandbox, 1, video="demo-2")).TaskId
    assert call(cdn, "DescribePushTasks", TaskId=old).TotalCount == 2
    sandbox.clock.advance(dt.timedelta(hours=2))
    assert call(cdn, "DescribePushTasks", TaskId=old).TotalCount == 0
    window = _window(sandbox, minutes=60 * 24 * 31)
    assert [log.TaskId for log in call(cdn, "DescribePushTasks", **window).PushLogs] == [recent]


def test_push_log_order_is_settable(sandbox: Sandbox) -> None:
    cdn = client(sandbox)
    urls = edge_urls(sandbox, 3)
    call(cdn, "PushUrlsCache", Urls=urls)
    logs = call(cdn, "DescribePushTasks", **_window(sandbox)).PushLogs
    assert [log.Url for log in logs] == list(reversed(urls))
    sandbox.tencent.limits.push_log_order = "oldest_first"
    logs = call(cdn, "DescribePushTasks", **_window(sandbox)).PushLogs
    assert [log.Url for log in logs] == urls


# -- purge ----------------------------------------------------------------------------


def test_purge_urls_and_paths_empty_the_cache(sandbox: Sandbox) -> None:
    cdn = client(sandbox)
    urls = edge_urls(sandbox, 4)
    call(cdn, "PushUrlsCache", Urls=urls)
    finish_tasks(sandbox)
    sandbox.tencent.settle()
    assert all(url in sandbox.cache for url in urls)

    url_task = call(cdn, "PurgeUrlsCache", Urls=urls[:1]).TaskId
    path_task = call(
        cdn, "PurgePathCache", Paths=[sandbox.edge_url("/vod/demo-1/v0/")], FlushType="flush"
    ).TaskId
    finish_tasks(sandbox)
    logs = call(cdn, "DescribePurgeTasks", TaskId=url_task).PurgeLogs
    assert [(log.Url, log.Status, log.PurgeType) for log in logs] == [(urls[0], "done", "url")]
    path_logs = call(cdn, "DescribePurgeTasks", TaskId=path_task, PurgeType="path").PurgeLogs
    assert [(log.Status, log.FlushType) for log in path_logs] == [("done", "flush")]
    cached = [url in sandbox.cache for url in urls]
    # master and v1/v2 playlists stay; master purged by URL; v0/ by path.
    assert cached == [False, False, True, True]


def test_purge_limits(sandbox: Sandbox) -> None:
    sandbox.tencent.limits.purge_path_per_day = 1
    cdn = client(sandbox)
    too_many = [sandbox.edge_url(f"/x{i}.ts") for i in range(1001)]
    assert error_code(cdn, "PurgeUrlsCache", Urls=too_many) == (
        "LimitExceeded.CdnPurgeUrlExceedBatchLimit"
    )
    call(cdn, "PurgePathCache", Paths=[sandbox.edge_url("/a/")], FlushType="delete")
    assert error_code(
        cdn, "PurgePathCache", Paths=[sandbox.edge_url("/b/")], FlushType="delete"
    ) == ("LimitExceeded.CdnPurgePathExceedDayLimit")
    quota = call(cdn, "DescribePurgeQuota")
    assert {(q.Area, q.Available) for q in quota.PathPurge} == {("mainland", 0), ("overseas", 0)}
    assert {q.Batch for q in quota.UrlPurge} == {1000}


# -- statistics -----------------------------------------------------------------------


def test_cdn_data_is_deterministic(sandbox: Sandbox) -> None:
    cdn = client(sandbox)
    params = {
        "StartTime": "2024-05-01 00:00:00",
        "EndTime": "2024-05-01 02:00:00",
        "Metric": "flux",
        "Interval": "hour",
        "Domains": [sandbox.edge.netloc],
    }
    first, again = call(cdn, "DescribeCdnData", **params), call(cdn, "DescribeCdnData", **params)
    points = first.Data[0].CdnData[0].DetailData
    assert [p.Time for p in points] == [f"2024-05-01 0{h}:00:00" for h in range(3)]
    assert [p.Value for p in points] == [p.Value for p in again.Data[0].CdnData[0].DetailData]
    assert first.Data[0].CdnData[0].SummarizedData.Value == sum(p.Value for p in points)
    bad = {**params, "Domains": ["cdn.example.com"]}
    assert error_code(cdn, "DescribeCdnData", **bad) == "ResourceNotFound.CdnHostNotExists"
    assert error_code(
        cdn, "DescribeCdnData", **{**params, "Interval": "min", "EndTime": "2024-05-03 00:00:00"}
    ) == ("InvalidParameter.CdnInvalidParamInterval")


def test_domain_logs(sandbox: Sandbox) -> None:
    cdn = client(sandbox)
    answer = call(
        cdn,
        "DescribeCdnDomainLogs",
        Domain=sandbox.edge.netloc,
        StartTime="2024-05-01 00:00:00",
        EndTime="2024-05-01 23:59:59",
        Limit=10,
    )
    assert answer.TotalCount == 24
    assert len(answer.DomainLogs) == 10
    assert answer.DomainLogs[0].StartTime == "2024-05-01 00:00:00"
    assert answer.DomainLogs[0].Area == "mainland"


# -- faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("server_error", "ServerNetworkError"),
        ("drop", "ClientNetworkError"),
        ("rate_limited", "RequestLimitExceeded"),
    ],
)
def test_faults_as_the_sdk_reports_them(sandbox: Sandbox, fault: str, code: str) -> None:
    setattr(sandbox.faults, fault, 1.0)
    assert error_code(client(sandbox), "PushUrlsCache", Urls=edge_urls(sandbox, 1)) == code
    assert sandbox.tencent.received() == []
    setattr(sandbox.faults, fault, 0.0)
    call(client(sandbox), "PushUrlsCache", Urls=edge_urls(sandbox, 1))


def test_received_log_is_thread_safe_and_exact(sandbox: Sandbox) -> None:
    urls = [sandbox.edge_url(f"/vod/demo-1/v0/seg{i}.ts?n={n}") for n in range(8) for i in range(5)]
    batches = [urls[i : i + 5] for i in range(0, len(urls), 5)]

    def push(batch: list[str]) -> None:
        call(client(sandbox), "PushUrlsCache", Urls=batch)

    threads = [threading.Thread(target=push, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = sandbox.tencent.received_urls()
    assert sorted(received) == sorted(urls)
    assert len({push.task_id for push in sandbox.tencent.received()}) == len(batches)


# -- a push never waits behind the emulator's bookkeeping (bench/push.py) ------------


def test_a_push_leaves_due_tasks_to_the_next_call_that_reads_them(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    cdn = client(sandbox)
    urls = edge_urls(sandbox, 6)
    first = call(cdn, "PushUrlsCache", Urls=urls[:3]).TaskId
    finish_tasks(sandbox)
    api = sandbox.tencent
    finished: list[str] = []
    original = api._finish

    def counted(record: Any, now: dt.datetime) -> None:
        finished.append(record.task_id)
        original(record, now)

    monkeypatch.setattr(api, "_finish", counted)
    call(cdn, "PushUrlsCache", Urls=urls[3:])
    assert finished == []  # the push answered without finishing the first task's logs
    logs = call(cdn, "DescribePushTasks", TaskId=first).PushLogs
    assert finished == [first] * 3
    assert {log.Status for log in logs} == {"done"}


def test_settling_lets_a_waiting_request_take_the_lock_between_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cdn_preheat.sandbox.tencent import SETTLE_SLICE

    with Sandbox(videos=1, segments=200, tencent_limits=TencentLimits(task_delay=DELAY)) as box:
        urls = edge_urls(box, 5 * SETTLE_SLICE)
        call(client(box), "PushUrlsCache", Urls=urls)
        finish_tasks(box)
        api = box.tencent
        finished: list[str] = []
        took_lock_after: list[int] = []
        original = api._finish

        def waiter() -> None:
            with api._lock:
                took_lock_after.append(len(finished))

        thread = threading.Thread(target=waiter)

        def slow_first(record: Any, now: dt.datetime) -> None:
            if not finished:
                thread.start()  # blocks on the lock the settle holds
                threading.Event().wait(0.1)
            finished.append(record.url)
            original(record, now)

        monkeypatch.setattr(api, "_finish", slow_first)
        api.settle()
        thread.join(timeout=5)
        assert len(finished) == len(urls)  # every due log finished
        assert took_lock_after and took_lock_after[0] < len(urls)  # not after all of them
