"""The official qiniu SDK, unmodified, against the Qiniu emulator on loopback."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from qiniu import Auth, BucketManager, CdnManager
from qiniu.http import _post_with_auth_and_headers
from qiniu.http.endpoint import Endpoint
from qiniu.http.region import Region, ServiceName

from cdn_preheat.sandbox.core import EdgeCache, Faults, SandboxClock
from cdn_preheat.sandbox.qiniu import QiniuEmulator, QiniuLimits

AK, SK = "test-access-key", "test-secret-key"
EDGE = "cdn.example.test:8080"
TASK_DELAY = 5.0


def url(path: str) -> str:
    return f"http://{EDGE}{path}"


def origin_has(path: str) -> bool:
    """The origin stand-in: everything except /missing/..."""
    return not path.startswith("/missing/")


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
def cache() -> EdgeCache:
    return EdgeCache()


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=1)


@pytest.fixture
def api(clock: SandboxClock, cache: EdgeCache, faults: Faults) -> Iterator[QiniuEmulator]:
    # An account with directory refresh enabled (off by default on Qiniu).
    limits = QiniuLimits(task_delay=TASK_DELAY, refresh_dir_enabled=True)
    emulator = QiniuEmulator(clock, cache, origin_has, EDGE, AK, SK, limits, faults)
    server = emulator.start()
    yield emulator
    server.stop()


def manager(api: QiniuEmulator, secret_key: str = SK, access_key: str = AK) -> Any:
    assert api.server is not None
    cdn = CdnManager(Auth(access_key, secret_key))
    cdn.server = api.server.url
    return cdn


@pytest.fixture
def cdn(api: QiniuEmulator) -> Any:
    return manager(api)


def query(api: QiniuEmulator, kind: str, **request: Any) -> dict[str, Any]:
    """A task-list query, signed the way CdnManager signs its own calls."""
    assert api.server is not None
    ret, info = _post_with_auth_and_headers(
        f"{api.server.url}/v2/tune/{kind}/list",
        json.dumps(request),
        Auth(AK, SK),
        {"Content-Type": "application/json"},
    )
    assert info.status_code == 200, info.text_body
    return dict(ret)


def body(info: Any) -> dict[str, Any]:
    return dict(json.loads(info.text_body))


# Signatures and headers --------------------------------------------------------


def test_prefetch_answers_request_id_quota_and_x_reqid(api: QiniuEmulator, cdn: Any) -> None:
    urls = [url("/v/a.ts"), url("/v/b.ts?token=1")]
    ret, info = cdn.prefetch_urls(urls)
    assert info.status_code == 200
    assert info.req_id
    assert ret["code"] == 200 and ret["error"] == "success"
    assert ret["requestId"]
    assert set(ret["taskIds"]) == set(urls)
    assert ret["invalidUrls"] == []
    assert (ret["quotaDay"], ret["surplusDay"]) == (100, 98)
    assert api.received_urls() == urls
    assert api.received()[0].request_id == ret["requestId"]


@pytest.mark.parametrize(("access_key", "secret_key"), [(AK, "wrong"), ("other-ak", SK)])
def test_wrong_credentials_are_401_bad_token(
    api: QiniuEmulator, access_key: str, secret_key: str
) -> None:
    ret, info = manager(api, secret_key, access_key).prefetch_urls([url("/v/a.ts")])
    assert ret is None
    assert info.status_code == 401
    assert body(info) == {"code": 401, "error": "bad token"}
    assert info.req_id
    assert api.received() == []
    assert api.outcomes["auth"] == 1


def test_unsigned_and_tampered_requests_are_refused(api: QiniuEmulator) -> None:
    assert api.server is not None
    endpoint = f"{api.server.url}/v2/tune/prefetch"
    payload = {"urls": [url("/v/a.ts")]}
    unsigned = httpx.post(endpoint, json=payload)
    assert unsigned.status_code == 401
    assert unsigned.headers["X-Reqid"]
    # A token for another path must not open this one.
    token = Auth(AK, SK).token_of_request(f"{api.server.url}/v2/tune/flux")
    forged = httpx.post(endpoint, json=payload, headers={"Authorization": f"QBox {token}"})
    assert forged.status_code == 401
    assert api.received() == []


# Limits and codes ---------------------------------------------------------------


def test_more_than_twenty_urls_are_refused_whole(api: QiniuEmulator, cdn: Any) -> None:
    ret, info = cdn.prefetch_urls([url(f"/v/{i}.ts") for i in range(21)])
    assert ret is None
    assert info.status_code == 400
    assert body(info)["code"] == 400000
    assert api.received() == []
    assert api.outcomes["batch"] == 1


def test_invalid_urls_are_listed_and_the_rest_accepted(api: QiniuEmulator, cdn: Any) -> None:
    good = url("/v/a.ts")
    ret, _ = cdn.prefetch_urls([good, "ftp://x/y.ts", "not a url"])
    assert ret["invalidUrls"] == ["ftp://x/y.ts", "not a url"]
    assert ret["surplusDay"] == 99
    ret, info = cdn.prefetch_urls(["ftp://x/y.ts"])
    assert ret is None
    assert body(info) == {"code": 400031, "error": "invalid url", "invalidUrls": ["ftp://x/y.ts"]}
    assert api.received_urls() == [good]


def test_url_on_another_host_is_400032(api: QiniuEmulator, cdn: Any) -> None:
    ret, info = cdn.prefetch_urls([url("/v/a.ts"), "http://elsewhere.test/v/a.ts"])
    assert ret is None
    assert body(info)["code"] == 400032
    assert body(info)["invalidUrls"] == ["http://elsewhere.test/v/a.ts"]
    assert api.received() == []


def test_url_submitted_again_while_processing_is_400037(
    api: QiniuEmulator, cdn: Any, clock: SandboxClock
) -> None:
    cdn.prefetch_urls([url("/v/a.ts")])
    ret, info = cdn.prefetch_urls([url("/v/a.ts"), url("/v/b.ts")])
    assert ret is None
    assert body(info)["code"] == 400037
    assert body(info)["invalidUrls"] == [url("/v/a.ts")]
    clock.advance(dt.timedelta(seconds=TASK_DELAY + 1))
    ret, _ = cdn.prefetch_urls([url("/v/a.ts"), url("/v/b.ts")])
    assert ret["code"] == 200
    assert Counter(api.received_urls()) == {url("/v/a.ts"): 2, url("/v/b.ts"): 1}


def test_daily_quota_refuses_then_resets_at_china_midnight(
    api: QiniuEmulator, cdn: Any, clock: SandboxClock
) -> None:
    api.limits.prefetch_quota = 30
    ret, _ = cdn.prefetch_urls([url(f"/v/{i}.ts") for i in range(20)])
    assert (ret["quotaDay"], ret["surplusDay"]) == (30, 10)
    ret, info = cdn.prefetch_urls([url(f"/w/{i}.ts") for i in range(20)])
    assert ret is None
    assert body(info)["code"] == 400033
    clock.next_day(8)
    ret, _ = cdn.prefetch_urls([url(f"/w/{i}.ts") for i in range(20)])
    assert (ret["quotaDay"], ret["surplusDay"]) == (30, 10)
    assert len(api.received_urls()) == 40


def test_urls_per_second_over_the_limit_is_403024(api: QiniuEmulator, cdn: Any) -> None:
    api.limits.urls_per_second = 30
    ret, _ = cdn.prefetch_urls([url(f"/v/{i}.ts") for i in range(20)])
    assert ret["code"] == 200
    ret, info = cdn.prefetch_urls([url(f"/w/{i}.ts") for i in range(20)])
    assert ret is None
    assert info.status_code == 403
    assert body(info) == {"code": 403024, "error": "request too frequently"}
    assert api.outcomes == Counter({"ok": 1, "rate_limited": 1})


def test_injected_codes_are_answered_once_each(api: QiniuEmulator, cdn: Any) -> None:
    api.inject(500000)
    api.inject(403022)
    _, first = cdn.prefetch_urls([url("/v/a.ts")])
    _, second = cdn.prefetch_urls([url("/v/a.ts")])
    ret, _ = cdn.prefetch_urls([url("/v/a.ts")])
    assert (first.status_code, body(first)["code"]) == (500, 500000)
    assert (second.status_code, body(second)["code"]) == (403, 403022)
    assert ret["code"] == 200


def test_faults_bad_gateway_rate_limit_and_dropped_connection(api: QiniuEmulator, cdn: Any) -> None:
    api.faults.server_error = 1.0
    ret, info = cdn.prefetch_urls([url("/v/a.ts")])
    assert ret is None
    assert info.status_code == 502
    assert "<html>" in info.text_body
    api.faults.server_error, api.faults.rate_limited = 0.0, 1.0
    _, info = cdn.prefetch_urls([url("/v/a.ts")])
    assert body(info)["code"] == 403024
    api.faults.rate_limited, api.faults.drop = 0.0, 1.0
    ret, info = cdn.prefetch_urls([url("/v/a.ts")])
    assert ret is None
    assert info.status_code == -1
    assert info.exception is not None
    assert api.received() == []


def test_concurrent_batches_are_each_logged_once(api: QiniuEmulator) -> None:
    api.limits.prefetch_quota = 1000
    batches = [[url(f"/v/{b}/{i}.ts") for i in range(20)] for b in range(8)]
    threads = [threading.Thread(target=manager(api).prefetch_urls, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = api.received_urls()
    assert sorted(received) == sorted(u for b in batches for u in b)
    assert len({r.request_id for r in api.received()}) == 8


# Tasks and queries ----------------------------------------------------------------


def test_tasks_finish_on_the_clock_and_fill_the_edge_cache(
    api: QiniuEmulator, cdn: Any, clock: SandboxClock, cache: EdgeCache
) -> None:
    here, missing = url("/v/a.ts?sign=x&t=1"), url("/missing/b.ts")
    ret, _ = cdn.prefetch_urls([here, missing])
    listed = query(api, "prefetch", requestId=ret["requestId"])
    assert {i["state"] for i in listed["items"]} == {"processing"}
    assert here not in cache
    clock.advance(dt.timedelta(seconds=TASK_DELAY + 1))
    api.settle()
    assert here in cache
    assert url("/missing/b.ts") not in cache
    items = {i["url"]: i for i in query(api, "prefetch", requestId=ret["requestId"])["items"]}
    assert items[here]["state"] == "success" and items[here]["progress"] == 100
    assert items[missing]["state"] == "failure"
    assert "404" in items[missing]["stateDetail"]
    assert items[missing]["createAt"] <= items[missing]["endAt"]


def test_list_query_filters_and_pages(api: QiniuEmulator, cdn: Any, clock: SandboxClock) -> None:
    first, _ = cdn.prefetch_urls([url("/v/1.ts"), url("/v/2.ts"), url("/missing/3.ts")])
    cdn.prefetch_urls([url("/v/4.ts")])
    clock.advance(dt.timedelta(seconds=TASK_DELAY + 1))
    cdn.prefetch_urls([url("/v/5.ts")])
    by_request = query(api, "prefetch", requestId=first["requestId"])
    assert by_request["total"] == 3
    by_url = query(api, "prefetch", urls=[url("/v/4.ts"), url("/v/5.ts")])
    assert [i["url"] for i in by_url["items"]] == [url("/v/5.ts"), url("/v/4.ts")]  # newest first
    assert query(api, "prefetch", state="failure")["total"] == 1
    assert query(api, "prefetch", state="processing")["total"] == 1
    pages = [query(api, "prefetch", pageNo=n, pageSize=2) for n in range(3)]
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert {p["total"] for p in pages} == {5}
    tomorrow = (clock.now() + dt.timedelta(days=1)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert query(api, "prefetch", startTime=tomorrow.strftime("%Y-%m-%d"))["total"] == 0


def test_refresh_clears_urls_and_dirs_from_the_edge_cache(
    api: QiniuEmulator, cdn: Any, clock: SandboxClock, cache: EdgeCache
) -> None:
    urls = [url("/v/a.ts"), url("/v/b.ts"), url("/w/c.ts")]
    cdn.prefetch_urls(urls)
    clock.advance(dt.timedelta(seconds=TASK_DELAY + 1))
    api.settle()
    assert all(u in cache for u in urls)
    ret, _ = cdn.refresh_urls([url("/w/c.ts")])
    assert ret["code"] == 200
    assert (ret["urlQuotaDay"], ret["urlSurplusDay"]) == (500, 499)
    assert url("/w/c.ts") not in cache
    ret, _ = cdn.refresh_dirs([url("/v/"), url("/no-slash")])
    assert ret["invalidDirs"] == [url("/no-slash")]
    assert ret["dirSurplusDay"] == ret["dirQuotaDay"] - 1
    assert len(cache) == 0
    listed = query(api, "refresh", requestId=ret["requestId"])
    assert [(i["url"], i["isDir"]) for i in listed["items"]] == [(url("/v/"), "yes")]
    assert query(api, "refresh", isDir="no")["total"] == 1


def test_refresh_limits_and_quota(api: QiniuEmulator, cdn: Any) -> None:
    _, info = cdn.refresh_dirs([url(f"/d{i}/") for i in range(11)])
    assert body(info)["code"] == 400000
    api.limits.refresh_url_quota = 2
    _, info = cdn.refresh_urls([url(f"/v/{i}.ts") for i in range(3)])
    assert body(info)["code"] == 400034
    _, info = cdn.refresh_urls(["http://elsewhere.test/a.ts"])
    assert body(info)["code"] == 400032


# Storage listing -------------------------------------------------------------------


def bucket_manager(api: QiniuEmulator, secret_key: str = SK) -> Any:
    assert api.server is not None
    region = Region(services={ServiceName.RSF: [Endpoint.from_host(api.server.url)]})
    return BucketManager(Auth(AK, secret_key), regions=[region])


def test_bucket_listing_pages_with_markers(api: QiniuEmulator) -> None:
    segments = [f"vod/{v:03d}/{s:04d}.ts" for v in range(3) for s in range(1000)]
    playlists = [f"vod/{v:03d}/index.m3u8" for v in range(3)]
    api.put_objects("media", segments + playlists + ["other/readme.txt"])
    keys: list[str] = []
    marker, pages = None, 0
    while True:
        ret, eof, info = bucket_manager(api).list("media", "vod/", marker, 1000)
        assert info.status_code == 200
        keys += [item["key"] for item in ret["items"]]
        pages += 1
        marker = ret.get("marker")
        if eof:
            break
    assert pages == 4
    assert sorted(keys) == sorted(segments + playlists)
    assert [k for k in keys if k.endswith(".m3u8")] == sorted(playlists)


def test_bucket_listing_checks_signature_and_bucket(api: QiniuEmulator) -> None:
    api.put_objects("media", ["a.m3u8"])
    ret, _, info = bucket_manager(api, "wrong").list("media")
    assert ret is None and info.status_code == 401
    ret, _, info = bucket_manager(api).list("nope")
    assert ret is None and info.status_code == 631


# Traffic and logs -------------------------------------------------------------------


@pytest.mark.parametrize(("granularity", "points"), [("5min", 288), ("hour", 24), ("day", 1)])
def test_flux_and_bandwidth_are_deterministic_series(
    cdn: Any, granularity: str, points: int
) -> None:
    flux, info = cdn.get_flux_data([EDGE], "2024-03-01", "2024-03-01", granularity)
    assert info.status_code == 200
    assert len(flux["time"]) == points
    assert flux["time"][0] == "2024-03-01 00:00:00"
    series = flux["data"][EDGE]
    assert len(series["china"]) == len(series["oversea"]) == points
    assert all(c > o > 0 for c, o in zip(series["china"], series["oversea"], strict=True))
    again, _ = cdn.get_flux_data([EDGE], "2024-03-01", "2024-03-01", granularity)
    assert again == flux
    bandwidth, _ = cdn.get_bandwidth_data([EDGE], "2024-03-01", "2024-03-01", granularity)
    assert bandwidth["data"][EDGE]["china"] != series["china"]


def test_traffic_refuses_other_domains_and_bad_granularity(cdn: Any) -> None:
    _, info = cdn.get_flux_data(["other.test"], "2024-03-01", "2024-03-01", "day")
    assert body(info)["code"] == 400032
    _, info = cdn.get_bandwidth_data([EDGE], "2024-03-01", "2024-03-01", "week")
    assert body(info)["code"] == 400000


def test_log_list_links_download(cdn: Any, clock: SandboxClock) -> None:
    ret, info = cdn.get_log_list_data([EDGE], "2024-03-01")
    assert info.status_code == 200
    files = ret["data"][EDGE]
    assert len(files) == 24
    assert {"name", "size", "mtime", "url"} <= set(files[0])
    log = httpx.get(files[0]["url"])
    assert log.status_code == 200
    assert EDGE in gzip.decompress(log.content).decode()
    future = (clock.now() + dt.timedelta(days=2)).date().isoformat()
    ret, _ = cdn.get_log_list_data([EDGE], future)
    assert ret["data"][EDGE] == []
