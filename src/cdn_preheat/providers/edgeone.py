"""Tencent EdgeOne through the official SDK (``tencentcloud-sdk-python-teo``, API 2022-09-01).

EdgeOne is Tencent's successor to Tencent Cloud CDN for many domains (Tencent's
"CDN 迁移至 EdgeOne" tool moves them): the same account and keys
(``TENCENT_SECRET_ID``/``TENCENT_SECRET_KEY``), the same TC3 signing, but another
service (``teo``), a zone (``EO_ZONE_ID``) in place of an area, and other calls:

- ``CreatePrefetchTask`` (``ZoneId``, ``Targets``, ``Mode``, ``EncodeUrl``, ``Headers``)
  answers a ``JobId`` and a ``FailedList`` of ``{Reason, Targets}``: a partial
  acceptance, reported as :class:`InvalidUrls` carrying the job of the rest;
- ``DescribeContentQuota`` (per zone) lists ``PrefetchQuota``/``PurgeQuota`` entries by
  ``Type`` with ``Batch``, ``Daily`` and ``DailyAvailable``;
- ``DescribePrefetchTasks`` / ``DescribePurgeTasks`` list tasks by an ISO-8601
  ``StartTime``/``EndTime`` window or a ``job-id`` filter, ``Limit`` at most 1,000;
- ``CreatePurgeTask`` purges by URL (``purge_url``) or prefix (``purge_prefix``).

Fields and limits are those of the SDK's ``tencentcloud/teo/v20220901/models.py``;
error codes per action are those listed in the Go SDK's
``tencentcloud/teo/v20220901/client.go`` (TencentCloud/tencentcloud-sdk-go) and
described in ``errorcodes.py``. One SDK call per method (Describe calls paginate);
the SDK's own retries stay off: the scheduler decides when to try again.

The provider's ``area`` is the zone id: EdgeOne's quota is per zone, with no area.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.teo.v20220901 import models, teo_client

from cdn_preheat.config import Settings, require_secret
from cdn_preheat.errors import (
    AuthError,
    BatchRefused,
    BatchTooLarge,
    ConfigError,
    DomainError,
    InvalidUrls,
    PermissionDenied,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
    ZoneNotFound,
)
from cdn_preheat.providers.base import (
    DomainInfo,
    Features,
    Limits,
    Provider,
    ProviderSpec,
    Quota,
    SubmitResult,
    TaskEntry,
    TaskState,
)
from cdn_preheat.ratelimit import Budget, call_with_retries
from cdn_preheat.urlkey import url_key

logger = logging.getLogger(__name__)
UTC8 = dt.timezone(dt.timedelta(hours=8))
# DescribePrefetchTasksRequest.Limit / DescribePurgeTasksRequest.Limit (SDK models.py):
# "分页查询限制数目, 默认值: 20, 上限: 1000".
PAGE_SIZE = 1000
# InvalidParameter.ParameterError (SDK teo errorcodes.py): "参数错误: 无效 "结束时间", 不在允许
# 的查询范围内: [开始时间, 开始+ 7天]": one task query spans at most 7 days.
MAX_WINDOW = dt.timedelta(days=7)
# How long EdgeOne keeps prefetch and purge task records is not documented; Tencent
# Cloud CDN keeps push logs 30 days ("预热记录保存30天", cloud.tencent.com/document/api/228/12840),
# assumed here. A batch older than this is released for a new push (Unreconcilable).
TASK_RETENTION = dt.timedelta(days=30)
# Task lists are searched this far beyond the asked window, for clock skew.
SEARCH_MARGIN = dt.timedelta(minutes=5)
PAGE_ATTEMPTS = 8
PREFETCH_QUOTA_TYPE = "prefetch_url"  # models.py Quota.Type: "prefetch_url: 按URL预热"

# models.py Task.Status: "processing: 处理中 / success: 成功 / failed: 失败 / timeout: 超时 /
# canceled: 已取消"; DescribePrefetchTasksRequest.Filters adds "invalid: 无效。即源站响应非 2xx
# 状态码". A timed-out or canceled prefetch did not warm the file: retried like a failure.
_STATES = {
    "processing": TaskState.PROCESSING,
    "success": TaskState.DONE,
    "failed": TaskState.FAILED,
    "timeout": TaskState.FAILED,
    "canceled": TaskState.FAILED,
    "invalid": TaskState.INVALID,
}
_REASONS = {
    "failed": "EdgeOne could not prefetch the URL",
    "timeout": "EdgeOne's prefetch timed out",
    "canceled": "EdgeOne's prefetch was canceled",
    "invalid": "the origin answered a non-2xx status (EdgeOne status invalid)",
}
# "A maximum of 20 requests can be initiated per second for this API", on each teo API's
# page: CreatePrefetchTask tencentcloud.com/document/api/1145/50537, DescribePrefetchTasks
# 1145/50533; the same sentence heads the other content-management APIs' pages.
_INTL = "https://www.tencentcloud.com/document/api/1145/"
_REFERENCE = "the API's page in " + _INTL
EDGEONE_BUDGETS = {
    "CreatePrefetchTask": Budget(20, source=_INTL + "50537"),
    "DescribePrefetchTasks": Budget(20, source=_INTL + "50533"),
    "DescribeContentQuota": Budget(20, source=_REFERENCE),
    "CreatePurgeTask": Budget(20, source=_REFERENCE),
    "DescribePurgeTasks": Budget(20, source=_REFERENCE),
    "DescribeAccelerationDomains": Budget(20, source=_REFERENCE),  # cdn-preheat doctor
}
# Rate: "LimitExceeded.RateLimitExceeded" ("单位时间内接口请求频率达到限制", errorcodes.py) and
# API 3.0's common RequestLimitExceeded*.
_RATE_CODES = ("LimitExceeded.RateLimitExceeded",)
# The zone does not exist or is not the account's ("站点不存在", "没有对应的站点", "资源不存在").
_ZONE_CODES = (
    "InvalidParameter.ZoneNotFound",
    "InvalidParameterValue.ZoneNotFound",
    "ResourceNotFound",
    "ResourceNotFound.ZoneNotFound",
)
# "域名不存在或不属于该账号" (InvalidParameter.DomainNotFound, listed for CreatePrefetchTask),
# "域名不存在" (InvalidParameter.HostNotFound).
_DOMAIN_CODES = ("InvalidParameter.DomainNotFound", "InvalidParameter.HostNotFound")
# "资源存在错误": a target is wrong, which one is not said.
_TARGET_CODE = "InvalidParameter.Target"
# Sub-account permissions: "Cam 未授权", "子账户没有操作权限, 请添加权限后继续操作", "鉴权错误".
_PERMISSION_CODES = (
    "UnauthorizedOperation.CamUnauthorized",
    "UnauthorizedOperation.NoPermission",
    "UnauthorizedOperation.DomainEmpty",
)
# What the SDK raises when no proper answer came back (network, a non-200 status, a
# 200 whose body is not the API's JSON), and the teo codes for a passing back-end fault.
_TRANSIENT_CODES = (
    "ClientNetworkError",
    "ServerNetworkError",
    "JSONDecodeError",
    "KeyError",
    "UnauthorizedOperation.Unknown",  # "后端服务器发生未知错误"
)


class EdgeOneConfig(BaseModel):
    """EdgeOne's own settings: from :class:`Settings` or plain arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret_id: SecretStr | None = None  # the account's Tencent Cloud keys
    secret_key: SecretStr | None = None
    zone_id: str | None = None
    mode: Literal["default", "edge"] = "default"
    encode_url: bool = False
    headers: dict[str, str] = Field(default_factory=dict)
    endpoint: str | None = None  # e.g. teo.intl.tencentcloudapi.com, or the sandbox
    region: str = ""
    cdn_host: str | None = None
    call_timeout: float = Field(default=15.0, gt=0)  # seconds; see Settings.api_deadline

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeOneConfig:
        return cls(
            secret_id=settings.tencent_secret_id,
            secret_key=settings.tencent_secret_key,
            zone_id=settings.eo_zone_id,
            mode=settings.eo_mode,
            encode_url=settings.eo_encode_url,
            headers=dict(settings.eo_headers),
            endpoint=settings.eo_endpoint,
            region=settings.tencent_region,
            cdn_host=settings.cdn_host,
            call_timeout=settings.api_deadline,
        )


