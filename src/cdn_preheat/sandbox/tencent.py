"""Tencent Cloud CDN API emulator (API version 2018-06-06) on loopback.

The unmodified ``tencentcloud-sdk-python-cdn`` client talks to it with
``HttpProfile(protocol="http", endpoint="127.0.0.1:PORT")``. It checks TC3
signatures, enforces batch size, per-action request rate and daily quotas with
Tencent's error codes, runs prefetch and purge tasks against the sandbox's
origin and edge cache, and answers the Describe calls.

Tasks advance on the :class:`SandboxClock`: a URL is ``process`` for
``task_delay`` seconds, then ``done`` (and in the edge cache) if the origin has
it, ``invalid`` if the origin answers 4xx or 5xx (an overload too), or ``fail``
with probability ``fail_rate``. Tasks are
settled lazily, on every API call that reads them (a push or purge does not), on
every edge request and on ``settle()``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import heapq
import itertools
import json
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from cdn_preheat import config
from cdn_preheat.sandbox import traffic
from cdn_preheat.sandbox.core import (
    CountedOutcomes,
    EdgeCache,
    EmulatorBase,
    EmulatorSpec,
    Faults,
    Layer,
    RateCounting,
    RateWindows,
    Reply,
    Request,
    SandboxClock,
    Shared,
    UrlEcho,
    normalised_url,
    received_document,
)
from cdn_preheat.sandbox.edge import prefetched
from cdn_preheat.sandbox.origin import Origin
from cdn_preheat.sandbox.tc3 import SignatureError, verify_tc3

API_VERSION = "2018-06-06"
SERVICE = "cdn"
UTC8 = dt.timezone(dt.timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
AREAS = ("mainland", "overseas")
Params = Mapping[str, Any]


@dataclass
class TencentLimits:
    """The account's limits; defaults are Tencent's, except the prefetch quota.

    Mutable: tests change them on a running emulator.
    """

    # "By default, a maximum of 1000 URLs can be prefetched per day for regions either
    # within or outside the Chinese mainland, and up to 500 tasks can be submitted at a
    # time" (PushUrlsCache, tencentcloud.com/document/api/228/33600).
    push_batch: int = 500
    # Tencent's default is 1,000 URLs a day per area, raised on request; a demo needs more.
    push_per_day: int = 100_000
    # "境内、境外加速区域每日 URL 刷新额度各为 10000 条, 每次最多可提交 1000 条"
    # (PurgeUrlsCache, cloud.tencent.com/document/api/228/37870).
    purge_url_batch: int = 1000
    purge_url_per_day: int = 10_000
    # PurgePathCache (cloud.tencent.com/document/api/228/37871): 100 directories a day
    # per area, 500 a request.
    purge_path_batch: int = 500
    purge_path_per_day: int = 100
    # Every API has its own limit, 20 calls a second each: "默认接口请求频率限制:20次/秒" on each
    # API's page (PushUrlsCache cloud.tencent.com/document/api/228/37869, DescribePushTasks
    # 228/37872, DescribePushQuota tencentcloud.com/document/api/228/37473, PurgeUrlsCache
    # 228/33601, DescribePurgeQuota cloud.tencent.com/document/product/228/41956).
    requests_per_second: int = 20  # per action
    action_rates: dict[str, int] = field(default_factory=dict)  # per-action overrides
    rate_window_seconds: float = 1.0  # tests stretch it to count without timing
    # How the rate is counted (sandbox/core.py RateCounting: no source settles it).
    rate_counting: RateCounting = "sliding"
    task_delay: float = 0.5  # seconds on the sandbox clock from process to done
    fail_rate: float = 0.0  # share of existing URLs whose prefetch ends in "fail"
    seed: int = 0
    # The areas the account (and its domain) is accelerated in. DescribePushQuota
    # answers only these: the official example returns mainland alone
    # (tencentcloud.com/document/product/228/37473). One-area accounts: ("mainland",).
    areas: tuple[str, ...] = AREAS
    # A push to an area the domain is not served in is refused: SDK
    # PushUrlsCacheRequest.Area says "URL 中域名必须在对应区域启用了加速服务才能提交对应区域
    # 的预热任务". API 3.0's code for it is not documented; the old API answered
    # InvalidParameter "域名 xxx 未部署在 mainland" (lxl80/hexo-deployer-cos-cdn#5), so
    # the code is settable: InvalidParameter.CdnParamError or .CdnHostInvalidParam.
    area_refusal_code: str = "InvalidParameter.CdnParamError"
    # InvalidParameter.CdnUrlExceedLength ("URL 超过限制长度", SDK
    # cdn/v20180606/errorcodes.py) refuses the whole request; the length is not
    # documented, so it is off unless set.
    max_url_length: int | None = None
    # CAM actions the sub-account key may not call: UnauthorizedOperation.CdnCamUnauthorized
    # ("子账号未配置cam策略", errorcodes.py). Actions are named as in CAM, e.g. PushUrlsCache.
    cam_denied: frozenset[str] = frozenset()
    # The sub-account is not granted the domain: UnauthorizedOperation.CdnHostUnauthorized
    # ("CDN子账号加速域名未授权", errorcodes.py).
    host_unauthorized: bool = False
    # The domain was migrated to EdgeOne ("CDN 迁移至 EdgeOne 工具使用指南",
    # cloud.tencent.com/document/product/228): CDN no longer knows it and answers
    # ResourceNotFound.CdnHostNotExists ("未查询到该域名", errorcodes.py).
    moved_to_edgeone: bool = False
    # No document says which code a non-http(s) URL earns; the SDK's errorcodes.py
    # offers CdnParamError ("参数错误") and CdnHostInvalidParam ("域名格式不合法").
    # Configurable, so the product is tested against both.
    scheme_error_code: str = "InvalidParameter.CdnParamError"
    # DescribePushTasks Limit: "分页查询限制数目, 默认为 20" and no maximum (SDK
    # cdn/v20180606/models.py DescribePushTasksRequest.Limit;
    # cloud.tencent.com/document/api/228/37872). Unsettled, so settable: None accepts
    # any Limit; N with "reject" refuses a larger one (InvalidParameter.CdnParamError),
    # with "cap" silently answers at most N logs.
    push_tasks_max_limit: int | None = None
    push_tasks_over_limit: Literal["reject", "cap"] = "reject"
    # The order of DescribePushTasks logs is not documented either.
    push_log_order: Literal["newest_first", "oldest_first"] = "newest_first"
    # "预热记录保存30天" (legacy GetPushLogs, cloud.tencent.com/document/api/228/12840):
    # push and purge logs older than this on the clock are forgotten.
    task_retention: dt.timedelta = dt.timedelta(days=30)
    # Whether DescribePushTasks echoes each URL as submitted or normalises it (undocumented).
    url_echo: UrlEcho = "echo"


class ApiError(Exception):
    """An error answer: ``{"Error": {"Code", "Message"}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class TaskRecord:
    """One URL (or directory) of one prefetch or purge task."""

    task_id: str
    url: str
    area: str
    kind: str  # push | url | path
    created: dt.datetime
    status: str = "process"
    updated: dt.datetime | None = None
    flush_type: str | None = None


@dataclass(frozen=True)
class ReceivedPush:
    """An accepted PushUrlsCache request."""

    time: dt.datetime
    task_id: str
    area: str
    urls: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)  # Layer, UserAgent, Headers, ...


