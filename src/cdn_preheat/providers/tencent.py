"""Tencent Cloud CDN through the official SDK (``tencentcloud-sdk-python-cdn``).

One SDK call per method (Describe calls paginate). The SDK's own retries and
circuit breaker stay off: the scheduler decides when to try again. Errors
become :mod:`cdn_preheat.errors` by their Tencent code.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from tencentcloud.cdn.v20180606 import cdn_client, models
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from cdn_preheat.clock import UTC8, utcnow
from cdn_preheat.config import Settings, TencentArea, require_secret
from cdn_preheat.errors import (
    AreaMismatch,
    AuthError,
    BatchRefused,
    BatchTooLarge,
    DomainError,
    PermissionDenied,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
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
from cdn_preheat.providers.stats import LogFile, TrafficPoint, TrafficSeries
from cdn_preheat.ratelimit import Budget, call_with_retries
from cdn_preheat.urlkey import url_key

logger = logging.getLogger(__name__)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PAGE_SIZE = 1000
# DescribePushTasks Limit: "默认为 20" and no documented maximum (SDK models.py
# DescribePushTasksRequest.Limit; cloud.tencent.com/document/api/228/37872). Should
# the service refuse a page of 1000 (InvalidParameter), ask for smaller ones.
PUSH_LOG_PAGE_SIZES = (PAGE_SIZE, 100, 20)
# "预热记录保存30天": push logs are kept 30 days (legacy GetPushLogs,
# cloud.tencent.com/document/api/228/12840).
TASK_RETENTION = dt.timedelta(days=30)
# Task lists are searched this far beyond the asked window, for clock skew.
SEARCH_MARGIN = dt.timedelta(minutes=5)
# A page that failed (rate limit, lost answer) is asked again alone, this often.
PAGE_ATTEMPTS = 8
# Pages of one task window asked side by side: enough to fill DescribePushTasks'
# 20 calls a second with 50 ms round trips and a page's parsing in between.
WINDOW_PAGES_AT_ONCE = 4

_STATES = {
    "process": TaskState.PROCESSING,
    "done": TaskState.DONE,
    "fail": TaskState.FAILED,
    "invalid": TaskState.INVALID,
}
_REASONS = {
    TaskState.FAILED: "Tencent Cloud could not prefetch the URL",
    TaskState.INVALID: "the origin answered 4xx or 5xx (Tencent status invalid)",
}
# Tencent Cloud limits every API on its own: "默认接口请求频率限制:20次/秒" / "A maximum of
# 20 requests can be initiated per second for this API" on each API's page of the reference.
_CN = "https://cloud.tencent.com/document/api/228/"
_INTL = "https://www.tencentcloud.com/document/api/228/"
_REFERENCE = "the API's page in " + _INTL  # the same sentence on every CDN API's page
TENCENT_BUDGETS = {
    "PushUrlsCache": Budget(20, source=_CN + "37869"),
    "DescribePushTasks": Budget(20, source=_CN + "37872"),
    "DescribePushQuota": Budget(20, source=_INTL + "37473"),
    "PurgeUrlsCache": Budget(20, source=_INTL + "33601"),
    "PurgePathCache": Budget(20, source=_REFERENCE),
    "DescribePurgeTasks": Budget(20, source=_REFERENCE),
    "DescribePurgeQuota": Budget(20, source=_CN + "41956"),
    "DescribeCdnData": Budget(20, source=_REFERENCE),
    "DescribeCdnDomainLogs": Budget(20, source=_REFERENCE),
    "DescribeDomains": Budget(20, source=_REFERENCE),  # cdn-preheat doctor
}
_RATE_CODES = ("UnauthorizedOperation.OperationTooOften", "LimitExceeded.CdnHostOpTooOften")
_DOMAIN_CODES = (
    "ResourceNotFound.CdnHostNotExists",
    "InvalidParameter.CdnHostInvalidParam",
    "ResourceUnavailable.CdnHostIsNotOnline",
    "InvalidParameter.CdnHostExistsInEdgeOne",
)
# Answers for a domain that may now be served by EdgeOne (see _translate).
_EDGEONE_CODES = ("ResourceNotFound.CdnHostNotExists", "InvalidParameter.CdnHostExistsInEdgeOne")
# Codes from the SDK's cdn/v20180606/errorcodes.py. A sub-account without a CAM
# policy for the action ("子账号未配置cam策略"), or not granted the domain
# ("CDN子账号加速域名未授权"): the key is right, a permission is missing.
_CAM_CODE = "UnauthorizedOperation.CdnCamUnauthorized"
_HOST_UNAUTHORIZED_CODE = "UnauthorizedOperation.CdnHostUnauthorized"
# "URL 超过限制长度": the whole request is refused without naming the URL.
_URL_TOO_LONG_CODE = "InvalidParameter.CdnUrlExceedLength"
# Codes a push to an area the domain is not served in may come back with: the old
# API said InvalidParameter "域名 xxx 未部署在 mainland" (lxl80/hexo-deployer-cos-cdn#5);
# API 3.0's code is undocumented, so the message decides.
_AREA_CODES = (
    "InvalidParameter",
    "InvalidParameter.CdnParamError",
    "InvalidParameter.CdnHostInvalidParam",
)
_AREAS = ("mainland", "overseas")
# Generic "参数错误": caused by a URL only when one of the batch is not http(s).
_PARAM_CODE = "InvalidParameter.CdnParamError"
# What the SDK raises when no proper answer came back: network failure, a non-200
# status (502 from a gateway), or a 200 whose body is not the API's JSON.
_TRANSIENT_CODES = ("ClientNetworkError", "ServerNetworkError", "JSONDecodeError", "KeyError")


class TencentConfig(BaseModel):
    """Tencent Cloud's own settings: from :class:`Settings` or plain arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret_id: SecretStr | None = None
    secret_key: SecretStr | None = None
    area: TencentArea = "mainland"
    layer: str = ""
    user_agent: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    endpoint: str | None = None  # e.g. http://127.0.0.1:8090 (the sandbox)
    region: str = ""
    cdn_host: str | None = None
    call_timeout: float = Field(default=15.0, gt=0)  # seconds; see Settings.api_deadline

    @classmethod
    def from_settings(cls, settings: Settings) -> TencentConfig:
        return cls(
            secret_id=settings.tencent_secret_id,
            secret_key=settings.tencent_secret_key,
            area=settings.tencent_area,
            layer=settings.tencent_layer,
            user_agent=settings.tencent_user_agent,
            headers=dict(settings.tencent_headers),
            endpoint=settings.tencent_endpoint,
            region=settings.tencent_region,
            cdn_host=settings.cdn_host,
            call_timeout=settings.api_deadline,
        )