class EdgeOneProvider(Provider):
    """Prefetch and purge in one EdgeOne zone of a Tencent Cloud account."""

    name = "edgeone"
    # CreatePurgeTask Method delete; DescribePrefetchTasks lists a time window.
    # DescribeAccelerationDomains answers doctor's domain check.
    features = Features(purge_delete=True, window_status=True, domain_check=True)
    limits = Limits(
        # The batch and daily quota depend on the zone's plan ("提交任务数受计费套餐配额限制",
        # CreatePrefetchTaskRequest.Targets): 1,000 is an upper bound, narrowed to the
        # Batch that DescribeContentQuota reports (the scheduler reads Quota.batch).
        batch_size=1000,
        requests_per_second=20,
        purge_batch_size=1000,
        purge_dir_batch_size=100,
        # The quota day is assumed to be Beijing time's, as on Tencent Cloud CDN.
        quota_utc_offset_hours=8,
        task_retention=TASK_RETENTION,
    )
    budgets = EDGEONE_BUDGETS
    submit_api = "CreatePrefetchTask"
    status_api = "DescribePrefetchTasks"
    quota_api = "DescribeContentQuota"

    def __init__(self, config: EdgeOneConfig | Settings) -> None:
        if isinstance(config, Settings):
            config = EdgeOneConfig.from_settings(config)
        secret_id = require_secret(config.secret_id, "TENCENT_SECRET_ID")
        self._secret_key = require_secret(config.secret_key, "TENCENT_SECRET_KEY")
        zone = (config.zone_id or "").strip()
        if not zone:
            raise ConfigError(
                "EO_ZONE_ID is not set; CDN_PROVIDER=edgeone needs the EdgeOne zone (site) id, "
                "e.g. zone-2o0l8g3fxxxx."
            )
        # Shorter than the claim lease (Settings.api_deadline): see the scheduler's heartbeat.
        self.call_timeout = config.call_timeout
        http = HttpProfile(reqTimeout=self.call_timeout)
        if config.endpoint:
            parts = urlsplit(
                config.endpoint if "://" in config.endpoint else f"https://{config.endpoint}"
            )
            http = HttpProfile(
                protocol=parts.scheme, endpoint=parts.netloc, reqTimeout=self.call_timeout
            )
        profile = ClientProfile(
            httpProfile=http, language="en-US", disable_region_breaker=True, retryer=None
        )
        self._client = teo_client.TeoClient(
            Credential(secret_id, self._secret_key), config.region, profile
        )
        self.zone_id = zone
        self.area = zone
        self._mode = config.mode
        self._encode_url = config.encode_url
        self._headers = dict(config.headers)
        self._cdn_host = config.cdn_host

    # -- prefetch ---------------------------------------------------------------

    def quota(self) -> Quota:
        request = models.DescribeContentQuotaRequest()
        request.ZoneId = self.zone_id
        answer = self._call("DescribeContentQuota", request)
        entry = _quota_of(answer.PrefetchQuota, PREFETCH_QUOTA_TYPE)
        if entry is None:
            raise ProviderError(
                f"EdgeOne reported no prefetch quota for zone {self.zone_id} "
                "(DescribeContentQuota listed no prefetch_url)."
            )
        if self._mode == "edge":
            # "边缘预热默认分配单独的预热额度 1000 条/天, 不消费常规预热额度" (models.py,
            # CreatePrefetchTaskRequest.Mode): edge prefetches have their own quota, which
            # DescribeContentQuota does not list. Unknown: the API's own answer stops the run.
            return Quota(area=self.area, total=None, available=None, batch=entry.Batch)
        return Quota(
            area=self.area,
            total=int(entry.Daily),
            available=int(entry.DailyAvailable),
            batch=int(entry.Batch) if entry.Batch else None,
        )

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        request = models.CreatePrefetchTaskRequest()
        request.ZoneId = self.zone_id
        request.Targets = list(urls)
        if self._mode != "default":
            # "不填写时, 默认值为 default" (预热到中间层); edge is a whitelisted option.
            request.Mode = self._mode
        if self._encode_url:
            _encode_url(request)
        if self._headers:
            request.Headers = [_header(name, value) for name, value in self._headers.items()]
        answer = self._call("CreatePrefetchTask", request, urls)
        job_id = str(answer.JobId or "")
        refused = self._failed(answer.FailedList, urls)
        if refused:
            accepted = [url for url in urls if url not in refused]
            raise InvalidUrls(
                f"EdgeOne refused {len(refused)} of {len(urls)} URL(s) (FailedList).",
                invalid=refused,
                task_id=job_id if accepted and job_id else None,
                code="FailedList",
            )
        return SubmitResult(task_id=job_id, accepted=tuple(urls))

    def _failed(self, failed_list: Any, urls: Sequence[str]) -> dict[str, str]:
        """The submitted URLs a FailedList names, with its reason (matched by URL key)."""
        wanted = {url_key(url): url for url in urls}
        refused: dict[str, str] = {}
        for item in failed_list or []:
            reason = self._scrub(item.Reason or "refused")
            for target in item.Targets or []:
                url = wanted.get(url_key(str(target)))
                if url is None:
                    logger.warning("EdgeOne's FailedList names an unknown target %s", target)
                    continue
                refused[url] = f"EdgeOne refused it: {reason}"
        return refused

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        entries = []
        for task_id in task_ids:
            for task in self._tasks("DescribePrefetchTasks", {}, [("job-id", task_id)]):
                entries.append(_task_entry(task))
        return entries

    def window_status(self, since: dt.datetime, until: dt.datetime) -> list[TaskEntry]:
        """DescribePrefetchTasks by StartTime/EndTime (ISO 8601), in windows of 7 days at most.

        Both ends are whole seconds, as the tracker asks them: it reads contiguous
        windows and allows for the clock difference itself (a task no window showed
        is asked by id), so the window is not widened here. Widened, each window
        read a second or two of its neighbours' logs again: at 1,000-URL tasks, a
        page more per second.
        """
        since, until = _aware(since), _aware(until)
        if until < since:
            return []  # nothing is created in it; the API would refuse it as a parameter error
        return [
            _task_entry(task)
            for window in _windows(since, until)
            for task in self._tasks("DescribePrefetchTasks", window, [])
        ]

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        """The newest prefetch of each URL since ``since``, from DescribePrefetchTasks.

        Reads the window's tasks when that takes no more calls than asking per URL
        (the ``target`` filter, a full URL), else asks per URL. The order of the
        list is not documented: the newest task is picked by CreateTime, then JobId.
        """
        now = dt.datetime.now(dt.UTC)
        since = self._reconcilable(since, now, "EdgeOne task records are assumed kept")
        wanted = {url_key(url): url for url in urls}
        tasks: list[Any] = []
        for window in _windows(since - SEARCH_MARGIN, now + SEARCH_MARGIN):
            page, total = self._task_page("DescribePrefetchTasks", window, [], 0)
            tasks += page
            if math.ceil(total / max(1, len(page) or PAGE_SIZE)) - 1 <= len(wanted):
                offset = len(page)
                while page and offset < total:
                    page, total = self._task_page("DescribePrefetchTasks", window, [], offset)
                    tasks += page
                    offset += len(page)
            else:
                for url in wanted.values():
                    tasks += self._tasks("DescribePrefetchTasks", window, [("target", url)])
        return _newest_per_url(tasks, wanted)

    def _tasks(
        self, action: str, window: dict[str, str], filters: list[tuple[str, str]]
    ) -> Iterator[Any]:
        offset = 0
        while True:
            page, total = self._task_page(action, window, filters, offset)
            yield from page
            offset += len(page)
            if not page or offset >= total:
                return

    def _task_page(
        self, action: str, window: dict[str, str], filters: list[tuple[str, str]], offset: int
    ) -> tuple[list[Any], int]:
        """One page of a task list: (tasks, TotalCount). A failed page is asked again alone."""
        request = (
            models.DescribePrefetchTasksRequest()
            if action == "DescribePrefetchTasks"
            else models.DescribePurgeTasksRequest()
        )
        request.ZoneId = self.zone_id
        for name, value in window.items():
            setattr(request, name, value)
        # Filters: "job-id ... 暂不支持多值", "target ... 暂不支持多值" (one value each).
        request.Filters = [_filter(name, value) for name, value in filters] or None
        request.Offset, request.Limit = offset, PAGE_SIZE
        answer = call_with_retries(
            functools.partial(self._call, action, request),
            attempts=PAGE_ATTEMPTS,
            on_retry=lambda exc: logger.warning("an EdgeOne task page: %s (retrying)", exc),
        )
        return list(answer.Tasks or []), int(answer.TotalCount or 0)

    # -- the zone ---------------------------------------------------------------

    def describe_domain(self, host: str) -> DomainInfo | None:
        """DescribeAccelerationDomains of the zone, filtered on the exact ``domain-name``.

        SDK models.py: DescribeAccelerationDomainsRequest.Filters "domain-name: 按照加速域名进行
        过滤", AccelerationDomain.DomainStatus "online: 已生效 / process: 部署中 / offline: 已停用
        / init: 未生效, 待激活站点". A zone has no area: what it holds is what it accelerates.
        """
        request = models.DescribeAccelerationDomainsRequest()
        request.ZoneId = self.zone_id
        request.Filters = [_filter("domain-name", host)]
        answer = self._call("DescribeAccelerationDomains", request)
        found = [
            d for d in answer.AccelerationDomains or [] if str(d.DomainName).lower() == host.lower()
        ]
        if not found:
            return None
        status = str(found[0].DomainStatus)
        return DomainInfo(
            domain=host,
            status=status,
            online=status == "online",
            area=f"zone {self.zone_id}",
            covered=True,
            fix_status=": enable it (or finish the zone's activation) in the EdgeOne console",
        )

    # -- purge ------------------------------------------------------------------

    def purge_urls(self, urls: Sequence[str]) -> str:
        request = models.CreatePurgeTaskRequest()
        request.ZoneId, request.Type, request.Targets = self.zone_id, "purge_url", list(urls)
        if self._encode_url:
            _encode_url(request)
        return self._purge(request, urls)

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        request = models.CreatePurgeTaskRequest()
        request.ZoneId, request.Type, request.Targets = self.zone_id, "purge_prefix", list(dirs)
        # CreatePurgeTaskRequest.Method: "invalidate: 仅刷新目录下产生了更新的资源; delete: 无论
        # 目录下资源是否更新都刷新节点资源。默认值:  invalidate".
        request.Method = "delete" if delete else "invalidate"
        return self._purge(request, dirs)

    def _purge(self, request: Any, targets: Sequence[str]) -> str:
        answer = self._call("CreatePurgeTask", request, targets)
        refused = self._failed(answer.FailedList, targets)
        if refused and len(refused) == len(targets):
            raise InvalidUrls(
                f"EdgeOne refused every purge target (FailedList): {next(iter(refused.values()))}",
                invalid=refused,
                code="FailedList",
            )
        for target, reason in refused.items():
            logger.warning("EdgeOne did not purge %s: %s", target, reason)
        return str(answer.JobId)

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        entries = []
        for task_id in task_ids:
            for task in self._tasks("DescribePurgeTasks", {}, [("job-id", task_id)]):
                entries.append(_task_entry(task))
        return entries

    # -- the SDK ----------------------------------------------------------------

    def _call(self, action: str, request: Any, urls: Sequence[str] = ()) -> Any:
        done = self._pace(action)
        try:
            return getattr(self._client, action)(request)
        except TencentCloudSDKException as exc:
            error = self._translate(exc, urls, action)
            if isinstance(error, RateLimited):
                self._slowed(action, error.retry_after)
            raise error from exc
        finally:
            done()

    def _translate(
        self, exc: TencentCloudSDKException, urls: Sequence[str], action: str
    ) -> ProviderError:
        code = str(exc.code or "")
        detail = self._scrub(exc.message)
        if code.startswith("AuthFailure"):
            return AuthError(
                f"Tencent Cloud rejected the credentials for EdgeOne ({code}): check "
                "TENCENT_SECRET_ID and TENCENT_SECRET_KEY.",
                code=code,
            )
        if code in _PERMISSION_CODES:
            return PermissionDenied(
                f"The Tencent Cloud key may not call EdgeOne's {action} ({code}): grant the "
                f"sub-account the CAM action teo:{action} on zone {self.zone_id}.",
                code=code,
            )
        if code in _ZONE_CODES:
            return ZoneNotFound(
                f"EdgeOne has no zone {self.zone_id} in this Tencent Cloud account ({code}): "
                "check EO_ZONE_ID (the site id, zone-...).",
                code=code,
            )
        if code == "LimitExceeded.DailyQuota":  # "当天提交的资源数超过上限"
            return QuotaExhausted(f"EdgeOne's daily quota is spent: {detail}", code=code)
        if code == "LimitExceeded.BatchQuota":  # "本次提交的资源数超过上限"
            return BatchTooLarge(f"EdgeOne refused the batch size: {detail}", code=code)
        if code.startswith("RequestLimitExceeded") or code in _RATE_CODES:
            return RateLimited(f"EdgeOne asked to slow down ({code}).", code=code)
        if code in _DOMAIN_CODES:
            hosts = sorted({urlsplit(u).netloc.lower() for u in urls})
            if urls and not (self._cdn_host and hosts == [self._cdn_host.lower()]):
                return BatchRefused(
                    f"{', '.join(hosts)} is not a domain of EdgeOne zone {self.zone_id} ({code}).",
                    code=code,
                    per_host=True,
                )
            return DomainError(
                f"{', '.join(hosts) or self._cdn_host or '?'} is not a domain of EdgeOne zone "
                f"{self.zone_id} ({code}); check CDN_HOST and EO_ZONE_ID.",
                code=code,
            )
        if code == _TARGET_CODE and len(urls) > 0:
            return BatchRefused(f"EdgeOne refused a target of the request ({code}).", code=code)
        if code.startswith("InternalError") or code in _TRANSIENT_CODES:
            timed_out = code == "ClientNetworkError" and "timed out" in detail.lower()
            return Transient(
                f"EdgeOne did not answer properly ({code}): {detail}",
                code=code,
                timed_out=timed_out,
            )
        return ProviderError(f"EdgeOne refused the request ({code}): {detail}", code=code)

    def _scrub(self, message: object) -> str:
        """A short one-line message that never carries the secret key."""
        text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
        text = " ".join(text.split()).replace(self._secret_key, "***")
        return text[:200]


