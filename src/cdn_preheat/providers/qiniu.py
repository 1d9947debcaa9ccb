"""Qiniu fusion CDN through the official ``qiniu`` SDK.

``CdnManager`` covers prefetch, refresh, traffic and logs; the task queries
(``/v2/tune/prefetch/list``, ``/v2/tune/refresh/list``) are not wrapped by the
SDK, so they go through the same signed-request helper ``CdnManager`` uses.

Task ids are Qiniu request ids. When Qiniu answers 400037 (some URLs are
already being prefetched) the batch's task id joins the request ids that hold
its URLs with commas; every status method splits them again.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import qiniu
import qiniu.http
from pydantic import BaseModel, ConfigDict, SecretStr
from qiniu.http.endpoint import Endpoint
from qiniu.http.region import Region, ServiceName

from cdn_preheat.clock import UTC8, china_day, utcnow
from cdn_preheat.config import Settings, require_secret
from cdn_preheat.errors import (
    AuthError,
    BatchTooLarge,
    DomainError,
    InvalidUrls,
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
from cdn_preheat.signing import strip_anti_leech
from cdn_preheat.urlkey import url_key

logger = logging.getLogger(__name__)
CHINA = UTC8  # Qiniu's quota day and timestamps
# The task queries take startTime/endTime (developer.qiniu.com/fusion/api/1227/file-prefetching#4;
# qiniu/php-sdk CdnManager::getCdnPrefetchList, whose example passes '2020-09-11 12:00:00').
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The SDK's CdnManager talks plain HTTP (qiniu/services/cdn/manager.py:
# self.server = 'http://fusion.qiniuapi.com'), and the QBox token of a JSON request
# signs only its path (qiniu/auth.py token_of_request): a constant, replayable
# credential. The fusion API answers on HTTPS (developer.qiniu.com/fusion/13367).
DEFAULT_SERVER = "https://fusion.qiniuapi.com"
DOCUMENTED_DAILY_PREFETCH_QUOTA = 100
# pageSize: "要求返回的页长度, 默认为100" (fusion/api/1227#4, php-sdk getCdnPrefetchList); no
# maximum is documented. A time window asks WINDOW_PAGE_SIZE a page (a page of 20-URL
# tasks is then 50 tasks for one call) and, should Qiniu refuse that size, the default.
LIST_PAGE_SIZE = 100
WINDOW_PAGE_SIZE = 1000
PAGE_ATTEMPTS = 8
Granularity = Literal["5min", "hour", "day"]
JsonObject = dict[str, Any]

# Qiniu's documents disagree between versions (20, 60 or 100 URLs a request,
# 5 or 10 dirs): these are the smallest published values. The rate limit is in
# URLs: 240 URLs and dirs a second over prefetch and refresh together, i.e. 12
# full prefetch requests a second.
QINIU_LIMITS = Limits(
    batch_size=20,
    requests_per_second=12,
    purge_batch_size=20,
    purge_dir_batch_size=5,
    quota_utc_offset_hours=8,
)

# developer.qiniu.com/fusion/13367/fusion-api-cache-management: "QPS限制: 刷新+预取请求中
# url/dir 总量每秒 ≤ 240" (also developer.qiniu.com/dcdn/10756). One budget in URLs for both.
QINIU_BUDGETS = {
    "urls": Budget(
        240,
        units_per_call=20,
        source="https://developer.qiniu.com/fusion/13367/fusion-api-cache-management",
    ),
    # No Qiniu document states a limit for the task queries, traffic or log
    # APIs: a conservative pace of our own (the emulator can enforce one).
    "queries": Budget(10, source="undocumented; cdn-preheat's own pace"),
}
QINIU_API_BUDGETS = {
    "prefetch": "urls",
    "refresh": "urls",
    "prefetch list": "queries",
    "refresh list": "queries",
    "flux": "queries",
    "bandwidth": "queries",
    "log list": "queries",
}

_STATES = {
    "processing": TaskState.PROCESSING,
    "success": TaskState.DONE,
    "failure": TaskState.FAILED,
}
_CLIENT_ERROR = re.compile(r"\b4\d\d\b")  # origin answered 4xx: retrying will not help
_LOG_HOUR = re.compile(r"_(\d{4}-\d{2}-\d{2}-\d{2})_part")  # name_2024-03-01-13_part-00000.gz


class QiniuConfig(BaseModel):
    """Qiniu's own settings: from :class:`Settings` or plain arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    endpoint: str | None = None  # the fusion CDN API
    rsf_endpoint: str | None = None  # bucket listing (RSF)
    api_endpoint: str | None = None  # the domain API (api.qiniu.com)
    cdn_host: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> QiniuConfig:
        return cls(
            access_key=settings.qiniu_access_key,
            secret_key=settings.qiniu_secret_key,
            endpoint=settings.qiniu_endpoint,
            rsf_endpoint=settings.qiniu_rsf_endpoint,
            api_endpoint=settings.qiniu_api_endpoint,
            cdn_host=settings.cdn_host,
        )