class TencentEmulator(CountedOutcomes, EmulatorBase):
    """State and behaviour of one Tencent Cloud account owning one CDN domain."""

    name = "tencent"
    server_version = "cdn-preheat-sandbox-tencent"

    def __init__(
        self,
        *,
        clock: SandboxClock,
        cache: EdgeCache,
        origin: Origin,
        edge_netloc: str,
        credentials: tuple[str, str],
        limits: TencentLimits | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.clock = clock
        self.cache = cache
        self.origin = origin
        self.domain = edge_netloc.lower()
        self.secrets = {credentials[0]: credentials[1]}
        self.limits = limits or TencentLimits()
        self.faults = faults or Faults()
        self.outcomes: Counter[str] = Counter()  # ok, auth, rate_limited, quota, fault, ...
        self.actions: Counter[str] = Counter()  # authenticated calls by action
        # Calls refused by an API's own rate window (not injected faults), by action.
        self.rate_refusals: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._rate = RateWindows(
            self.limits.rate_window_seconds, counting=self.limits.rate_counting
        )
        self._random = random.Random(self.limits.seed)
        self._sequence = itertools.count()  # ties in the due-heap
        self._task_numbers = itertools.count(1)
        self._push: list[TaskRecord] = []
        self._purge: list[TaskRecord] = []
        self._due: list[tuple[dt.datetime, int, TaskRecord]] = []
        self._by_task: dict[str, list[TaskRecord]] = {}
        self._used: Counter[tuple[str, str, str]] = Counter()  # (kind, day, area) -> URLs
        self._received: list[ReceivedPush] = []
        self._layers: dict[str, str] = {}  # push task id -> its Layer option ("" unset)
        # The domain's service status, as DescribeDomains reports it (SDK BriefDomain.Status:
        # rejected, processing, closing, online, offline); pushes need "online".
        self.domain_status = "online"
        self._injected: deque[str] = deque()
        self._actions: dict[str, tuple[Callable[[Params], dict[str, Any]], frozenset[str]]] = {
            "PushUrlsCache": (self._push_urls_cache, _PUSH_PARAMS),
            "DescribePushQuota": (self._describe_push_quota, frozenset()),
            "DescribePushTasks": (self._describe_push_tasks, _PUSH_TASK_PARAMS),
            "PurgeUrlsCache": (self._purge_urls_cache, frozenset({"Urls", "Area", "UrlEncode"})),
            "PurgePathCache": (self._purge_path_cache, _PURGE_PATH_PARAMS),
            "DescribePurgeQuota": (self._describe_purge_quota, frozenset()),
            "DescribePurgeTasks": (self._describe_purge_tasks, _PURGE_TASK_PARAMS),
            "DescribeCdnData": (self._describe_cdn_data, _CDN_DATA_PARAMS),
            "DescribeCdnDomainLogs": (self._describe_cdn_domain_logs, _DOMAIN_LOG_PARAMS),
            "DescribeDomains": (self._describe_domains, frozenset({"Offset", "Limit", "Filters"})),
        }

    # -- what tests read --------------------------------------------------------

    def received(self) -> list[ReceivedPush]:
        """Every accepted PushUrlsCache, oldest first."""
        with self._lock:
            return list(self._received)

    def received_urls(self) -> list[str]:
        """Every URL of every accepted PushUrlsCache, in arrival order."""
        return [url for push in self.received() for url in push.urls]

    def quota_used(self, area: str = "mainland", kind: str = "push") -> int:
        """URLs charged today (UTC+8) to ``area``; ``kind`` is push, url or path."""
        with self._lock:
            return self._used[(kind, self.clock.day(8), area)]

    def received_json(self) -> bytes:
        """``GET /_sandbox/received``: every accepted PushUrlsCache and the outcome counts."""
        accepted = [
            {
                "time": push.time.isoformat(),
                "action": "PushUrlsCache",
                "task_id": push.task_id,
                "area": push.area,
                "urls": list(push.urls),
            }
            for push in self.received()
        ]
        with self._lock:
            outcomes = dict(self.outcomes)
        return received_document(self.name, accepted, outcomes, self.limits.rate_counting)

    def inject(self, code: str, times: int = 1) -> None:
        """Answer the next ``times`` authenticated calls with this error code."""
        with self._lock:
            self._injected.extend([code] * times)

    def settle(self) -> None:
        """Finish every task that is due by the sandbox clock.

        In slices of ``SETTLE_SLICE`` logs, the lock let go between them: a push
        arriving meanwhile waits for one slice, not for every log due (a status
        read after a second of pushing finishes 10,000), which held pushes up to
        0.4 s in the push bench. A reader that settles still sees every log due
        by its own clock finished: it finishes what is left itself.
        """
        now = self.clock.now()
        while True:
            with self._lock:
                for _ in range(SETTLE_SLICE):
                    if not self._due or self._due[0][0] > now:
                        return
                    _, _, record = heapq.heappop(self._due)
                    self._finish(record, now)
            time.sleep(0)  # let a thread waiting for the lock take it

    # -- the wire ---------------------------------------------------------------

    def answer(self, request: Request, *, rate_limited: bool) -> Reply:
        """Carry one API 3.0 request out (a TC3-signed JSON POST) and answer it."""
        method, target, headers, body = (
            request.method, request.target, request.headers, request.body
        )  # fmt: skip
        request_id = str(uuid.uuid4())
        action = headers.get("x-tc-action", "")
        try:
            verify_tc3(
                method=method,
                target=target,
                headers=headers,
                body=body,
                secrets=self.secrets,
                service=SERVICE,
                now=self.clock.wall_time(),
            )
            if rate_limited:
                raise ApiError("RequestLimitExceeded", "Request rate limit exceeded (injected).")
            self._raise_injected()
            result = self._dispatch(method, action, headers, body)
        except (ApiError, SignatureError) as error:
            self._count(_outcome(error.code))
            return _json_reply(
                {"Error": {"Code": error.code, "Message": error.message}}, request_id
            )
        self._count("ok")
        return _json_reply(result, request_id)

    def _dispatch(
        self, method: str, action: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, Any]:
        if method != "POST":
            raise ApiError("UnsupportedProtocol", "The emulator accepts POST with a JSON body.")
        if headers.get("x-tc-version") != API_VERSION:
            raise ApiError("NoSuchVersion", f"The API version must be {API_VERSION}.")
        if action not in self._actions:
            raise ApiError("InvalidAction", f"The action {action!r} does not exist.")
        with self._lock:
            self.actions[action] += 1
        if action in self.limits.cam_denied:
            raise ApiError(
                "UnauthorizedOperation.CdnCamUnauthorized",
                f"The sub-account has no CAM policy allowing cdn:{action}.",
            )
        limit = self.limits.action_rates.get(action, self.limits.requests_per_second)
        self._rate.tune(self.limits.rate_window_seconds, self.limits.rate_counting)
        if not self._rate.allow(action, limit):
            # TencentCloud API 3.0's common code for a call over its limit (the SDK's
            # tencentcloud/common/retry.py retries exactly "RequestLimitExceeded").
            self._count_rate_refusal(action)
            raise ApiError(
                "RequestLimitExceeded",
                f"The request rate exceeds {limit} per second for {action}.",
            )
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            raise ApiError("InvalidParameter", "The body is not JSON.") from None
        if not isinstance(params, dict):
            raise ApiError("InvalidParameter", "The body must be a JSON object.")
        run, accepted = self._actions[action]
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise ApiError("UnknownParameter", f"The parameter {unknown[0]} is not recognized.")
        if action not in _ADDS_TASKS_ONLY:
            self.settle()
        return run(params)

    def _raise_injected(self) -> None:
        with self._lock:
            code = self._injected.popleft() if self._injected else None
        if code is not None:
            raise ApiError(code, f"{code} (injected).")

    def _count_rate_refusal(self, action: str) -> None:
        with self._lock:
            self.rate_refusals[action] += 1

    # -- prefetch ---------------------------------------------------------------

    def _push_urls_cache(self, params: Params) -> dict[str, Any]:
        urls = self._urls(params, "Urls")
        # "Area ... 不填充时, 默认为 mainland" (SDK PushUrlsCacheRequest.Area).
        area = _choice(params, "Area", ("mainland", "overseas", "global"), "mainland")
        _optional_choice(params, "Layer", ("middle",))
        headers = params.get("Headers") or []
        if not isinstance(headers, list) or len(headers) > 20:
            raise ApiError("InvalidParameter.CdnParamError", "Headers holds at most 20 entries.")
        if len(urls) > self.limits.push_batch:
            raise ApiError(
                "LimitExceeded.CdnPushExceedBatchLimit",
                f"At most {self.limits.push_batch} URLs can be prefetched in one request.",
            )
        self._check_hosts(urls)
        self._check_area(area)
        with self._lock:
            # "1次提交500条URL全球预热,此时境内、境外预热 URL 各剩余 500条": a global push
            # charges both areas (PushUrlsCache, cloud.tencent.com/document/api/228/37869).
            self._charge("push", area, len(urls), "LimitExceeded.CdnPushExceedDayLimit")
            task_id = self._new_task_id()
            now = self.clock.now()
            for url in urls:
                self._schedule(self._push, TaskRecord(task_id, url, area, "push", now))
            options = {k: v for k, v in params.items() if k not in ("Urls", "Area")}
            self._layers[task_id] = str(params.get("Layer") or "")
            self._received.append(ReceivedPush(now, task_id, area, tuple(urls), options))
        return {"TaskId": task_id}

    def _describe_push_quota(self, params: Params) -> dict[str, Any]:
        return {
            "UrlPush": self._quota_list("push", self.limits.push_batch, self.limits.push_per_day)
        }

    def _describe_push_tasks(self, params: Params) -> dict[str, Any]:
        limits = self.limits
        records, total = self._select(
            self._push,
            params,
            frozenset({"push"}),
            max_limit=limits.push_tasks_max_limit,
            cap=limits.push_tasks_over_limit == "cap",
            oldest_first=limits.push_log_order == "oldest_first",
        )
        logs = [
            {
                "TaskId": r.task_id,
                "Url": r.url if limits.url_echo == "echo" else normalised_url(r.url),
                "Status": r.status,
                "Percent": 100 if r.status == "done" else 0,
                "CreateTime": _cn_time(r.created),
                "UpdateTime": _cn_time(r.updated or r.created),
                "Area": r.area,
            }
            for r in records
        ]
        return {"PushLogs": logs, "TotalCount": total}

    # -- purge ------------------------------------------------------------------

    def _purge_urls_cache(self, params: Params) -> dict[str, Any]:
        urls = self._urls(params, "Urls")
        if len(urls) > self.limits.purge_url_batch:
            raise ApiError(
                "LimitExceeded.CdnPurgeUrlExceedBatchLimit",
                f"At most {self.limits.purge_url_batch} URLs can be purged in one request.",
            )
        return self._purge_task(urls, params, "url", None)

    def _purge_path_cache(self, params: Params) -> dict[str, Any]:
        paths = self._urls(params, "Paths")
        flush = _optional_choice(params, "FlushType", ("flush", "delete"))
        if flush is None:
            raise ApiError("MissingParameter", "FlushType is required.")
        if len(paths) > self.limits.purge_path_batch:
            raise ApiError(
                "LimitExceeded.CdnPurgePathExceedBatchLimit",
                f"At most {self.limits.purge_path_batch} directories can be purged in one request.",
            )
        return self._purge_task(paths, params, "path", flush)

    def _purge_task(
        self, urls: list[str], params: Params, kind: str, flush: str | None
    ) -> dict[str, Any]:
        # "无此参数时, 默认刷新加速域名所在加速区域 ... 指定刷新区域时, 需要与域名加速区域匹配"
        # (PurgeUrlsCache, cloud.tencent.com/document/api/228/37870).
        area = _optional_choice(params, "Area", ("mainland", "overseas", "global"))
        self._check_hosts(urls)
        if area is None:
            area = "global" if set(AREAS) <= set(self.limits.areas) else self.limits.areas[0]
        else:
            self._check_area(area)
        code = f"LimitExceeded.CdnPurge{'Url' if kind == 'url' else 'Path'}ExceedDayLimit"
        with self._lock:
            self._charge(kind, area, len(urls), code)
            task_id = self._new_task_id()
            now = self.clock.now()
            for url in urls:
                self._schedule(
                    self._purge, TaskRecord(task_id, url, area, kind, now, flush_type=flush)
                )
        return {"TaskId": task_id}

    def _describe_purge_quota(self, params: Params) -> dict[str, Any]:
        limits = self.limits
        return {
            "UrlPurge": self._quota_list("url", limits.purge_url_batch, limits.purge_url_per_day),
            "PathPurge": self._quota_list(
                "path", limits.purge_path_batch, limits.purge_path_per_day
            ),
        }

    def _describe_purge_tasks(self, params: Params) -> dict[str, Any]:
        kind = _optional_choice(params, "PurgeType", ("url", "path"))
        kinds = frozenset({kind} if kind else {"url", "path"})
        records, total = self._select(self._purge, params, kinds)
        logs = [
            {
                "TaskId": r.task_id,
                "Url": r.url,
                "Status": r.status,
                "PurgeType": r.kind,
                # Tencent reports URL purges as "delete"; only directories have "flush".
                "FlushType": r.flush_type or "delete",
                "CreateTime": _cn_time(r.created),
            }
            for r in records
        ]
        return {"PurgeLogs": logs, "TotalCount": total}

    # -- statistics -------------------------------------------------------------

    def _describe_cdn_data(self, params: Params) -> dict[str, Any]:
        start, end = _required_time(params, "StartTime"), _required_time(params, "EndTime")
        metric = params.get("Metric")
        if metric not in traffic.METRICS:
            raise ApiError(
                "InvalidParameter.CdnStatInvalidMetric", f"Metric {metric!r} is not supported."
            )
        domains = params.get("Domains") or [self.domain]
        for domain in domains:
            self._check_domain(domain)
        interval = _optional_choice(params, "Interval", tuple(traffic.STEP_SECONDS))
        interval = interval or _default_interval(end - start)
        _check_span(interval, start, end)
        step = traffic.STEP_SECONDS[interval]
        summary_name = "max" if metric == "bandwidth" else "sum"
        data = []
        for domain in domains:
            points = traffic.series(domain, metric, start, end, step)
            values = [value for _, value in points]
            summary = max(values, default=0.0) if summary_name == "max" else sum(values)
            detail = [{"Time": _cn_time(moment), "Value": value} for moment, value in points]
            data.append(
                {
                    "Resource": domain,
                    "CdnData": [
                        {
                            "Metric": metric,
                            "DetailData": detail,
                            "SummarizedData": {"Name": summary_name, "Value": summary},
                        }
                    ],
                }
            )
        return {"Interval": interval, "Data": data}

    def _describe_cdn_domain_logs(self, params: Params) -> dict[str, Any]:
        domain = params.get("Domain")
        if not isinstance(domain, str):
            raise ApiError("MissingParameter", "Domain is required.")
        self._check_domain(domain)
        start, end = _required_time(params, "StartTime"), _required_time(params, "EndTime")
        area = _choice(params, "Area", ("mainland", "overseas", "global"), "mainland")
        areas = AREAS if area == "global" else (area,)
        # SDK DescribeCdnDomainLogsRequest.Limit: "默认为 100, 最大为 1000".
        offset, limit = _page(params, default_limit=100, max_limit=1000)
        packages = traffic.log_packages(domain, start, end, areas)
        logs = [
            {
                "StartTime": _cn_time(p.start),
                "EndTime": _cn_time(p.end),
                "LogPath": f"https://log-download.sandbox.invalid/{domain}/{p.name}",
                "Area": p.area,
                "LogName": p.name,
                "FileSize": p.size,
            }
            for p in packages[offset : offset + limit]
        ]
        return {"DomainLogs": logs, "TotalCount": len(packages)}

    # -- shared pieces ----------------------------------------------------------

    def _urls(self, params: Params, name: str) -> list[str]:
        # SDK PushUrlsCacheRequest.Urls: "URL 列表, 需要包含协议头部 http:// 或 https://";
        # UrlEncode: "是否对中文字符进行编码后预热".
        urls = params.get(name)
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise ApiError("InvalidParameter.CdnParamError", f"{name} must be a non-empty list.")
        if params.get("UrlEncode"):
            urls = [quote(u.strip(), safe=":/?#[]@!$&'()*+,;=%~") for u in urls]
        return [u.strip() for u in urls]

    def _check_hosts(self, urls: list[str]) -> None:
        limit = self.limits.max_url_length
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ApiError(
                    self.limits.scheme_error_code, "URLs must start with http:// or https://."
                )
            self._check_domain(parts.netloc)
            if limit is not None and len(url) > limit:
                # The whole request is refused, without saying which URL.
                raise ApiError(
                    "InvalidParameter.CdnUrlExceedLength", "A URL exceeds the length limit."
                )
        if self.limits.host_unauthorized:
            raise ApiError(
                "UnauthorizedOperation.CdnHostUnauthorized",
                "The sub-account is not authorized for this domain.",
            )

    def _check_domain(self, domain: str) -> None:
        if domain.lower() != self.domain or self.limits.moved_to_edgeone:
            raise ApiError(
                "ResourceNotFound.CdnHostNotExists", f"The domain {domain} is not in this account."
            )
        if self.domain_status != "online":
            # SDK errorcodes: RESOURCEUNAVAILABLE_CDNHOSTISNOTONLINE "域名已关闭".
            raise ApiError("ResourceUnavailable.CdnHostIsNotOnline", f"The domain {domain} is off.")

    def _describe_domains(self, params: Params) -> dict[str, Any]:
        """DescribeDomains as the SDK models it (cdn/v20180606/models.py
        DescribeDomainsRequest, DomainFilter, BriefDomain): the account's domains,
        filtered by ``Filters`` (Name "domain": exact, or a substring with Fuzzy);
        Area is where the domain is accelerated (mainland, overseas, global)."""
        filters = params.get("Filters") or []
        if not isinstance(filters, list):
            raise ApiError("InvalidParameter.CdnParamError", "Filters must be a list.")
        domains = [] if self.limits.moved_to_edgeone else [self.domain]
        for item in filters:
            if not isinstance(item, dict) or item.get("Name") != "domain":
                continue
            values = [str(v).lower() for v in item.get("Value") or []]
            fuzzy = bool(item.get("Fuzzy"))
            domains = [d for d in domains if any((v in d) if fuzzy else v == d for v in values)]
        areas = self.limits.areas
        area = "global" if set(AREAS) <= set(areas) else areas[0]
        brief = [
            {"ResourceId": "cdn-sandbox0001", "AppId": 1250000000, "Domain": d,
             "Cname": f"{d}.cdn.dnsv1.com", "Status": self.domain_status, "ProjectId": 0,
             "ServiceType": "media", "CreateTime": "2024-01-01 00:00:00",
             "UpdateTime": "2024-01-01 00:00:00", "Disable": "normal", "Area": area,
             "Readonly": "normal", "Product": "cdn"}
            for d in domains
        ]  # fmt: skip
        return {"Domains": brief, "TotalNumber": len(brief)}

    def _check_area(self, area: str) -> None:
        """Refuse an area the domain is not accelerated in (global needs both)."""
        wanted = AREAS if area == "global" else (area,)
        missing = [each for each in wanted if each not in self.limits.areas]
        if missing:
            # The old API's words, quoted in lxl80/hexo-deployer-cos-cdn#5.
            raise ApiError(
                self.limits.area_refusal_code, f"域名 {self.domain} 未部署在 {missing[0]}"
            )

    def _charge(self, kind: str, area: str, count: int, code: str) -> None:
        """Take ``count`` from today's quota of ``area`` (both areas for global), or refuse."""
        day = self.clock.day(8)
        areas = AREAS if area == "global" else (area,)
        total = self._quota_total(kind)
        for each in areas:
            if self._used[(kind, day, each)] + count > total:
                left = total - self._used[(kind, day, each)]
                raise ApiError(code, f"The daily quota of {each} is exceeded: {left} left today.")
        for each in areas:
            self._used[(kind, day, each)] += count

    def _quota_total(self, kind: str) -> int:
        return {
            "push": self.limits.push_per_day,
            "url": self.limits.purge_url_per_day,
            "path": self.limits.purge_path_per_day,
        }[kind]

    def _quota_list(self, kind: str, batch: int, total: int) -> list[dict[str, Any]]:
        day = self.clock.day(8)
        with self._lock:
            return [
                {
                    "Batch": batch,
                    "Total": total,
                    "Available": max(total - self._used[(kind, day, area)], 0),
                    "Area": area,
                }
                for area in AREAS
                if area in self.limits.areas
            ]

    def _new_task_id(self) -> str:
        number = next(self._task_numbers)
        return f"{int(self.clock.now().timestamp())}-{number:06d}-{uuid.uuid4().hex[:8]}"

    def _schedule(self, log: list[TaskRecord], record: TaskRecord) -> None:
        log.append(record)
        self._by_task.setdefault(record.task_id, []).append(record)
        due = record.created + dt.timedelta(seconds=self.limits.task_delay)
        heapq.heappush(self._due, (due, next(self._sequence), record))

    def _finish(self, record: TaskRecord, now: dt.datetime) -> None:
        # Statuses from the SDK's models.py: PushTask.Status "fail / done / process /
        # invalid: 预热无效(源站返回4xx或5xx状态码)"; PurgeTask.Status "fail / done / process".
        record.updated = now
        key = self._cache_key(record.url)
        if record.kind == "url":
            self.cache.discard(key)
            record.status = "done"
        elif record.kind == "path":
            # "flush" only marks changed files stale; the sandbox never changes files, so
            # dropping the copies is the observable behaviour of both flush types.
            self.cache.discard_prefix(key)
            record.status = "done"
        elif self.origin.pull_status(key.removeprefix(f"http://{self.domain}")) != 200:
            # "invalid: 预热无效(源站返回4xx或5xx状态码)" (SDK cdn/v20180606/models.py,
            # PushTask.Status): any 4xx or 5xx from the origin, a passing 503 included.
            record.status = "invalid"
        elif self._random.random() < self.limits.fail_rate:
            record.status = "fail"
        else:
            layer = self._layers.get(record.task_id, "")
            prefetched(self.cache, "tencent", key, area=record.area, layer_option=layer)
            record.status = "done"

    def _cache_key(self, url: str) -> str:
        """The edge cache's key for ``url``: always http, the edge's netloc."""
        parts = urlsplit(url)
        query = f"?{parts.query}" if parts.query else ""
        return f"http://{self.domain}{parts.path or '/'}{query}"

    def _select(
        self,
        pool: list[TaskRecord],
        params: Params,
        kinds: frozenset[str],
        *,
        max_limit: int | None = 1000,
        cap: bool = False,
        oldest_first: bool = False,
    ) -> tuple[list[TaskRecord], int]:
        """Filter a task log like the Describe*Tasks calls do; one page, newest first."""
        task_id = params.get("TaskId")
        start, end = _time(params, "StartTime"), _time(params, "EndTime")
        if not task_id and start is None:
            raise ApiError("MissingParameter", "TaskId or StartTime must be given.")
        end = end or self.clock.now()
        keyword = params.get("Keyword")
        area, status = params.get("Area"), params.get("Status")
        refuse_over = None if cap else max_limit
        offset, limit = _page(params, default_limit=20, max_limit=refuse_over)
        if max_limit is not None:
            limit = min(limit, max_limit)
        with self._lock:
            self._forget_locked(pool)
            if task_id:
                candidates = list(self._by_task.get(task_id, []))
            else:
                # Logs are in creation order (the sandbox clock only moves forward):
                # bisect the window instead of scanning a bench-sized log.
                first = (
                    bisect.bisect_left(pool, start, key=lambda r: _whole_second(r.created))
                    if start is not None
                    else 0
                )
                last = bisect.bisect_right(pool, end, key=lambda r: _whole_second(r.created))
                candidates = pool[first:last]
            only_time = not (keyword or area or status) and (start is None or not task_id)
            if only_time and pool is self._push and "push" in kinds:
                # A time window (or a task id) alone: the page is a slice of the
                # window, so a query costs the page it answers, not the account's
                # whole log. "StartTime 开始时间" / "EndTime 结束时间" filter the logs
                # by creation time, paged by Offset/Limit with TotalCount
                # (DescribePushTasksRequest, SDK cdn/v20180606/models.py;
                # cloud.tencent.com/document/api/228/37872): a service indexed by
                # time answers a page without reading the account's other logs,
                # and a bench of 100,000s of logs polled at 20 pages a second
                # must not measure the emulator instead.
                total = len(candidates)
                if oldest_first:
                    page = candidates[offset : offset + limit]
                else:
                    stop = max(0, total - offset)
                    page = candidates[max(0, stop - limit) : stop][::-1]
                return page, total
            chosen = [
                r
                for r in (candidates if oldest_first else reversed(candidates))
                if r.kind in kinds
                and (start is None or start <= _whole_second(r.created) <= end)
                and (not keyword or _keyword_matches(keyword, r.url))
                and (not area or r.area == area)
                and (not status or r.status == status)
            ]
        return chosen[offset : offset + limit], len(chosen)

    def _forget_locked(self, pool: list[TaskRecord]) -> None:
        """Drop logs older than the retention from ``pool`` (creation order; lock held)."""
        oldest = self.clock.now() - self.limits.task_retention
        gone = bisect.bisect_left(pool, oldest, key=lambda r: r.created)
        if gone:
            for record in pool[:gone]:
                self._by_task.pop(record.task_id, None)
            del pool[:gone]


# Task logs finished per hold of the emulator's lock (see TencentEmulator.settle).
SETTLE_SLICE = 100

# Calls that only add tasks: nothing they answer depends on which tasks have finished,
# so they leave settling to the next call (or edge request) that reads task states.
# Settled here, a push was answered only after 500 earlier logs were finished, which
# doubled its round trip in the push bench.
_ADDS_TASKS_ONLY = frozenset({"PushUrlsCache", "PurgeUrlsCache", "PurgePathCache"})

_PUSH_PARAMS = frozenset(
    {"Urls", "UserAgent", "Area", "Layer", "ParseM3U8", "DisableRange", "Headers", "UrlEncode"}
)
_PUSH_TASK_PARAMS = frozenset(
    {"StartTime", "EndTime", "TaskId", "Keyword", "Offset", "Limit", "Area", "Status"}
)
_PURGE_PATH_PARAMS = frozenset({"Paths", "FlushType", "UrlEncode", "Area"})
_PURGE_TASK_PARAMS = _PUSH_TASK_PARAMS | {"PurgeType"}
_CDN_DATA_PARAMS = frozenset(
    {
        "StartTime", "EndTime", "Metric", "Domains", "Project", "Interval", "Detail", "Isp",
        "District", "Protocol", "DataSource", "IpProtocol", "Area", "AreaType", "Product",
        "TimeZone",
    }
)  # fmt: skip
_DOMAIN_LOG_PARAMS = frozenset(
    {"Domain", "StartTime", "EndTime", "Offset", "Limit", "Area", "LogType"}
)


def _outcome(code: str) -> str:
    """The received-log counter an error code is filed under."""
    if code.startswith("AuthFailure"):
        return "auth"
    if code.startswith("RequestLimitExceeded"):
        return "rate_limited"
    if code.endswith("ExceedDayLimit"):
        return "quota"
    if code.endswith("ExceedBatchLimit"):
        return "batch"
    if code == "ResourceNotFound.CdnHostNotExists":
        return "domain"
    return "invalid"


def _json_reply(result: Mapping[str, Any], request_id: str) -> Reply:
    # API 3.0 answers {"Response": {..., "RequestId"}}, and errors as
    # {"Response": {"Error": {"Code", "Message"}, "RequestId"}}: the SDK reads
    # data["Response"]["Error"] (tencentcloud/common/abstract_client.py).
    body = json.dumps({"Response": {**result, "RequestId": request_id}}).encode()
    # Exactly "application/json": the SDK ignores error bodies under any other type.
    return Reply(200, body, "application/json")


def _choice(params: Params, name: str, choices: tuple[str, ...], default: str) -> str:
    return _optional_choice(params, name, choices) or default


def _optional_choice(params: Params, name: str, choices: tuple[str, ...]) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise ApiError(
            "InvalidParameter.CdnParamError", f"{name} must be one of {', '.join(choices)}."
        )
    return str(value)


def _page(params: Params, *, default_limit: int, max_limit: int | None) -> tuple[int, int]:
    offset, limit = params.get("Offset", 0), params.get("Limit", default_limit)
    if not isinstance(offset, int) or not isinstance(limit, int):
        raise ApiError("InvalidParameter.CdnParamError", "Offset and Limit must be integers.")
    if offset < 0 or limit < 1 or (max_limit is not None and limit > max_limit):
        raise ApiError(
            "InvalidParameter.CdnParamError", f"Limit must be 1 to {max_limit or 'any'}."
        )
    return offset, limit


def _time(params: Params, name: str) -> dt.datetime | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return dt.datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=UTC8)
    except ValueError:
        raise ApiError(
            "InvalidParameter.CdnParamError", f"{name} must look like 2018-08-08 00:00:00."
        ) from None


