"""Qiniu fusion CDN API and storage listing emulator.

A real HTTP server the unmodified ``qiniu`` SDK talks to: point
``CdnManager.server`` at it for ``/v2/tune/*`` (QBox-signed JSON POSTs), and a
``BucketManager`` Region's RSF endpoint at it for ``/list`` (Qiniu-signed GETs).
Signatures are recomputed with the SDK's own ``Auth``/``QiniuMacAuth`` from the
configured keys; every answer carries ``X-Reqid`` because the SDK drops the
body of any answer without one.

Codes follow Qiniu's documentation (developer.qiniu.com/dcdn/10756 and
developer.qiniu.com/fusion/13367/fusion-api-cache-management): 400031 invalid
url, 400032 invalid host, 400033 prefetch quota, 400034 refresh quota, 400037 url
already processing, 400038 no directory refresh permission, 403022/403024 rate
limited, 401 bad token, 500000 internal error. The answer fields (``requestId``,
``invalidUrls``, ``quotaDay``, ``surplusDay``, ``urlQuotaDay``...) are qiniu/go-sdk
``cdn/api.go``'s ``PrefetchResp``/``RefreshResp``. Qiniu documents no code for an
oversized request; the emulator answers 400000. ``X-Reqid`` on every answer:
qiniu/http/__init__.py drops the body of an answer without it. QBox signs the
fusion calls ("鉴权方式: QBox 鉴权", the fusion API pages).

Tasks advance on the :class:`SandboxClock`: a URL is ``processing`` for
``task_delay`` seconds, then ``success`` (and in the edge cache) if the origin
has its path, else ``failure`` with a ``stateDetail``. They settle lazily, on
every API call and on ``settle()`` (the sandbox edge calls it before each
request). Tests read ``received()``, ``received_urls()`` and ``outcomes``, and
force answers with ``inject(code)`` or the shared :class:`Faults`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import gzip
import hashlib
import hmac
import json
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from qiniu import Auth, QiniuMacAuth

from cdn_preheat import config
from cdn_preheat.sandbox import traffic
from cdn_preheat.sandbox.core import (
    CountedOutcomes,
    EdgeCache,
    EmulatorBase,
    EmulatorSpec,
    Faults,
    Layer,
    LoopbackServer,
    RateCounting,
    RateWindows,
    Reply,
    Request,
    SandboxClock,
    Shared,
    received_document,
)
from cdn_preheat.sandbox.edge import prefetched

# Qiniu's quota day and all timestamps in its answers are China time.
CHINA = dt.timezone(dt.timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
GRANULARITY = {
    "5min": dt.timedelta(minutes=5),
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
}
ERRORS = {
    400000: "invalid request",
    400031: "invalid url",
    400032: "invalid host",
    400033: "prefetch url limit error",
    400034: "refresh url limit error",
    400035: "refresh dir limit error",
    400037: "url has existed",
    400038: "refresh dir authority error",
    403022: "server QPS rate limited",
    403024: "request too frequently",
    500000: "internal error",
}

OUTCOMES = {
    401: "auth",
    400031: "invalid",
    400032: "domain",
    400033: "quota",
    400034: "quota",
    400035: "quota",
    400037: "duplicate",
    400038: "permission",
    403022: "rate_limited",
    403024: "rate_limited",
    500000: "internal",
}
JsonObject = dict[str, Any]


@dataclass
class QiniuLimits:
    """What the emulated account allows; tests may change any field.

    Sources: developer.qiniu.com/fusion/13367/fusion-api-cache-management (2026:
    240 URLs+dirs a second, prefetch 100 a day and 20 a request, refresh 500 a day)
    and fusion/api/1229 (older: 60 URLs and 10 dirs a refresh request).
    """

    prefetch_batch: int = 20
    refresh_url_batch: int = 60
    refresh_dir_batch: int = 10
    # developer.qiniu.com/fusion/13367/fusion-api-cache-management ("QPS限制: 刷新+预取请求中
    # url/dir 总量每秒 ≤ 240") and developer.qiniu.com/dcdn/10756: one budget in URLs and
    # dirs for prefetch and refresh together, refused with 403024 (single-user QPS).
    urls_per_second: int = 240
    # No document states a limit for the task queries (/v2/tune/*/list): None accepts
    # any rate; a number enforces that many calls a second (403024), to test both.
    list_calls_per_second: int | None = None
    rate_window_seconds: float = 1.0  # tests stretch it to count without timing
    # How the rate is counted (sandbox/core.py RateCounting: no source settles it).
    rate_counting: RateCounting = "sliding"
    prefetch_quota: int = 100
    refresh_url_quota: int = 500
    refresh_dir_quota: int = 10
    task_delay: float = 1.0  # seconds on the sandbox clock from processing to done
    # The task queries' pageSize: "要求返回的页长度, 默认为100" (fusion/api/1227#4; qiniu/php-sdk
    # CdnManager::getCdnPrefetchList). No maximum is documented: a larger size is served up
    # to ``list_page_max``, and past it capped ("cap") or refused with 400000 ("refuse").
    list_page_max: int = 1000
    list_page_over_max: Literal["cap", "refuse"] = "cap"
    # startTime/endTime: the php-sdk documents "格式2006-01-01" and its example passes
    # "2020-09-11 12:00:00"; how the time is compared is not documented: "second" with
    # createAt's second (both ends included), "instant" with the exact creation time (a
    # task created at 12:00:05.3 is after an endTime of 12:00:05), "day" with the day only.
    list_time_precision: Literal["second", "instant", "day"] = "second"
    # "当前目录刷新权限默认关闭, 如需开通权限请通过工单联系我们审核开通" (fusion/api/1229);
    # the 2026 page lists 400038 for it. Off, as on a new account.
    refresh_dir_enabled: bool = False
    # How the task lists write createAt/beginAt/endAt. No document describes it (the
    # Python SDK does not wrap these calls; the Ruby SDK parses them leniently), so
    # it is settable: "plain" 2024-03-01 13:04:05, or "iso8601" 2024-03-01T13:04:05+08:00.
    list_time_style: str = "plain"


@dataclass(frozen=True)
class ReceivedPrefetch:
    """One accepted prefetch request."""

    time: dt.datetime
    request_id: str
    urls: tuple[str, ...]


@dataclass
class _Task:
    kind: str  # "prefetch" or "refresh"
    request_id: str
    task_id: str
    url: str
    is_dir: bool
    created: dt.datetime
    state: str = "processing"
    detail: str = ""
    ended: dt.datetime | None = None


class QiniuEmulator(CountedOutcomes, EmulatorBase):
    """The emulated Qiniu account: one CDN domain, tasks, quotas, buckets."""

    def __init__(
        self,
        clock: SandboxClock,
        cache: EdgeCache,
        origin_has: Callable[[str], bool],
        edge_netloc: str,
        access_key: str,
        secret_key: str,
        limits: QiniuLimits | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.clock = clock
        self.cache = cache
        self.origin_has = origin_has
        self.edge_netloc = edge_netloc.lower()
        self.domain_state = "success"  # the domain API's operatingState (see _domain_info)
        self.domain_geo_cover = "china"
        self.limits = limits or QiniuLimits()
        self.faults = faults or Faults()
        self._qbox = Auth(access_key, secret_key)
        self._mac = QiniuMacAuth(access_key, secret_key)
        self._lock = threading.Lock()
        self._tasks: list[_Task] = []
        self._used: Counter[tuple[str, str]] = Counter()  # (kind, China day) -> count
        self._rate = RateWindows(
            self.limits.rate_window_seconds, counting=self.limits.rate_counting
        )
        # Requests refused by a rate window (not injected faults), by route.
        self.rate_refusals: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._received: list[ReceivedPrefetch] = []
        # Requests by outcome: ok, auth, rate_limited, quota, batch, invalid, domain,
        # duplicate, internal, fault, other.
        self.outcomes: Counter[str] = Counter()
        self._injected: deque[int] = deque()
        self._buckets: dict[str, dict[str, int]] = {}
        self.server: LoopbackServer | None = None

    # Test and sandbox controls ------------------------------------------
    def start(self, port: int = 0) -> LoopbackServer:
        self.server = super().start(port)
        return self.server

    def inject(self, code: int, times: int = 1) -> None:
        """Answer the next ``times`` fusion API calls with this Qiniu code."""
        with self._lock:
            self._injected.extend([code] * times)

    def put_objects(self, bucket: str, keys: Iterable[str], size: int = 1024) -> None:
        """Register objects that ``BucketManager.list`` will find."""
        with self._lock:
            objects = self._buckets.setdefault(bucket, {})
            objects.update(dict.fromkeys(keys, size))

    def received(self) -> list[ReceivedPrefetch]:
        """Every accepted prefetch request, oldest first."""
        with self._lock:
            return list(self._received)

    def received_urls(self) -> list[str]:
        """Every URL of every accepted prefetch request, in arrival order."""
        return [url for item in self.received() for url in item.urls]

    def received_json(self) -> bytes:
        """``GET /_sandbox/received``: every accepted prefetch and the outcome counts."""
        accepted = [
            {
                "time": item.time.isoformat(),
                "action": "prefetch",
                "task_id": item.request_id,
                "urls": list(item.urls),
            }
            for item in self.received()
        ]
        with self._lock:
            outcomes = dict(self.outcomes)
        return received_document("qiniu", accepted, outcomes, self.limits.rate_counting)

    def settle(self) -> None:
        """Finish every task whose delay has passed (also done on each request)."""
        with self._lock:
            self._settle_locked()

    # Request handling ---------------------------------------------------
    name = "qiniu"
    server_version = "QiniuSandbox/1.0"

    def serve(self, request: Request) -> Reply | None:
        reply = super().serve(request)
        if reply is None:
            return None
        request_id = base64.urlsafe_b64encode(uuid.uuid4().bytes[:12]).decode()
        return dataclasses.replace(reply, headers={**reply.headers, "X-Reqid": request_id})

    def unfaulted(self, request: Request) -> Reply | None:
        if request.target.startswith("/logs/"):  # the log files' download host, not the API
            return _log_file(request.target)
        return super().unfaulted(request)

    def answer(self, request: Request, *, rate_limited: bool) -> Reply:
        """One fusion, RSF or domain API request (QBox- or Qiniu-signed)."""
        reply = self._answer(
            request.method, request.target, dict(request.headers), request.body,
            rate_limited=rate_limited,
        )  # fmt: skip
        self._count(_outcome(reply))
        return reply

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes, *, rate_limited: bool
    ) -> Reply:
        route = urlsplit(path).path
        if not self._authorized(method, path, headers, body):
            return self._json(401, {"code": 401, "error": "bad token"})
        if rate_limited:
            return self._error(403024)
        if method == "GET" and route == "/list":
            return self._list_objects(parse_qs(urlsplit(path).query))
        if method == "GET" and route.startswith("/domain/"):
            return self._domain_info(route.removeprefix("/domain/"))
        handler = self._routes().get(route) if method == "POST" else None
        if handler is None:
            return self._json(404, {"code": 404, "error": "no such api"})
        with self._lock:
            self.calls[route] += 1
        if route.endswith("/list") and self.limits.list_calls_per_second is not None:
            self._rate.tune(self.limits.rate_window_seconds, self.limits.rate_counting)
            if not self._rate.allow(route, self.limits.list_calls_per_second):
                with self._lock:
                    self.rate_refusals[route] += 1
                return self._error(403024)
        with self._lock:
            injected = self._injected.popleft() if self._injected else None
        if injected is not None:
            return self._error(injected)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return self._error(400000, "request body is not a JSON object")
        with self._lock:
            self._settle_locked()
            return handler(request)

    def _routes(self) -> dict[str, Callable[[JsonObject], Reply]]:
        return {
            "/v2/tune/prefetch": self._prefetch,
            "/v2/tune/refresh": self._refresh,
            "/v2/tune/prefetch/list": lambda r: self._task_list("prefetch", r),
            "/v2/tune/refresh/list": lambda r: self._task_list("refresh", r),
            "/v2/tune/flux": lambda r: self._traffic("flux", r),
            "/v2/tune/bandwidth": lambda r: self._traffic("bandwidth", r),
            "/v2/tune/log/list": self._log_list,
        }

    def _authorized(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bool:
        given = headers.get("authorization", "")
        host = headers.get("host", "")
        url = f"http://{host}{path}"
        content_type = headers.get("content-type")
        if given.startswith("QBox "):
            text = body.decode("utf-8", "replace")
            expected = "QBox " + self._qbox.token_of_request(url, text, content_type)
        elif given.startswith("Qiniu "):
            qiniu_headers = {_canonical(k): v for k, v in headers.items()}
            expected = "Qiniu " + self._mac.token_of_request(
                method, host, url, self._mac.qiniu_headers(qiniu_headers), content_type, body
            )
        else:
            return False
        return hmac.compare_digest(given.encode(), expected.encode())

    # Prefetch and refresh -----------------------------------------------
    def _prefetch(self, request: JsonObject) -> Reply:
        urls = _strings(request.get("urls"))
        if not urls:
            return self._json(400, {"code": 400000, "error": "urls is empty"})
        if len(urls) > self.limits.prefetch_batch:
            return self._too_many("urls", self.limits.prefetch_batch)
        valid, invalid, foreign = self._sort_urls(urls)
        if foreign:
            return self._refusal(400032, invalid_urls=foreign + invalid)
        if not valid:
            return self._refusal(400031, invalid_urls=invalid)
        processing = {
            t.url for t in self._tasks if t.kind == "prefetch" and t.state == "processing"
        }
        again = [url for url in valid if url in processing]
        if again:
            return self._refusal(400037, invalid_urls=again)
        if not self._within_rate(len(valid)):
            return self._refusal(403024)
        day = self.clock.day(8)
        used = self._used["prefetch", day]
        if used + len(valid) > self.limits.prefetch_quota:
            return self._refusal(400033, invalid_urls=invalid)
        self._used["prefetch", day] += len(valid)
        request_id, task_ids = self._create_tasks("prefetch", valid, is_dir=False)
        self._received.append(ReceivedPrefetch(self.clock.now(), request_id, tuple(valid)))
        return self._json(
            200,
            {
                "code": 200,
                "error": "success",
                "requestId": request_id,
                "taskIds": task_ids,
                "invalidUrls": invalid,
                "quotaDay": self.limits.prefetch_quota,
                "surplusDay": self.limits.prefetch_quota - used - len(valid),
            },
        )

    def _refresh(self, request: JsonObject) -> Reply:
        urls, dirs = _strings(request.get("urls")), _strings(request.get("dirs"))
        if not urls and not dirs:
            return self._json(400, {"code": 400000, "error": "urls and dirs are empty"})
        if len(urls) > self.limits.refresh_url_batch:
            return self._too_many("urls", self.limits.refresh_url_batch)
        if len(dirs) > self.limits.refresh_dir_batch:
            return self._too_many("dirs", self.limits.refresh_dir_batch)
        good_urls, bad_urls, foreign_urls = self._sort_urls(urls)
        if dirs and not self.limits.refresh_dir_enabled:
            return self._refusal(400038)
        good_dirs, bad_dirs, foreign_dirs = self._sort_urls(dirs)
        bad_dirs += [d for d in good_dirs if not urlsplit(d).path.endswith(("/", "/*"))]
        good_dirs = [d for d in good_dirs if d not in bad_dirs]
        if foreign_urls or foreign_dirs:
            return self._refusal(400032, invalid_urls=foreign_urls, invalid_dirs=foreign_dirs)
        if not good_urls and not good_dirs:
            return self._refusal(400031, invalid_urls=bad_urls, invalid_dirs=bad_dirs)
        if not self._within_rate(len(good_urls) + len(good_dirs)):
            return self._refusal(403024)
        day = self.clock.day(8)
        url_used, dir_used = self._used["refresh_url", day], self._used["refresh_dir", day]
        if url_used + len(good_urls) > self.limits.refresh_url_quota:
            return self._refusal(400034)
        if dir_used + len(good_dirs) > self.limits.refresh_dir_quota:
            return self._refusal(400035)
        self._used["refresh_url", day] += len(good_urls)
        self._used["refresh_dir", day] += len(good_dirs)
        for url in good_urls:
            self.cache.discard(self._cache_key(url))
        for directory in good_dirs:
            self.cache.discard_prefix(self._cache_key(directory).removesuffix("*"))
        request_id, url_ids = self._create_tasks("refresh", good_urls, is_dir=False)
        _, dir_ids = self._create_tasks("refresh", good_dirs, is_dir=True, request_id=request_id)
        return self._json(
            200,
            {
                "code": 200,
                "error": "success",
                "requestId": request_id,
                "taskIds": url_ids | dir_ids,
                "invalidUrls": bad_urls,
                "invalidDirs": bad_dirs,
                "urlQuotaDay": self.limits.refresh_url_quota,
                "urlSurplusDay": self.limits.refresh_url_quota - url_used - len(good_urls),
                "dirQuotaDay": self.limits.refresh_dir_quota,
                "dirSurplusDay": self.limits.refresh_dir_quota - dir_used - len(good_dirs),
            },
        )

    def _sort_urls(self, urls: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
        """Split into (valid, unparseable or not http, on another host)."""
        valid: list[str] = []
        invalid: list[str] = []
        foreign: list[str] = []
        for url in urls:
            try:
                parts = urlsplit(url)
                netloc = parts.netloc.lower()
            except ValueError:
                invalid.append(url)
                continue
            if parts.scheme not in ("http", "https") or not netloc or " " in url:
                invalid.append(url)
            elif netloc != self.edge_netloc:
                foreign.append(url)
            else:
                valid.append(url)
        return valid, invalid, foreign

    def _within_rate(self, count: int) -> bool:
        """Record ``count`` URLs/dirs in the shared one-second window, if they fit."""
        self._rate.tune(self.limits.rate_window_seconds, self.limits.rate_counting)
        if self._rate.allow("urls", self.limits.urls_per_second, count):
            return True
        self.rate_refusals["urls"] += 1
        return False

    def _create_tasks(
        self, kind: str, urls: Sequence[str], *, is_dir: bool, request_id: str | None = None
    ) -> tuple[str, dict[str, str]]:
        request_id = request_id or uuid.uuid4().hex
        now = self.clock.now()
        task_ids: dict[str, str] = {}
        for url in urls:
            task = _Task(kind, request_id, uuid.uuid4().hex, url, is_dir, now)
            self._tasks.append(task)
            task_ids[url] = task.task_id
        return request_id, task_ids

    def _settle_locked(self) -> None:
        now = self.clock.now()
        due = now - dt.timedelta(seconds=self.limits.task_delay)
        for task in self._tasks:
            if task.state != "processing" or task.created > due:
                continue
            task.ended = now
            path = urlsplit(task.url).path
            if task.kind == "refresh" or self.origin_has(path):
                task.state = "success"
                if task.kind == "prefetch":
                    prefetched(self.cache, "qiniu", self._cache_key(task.url))
            else:
                task.state = "failure"
                task.detail = "origin responded 404 Not Found"

    def _cache_key(self, url: str) -> str:
        parts = urlsplit(url)
        query = f"?{parts.query}" if parts.query else ""
        return f"http://{self.edge_netloc}{parts.path or '/'}{query}"

    # Queries -------------------------------------------------------------
    def _task_list(self, kind: str, request: JsonObject) -> Reply:
        try:
            page_no = int(request.get("pageNo") or 0)
            page_size = int(request.get("pageSize") or 100)
            start = _parse_time(request.get("startTime"))
            end = _parse_time(request.get("endTime"), end_of_day=True)
        except ValueError as exc:
            return self._json(400, {"code": 400000, "error": str(exc)})
        if page_no < 0 or page_size < 1:
            return self._json(400, {"code": 400000, "error": "invalid pageNo or pageSize"})
        if page_size > self.limits.list_page_max:
            if self.limits.list_page_over_max == "refuse":
                return self._json(400, {"code": 400000, "error": "invalid pageSize"})
            page_size = self.limits.list_page_max
        if self.limits.list_time_precision == "day":
            start = start and _parse_time(start.date().isoformat())
            end = end and _parse_time(end.date().isoformat(), end_of_day=True)
        wanted_urls = set(_strings(request.get("urls")))
        request_id, state = request.get("requestId"), request.get("state")
        is_dir = request.get("isDir")
        matches = [
            t
            for t in reversed(self._tasks)  # newest first
            if t.kind == kind
            and (not request_id or t.request_id == request_id)
            and (not wanted_urls or t.url in wanted_urls)
            and (not state or t.state == state)
            and (is_dir not in ("yes", "no") or t.is_dir == (is_dir == "yes"))
            and (start is None or self._compared(t.created) >= start)
            and (end is None or self._compared(t.created) <= end)
        ]
        page = matches[page_no * page_size : (page_no + 1) * page_size]
        return self._json(
            200,
            {
                "code": 200,
                "error": "success",
                "pageNo": page_no,
                "pageSize": page_size,
                "total": len(matches),
                "items": [_task_item(t, self.limits.list_time_style) for t in page],
            },
        )

    def _compared(self, created: dt.datetime) -> dt.datetime:
        """A task's creation time as startTime/endTime are compared with it."""
        if self.limits.list_time_precision == "instant":
            return created
        return created.replace(microsecond=0)  # createAt's second

    def _traffic(self, metric: str, request: JsonObject) -> Reply:
        step = GRANULARITY.get(str(request.get("granularity")))
        if step is None:
            return self._json(400, {"code": 400000, "error": "invalid granularity"})
        try:
            start = _parse_time(request.get("startDate"))
            end = _parse_time(request.get("endDate"), end_of_day=True)
        except ValueError as exc:
            return self._json(400, {"code": 400000, "error": str(exc)})
        if start is None or end is None or end < start or end - start > dt.timedelta(days=31):
            return self._json(400, {"code": 400000, "error": "invalid startDate or endDate"})
        domains = [d for d in str(request.get("domains") or "").split(";") if d]
        if not domains or any(d.lower() != self.edge_netloc for d in domains):
            return self._refusal(400032)
        seconds = int(step.total_seconds())
        series = {d: traffic.series(d, metric, start, end, seconds) for d in domains}
        labels = [t.astimezone(CHINA).strftime(TIME_FORMAT) for t, _ in series[domains[0]]]
        # The shared traffic model has no regions: a tenth of it is called overseas.
        data = {
            domain: {
                "china": [int(v) - int(v) // 10 for _, v in points],
                "oversea": [int(v) // 10 for _, v in points],
            }
            for domain, points in series.items()
        }
        return self._json(200, {"code": 200, "error": "", "time": labels, "data": data})

    def _log_list(self, request: JsonObject) -> Reply:
        try:
            day = dt.date.fromisoformat(str(request.get("day")))
        except ValueError:
            return self._json(400, {"code": 400000, "error": "invalid day"})
        domains = [d for d in str(request.get("domains") or "").split(";") if d]
        if not domains or any(d.lower() != self.edge_netloc for d in domains):
            return self._refusal(400032)
        now = self.clock.now().astimezone(CHINA)
        # An hour's log appears once the hour is over.
        hours = range(24) if day < now.date() else range(now.hour) if day == now.date() else ()
        base = self.server.url if self.server else "http://127.0.0.1"
        data = {
            domain: [
                {
                    "name": f"v2/{domain}_{day:%Y-%m-%d}-{hour:02d}_part-00000.gz",
                    "size": 1000 + _digest_int(domain, day.isoformat(), str(hour)) % 50_000,
                    "mtime": int(dt.datetime.combine(day, dt.time(hour), CHINA).timestamp() + 3600),
                    "url": f"{base}/logs/{domain}/{day:%Y-%m-%d}-{hour:02d}.gz",
                }
                for hour in hours
            ]
            for domain in domains
        }
        return self._json(200, {"code": 200, "error": "", "data": data})

    def _list_objects(self, query: dict[str, list[str]]) -> Reply:
        bucket = query.get("bucket", [""])[0]
        prefix = query.get("prefix", [""])[0]
        marker = query.get("marker", [""])[0]
        limit = min(max(int(query.get("limit", ["1000"])[0] or 1000), 1), 1000)
        after = _decode_marker(marker) if marker else None
        with self._lock:
            objects = self._buckets.get(bucket)
            keys = sorted(
                k for k in objects or {} if k.startswith(prefix) and (after is None or k > after)
            )
            page, more = keys[:limit], len(keys) > limit
            items = [_object_item(key, (objects or {})[key]) for key in page]
        if objects is None:
            return self._json(631, {"error": "no such bucket"})
        answer: JsonObject = {"items": items, "commonPrefixes": []}
        if more:
            answer["marker"] = _encode_marker(page[-1])
        return self._json(200, answer)

    # Answers -------------------------------------------------------------
    def _refusal(
        self, code: int, *, invalid_urls: Sequence[str] = (), invalid_dirs: Sequence[str] = ()
    ) -> Reply:
        body: JsonObject = {"code": code, "error": ERRORS.get(code, "error")}
        if invalid_urls:
            body["invalidUrls"] = list(invalid_urls)
        if invalid_dirs:
            body["invalidDirs"] = list(invalid_dirs)
        return self._json(code // 1000, body)

    def _too_many(self, what: str, limit: int) -> Reply:
        return self._json(400, {"code": 400000, "error": f"{what} exceed the limit of {limit}"})

    def _domain_info(self, name: str) -> Reply:
        """GET /domain/<name> (DomainManager.get_domain; developer.qiniu.com/fusion/4246):
        ``operatingState`` success|processing|failed|frozen|offlined, ``geoCover``
        china|foreign|global. An unknown name is a 404 (the error text is not documented)."""
        if name.lower() != self.edge_netloc:
            return self._json(404, {"code": 404, "error": "no such domain"})
        return self._json(200, {
            "name": self.edge_netloc, "type": "normal", "cname": f"{self.edge_netloc}.qiniudns.com",
            "protocol": "http", "platform": "video", "geoCover": self.domain_geo_cover,
            "operatingState": self.domain_state, "operatingStateDesc": "",
        })  # fmt: skip

    def _error(self, code: int, message: str | None = None) -> Reply:
        error = message or ERRORS.get(code, "error")
        status = 401 if code == 401 else code // 1000 if code >= 1000 else code
        return self._json(status, {"code": code, "error": error})

    def _json(self, status: int, body: JsonObject) -> Reply:
        return Reply(status, json.dumps(body).encode())


def _outcome(answer: Reply) -> str:
    """The ``outcomes`` counter an answer is filed under."""
    if answer.status == 200:
        return "ok"
    try:
        body = json.loads(answer.body)
    except ValueError:
        return "other"
    code = body.get("code", answer.status) if isinstance(body, dict) else answer.status
    if code == 400000 and "exceed" in str(body.get("error", "")):
        return "batch"
    return OUTCOMES.get(code, "other")


def _log_file(path: str) -> Reply:
    """A small gzip log in Qiniu's CDN log format, the same bytes every time."""
    domain = path.split("/")[2] if path.count("/") >= 3 else "unknown"
    lines = [
        f"127.0.0.{i % 250 + 1} HIT 0 [01/Jan/2024:00:00:{i % 60:02d} +0800] "
        f'"GET http://{domain}/video/seg{i}.ts HTTP/1.1" 200 {1000 + i} "-" "sandbox"'
        for i in range(20)
    ]
    content = gzip.compress("\n".join(lines).encode(), mtime=0)
    return Reply(200, content, "application/gzip")


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _parse_time(value: object, *, end_of_day: bool = False) -> dt.datetime | None:
    """Qiniu's ``YYYY-MM-DD[ HH:MM:SS]`` in China time; None when absent."""
    if value in (None, ""):
        return None
    text = str(value)
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        clock = dt.time(23, 59, 59) if end_of_day else dt.time()
        return dt.datetime.combine(day, clock, CHINA)
    return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHINA)


def _format_time(moment: dt.datetime | None, style: str = "plain") -> str:
    if moment is None:
        return ""
    local = moment.astimezone(CHINA).replace(microsecond=0)
    return local.isoformat() if style == "iso8601" else local.strftime(TIME_FORMAT)


def _task_item(task: _Task, style: str = "plain") -> JsonObject:
    item: JsonObject = {
        "requestId": task.request_id,
        "taskId": task.task_id,
        "url": task.url,
        "state": task.state,
        "progress": 0 if task.state == "processing" else 100,
        "createAt": _format_time(task.created, style),
        "beginAt": _format_time(task.created, style),
        "endAt": _format_time(task.ended, style),
    }
    if task.kind == "refresh":
        item["isDir"] = "yes" if task.is_dir else "no"
    if task.detail:
        item["stateDetail"] = task.detail
    return item


def _digest_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big")


def _object_item(key: str, size: int) -> JsonObject:
    return {
        "key": key,
        "hash": base64.urlsafe_b64encode(hashlib.sha1(key.encode()).digest()).decode(),  # noqa: S324
        "fsize": size,
        "mimeType": "application/vnd.apple.mpegurl" if key.endswith(".m3u8") else "video/mp2t",
        "putTime": 17_040_672_000_000_000,
        "type": 0,
        "status": 0,
    }


def _encode_marker(last_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"c": 0, "k": last_key}).encode()).decode()


