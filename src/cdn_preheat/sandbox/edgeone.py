"""Tencent EdgeOne API emulator (service ``teo``, API version 2022-09-01) on loopback.

The unmodified ``tencentcloud-sdk-python-teo`` client talks to it with
``HttpProfile(protocol="http", endpoint="127.0.0.1:PORT")``. It checks TC3
signatures for service ``teo``, the zone, per-action request rates, the
plan's batch and daily quotas (``LimitExceeded.BatchQuota``/``.DailyQuota``),
answers targets outside the zone's domains in ``FailedList``, runs prefetch
and purge tasks against the sandbox's origin and edge cache, and answers
``DescribeContentQuota`` and the ISO-8601 windowed task queries.

Fields, defaults and limits follow the SDK's ``tencentcloud/teo/v20220901/models.py``;
error codes the per-action lists of the Go SDK's ``teo/v20220901/client.go`` and
their descriptions in ``errorcodes.py``. Points no document settles are settable
on :class:`EdgeOneLimits`.

Tasks advance on the :class:`SandboxClock`: a target is ``processing`` for
``task_delay`` seconds, then ``success`` (and in the cache) if the origin has it,
``invalid`` if the origin answers non-2xx, ``failed`` with probability
``fail_rate``, or the status ``forced`` names for its path (``timeout``,
``canceled``, ...). Tasks settle lazily: on every API call, on every edge
request and on ``settle()``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import itertools
import json
import random
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from cdn_preheat import config
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

# The TC3 family's wire format (POST /, X-TC-Action, {"Response": ...}) is Tencent Cloud
# CDN's: the reply shape and the HTTP handler are shared with that emulator.
from cdn_preheat.sandbox.tencent import ApiError, _json_reply

API_VERSION = "2022-09-01"
SERVICE = "teo"
UTC8 = dt.timezone(dt.timedelta(hours=8))
SANDBOX_ZONE_ID = "zone-sandbox0001"
Params = Mapping[str, Any]
# Task.Status values (models.py) plus "invalid" (DescribePrefetchTasksRequest.Filters).
STATUSES = ("processing", "success", "failed", "timeout", "canceled", "invalid")
PURGE_TYPES = ("purge_url", "purge_prefix", "purge_host", "purge_all")
_PARAM_ERROR = "InvalidParameter.ParameterError"


@dataclass
class EdgeOneLimits:
    """The zone's plan and the API's behaviour. Mutable: tests change it on a running emulator."""

    # "注意: 提交任务数受计费套餐配额限制" (CreatePrefetchTaskRequest.Targets): the plan sets
    # Batch and Daily (DescribeContentQuota). The sandbox zone's plan is a generous one.
    prefetch_batch: int = 1000
    prefetch_per_day: int = 100_000
    # "边缘预热默认分配单独的预热额度 1000 条/天, 不消费常规预热额度"
    # (CreatePrefetchTaskRequest.Mode).
    edge_prefetch_per_day: int = 1000
    purge_url_batch: int = 1000
    purge_url_per_day: int = 10_000
    purge_prefix_batch: int = 100
    purge_prefix_per_day: int = 100
    # "A maximum of 20 requests can be initiated per second for this API" on each teo API's
    # page (CreatePrefetchTask tencentcloud.com/document/api/1145/50537, DescribePrefetchTasks
    # 1145/50533).
    requests_per_second: int = 20
    action_rates: dict[str, int] = field(default_factory=dict)
    rate_window_seconds: float = 1.0
    # How the rate is counted (sandbox/core.py RateCounting: no source settles it).
    rate_counting: RateCounting = "sliding"
    # Which code a call over the rate earns: teo's own LimitExceeded.RateLimitExceeded
    # ("单位时间内接口请求频率达到限制", errorcodes.py) or API 3.0's common
    # RequestLimitExceeded; no document says which the gateway sends.
    rate_limit_code: str = "RequestLimitExceeded"
    # The zone's domains; the sandbox edge's netloc when empty.
    domains: tuple[str, ...] = ()
    # A target outside the zone's domains: listed in FailedList ("failed_list", the rest
    # accepted) or the whole request refused with InvalidParameter.DomainNotFound ("域名不存在
    # 或不属于该账号", listed for CreatePrefetchTask): not documented which, so settable.
    foreign_host: Literal["failed_list", "error"] = "failed_list"
    # The code a ZoneId that is not the account's earns (errorcodes.py offers
    # InvalidParameter.ZoneNotFound "站点不存在" and ResourceNotFound "资源不存在").
    zone_not_found_code: str = "InvalidParameter.ZoneNotFound"
    task_delay: float = 0.5
    fail_rate: float = 0.0
    # Path (with query) -> the status its prefetch ends in (timeout, canceled, failed, ...).
    forced: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    # "参数错误: 无效 "结束时间", 不在允许的查询范围内: [开始时间, 开始+ 7天]"
    # (InvalidParameter.ParameterError, errorcodes.py): one query spans at most 7 days.
    max_query_span: dt.timedelta = dt.timedelta(days=7)
    # Not documented for EdgeOne: Tencent Cloud CDN's 30 days is assumed.
    task_retention: dt.timedelta = dt.timedelta(days=30)
    # The list's order is not documented.
    task_order: Literal["newest_first", "oldest_first"] = "newest_first"
    url_echo: UrlEcho = "echo"
    # CAM actions the sub-account may not call (UnauthorizedOperation.CamUnauthorized).
    cam_denied: frozenset[str] = frozenset()


@dataclass(slots=True)
class Job:
    """One target of one prefetch or purge job."""

    job_id: str
    target: str
    kind: str  # prefetch | purge_url | purge_prefix | ...
    created: dt.datetime
    status: str = "processing"
    updated: dt.datetime | None = None
    method: str | None = None
    mode: str = "default"
    fail_message: str = ""


@dataclass(frozen=True)
class ReceivedPrefetch:
    """An accepted CreatePrefetchTask: its job and the targets it accepted."""

    time: dt.datetime
    job_id: str
    urls: tuple[str, ...]
    failed: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # Mode, EncodeUrl, Headers


class EdgeOneEmulator(CountedOutcomes, EmulatorBase):
    """State and behaviour of one Tencent Cloud account's EdgeOne zone."""

    name = "edgeone"
    server_version = "cdn-preheat-sandbox-edgeone"

    def __init__(
        self,
        *,
        clock: SandboxClock,
        cache: EdgeCache,
        origin: Origin,
        edge_netloc: str,
        credentials: tuple[str, str],
        zone_id: str = SANDBOX_ZONE_ID,
        limits: EdgeOneLimits | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.clock = clock
        self.cache = cache
        self.origin = origin
        self.edge_netloc = edge_netloc.lower()
        self.secrets = {credentials[0]: credentials[1]}
        self.zone_id = zone_id
        self.limits = limits or EdgeOneLimits()
        self.faults = faults or Faults()
        self.outcomes: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.rate_refusals: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._rate = RateWindows(
            self.limits.rate_window_seconds, counting=self.limits.rate_counting
        )
        self._random = random.Random(self.limits.seed)
        self._sequence = itertools.count()
        self._numbers = itertools.count(1)
        self._prefetch: list[Job] = []
        self._purge: list[Job] = []
        self._due: list[tuple[dt.datetime, int, Job]] = []
        self._by_job: dict[str, list[Job]] = {}
        self._used: Counter[tuple[str, str]] = Counter()  # (quota type, day) -> targets
        self._received: list[ReceivedPrefetch] = []
        self._injected: deque[str] = deque()
        self._actions: dict[str, tuple[Callable[[Params], dict[str, Any]], frozenset[str]]] = {
            "CreatePrefetchTask": (self._create_prefetch_task, _PREFETCH_PARAMS),
            "DescribePrefetchTasks": (self._describe_prefetch_tasks, _TASK_PARAMS),
            "DescribeContentQuota": (self._describe_content_quota, frozenset({"ZoneId"})),
            "CreatePurgeTask": (self._create_purge_task, _PURGE_PARAMS),
            "DescribePurgeTasks": (self._describe_purge_tasks, _TASK_PARAMS),
            "DescribeAccelerationDomains": (self._describe_acceleration_domains, _DOMAIN_PARAMS),
        }
        # AccelerationDomain.DomainStatus of the zone's domains: online, process, offline, init.
        self.domain_status = "online"

    # -- what tests read --------------------------------------------------------

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(d.lower() for d in self.limits.domains) or (self.edge_netloc,)

    def received(self) -> list[ReceivedPrefetch]:
        with self._lock:
            return list(self._received)

    def received_urls(self) -> list[str]:
        """Every target every CreatePrefetchTask accepted, in arrival order."""
        return [url for push in self.received() for url in push.urls]

    def quota_used(self, kind: str = "prefetch_url") -> int:
        """Targets charged today (UTC+8) to the quota of ``kind``."""
        with self._lock:
            return self._used[(kind, self.clock.day(8))]

    def received_json(self) -> bytes:
        accepted = [
            {
                "time": push.time.isoformat(),
                "action": "CreatePrefetchTask",
                "task_id": push.job_id,
                "area": self.zone_id,
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
        now = self.clock.now()
        with self._lock:
            while self._due and self._due[0][0] <= now:
                _, _, job = heapq.heappop(self._due)
                self._finish(job, now)

    # -- the wire ---------------------------------------------------------------

    def answer(self, request: Request, *, rate_limited: bool) -> Reply:
        """Carry one API 3.0 request out (the TC3 family's wire, service teo) and answer it."""
        method, target, headers, body = (
            request.method, request.target, request.headers, request.body
        )  # fmt: skip
        request_id = str(uuid.uuid4())
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
                raise ApiError(self.limits.rate_limit_code, "Request rate exceeded (injected).")
            with self._lock:
                injected = self._injected.popleft() if self._injected else None
            if injected is not None:
                raise ApiError(injected, f"{injected} (injected).")
            result = self._dispatch(method, headers.get("x-tc-action", ""), headers, body)
        except (ApiError, SignatureError) as error:
            self._count(_outcome(error.code))
            error_body = {"Error": {"Code": error.code, "Message": error.message}}
            return _json_reply(error_body, request_id)
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
                "UnauthorizedOperation.CamUnauthorized", f"CAM does not allow teo:{action}."
            )
        limit = self.limits.action_rates.get(action, self.limits.requests_per_second)
        self._rate.tune(self.limits.rate_window_seconds, self.limits.rate_counting)
        if not self._rate.allow(action, limit):
            with self._lock:
                self.rate_refusals[action] += 1
            raise ApiError(
                self.limits.rate_limit_code, f"More than {limit} calls a second to {action}."
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
        self._check_zone(params.get("ZoneId"))
        self.settle()
        return run(params)

    def _check_zone(self, zone: object) -> None:
        # ZoneId: "若您希望快速提交不同站点下的 Targets Url, 可以将其填写为 *" (models.py).
        if zone not in (self.zone_id, "*"):
            raise ApiError(self.limits.zone_not_found_code, f"The zone {zone!r} does not exist.")

    # -- prefetch ---------------------------------------------------------------

    def _create_prefetch_task(self, params: Params) -> dict[str, Any]:
        targets = self._targets(params)
        mode = params.get("Mode") or "default"
        if mode not in ("default", "edge"):
            raise ApiError(_PARAM_ERROR, "Mode must be default or edge.")
        headers = params.get("Headers") or []
        if not isinstance(headers, list) or not all(
            isinstance(h, dict) and set(h) <= {"Name", "Value"} for h in headers
        ):
            raise ApiError(_PARAM_ERROR, "Headers must be a list of {Name, Value}.")
        if len(targets) > self.limits.prefetch_batch:
            raise ApiError(
                "LimitExceeded.BatchQuota",
                f"At most {self.limits.prefetch_batch} targets can be submitted at once.",
            )
        accepted, failed = self._split_targets(targets)
        kind = "prefetch_edge" if mode == "edge" else "prefetch_url"
        with self._lock:
            self._charge(kind, len(accepted))
            job_id = self._new_job_id()
            now = self.clock.now()
            for url in accepted:
                self._schedule(self._prefetch, Job(job_id, url, "prefetch", now, mode=mode))
            options = {k: v for k, v in params.items() if k not in ("Targets", "ZoneId")}
            self._received.append(
                ReceivedPrefetch(now, job_id, tuple(accepted), tuple(failed), options)
            )
        return {"JobId": job_id, "FailedList": _failed_list(failed)}

    def _split_targets(self, targets: list[str]) -> tuple[list[str], dict[str, str]]:
        """(accepted, refused target -> reason): targets outside the zone are refused."""
        accepted: list[str] = []
        failed: dict[str, str] = {}
        for url in targets:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                failed[url] = "invalid target: the URL must start with http:// or https://"
            elif parts.netloc.lower() not in self.domains:
                if self.limits.foreign_host == "error":
                    raise ApiError(
                        "InvalidParameter.DomainNotFound",
                        f"The domain {parts.netloc} does not exist or is not the account's.",
                    )
                failed[url] = f"domain {parts.netloc} is not in zone {self.zone_id}"
            else:
                accepted.append(url)
        return accepted, failed

    def _describe_prefetch_tasks(self, params: Params) -> dict[str, Any]:
        jobs, total = self._select(self._prefetch, params)
        return {"Tasks": [self._task(job) for job in jobs], "TotalCount": total}

    def _describe_content_quota(self, params: Params) -> dict[str, Any]:
        limits = self.limits
        return {
            "PrefetchQuota": [
                self._quota("prefetch_url", limits.prefetch_batch, limits.prefetch_per_day)
            ],
            "PurgeQuota": [
                self._quota("purge_url", limits.purge_url_batch, limits.purge_url_per_day),
                self._quota("purge_prefix", limits.purge_prefix_batch, limits.purge_prefix_per_day),
            ],
        }

    def _quota(self, kind: str, batch: int, daily: int) -> dict[str, Any]:
        used = self.quota_used(kind)
        return {
            "Type": kind,
            "Batch": batch,
            "Daily": daily,
            "DailyAvailable": max(daily - used, 0),
        }

    # -- purge ------------------------------------------------------------------

    def _create_purge_task(self, params: Params) -> dict[str, Any]:
        kind = params.get("Type")
        if kind not in ("purge_url", "purge_prefix"):
            raise ApiError(_PARAM_ERROR, "The sandbox purges by purge_url or purge_prefix.")
        method = params.get("Method") or "invalidate"  # "默认值:  invalidate"
        if method not in ("invalidate", "delete"):
            raise ApiError(_PARAM_ERROR, "Method must be invalidate or delete.")
        targets = self._targets(params)
        limits = self.limits
        batch = limits.purge_url_batch if kind == "purge_url" else limits.purge_prefix_batch
        if len(targets) > batch:
            raise ApiError("LimitExceeded.BatchQuota", f"At most {batch} targets at once.")
        accepted, failed = self._split_targets(targets)
        with self._lock:
            self._charge(str(kind), len(accepted))
            job_id = self._new_job_id()
            now = self.clock.now()
            for url in accepted:
                self._schedule(self._purge, Job(job_id, url, str(kind), now, method=method))
        return {"JobId": job_id, "FailedList": _failed_list(failed)}

    def _describe_purge_tasks(self, params: Params) -> dict[str, Any]:
        jobs, total = self._select(self._purge, params)
        return {"Tasks": [self._task(job) for job in jobs], "TotalCount": total}

    # -- the zone ---------------------------------------------------------------

    def _describe_acceleration_domains(self, params: Params) -> dict[str, Any]:
        """The zone's domains (SDK models.py DescribeAccelerationDomainsRequest: Limit
        "默认值: 20, 上限: 200", Filters "domain-name: 按照加速域名进行过滤")."""
        offset, limit = params.get("Offset", 0), params.get("Limit", 20)
        if not isinstance(offset, int) or not isinstance(limit, int) or not 1 <= limit <= 200:
            raise ApiError(_PARAM_ERROR, "Limit must be 1 to 200.")
        names: list[str] | None = None
        for item in params.get("Filters") or []:
            if not isinstance(item, dict) or not isinstance(item.get("Values"), list):
                raise ApiError(_PARAM_ERROR, "Filters must be a list of {Name, Values}.")
            if item.get("Name") == "domain-name":
                names = [str(v).lower() for v in item["Values"]]
        domains = [d for d in self.domains if names is None or d in names]
        found = [
            {"ZoneId": self.zone_id, "DomainName": d, "DomainStatus": self.domain_status,
             "Cname": f"{d}.eo.dnse1.com", "CreatedOn": "2024-01-01T00:00:00Z",
             "ModifiedOn": "2024-01-01T00:00:00Z"}
            for d in domains[offset : offset + limit]
        ]  # fmt: skip
        return {"AccelerationDomains": found, "TotalCount": len(domains)}

    # -- shared pieces ----------------------------------------------------------

    def _targets(self, params: Params) -> list[str]:
        targets = params.get("Targets")
        if not isinstance(targets, list) or not targets:
            raise ApiError(_PARAM_ERROR, "Targets must be a non-empty list.")
        if not all(isinstance(t, str) for t in targets):
            raise ApiError(_PARAM_ERROR, "Targets must be strings.")
        if params.get("EncodeUrl"):
            # "若内容含有非 ASCII 字符集的字符, 请开启此开关进行编码转换 (编码规则遵循 RFC3986)".
            targets = [quote(t.strip(), safe=":/?#[]@!$&'()*+,;=%~") for t in targets]
        return [t.strip() for t in targets]

    def _charge(self, kind: str, count: int) -> None:
        """Take ``count`` from today's quota of ``kind`` or refuse the whole request."""
        day = self.clock.day(8)
        daily = {
            "prefetch_url": self.limits.prefetch_per_day,
            "prefetch_edge": self.limits.edge_prefetch_per_day,
            "purge_url": self.limits.purge_url_per_day,
            "purge_prefix": self.limits.purge_prefix_per_day,
        }[kind]
        if self._used[(kind, day)] + count > daily:
            left = max(daily - self._used[(kind, day)], 0)
            raise ApiError("LimitExceeded.DailyQuota", f"The daily quota is spent: {left} left.")
        self._used[(kind, day)] += count

    def _new_job_id(self) -> str:
        # "job-id 形如: 1379afjk91u32h" (DescribePrefetchTasksRequest.Filters).
        return f"{next(self._numbers):04d}{uuid.uuid4().hex[:10]}"

    def _schedule(self, log: list[Job], job: Job) -> None:
        log.append(job)
        self._by_job.setdefault(job.job_id, []).append(job)
        due = job.created + dt.timedelta(seconds=self.limits.task_delay)
        heapq.heappush(self._due, (due, next(self._sequence), job))

    def _finish(self, job: Job, now: dt.datetime) -> None:
        job.updated = now
        key = self._cache_key(job.target)
        if job.kind == "purge_url":
            self.cache.discard(key)
            job.status = "success"
            return
        if job.kind == "purge_prefix":
            self.cache.discard_prefix(key)
            job.status = "success"
            return
        path = key.removeprefix(f"http://{self.edge_netloc}")
        forced = self.limits.forced.get(path)
        if forced is not None:
            job.status = forced
            job.fail_message = f"the sandbox ended this prefetch as {forced}"
        elif self.origin.pull_status(path) // 100 != 2:
            # "invalid: 无效。即源站响应非 2xx 状态码" (DescribePrefetchTasksRequest.Filters).
            job.status = "invalid"
            job.fail_message = "origin responded with a non-2xx status"
        elif self._random.random() < self.limits.fail_rate:
            job.status = "failed"
            job.fail_message = "origin pull failed"
        else:
            # The layer Mode names (edge.default_prefetch_layer).
            prefetched(self.cache, "edgeone", key, layer_option=job.mode)
            job.status = "success"

    def _cache_key(self, url: str) -> str:
        parts = urlsplit(url)
        query = f"?{parts.query}" if parts.query else ""
        return f"http://{self.edge_netloc}{parts.path or '/'}{query}"

    def _task(self, job: Job) -> dict[str, Any]:
        failed = job.status not in ("processing", "success")
        return {
            "JobId": job.job_id,
            "Target": job.target if self.limits.url_echo == "echo" else normalised_url(job.target),
            "Type": "prefetch_url" if job.kind == "prefetch" else job.kind,
            "Method": job.method or "",
            "Status": job.status,
            "CreateTime": _iso(job.created),
            "UpdateTime": _iso(job.updated or job.created),
            "FailType": ("originPullFailed" if job.status == "invalid" else "taskFailed")
            if failed
            else "",
            "FailMessage": job.fail_message if failed else "",
        }

    def _select(self, pool: list[Job], params: Params) -> tuple[list[Job], int]:
        """Filter a task log as DescribePrefetchTasks/DescribePurgeTasks do; one page."""
        filters = _filters(params)
        job_id = filters["job-id"][0] if "job-id" in filters else None
        start, end = _time(params, "StartTime"), _time(params, "EndTime")
        if job_id is None and start is None and end is None:
            # "查询起始时间, 时间与 job-id 必填一个".
            raise ApiError(_PARAM_ERROR, "StartTime/EndTime or a job-id filter is required.")
        now = self.clock.now()
        if job_id is None or start is not None or end is not None:
            start = start or (end or now) - self.limits.max_query_span
            end = end or now
            if end < start or end - start > self.limits.max_query_span:
                raise ApiError(
                    _PARAM_ERROR,
                    '参数错误: 无效 "结束时间", 不在允许的查询范围内: [开始时间, 开始+ 7天]',
                )
        offset, limit = params.get("Offset", 0), params.get("Limit", 20)
        if not isinstance(offset, int) or not isinstance(limit, int):
            raise ApiError(_PARAM_ERROR, "Offset and Limit must be integers.")
        if offset < 0 or not 1 <= limit <= 1000:
            # "分页查询限制数目, 默认值: 20, 上限: 1000".
            raise ApiError(_PARAM_ERROR, "Limit must be 1 to 1000.")
        target = filters.get("target")
        domains = filters.get("domains")
        statuses = filters.get("statuses")
        kind = filters.get("type")
        with self._lock:
            self._forget_locked(pool)
            if job_id is not None:
                candidates = list(self._by_job.get(job_id, []))
            elif start is not None and end is not None:
                first = bisect.bisect_left(pool, start, key=lambda j: _whole_second(j.created))
                last = bisect.bisect_right(pool, end, key=lambda j: _whole_second(j.created))
                candidates = pool[first:last]
            else:
                candidates = []
            ordered = candidates if self.limits.task_order == "oldest_first" else candidates[::-1]
            chosen = [
                job
                for job in ordered
                if (start is None or start <= _whole_second(job.created))
                and (end is None or _whole_second(job.created) <= end)
                and (target is None or job.target == target[0])
                and (domains is None or urlsplit(job.target).netloc.lower() in domains)
                and (statuses is None or job.status in statuses)
                and (kind is None or job.kind == kind[0])
            ]
        return chosen[offset : offset + limit], len(chosen)

    def _forget_locked(self, pool: list[Job]) -> None:
        oldest = self.clock.now() - self.limits.task_retention
        gone = bisect.bisect_left(pool, oldest, key=lambda j: j.created)
        if gone:
            for job in pool[:gone]:
                self._by_job.pop(job.job_id, None)
            del pool[:gone]


_PREFETCH_PARAMS = frozenset(
    {"ZoneId", "Targets", "Mode", "EncodeUrl", "Headers", "PrefetchMediaSegments"}
)
_PURGE_PARAMS = frozenset({"ZoneId", "Type", "Method", "Targets", "EncodeUrl", "CacheTag"})
_TASK_PARAMS = frozenset({"ZoneId", "StartTime", "EndTime", "Offset", "Limit", "Filters"})
_DOMAIN_PARAMS = frozenset({"ZoneId", "Offset", "Limit", "Filters", "Order", "Direction", "Match"})
# Filters "job-id ... 暂不支持多值", "target ... 暂不支持多值"; "Filters.Values 的上限为 20".
_SINGLE_VALUED = ("job-id", "target", "type")
_FILTER_NAMES = ("job-id", "target", "domains", "statuses", "type")


def _filters(params: Params) -> dict[str, list[str]]:
    raw = params.get("Filters") or []
    if not isinstance(raw, list):
        raise ApiError(_PARAM_ERROR, "Filters must be a list.")
    found: dict[str, list[str]] = {}
    for item in raw:
        if not isinstance(item, dict) or item.get("Name") not in _FILTER_NAMES:
            raise ApiError(_PARAM_ERROR, f"Unknown filter {item!r}.")
        values = item.get("Values") or []
        if not isinstance(values, list) or not values or len(values) > 20:
            raise ApiError(_PARAM_ERROR, "Filters.Values holds 1 to 20 values.")
        if item["Name"] in _SINGLE_VALUED and len(values) > 1:
            raise ApiError(_PARAM_ERROR, f"The {item['Name']} filter takes one value.")
        if item["Name"] == "statuses" and not set(values) <= set(STATUSES):
            raise ApiError(_PARAM_ERROR, "Unknown status in the statuses filter.")
        found[str(item["Name"])] = [str(v) for v in values]
    return found


def _failed_list(failed: Mapping[str, str]) -> list[dict[str, Any]]:
    """FailReason entries ({Reason, Targets}), one per reason."""
    by_reason: dict[str, list[str]] = {}
    for url, reason in failed.items():
        by_reason.setdefault(reason, []).append(url)
    return [{"Reason": reason, "Targets": urls} for reason, urls in by_reason.items()]


def _time(params: Params, name: str) -> dt.datetime | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ApiError(_PARAM_ERROR, f"{name} must be an ISO 8601 time.") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC8)


def _iso(moment: dt.datetime) -> str:
    """ISO 8601 with Beijing time's offset, to the second."""
    return moment.astimezone(UTC8).replace(microsecond=0).isoformat()


def _whole_second(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=0)


def _outcome(code: str) -> str:
    if code.startswith("AuthFailure"):
        return "auth"
    if code.startswith("RequestLimitExceeded") or code == "LimitExceeded.RateLimitExceeded":
        return "rate_limited"
    if code == "LimitExceeded.DailyQuota":
        return "quota"
    if code == "LimitExceeded.BatchQuota":
        return "batch"
    if code in ("InvalidParameter.ZoneNotFound", "ResourceNotFound"):
        return "zone"
    return "invalid"


def _build(shared: Shared, credentials: tuple[str, str], limits: EdgeOneLimits) -> EdgeOneEmulator:
    return EdgeOneEmulator(
        clock=shared.clock,
        cache=shared.cache,
        origin=shared.origin,
        edge_netloc=shared.edge_netloc,
        credentials=credentials,
        limits=limits,
        faults=shared.faults,
    )


def _client_env(endpoint: str, credentials: tuple[str, str]) -> dict[str, str]:
    # EdgeOne is reached with the account's Tencent Cloud keys; the zone is the sandbox's.
    return {
        "EO_ENDPOINT": endpoint,
        "EO_ZONE_ID": SANDBOX_ZONE_ID,
        "TENCENT_SECRET_ID": credentials[0],
        "TENCENT_SECRET_KEY": credentials[1],
    }


def _set_limits(api: EdgeOneEmulator, quota: int | None, rate: int | None) -> None:
    """Rate: requests a second per API."""
    if quota is not None:
        api.limits.prefetch_per_day = quota
    if rate is not None:
        api.limits.requests_per_second = rate


# What this vendor's edges answer (sandbox/edge.py), per answer: an edge hit, an
# upper-layer hit, a miss.
# EdgeOne: "EO-Cache-Status: HIT" (the cache of the EdgeOne node answered), "MISS" (it
# did not, or its copy was stale and the origin sent a new one), "RefreshHit" (stale,
# confirmed by a 304) (edgeone.ai/document/54212, "Default HTTP Response Headers"). The
# page names no layer: a copy in the middle layer, which default prefetches fill, is
# an EdgeOne node's cache too, so it answers HIT.
EDGE_HEADERS: dict[str, list[tuple[str, str]]] = {
    "edge": [("EO-Cache-Status", "HIT")],
    "upper": [("EO-Cache-Status", "HIT")],
    "origin": [("EO-Cache-Status", "MISS")],
}  # fmt: skip


def _prefetch_layer(area: str, layer_option: str) -> Layer:
    """The layer a finished prefetch fills, as the vendor documents it."""
    # SDK teo CreatePrefetchTaskRequest.Mode: "default: 默认模式, 即预热到中间层; edge: 边缘
    # 预热模式, 即预热到边缘和中间层。不填写时, 默认值为 default".
    return "edge" if layer_option == "edge" else "upper"


EMULATOR = EmulatorSpec(
    name="edgeone",
    build=_build,
    limits_type=EdgeOneLimits,
    # The same Tencent Cloud account (and keys) holds the EdgeOne zone.
    credentials=(config.SANDBOX_TENCENT_SECRET_ID, config.SANDBOX_TENCENT_SECRET_KEY),
    client_env=_client_env,
    set_limits=_set_limits,
    cache_headers=EDGE_HEADERS,
    prefetch_layer=_prefetch_layer,
)