def _required_time(params: Params, name: str) -> dt.datetime:
    value = _time(params, name)
    if value is None:
        raise ApiError("MissingParameter", f"{name} is required.")
    return value


@functools.lru_cache(maxsize=4096)
def _cn_time(moment: dt.datetime) -> str:
    # Cached: a status page formats two times of each of its up to 1,000 logs, and a
    # task's 500 logs share them. Uncached, this was most of the emulator's time in
    # the push bench (3.3 million calls for 50,000 URLs), and pushes waiting behind
    # the pages were answered late, which the client must count as late arrivals.
    return moment.astimezone(UTC8).strftime(TIME_FORMAT)


def _whole_second(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=0)


def _keyword_matches(keyword: str, url: str) -> bool:
    """A full URL matches itself; anything else is a domain."""
    if "://" in keyword:
        return keyword == url
    return urlsplit(url).netloc.lower() == keyword.lower()


def _default_interval(span: dt.timedelta) -> str:
    if span <= dt.timedelta(days=1):
        return "5min"
    return "hour" if span <= dt.timedelta(days=31) else "day"


def _check_span(interval: str, start: dt.datetime, end: dt.datetime) -> None:
    # SDK DescribeCdnDataRequest.Interval: min within 24 hours, 5min and hour within 31
    # days, day beyond. The 90-day span is the emulator's own bound (no source).
    span = end - start
    longest = {"min": dt.timedelta(days=1), "5min": dt.timedelta(days=31)}
    if span < dt.timedelta(0) or span > dt.timedelta(days=90):
        raise ApiError("InvalidParameter.CdnStatInvalidDate", "The range must be 0 to 90 days.")
    if span > longest.get(interval, dt.timedelta(days=90)):
        raise ApiError(
            "InvalidParameter.CdnInvalidParamInterval",
            f"Interval {interval} is not available for a range this long.",
        )