def _decode_marker(marker: str) -> str | None:
    try:
        value = json.loads(base64.urlsafe_b64decode(marker.encode()))
    except ValueError:
        return None
    key = value.get("k") if isinstance(value, dict) else None
    return key if isinstance(key, str) else None


QiniuApi = QiniuEmulator  # the name before the emulators shared one naming

# Qiniu's default daily prefetch quota is 100 URLs, less than one generated
# video; the sandbox account has it raised (as real accounts can ask for), so
# `cdn-preheat demo --provider qiniu` runs to the end. Tests lower it to see
# the quota stop. Directory refresh, off on new accounts, is enabled likewise.
SANDBOX_QINIU_PREFETCH_QUOTA = 100_000


def _build(shared: Shared, credentials: tuple[str, str], limits: QiniuLimits) -> QiniuEmulator:
    return QiniuEmulator(
        shared.clock,
        shared.cache,
        shared.origin.has,
        shared.edge_netloc,
        *credentials,
        limits=limits,
        faults=shared.faults,
    )


def _client_env(endpoint: str, credentials: tuple[str, str]) -> dict[str, str]:
    # One emulator answers the fusion CDN API, the bucket listing (RSF) and the domain API.
    return {
        "QINIU_ENDPOINT": endpoint,
        "QINIU_RSF_ENDPOINT": endpoint,
        "QINIU_API_ENDPOINT": endpoint,
        "QINIU_ACCESS_KEY": credentials[0],
        "QINIU_SECRET_KEY": credentials[1],
    }