class TencentProvider(Provider):
    """Prefetch and purge on one Tencent Cloud account, in the configured area."""

    name = "tencent"
    features = Features(
        purge_delete=True, stats=True, logs=True, window_status=True, domain_check=True
    )
    limits = Limits(
        batch_size=500,
        requests_per_second=20,
        purge_batch_size=1000,
        purge_dir_batch_size=500,
        quota_utc_offset_hours=8,
        task_retention=TASK_RETENTION,
    )
    budgets = TENCENT_BUDGETS
    submit_api = "PushUrlsCache"
    status_api = "DescribePushTasks"
    quota_api = "DescribePushQuota"

    def __init__(self, config: TencentConfig | Settings) -> None:
        if isinstance(config, Settings):
            config = TencentConfig.from_settings(config)
        secret_id = require_secret(config.secret_id, "TENCENT_SECRET_ID")
        self._secret_key = require_secret(config.secret_key, "TENCENT_SECRET_KEY")
        # Shorter than the claim lease (Settings.api_deadline): see the scheduler's heartbeat.
        self.call_timeout = config.call_timeout
        http = HttpProfile(reqTimeout=self.call_timeout)
        if config.endpoint:
            parts = urlsplit(config.endpoint)
            http = HttpProfile(
                protocol=parts.scheme, endpoint=parts.netloc, reqTimeout=self.call_timeout
            )
        profile = ClientProfile(
            httpProfile=http, language="en-US", disable_region_breaker=True, retryer=None
        )
        self._client = cdn_client.CdnClient(
            Credential(secret_id, self._secret_key), config.region, profile
        )
        self.area = config.area
        self._layer = config.layer
        self._user_agent = config.user_agent
        self._headers = dict(config.headers)
        self._cdn_host = config.cdn_host
        self._page_size = PAGE_SIZE

    # -- prefetch ---------------------------------------------------------------

    def quota(self) -> Quota:
        answer = self._call("DescribePushQuota", models.DescribePushQuotaRequest())
        by_area = {q.Area: q for q in answer.UrlPush or []}
        areas = _AREAS if self.area == "global" else (self.area,)
        found = [by_area[a] for a in areas if a in by_area]
        if len(found) < len(areas):
            # DescribePushQuota lists only the areas the account has
            # (tencentcloud.com/document/product/228/37473 shows mainland alone).
            has = sorted(a for a in by_area if a in _AREAS)
            if not has:
                raise ProviderError(f"Tencent Cloud reported no prefetch quota for {self.area}.")
            suggestion = has[0] if len(has) == 1 else "global"
            raise AreaMismatch(
                f"This Tencent Cloud account has no prefetch quota in {self.area} (it has "
                f"{' and '.join(has)}): set TENCENT_AREA={suggestion}."
            )
        # A global push spends both areas' quota, so the scarcer one limits it.
        tightest = min(found, key=lambda q: q.Available)
        return Quota(
            area=self.area, total=tightest.Total, available=tightest.Available, batch=tightest.Batch
        )

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        request = models.PushUrlsCacheRequest()
        request.Urls = list(urls)
        request.Area = self.area
        if self._layer:
            request.Layer = self._layer
        if self._user_agent:
            request.UserAgent = self._user_agent
        if self._headers:
            request.Headers = [_http_header(name, value) for name, value in self._headers.items()]
        answer = self._call("PushUrlsCache", request, urls)
        return SubmitResult(task_id=answer.TaskId, accepted=tuple(urls))

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        entries = []
        for task_id in task_ids:
            for log in self._push_logs({"TaskId": task_id}):
                entries.append(_task_entry(log.TaskId, log.Url, log.Status, log.CreateTime))
        return entries

    def window_status(self, since: dt.datetime, until: dt.datetime) -> list[TaskEntry]:
        """DescribePushTasks by StartTime/EndTime (cloud.tencent.com/document/api/228/37872).

        CreateTime is second-precise in UTC+8 ("开始时间, 如2018-08-08 00:00:00",
        SDK cdn/v20180606/models.py DescribePushTasksRequest): both ends are
        whole seconds, included. The caller allows for the clock difference with
        Tencent (the tracker reads contiguous windows, each second once).
        """
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        if until.tzinfo is None:
            until = until.replace(tzinfo=dt.UTC)
        window = {"StartTime": _cn_time(since), "EndTime": _cn_time(until)}
        return [
            _task_entry(log.TaskId, log.Url, log.Status, log.CreateTime)
            for log in self._window_logs(window)
        ]

    def _window_logs(self, window: dict[str, str]) -> list[Any]:
        """Every push log of a time window, its pages after the first asked side by side.

        The first page tells how many logs the window holds (TotalCount) and how
        many a page holds (the Limit, or fewer where the service caps it); the
        other pages are then asked ``WINDOW_PAGES_AT_ONCE`` at a time, each paced
        on DescribePushTasks' own budget as before. One after the other, a page
        costs a round trip plus its parsing, so a window was read at well under
        the API's 20 calls a second and the tracker fell behind the pushes. A
        window of past seconds does not change while it is read, so its pages do
        not overlap; should one (a window reaching into the current second), the
        tracker reads what it missed again as a straggler.
        """
        first, total, size = self._push_log_page(window, 0)
        if not first or len(first) >= total:
            return list(first)
        size = min(size, len(first))  # the service may cap a page below the Limit asked
        offsets = range(len(first), total, size)
        if len(offsets) == 1:
            return list(first) + self._push_log_page(window, offsets[0])[0]
        with ThreadPoolExecutor(
            max_workers=min(WINDOW_PAGES_AT_ONCE, len(offsets)), thread_name_prefix="push-logs"
        ) as pool:
            pages = list(pool.map(lambda offset: self._push_log_page(window, offset)[0], offsets))
        return [log for page in (first, *pages) for log in page]

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        """The newest push of each URL since ``since``, from DescribePushTasks.

        Reads the window's push logs when that takes no more calls than searching
        each URL (``Keyword``, a full URL), else searches per URL. The logs' order
        is not documented: the newest log is picked by CreateTime, then TaskId.
        """
        now = utcnow()
        since = self._reconcilable(since, now, "Tencent Cloud keeps push logs")
        window = {
            "StartTime": _cn_time(since - SEARCH_MARGIN),
            "EndTime": _cn_time(now + SEARCH_MARGIN),
        }
        wanted = {url_key(url): url for url in urls}
        page, total, size = self._push_log_page(window, 0)
        logs: list[Any] = list(page)
        if page and len(page) < min(size, total):
            size = len(page)  # the service capped the page below the Limit asked for
        if math.ceil(total / max(1, size)) - 1 <= len(wanted):
            offset = len(page)
            while page and offset < total:
                page, total, _ = self._push_log_page(window, offset)
                logs += page
                offset += len(page)
        else:
            for url in wanted.values():
                logs += self._push_logs({**window, "Keyword": url})
        return _newest_per_url(logs, wanted)

    def _push_logs(self, criteria: dict[str, str]) -> Iterator[Any]:
        def page(offset: int) -> tuple[list[Any], int]:
            items, total, _ = self._push_log_page(criteria, offset)
            return items, total

        return _paginate(page)

    def _push_log_page(self, criteria: dict[str, str], offset: int) -> tuple[list[Any], int, int]:
        """One page of push logs: (logs, TotalCount, the Limit asked for)."""
        while True:
            request = models.DescribePushTasksRequest()
            for name, value in criteria.items():
                setattr(request, name, value)
            request.Offset, request.Limit = offset, self._page_size
            try:
                # Paced on DescribePushTasks' own budget (TENCENT_BUDGETS). A page that
                # draws a rate-limit or transient answer is asked again alone: a long
                # scan no longer starts over from its first page on every lost answer,
                # which on a flaky link it never finished.
                answer = call_with_retries(
                    functools.partial(self._call_json, "DescribePushTasks", request),
                    attempts=PAGE_ATTEMPTS,
                    on_retry=lambda exc: logger.warning("a push log page: %s (retrying)", exc),
                )
            except ProviderError as exc:
                smaller = [n for n in PUSH_LOG_PAGE_SIZES if n < self._page_size]
                if not (exc.code or "").startswith("InvalidParameter") or not smaller:
                    raise
                self._page_size = smaller[0]
                continue
            logs = [
                _PushLog.of(log) for log in answer.get("PushLogs") or [] if isinstance(log, dict)
            ]
            return logs, int(answer.get("TotalCount") or 0), self._page_size

    # -- the account ------------------------------------------------------------

    def describe_domain(self, host: str) -> DomainInfo | None:
        """DescribeDomains filtered on the exact name.

        SDK cdn/v20180606/models.py: DomainFilter Name "domain", BriefDomain.Status
        (online, offline, processing, closing, rejected) and Area (mainland, overseas, global).
        """
        wanted = models.DomainFilter()
        wanted.Name, wanted.Value = "domain", [host]
        request = models.DescribeDomainsRequest()
        request.Filters = [wanted]
        answer = self._call("DescribeDomains", request)
        found = [d for d in answer.Domains or [] if str(d.Domain).lower() == host.lower()]
        if not found:
            return None
        domain = found[0]
        return DomainInfo(
            domain=host,
            status=str(domain.Status),
            online=domain.Status == "online",
            area=str(domain.Area),
            covered=domain.Area in ("global", self.area),
            fix_area=f"TENCENT_AREA={domain.Area}",
            fix_status=": start it in the console",
        )

    # -- purge ------------------------------------------------------------------

    def purge_urls(self, urls: Sequence[str]) -> str:
        request = models.PurgeUrlsCacheRequest()
        request.Urls = list(urls)
        return str(self._call("PurgeUrlsCache", request, urls).TaskId)

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        request = models.PurgePathCacheRequest()
        request.Paths = list(dirs)
        request.FlushType = "delete" if delete else "flush"
        return str(self._call("PurgePathCache", request, dirs).TaskId)

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        entries = []
        for task_id in task_ids:

            def page(offset: int, task_id: str = task_id) -> tuple[list[Any], int]:
                request = models.DescribePurgeTasksRequest()
                request.TaskId, request.Offset, request.Limit = task_id, offset, PAGE_SIZE
                answer = call_with_retries(
                    lambda: self._call("DescribePurgeTasks", request), attempts=PAGE_ATTEMPTS
                )
                return list(answer.PurgeLogs or []), int(answer.TotalCount or 0)

            for log in _paginate(page):
                entries.append(_task_entry(log.TaskId, log.Url, log.Status, log.CreateTime))
        return entries

    # -- statistics -------------------------------------------------------------

    def flux(
        self,
        domain: str,
        start: dt.datetime,
        end: dt.datetime,
        granularity: str = "5min",
        metric: str = "flux",
    ) -> TrafficSeries:
        """One metric (flux, bandwidth, request) of ``domain``; granularity min|5min|hour|day."""
        request = models.DescribeCdnDataRequest()
        request.StartTime, request.EndTime = _cn_time(start), _cn_time(end)
        request.Metric, request.Interval, request.Domains = metric, granularity, [domain]
        answer = self._call("DescribeCdnData", request)
        points: list[TrafficPoint] = []
        summary = None
        for resource in answer.Data or []:
            for data in resource.CdnData or []:
                points += [TrafficPoint(_parse_cn_time(d.Time), d.Value) for d in data.DetailData]
                summary = data.SummarizedData.Value if data.SummarizedData else None
        return TrafficSeries(domain, metric, answer.Interval or granularity, tuple(points), summary)

    def logs(self, domain: str, day: dt.date) -> list[LogFile]:
        """Access-log packages of ``domain`` for one day (UTC+8) in the configured area."""

        def page(offset: int) -> tuple[list[Any], int]:
            request = models.DescribeCdnDomainLogsRequest()
            request.Domain, request.Area = domain, self.area
            request.StartTime = f"{day.isoformat()} 00:00:00"
            request.EndTime = f"{day.isoformat()} 23:59:59"
            request.Offset, request.Limit = offset, PAGE_SIZE
            answer = self._call("DescribeCdnDomainLogs", request)
            return list(answer.DomainLogs or []), int(answer.TotalCount or 0)

        return [
            LogFile(
                start=_parse_cn_time(log.StartTime),
                end=_parse_cn_time(log.EndTime),
                area=log.Area,
                name=log.LogName,
                url=log.LogPath,
                size=log.FileSize,
            )
            for log in _paginate(page)
        ]

    # -- the SDK ----------------------------------------------------------------

    def _call(self, action: str, request: Any, urls: Sequence[str] = ()) -> Any:
        return self._through_sdk(action, urls, lambda: getattr(self._client, action)(request))

    def _call_json(self, action: str, request: Any) -> dict[str, Any]:
        """``action`` through the SDK's ``call_json``: its answer's ``Response`` as parsed.

        For DescribePushTasks, whose pages of up to 1,000 logs the SDK's models took
        40 µs a log to build (PushTask._deserialize), most of a worker's CPU while it
        followed its tasks; the request, its signature, retries and errors are the
        SDK's own, as with :meth:`_call`.
        """

        def call() -> Any:
            try:
                params = request._serialize()
                return self._client.call_json(action, params, headers=request.headers)
            except TencentCloudSDKException:
                raise
            except Exception as exc:
                # What the SDK's own action methods do (cdn_client.py): an answer that
                # is not JSON (a proxy's HTML page with 200) fails as the SDK's error.
                raise TencentCloudSDKException(type(exc).__name__, str(exc)) from exc

        answer = self._through_sdk(action, (), call)
        response = answer.get("Response") if isinstance(answer, dict) else None
        return response if isinstance(response, dict) else {}

    def _through_sdk(self, action: str, urls: Sequence[str], call: Callable[[], Any]) -> Any:
        """``call`` (one SDK request of ``action``), paced, its errors translated."""
        done = self._pace(action)
        try:
            return call()
        except TencentCloudSDKException as exc:
            error = self._translate(exc, urls, action)
            if isinstance(error, RateLimited):
                self._slowed(action, error.retry_after)
            raise error from exc
        finally:
            done()

    def _translate(
        self, exc: TencentCloudSDKException, urls: Sequence[str], action: str = ""
    ) -> ProviderError:
        code = str(exc.code or "")
        detail = self._scrub(exc.message)
        if code.startswith("AuthFailure"):
            return AuthError(
                f"Tencent Cloud rejected the credentials ({code}): check TENCENT_SECRET_ID "
                "and TENCENT_SECRET_KEY.",
                code=code,
            )
        if code == _CAM_CODE:
            return PermissionDenied(
                f"The Tencent Cloud key may not call {action} ({code}): grant the "
                f"sub-account the CAM action cdn:{action}.",
                code=code,
            )
        if code == _HOST_UNAUTHORIZED_CODE:
            hosts = sorted({urlsplit(u).netloc for u in urls}) or [self._cdn_host or "?"]
            return PermissionDenied(
                f"The Tencent Cloud sub-account is not granted {', '.join(hosts)} ({code}): "
                f"grant it cdn:{action} on that domain in CAM.",
                code=code,
            )
        if code == _URL_TOO_LONG_CODE:
            return BatchRefused(f"Tencent Cloud refused a URL as too long ({code}).", code=code)
        if code in _AREA_CODES and self._is_area_refusal(detail):
            return AreaMismatch(self._area_advice(detail, urls, code), code=code)
        if code.endswith("ExceedDayLimit"):
            return QuotaExhausted(f"Tencent Cloud's daily quota is spent: {detail}", code=code)
        if code.endswith("ExceedBatchLimit"):
            return BatchTooLarge(f"Tencent Cloud refused the batch size: {detail}", code=code)
        if code.startswith("RequestLimitExceeded") or code in _RATE_CODES:
            return RateLimited(f"Tencent Cloud asked to slow down ({code}).", code=code)
        refused = self._refused_batch(code, urls)
        if refused is not None:
            return refused
        if code in _DOMAIN_CODES:
            hosts = sorted({urlsplit(u).netloc for u in urls}) or [self._cdn_host or "?"]
            moved = ""
            if code in _EDGEONE_CODES:
                # After a migration to EdgeOne the CDN API no longer knows the domain
                # ("CDN 迁移至 EdgeOne 工具使用指南", cloud.tencent.com/document/product/228), or
                # says it is on EdgeOne (InvalidParameter.CdnHostExistsInEdgeOne, "域名已在
                # Edgeone接入", SDK cdn/v20180606/errorcodes.py): EdgeOne's own API prefetches it.
                moved = (
                    "; if it was moved to EdgeOne, prefetch it there: set CDN_PROVIDER=edgeone"
                    " and EO_ZONE_ID to its EdgeOne zone (site) id"
                )
            return DomainError(
                f"{', '.join(hosts)} is not a CDN domain of this Tencent Cloud account ({code});"
                f" check CDN_HOST{moved}.",
                code=code,
            )
        if code.startswith("InternalError") or code in _TRANSIENT_CODES:
            # requests' ReadTimeout/ConnectTimeout, as the SDK words them ("... timed out").
            timed_out = code == "ClientNetworkError" and "timed out" in detail.lower()
            return Transient(
                f"Tencent Cloud did not answer properly ({code}): {detail}",
                code=code,
                timed_out=timed_out,
            )
        return ProviderError(f"Tencent Cloud refused the request ({code}): {detail}", code=code)

    def _is_area_refusal(self, detail: str) -> bool:
        text = detail.lower()
        names_area = any(area in text for area in (*_AREAS, "global"))
        return "未部署" in detail or (names_area and ("deploy" in text or "area" in text))

    def _area_advice(self, detail: str, urls: Sequence[str], code: str) -> str:
        """Which TENCENT_AREA to set, from the area the refusal names."""
        hosts = sorted({urlsplit(u).netloc for u in urls}) or [self._cdn_host or "?"]
        named = [area for area in _AREAS if area in detail.lower()]
        if self.area == "global":
            others = [a for a in _AREAS if a not in named]
            suggestion = others[0] if len(others) == 1 else "mainland or overseas"
        else:
            suggestion = "overseas" if self.area == "mainland" else "mainland"
        return (
            f"Tencent Cloud does not accelerate {', '.join(hosts)} in {self.area} ({code}):"
            f" set TENCENT_AREA={suggestion}, the area the domain is served in."
        )

    def _refused_batch(self, code: str, urls: Sequence[str]) -> BatchRefused | None:
        """The request was refused for some of its URLs, unnamed: the scheduler isolates them.

        A host code for URLs all on CDN_HOST is the configuration's fault, not the
        URLs' (None: the caller reports a DomainError that stops the run).
        """
        if not urls:
            return None
        hosts = sorted({urlsplit(u).netloc.lower() for u in urls})
        bad_scheme = any(urlsplit(u).scheme.lower() not in ("http", "https") for u in urls)
        if bad_scheme and (code == _PARAM_CODE or code in _DOMAIN_CODES):
            return BatchRefused(
                f"Tencent Cloud prefetches only http:// and https:// URLs ({code}).", code=code
            )
        if code in _DOMAIN_CODES:
            if self._cdn_host and hosts == [self._cdn_host.lower()]:
                return None
            return BatchRefused(
                f"{', '.join(hosts)} is not a CDN domain of this Tencent Cloud account ({code}).",
                code=code,
                per_host=True,
            )
        return None

    def _scrub(self, message: object) -> str:
        """A short one-line message that never carries the secret key."""
        text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
        text = " ".join(text.split()).replace(self._secret_key, "***")
        return text[:200]