def _quota_of(entries: Any, kind: str) -> Any:
    for entry in entries or []:
        if entry.Type == kind:
            return entry
    return None


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _windows(since: dt.datetime, until: dt.datetime) -> Iterator[dict[str, str]]:
    """StartTime/EndTime pairs covering [since, until], none longer than MAX_WINDOW."""
    start = since
    while True:
        end = min(until, start + MAX_WINDOW)
        yield {"StartTime": iso_time(start), "EndTime": iso_time(end)}
        if end >= until:
            return
        start = end


def iso_time(moment: dt.datetime) -> str:
    """ISO 8601 as the teo API takes it ("Timestamp ISO8601"), in UTC, to the second."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time of a task; without an offset, Beijing time."""
    moment = dt.datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC8)


def _task_entry(task: Any) -> TaskEntry:
    status = str(task.Status or "")
    state = _STATES.get(status, TaskState.FAILED)
    reason = None
    if state is not TaskState.PROCESSING and state is not TaskState.DONE:
        reason = _REASONS.get(status, f"EdgeOne status {status or 'unknown'}")
        if task.FailMessage:
            reason = f"{reason}: {' '.join(str(task.FailMessage).split())[:160]}"
    created = None
    if task.CreateTime:
        try:
            created = parse_time(str(task.CreateTime))
        except ValueError:
            created = None
    return TaskEntry(
        task_id=str(task.JobId),
        url=str(task.Target),
        state=state,
        reason=reason,
        created_at=created,
        # "invalid: 无效。即源站响应非 2xx 状态码" (DescribePrefetchTasksRequest.Filters): a 503
        # from an origin swamped by the prefetch burst reads the same as a 404, so the URL
        # is pushed once more before it is final, as for Tencent Cloud CDN.
        retry_once=state is TaskState.INVALID,
    )