def _set_limits(api: QiniuEmulator, quota: int | None, rate: int | None) -> None:
    """Rate: URLs a second."""
    if quota is not None:
        api.limits.prefetch_quota = quota
    if rate is not None:
        api.limits.urls_per_second = rate


# What this vendor's edges answer (sandbox/edge.py), per answer: an edge hit, an
# upper-layer hit, a miss.
# Qiniu: X-Qnm-Cache, one comma-separated word per layer, the edge's first
# ("Validate,MissValidate" in a two-layer capture); "Hit" / "Miss" at the edge.
EDGE_HEADERS: dict[str, list[tuple[str, str]]] = {
    "edge": [("X-Qnm-Cache", "Hit")],
    "upper": [("X-Qnm-Cache", "Miss,Hit")],
    "origin": [("X-Qnm-Cache", "Miss")],
}  # fmt: skip


def _prefetch_layer(area: str, layer_option: str) -> Layer:
    """The layer a finished prefetch fills, as the vendor documents it."""
    # developer.qiniu.com/fusion/4155: 预取 "是指新资源提前由 CDN 拉取到 CDN 缓存节点。
    # 这样一来, 用户第一次访问到该节点时, 就可以直接命中缓存": the first access hits.
    return "edge"


EMULATOR = EmulatorSpec(
    name="qiniu",
    build=_build,
    limits_type=QiniuLimits,
    credentials=(config.SANDBOX_QINIU_ACCESS_KEY, config.SANDBOX_QINIU_SECRET_KEY),
    client_env=_client_env,
    set_limits=_set_limits,
    cache_headers=EDGE_HEADERS,
    prefetch_layer=_prefetch_layer,
    default_limits=lambda: QiniuLimits(
        prefetch_quota=SANDBOX_QINIU_PREFETCH_QUOTA, refresh_dir_enabled=True
    ),
)