def _paginate(page: Callable[[int], tuple[list[Any], int]]) -> Iterator[Any]:
    """Every item of an offset/limit listing (``page`` retries a failed page itself)."""
    offset = 0
    while True:
        items, total = page(offset)
        yield from items
        offset += len(items)
        if not items or offset >= total:
            return


@dataclass(frozen=True, slots=True)
class _PushLog:
    """The fields of one PushTask log (SDK cdn/v20180606/models.py PushTask) read here."""

    # The API's field names, as the SDK's models spell them.
    TaskId: str
    Url: str
    Status: str
    CreateTime: str | None

    @classmethod
    def of(cls, log: dict[str, Any]) -> _PushLog:
        created = log.get("CreateTime")
        return cls(
            str(log.get("TaskId") or ""),
            str(log.get("Url") or ""),
            str(log.get("Status") or ""),
            str(created) if created else None,
        )


def _newest_per_url(logs: Iterable[Any], wanted: dict[str, str]) -> dict[str, str]:
    """url -> task id of its newest push log, by CreateTime then TaskId (no order assumed)."""
    best: dict[str, tuple[str, str]] = {}
    for log in logs:
        url = wanted.get(url_key(str(log.Url)))
        if url is None:
            continue
        # "YYYY-MM-DD hh:mm:ss" (UTC+8) orders as text.
        rank = (str(log.CreateTime or ""), str(log.TaskId))
        if url not in best or rank > best[url]:
            best[url] = rank
    return {url: rank[1] for url, rank in best.items()}