class QiniuProvider(Provider):
    """One Qiniu account; it has a single CDN area, called ``global`` here."""

    name = "qiniu"
    # No quota query: prefetch answers report it. Directory refresh only marks stale.
    # The prefetch query takes startTime/endTime: one call covers many tasks.
    features = Features(quota_query=False, stats=True, logs=True, domain_check=True,
                        window_status=True)  # fmt: skip
    limits = QINIU_LIMITS
    budgets = QINIU_BUDGETS
    api_budgets = QINIU_API_BUDGETS
    submit_api = "prefetch"
    status_api = "prefetch list"
    quota_api = "prefetch list"  # read-only, and the nearest thing to a quota query

    def __init__(self, config: QiniuConfig | Settings, *, area: str = "global") -> None:
        if isinstance(config, Settings):
            config = QiniuConfig.from_settings(config)
        access_key = require_secret(config.access_key, "QINIU_ACCESS_KEY")
        secret_key = require_secret(config.secret_key, "QINIU_SECRET_KEY")
        self.area = area
        self._auth = qiniu.Auth(access_key, secret_key)
        self._cdn = qiniu.CdnManager(self._auth)
        self._endpoint: str | None = config.endpoint
        self._cdn.server = self._endpoint or DEFAULT_SERVER
        self._rsf_endpoint: str | None = config.rsf_endpoint
        self._api_endpoint: str | None = config.api_endpoint
        self._cdn_host = config.cdn_host
        self._last_quota: Quota | None = None
        self._last_quota_day: str | None = None
        self._window_page = WINDOW_PAGE_SIZE

    # Prefetch --------------------------------------------------------------
    def quota(self) -> Quota:
        """The figures of the last prefetch answer; Qiniu has no quota query.

        Before the first answer the total is the documented default and
        ``available`` is ``None`` (unknown): the scheduler then treats the
        quota as limited without overwriting the count its ledger keeps.
        """
        today = _china_day(utcnow())
        last = self._last_quota
        if last is None:
            return Quota(self.area, DOCUMENTED_DAILY_PREFETCH_QUOTA, None, self.limits.batch_size)
        if self._last_quota_day != today:  # midnight in China reset it
            return Quota(self.area, last.total, last.total, last.batch)
        return last

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        return self._submit(list(urls), follow_duplicates=True)

    def _submit(self, urls: list[str], *, follow_duplicates: bool) -> SubmitResult:
        if len(urls) > self.limits.batch_size:
            raise BatchTooLarge(
                f"Qiniu accepts at most {self.limits.batch_size} URLs a prefetch request, "
                f"got {len(urls)}."
            )
        code, body = self._call("prefetch", self._cdn.prefetch_urls, urls)
        if code == 400037 and follow_duplicates:
            return self._submit_around_duplicates(urls)
        self._raise_for(code, body, "prefetch", urls)
        quota = self._remember_quota(body)
        invalid = dict.fromkeys(_strings(body.get("invalidUrls")), "invalid url")
        accepted = tuple(url for url in urls if url not in invalid)
        return SubmitResult(str(body.get("requestId", "")), accepted, invalid, quota)

    def _submit_around_duplicates(self, urls: list[str]) -> SubmitResult:
        """400037: some URLs are already being prefetched, which counts as submitted.

        Their request ids come from the task list; the rest is submitted once more.
        """
        holders = {
            item["url"]: str(item["requestId"])
            for item in self._list_tasks("prefetch", {"urls": urls, "state": "processing"})
        }
        rest = [url for url in urls if url not in holders]
        request_ids = list(dict.fromkeys(holders.values()))
        invalid: dict[str, str] = {}
        quota = self._last_quota
        if rest:
            result = self._submit(rest, follow_duplicates=False)
            request_ids.append(result.task_id)
            invalid, quota = result.invalid, result.quota
        accepted = tuple(url for url in urls if url not in invalid)
        return SubmitResult(",".join(request_ids), accepted, invalid, quota)

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        return self._statuses("prefetch", task_ids)

    def window_status(self, since: dt.datetime, until: dt.datetime) -> list[TaskEntry]:
        """Every prefetch created from ``since`` to ``until``: the query by startTime/endTime.

        Times are China time to the second, both ends included, as ``createAt``
        shows them. Should Qiniu compare endTime with the exact instant instead,
        the tasks of the last second are missing from this window: the tracker
        asks the tasks no window showed by id. Entries carry their request id.
        """
        start = _aware(since).astimezone(CHINA).strftime(TIME_FORMAT)
        end = _aware(until).astimezone(CHINA).strftime(TIME_FORMAT)
        return [
            _entry(str(item.get("requestId", "")), item)
            for item in self._window_items("prefetch", {"startTime": start, "endTime": end})
        ]

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        found: dict[str, str] = {}
        wanted = {url_key(url): url for url in urls}  # the answer may normalise a URL
        start = since.astimezone(CHINA).strftime(TIME_FORMAT)
        for offset in range(0, len(urls), LIST_PAGE_SIZE):
            chunk = list(urls[offset : offset + LIST_PAGE_SIZE])
            for item in self._list_tasks("prefetch", {"urls": chunk, "startTime": start}):
                url = wanted.get(url_key(str(item["url"])))
                # Items come newest first: keep the latest request for each URL.
                if url is not None:
                    found.setdefault(url, str(item["requestId"]))
        return found

    # Refresh ---------------------------------------------------------------
    def purge_urls(self, urls: Sequence[str]) -> str:
        self._check_batch(len(urls), self.limits.purge_batch_size, "URLs a refresh")
        cleaned = list(dict.fromkeys(strip_anti_leech(url) for url in urls))
        code, body = self._call("refresh", self._cdn.refresh_urls, cleaned)
        self._raise_for(code, body, "refresh", cleaned)
        return str(body.get("requestId", ""))

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        # Qiniu always marks cached copies stale; it has no delete mode.
        self._check_batch(len(dirs), self.limits.purge_dir_batch_size, "dirs a refresh")
        code, body = self._call("refresh", self._cdn.refresh_dirs, list(dirs))
        self._raise_for(code, body, "refresh", list(dirs))
        return str(body.get("requestId", ""))

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        return self._statuses("refresh", task_ids)

    # Traffic and logs ------------------------------------------------------
    def flux(
        self,
        domain: str,
        start: dt.datetime,
        end: dt.datetime,
        granularity: Granularity = "5min",
        metric: str = "flux",
    ) -> TrafficSeries:
        """Bytes a period (``flux``) or bit/s (``bandwidth``), China and overseas summed.

        Qiniu takes whole China-time days; points outside [start, end] are dropped.
        """
        methods = {"flux": self._cdn.get_flux_data, "bandwidth": self._cdn.get_bandwidth_data}
        if metric not in methods:
            raise ProviderError(f"Qiniu reports flux and bandwidth, not {metric}.")
        first, last = start.astimezone(CHINA).date(), end.astimezone(CHINA).date()
        args = ([domain], first.isoformat(), last.isoformat(), granularity)
        code, body = self._call(metric, methods[metric], *args)
        self._raise_for(code, body, metric, [domain])
        series = (body.get("data") or {}).get(domain) or {}
        china, oversea = series.get("china") or [], series.get("oversea") or []
        times = map(_parse_time, body.get("time") or [])
        # A region series shorter than ``time`` ends the report there instead of failing it.
        points = tuple(
            TrafficPoint(moment, float(c) + float(o))
            for moment, c, o in zip(times, china, oversea, strict=False)
            if moment is not None and start <= moment <= end
        )
        return TrafficSeries(domain, metric, granularity, points)

    def logs(self, domain: str, day: dt.date) -> list[LogFile]:
        """Hourly access-log files of ``domain`` for one China-time day."""
        code, body = self._call("log list", self._cdn.get_log_list_data, [domain], day.isoformat())
        self._raise_for(code, body, "log list", [domain])
        data = body.get("data") or {}
        entries = (data.get(domain) or []) if isinstance(data, dict) else []
        files = []
        for entry in entries:
            name = str(entry["name"])
            hour = _LOG_HOUR.search(name)
            begin = (
                dt.datetime.strptime(hour.group(1), "%Y-%m-%d-%H").replace(tzinfo=CHINA)
                if hour
                else dt.datetime.combine(day, dt.time(), CHINA)
            )
            length = dt.timedelta(hours=1) if hour else dt.timedelta(days=1)
            size = entry.get("size")
            files.append(
                LogFile(
                    start=begin,
                    end=begin + length,
                    area=self.area,
                    name=name,
                    url=str(entry["url"]),
                    size=int(size) if isinstance(size, int) else None,
                )
            )
        return files

    # The account -------------------------------------------------------------
    def describe_domain(self, host: str) -> DomainInfo | None:
        """The SDK's DomainManager.get_domain (``GET /domain/<name>``).

        developer.qiniu.com/fusion/4246: operatingState success (online), processing,
        failed, frozen, offlined; geoCover china, foreign, global. Qiniu has one area.
        """
        from qiniu.services.cdn.manager import DomainManager

        manager = DomainManager(self._auth)
        if self._api_endpoint:
            manager.server = self._api_endpoint
        ret, info = manager.get_domain(host)
        status = getattr(info, "status_code", None)
        if status == 404:
            return None
        if status in (401, 403):
            raise AuthError("Qiniu refused the domain query: check QINIU_ACCESS_KEY.")
        if status != 200 or not isinstance(ret, dict):
            raise ProviderError(f"Qiniu's domain API answered HTTP {status} for {host}.")
        state, cover = str(ret.get("operatingState")), str(ret.get("geoCover"))
        return DomainInfo(domain=host, status=state, online=state == "success", area=cover,
                          covered=True)  # fmt: skip

    # Storage -----------------------------------------------------------------
    def iter_keys(self, bucket: str, prefix: str = "", suffix: str = "") -> Iterator[str]:
        """Keys of ``bucket`` under ``prefix`` ending in ``suffix``, page by page."""
        manager = self._bucket_manager()
        marker = None
        while True:
            ret, eof, info = manager.list(bucket, prefix or None, marker, 1000)
            if not isinstance(ret, dict):
                code, body = self._failure("bucket list", info)
                self._raise_for(code, body, "bucket list", [bucket])
                raise ProviderError(f"Qiniu bucket list of {bucket} answered nothing.")
            for item in ret.get("items") or []:
                key = str(item.get("key", ""))
                if key.endswith(suffix):
                    yield key
            marker = ret.get("marker")
            if eof or not marker:
                return

    def _bucket_manager(self) -> Any:
        if not self._rsf_endpoint:
            return qiniu.BucketManager(self._auth)
        endpoint = Endpoint.from_host(self._rsf_endpoint)
        region = Region(services={ServiceName.RSF: [endpoint]})
        return qiniu.BucketManager(self._auth, regions=[region])

    # Plumbing ----------------------------------------------------------------
    def _call(self, action: str, method: Callable[..., Any], *args: Any) -> tuple[int, JsonObject]:
        """One SDK call, paced on its API's budget; the Qiniu code and body.

        Transport failures raise Transient. Prefetch and refresh spend one unit
        of the shared URL budget per URL or directory they carry.
        """
        units = len(args[0]) if action in ("prefetch", "refresh") and args else 1
        done = self._pace(action, units)
        try:
            ret, info = method(*args)
        finally:
            done()
        if isinstance(ret, dict) and info.status_code == 200:
            code, body = int(ret.get("code", 200)), ret
        else:
            code, body = self._failure(action, info)
        if code in (403022, 403024):
            self._slowed(action, 1.0)
        return code, body

    def _failure(self, action: str, info: Any) -> tuple[int, JsonObject]:
        """Code and body of a failed call; Transient when no answer came at all."""
        if info.status_code == -1:  # the SDK caught a connection error or timeout
            kind = type(info.exception).__name__ if info.exception else "connection error"
            raise Transient(f"Qiniu {action}: the request failed before an answer ({kind}).")
        return _decode(info)

    def _post(self, path: str, request: JsonObject) -> tuple[Any, Any]:
        """A signed JSON POST, exactly as ``CdnManager`` sends its own."""
        headers = {"Content-Type": "application/json"}
        url = f"{self._cdn.server}{path}"
        ret, info = qiniu.http._post_with_auth_and_headers(
            url, json.dumps(request), self._auth, headers
        )
        return ret, info

    def _list_tasks(
        self, kind: str, filters: JsonObject, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[JsonObject]:
        """Every item of a prefetch or refresh task query, across pages.

        A page that draws a rate-limit or transient answer is asked again alone,
        so a long scan never starts over from its first page.
        """
        page_no, seen = 0, 0
        while True:
            request = {**filters, "pageNo": page_no, "pageSize": page_size}
            body = call_with_retries(
                functools.partial(self._list_page, kind, request),
                attempts=PAGE_ATTEMPTS,
                on_retry=lambda exc: logger.warning("a Qiniu %s list page: %s", kind, exc),
            )
            items = [item for item in body.get("items") or [] if isinstance(item, dict)]
            yield from items
            seen += len(items)
            if not items or seen >= int(body.get("total", 0)):
                return
            page_no += 1

    def _list_page(self, kind: str, request: JsonObject) -> JsonObject:
        code, body = self._call(f"{kind} list", self._post, f"/v2/tune/{kind}/list", request)
        self._raise_for(code, body, f"{kind} list", [])
        return body

    def _window_items(self, kind: str, window: JsonObject) -> Iterator[JsonObject]:
        """A time window's items at the larger page size; the default size if it is refused.

        Only a refusal of the first page changes the size: later pages are numbered
        in the size the first one was read with.
        """
        if self._window_page > LIST_PAGE_SIZE:
            pages = self._list_tasks(kind, window, self._window_page)
            try:
                first = next(pages)
            except StopIteration:
                return
            except ProviderError as exc:
                if exc.code != "400000":
                    raise
                logger.info(
                    "Qiniu refused pageSize %d (%s); asking %d a page",
                    self._window_page, exc, LIST_PAGE_SIZE,
                )  # fmt: skip
                self._window_page = LIST_PAGE_SIZE
            else:
                yield first
                yield from pages
                return
        yield from self._list_tasks(kind, window, self._window_page)

    def _statuses(self, kind: str, task_ids: Sequence[str]) -> list[TaskEntry]:
        entries: list[TaskEntry] = []
        for task_id in task_ids:
            for request_id in filter(None, task_id.split(",")):
                for item in self._list_tasks(kind, {"requestId": request_id}):
                    entries.append(_entry(task_id, item))
        return entries

    def _remember_quota(self, body: JsonObject) -> Quota | None:
        total, left = body.get("quotaDay"), body.get("surplusDay")
        if not isinstance(total, int) or not isinstance(left, int):
            return None
        self._last_quota = Quota(self.area, total, max(0, left), self.limits.batch_size)
        self._last_quota_day = _china_day(utcnow())
        return self._last_quota

    def _check_batch(self, count: int, limit: int, what: str) -> None:
        if count > limit:
            raise BatchTooLarge(f"Qiniu accepts at most {limit} {what} request, got {count}.")

    def _raise_for(self, code: int, body: JsonObject, action: str, urls: Sequence[str]) -> None:
        """Map a Qiniu answer code onto the error taxonomy; return quietly on 200."""
        if code == 200:
            return
        error = str(body.get("error") or "")
        label = str(code)
        prefix = f"Qiniu {action}: {code} {error}".rstrip()
        if code == 401:
            raise AuthError(
                "Qiniu rejected the credentials (bad token): "
                "check QINIU_ACCESS_KEY and QINIU_SECRET_KEY.",
                code=label,
            )
        if code in (400033, 400034, 400035):
            raise QuotaExhausted(f"{prefix}: today's quota is spent.", code=label)
        if code in (403022, 403024):
            raise RateLimited(f"{prefix}: slow down.", code=label, retry_after=1.0)
        if code == 400031:
            refused = _strings(body.get("invalidUrls")) + _strings(body.get("invalidDirs"))
            invalid = dict.fromkeys(refused or urls, "invalid url")
            raise InvalidUrls(f"{prefix}: {len(invalid)} refused.", invalid=invalid, code=label)
        if code == 400038:
            raise PermissionDenied(
                f"{prefix}: directory refresh is not enabled on this Qiniu account (it is off "
                "by default; Qiniu enables it on a support ticket), so purge the URLs instead.",
                code=label,
            )
        if code == 400032:
            host = self._cdn_host or "unset"
            raise DomainError(
                f"{prefix}: the URLs' host is not a domain of this Qiniu account; "
                f"check CDN_HOST (now {host}).",
                code=label,
            )
        if code >= 500000 or 500 <= code < 600:
            raise Transient(f"{prefix}.", code=label)
        raise ProviderError(f"{prefix}.", code=label)


def _decode(info: Any) -> tuple[int, JsonObject]:
    """Code and body of a non-200 (or unsigned) SDK answer."""
    status = int(info.status_code)
    try:
        body = json.loads(info.text_body or "")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # An HTML error page from a gateway, or no X-Reqid: not Qiniu's own answer.
        error = f"HTTP {status} without a Qiniu answer"
        return (status if status != 200 else 502), {"error": error}
    code = body.get("code")
    return (int(code) if isinstance(code, int) else status), body


def _entry(task_id: str, item: JsonObject) -> TaskEntry:
    state = _STATES.get(str(item.get("state")), TaskState.PROCESSING)
    detail = str(item.get("stateDetail") or "") or None
    if state is TaskState.FAILED and detail and _CLIENT_ERROR.search(detail):
        state = TaskState.INVALID
    created = str(item.get("createAt") or "")
    return TaskEntry(
        task_id=task_id,
        url=str(item.get("url", "")),
        state=state,
        reason=detail,
        created_at=_parse_time(created),
    )


def _parse_time(text: object) -> dt.datetime | None:
    """A Qiniu timestamp, or None when its format is not one we know.

    No document fixes the list APIs' format (the official Ruby SDK parses it with
    the lenient ``Time.parse``): "2024-03-01 13:04:05", ISO 8601 with or without
    an offset, a shorter "2024-03-01 13:04", or Unix seconds are read, China time
    when no offset is given; anything else never raises.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        try:
            return dt.datetime.fromtimestamp(text, CHINA)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(text, str) or not text.strip():
        return None
    value = text.strip()
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        if value.isascii() and value.isdigit():
            return _parse_time(int(value))
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _china_day(moment: dt.datetime) -> str:
    return china_day(moment).isoformat()


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


SPEC = ProviderSpec(
    provider=QiniuProvider,
    title="Qiniu",
    config=QiniuConfig,
    build=QiniuProvider,
    credentials=("QINIU_ACCESS_KEY", "QINIU_SECRET_KEY"),
    # One CDN area ("global"); the fusion, bucket listing and domain APIs all move
    # with a target's endpoint (the sandbox answers the three on one port).
    endpoint_settings=("qiniu_endpoint", "qiniu_rsf_endpoint", "qiniu_api_endpoint"),
    cache_vendor="qiniu",
    emulator="cdn_preheat.sandbox.qiniu",
    default_api=DEFAULT_SERVER,
    clock_tolerance=None,  # Qiniu's QBox/Qiniu tokens sign no time
)