def _newest_per_url(tasks: Iterable[Any], wanted: dict[str, str]) -> dict[str, str]:
    """url -> job id of its newest prefetch, by CreateTime then JobId (no order assumed)."""
    best: dict[str, tuple[dt.datetime, str]] = {}
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    for task in tasks:
        url = wanted.get(url_key(str(task.Target)))
        if url is None:
            continue
        try:
            created = parse_time(str(task.CreateTime)) if task.CreateTime else oldest
        except ValueError:
            created = oldest
        rank = (created, str(task.JobId))
        if url not in best or rank > best[url]:
            best[url] = rank
    return {url: rank[1] for url, rank in best.items()}


def _encode_url(request: Any) -> None:
    """Ask EdgeOne to percent-encode non-ASCII targets ("编码规则遵循 RFC3986").

    SDK 3.1.194 marks ``EncodeUrl`` deprecated (models.py warns on use) and the current
    API reference no longer lists it for CreatePrefetchTask; it stays an opt-in
    (``EO_ENCODE_URL``) for accounts that still take it. The expander already sends
    percent-encoded URLs, so it is rarely needed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        request.EncodeUrl = True


def _header(name: str, value: str) -> models.Header:
    header = models.Header()
    header.Name, header.Value = name, value
    return header


def _filter(name: str, value: str) -> models.AdvancedFilter:
    item = models.AdvancedFilter()
    item.Name, item.Values = name, [value]
    return item


SPEC = ProviderSpec(
    provider=EdgeOneProvider,
    title="Tencent EdgeOne",
    config=EdgeOneConfig,
    build=EdgeOneProvider,
    credentials=("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"),
    areas=(),  # a target's area is its zone id
    area_setting="eo_zone_id",
    endpoint_settings=("eo_endpoint",),
    cache_vendor="edgeone",  # EO-Cache-Status
    emulator="cdn_preheat.sandbox.edgeone",
    default_api="https://teo.tencentcloudapi.com",
    clock_tolerance=300.0,  # the same API 3.0 signing (TC3) as Tencent Cloud CDN, service teo
)