def _task_entry(task_id: str, url: str, status: str, created: str | None) -> TaskEntry:
    state = _STATES.get(status, TaskState.FAILED)
    return TaskEntry(
        task_id=task_id,
        url=url,
        state=state,
        reason=_REASONS.get(state),
        created_at=_parse_cn_time(created) if created else None,
        # "invalid: 预热无效(源站返回4xx或5xx状态码)" (SDK cdn/v20180606/models.py,
        # PushTask.Status): a 503 from an origin swamped by the prefetch burst reads
        # the same as a 404, so it gets one more try before it is final.
        retry_once=state is TaskState.INVALID,
    )


def _http_header(name: str, value: str) -> models.HTTPHeader:
    header = models.HTTPHeader()
    header.Name, header.Value = name, value
    return header


def _cn_time(moment: dt.datetime) -> str:
    return moment.astimezone(UTC8).strftime(TIME_FORMAT)


@functools.lru_cache(maxsize=4096)
def _parse_cn_time(text: str) -> dt.datetime:
    # Cached: the logs of one task share a CreateTime, and strptime cost more than
    # the rest of reading a page of a thousand logs.
    return dt.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC8)


SPEC = ProviderSpec(
    provider=TencentProvider,
    title="Tencent Cloud",
    config=TencentConfig,
    build=TencentProvider,
    credentials=("TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"),
    areas=("mainland", "overseas", "global"),
    area_setting="tencent_area",
    endpoint_settings=("tencent_endpoint",),
    cache_vendor="tencent",
    emulator="cdn_preheat.sandbox.tencent",
    default_api="https://cdn.tencentcloudapi.com",
    # API 3.0 common parameters, X-TC-Timestamp: "If the difference between the UNIX
    # timestamp and the server time is greater than 5 minutes, a signature expiration error
    # may occur" (tencentcloud.com/document/product/570/36329; AuthFailure.SignatureExpire).
    clock_tolerance=300.0,
)