def _build(shared: Shared, credentials: tuple[str, str], limits: TencentLimits) -> TencentEmulator:
    return TencentEmulator(
        clock=shared.clock,
        cache=shared.cache,
        origin=shared.origin,
        edge_netloc=shared.edge_netloc,
        credentials=credentials,
        limits=limits,
        faults=shared.faults,
    )


def _client_env(endpoint: str, credentials: tuple[str, str]) -> dict[str, str]:
    return {
        "TENCENT_ENDPOINT": endpoint,
        "TENCENT_SECRET_ID": credentials[0],
        "TENCENT_SECRET_KEY": credentials[1],
    }


def _set_limits(api: TencentEmulator, quota: int | None, rate: int | None) -> None:
    """Rate: requests a second per API."""
    if quota is not None:
        api.limits.push_per_day = quota
    if rate is not None:
        api.limits.requests_per_second = rate


# What this vendor's edges answer (sandbox/edge.py), per answer: an edge hit, an
# upper-layer hit, a miss.
# Tencent: one X-Cache-Lookup line per layer, the edge's first. Edge hit "Hit From
# MemCache" (Tencent's help page "如何判断用户访问是否命中 CDN 节点缓存", quoted at
# kanchuan.com/blog/186-cdn-x-cache-lookup); served by the middle layer: "Cache Miss"
# then "Hit From Inner Cluster" (same capture, the first request of a file).
EDGE_HEADERS: dict[str, list[tuple[str, str]]] = {
    "edge": [("X-Cache-Lookup", "Hit From MemCache")],
    "upper": [("X-Cache-Lookup", "Cache Miss"), ("X-Cache-Lookup", "Hit From Inner Cluster")],
    "origin": [("X-Cache-Lookup", "Cache Miss")],
}  # fmt: skip


def _prefetch_layer(area: str, layer_option: str) -> Layer:
    """The layer a finished prefetch fills, as the vendor documents it."""
    # SDK PushUrlsCacheRequest.Layer: "中国境内区域默认预热至中间层节点, 中国境外区域默认
    # 预热至边缘节点 … 填写"middle"或不填充时, 可指定预热至中间层节点" (no mainland edge
    # option). The sandbox edge stands for a mainland edge, so a global push (its
    # mainland share in the middle layer) is an upper-layer copy too.
    return "edge" if area == "overseas" and layer_option != "middle" else "upper"


EMULATOR = EmulatorSpec(
    name="tencent",
    build=_build,
    limits_type=TencentLimits,
    credentials=(config.SANDBOX_TENCENT_SECRET_ID, config.SANDBOX_TENCENT_SECRET_KEY),
    client_env=_client_env,
    set_limits=_set_limits,
    cache_headers=EDGE_HEADERS,
    prefetch_layer=_prefetch_layer,
)
