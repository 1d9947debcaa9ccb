"""Alibaba Cloud CDN through the official ``alibabacloud-cdn20180510`` SDK.

Prefetch is ``PushObjectCache`` (100 URLs a call, 50 calls a second, a daily
quota that resets at midnight UTC+8), followed with
``DescribeRefreshTaskById``; ``DescribeRefreshTasks`` lists recent tasks for
crash reconciliation; ``RefreshObjectCaches`` purges. The SDK's own retries
are off: the scheduler decides when to try again.

Each action has its own documented budget (``ALIYUN_BUDGETS``), so every call is
paced to its action's rate here: a reconciliation that pages through
``DescribeRefreshTasks`` (5 calls a second) must not run at the prefetch rate.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from alibabacloud_cdn20180510 import models as cdn_models
from alibabacloud_cdn20180510.client import Client
from alibabacloud_tea_openapi import utils_models as openapi_models
from darabonba.runtime import RuntimeOptions
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from Tea.exceptions import TeaException, UnretryableException

from cdn_preheat.clock import utcnow
from cdn_preheat.config import Settings, require_secret
from cdn_preheat.errors import (
    AuthError,
    BatchTooLarge,
    DomainError,
    InvalidUrls,
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
from cdn_preheat.ratelimit import Budget, call_with_retries
from cdn_preheat.urlkey import url_key

logger = logging.getLogger(__name__)
AliyunArea = Literal["domestic", "overseas"]

DEFAULT_ENDPOINT = "cdn.aliyuncs.com"
CONNECT_TIMEOUT_MS = 5_000
TASK_IDS_PER_QUERY = 10  # DescribeRefreshTaskById takes at most 10 ids
TASKS_PAGE_SIZE = 100  # DescribeRefreshTasks PageSize: "最大 100"
# A task query (one request of ids, one page of a list) that draws a rate-limit or
# transient answer is asked again alone this many times before the call fails.
PAGE_ATTEMPTS = 8
# URLs of one lost request looked up one by one (find_request) before the rest is read
# as a list: each lookup that finds a task settles every URL of that task's id.
REQUEST_PROBES = 4
# "只能查询最近 3 天内的数据": DescribeRefreshTasks and DescribeRefreshTaskById only
# reach back 3 days (help.aliyun.com/document_detail/91158.html, 448062.htm).
TASK_RETENTION = dt.timedelta(days=3)
# Stay this far inside the 3 days, and look this far past now: our clock and
# Alibaba's may differ.
CLOCK_MARGIN = dt.timedelta(minutes=5)
MAX_OBJECT_PATH = 1024
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# PreloadQueueFull means either a full queue (100,000 URLs pending, PushObjectCache
# page) or the day's quota reached (help center, "preload-queue-is-full"): the
# provider asks DescribeRefreshQuota which. A full queue drains: wait and retry.
QUEUE_FULL_RETRY_SECONDS = 60.0
# The SDK sends ObjectPath in the query string (client.py push_object_cache_with_options:
# query['ObjectPath']), and the POP gateway answers 414 to long request lines
# (aliyun/openapi-core-nodejs-sdk#55). Its limit is not documented; nginx-based
# gateways default to an 8 KiB request line, so the encoded list stays under that.
MAX_ENCODED_OBJECT_PATH = 7 * 1024
_URI_TOO_LARGE = re.compile(r"\b414\b.{0,40}(Request-URI|URI Too)", re.IGNORECASE)

AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "InvalidAccessKeySecret",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "Forbidden.AccessKeyDisabled",
        "Forbidden.RAM",
        "Forbidden.NoPermission",
        "NoPermission",
    }
)
QUOTA_CODES = frozenset({"QuotaExceeded.Preload", "QuotaExceeded.Refresh"})
DOMAIN_CODES = frozenset(
    {
        "InvalidDomain.NotFound",
        "InvalidDomain.Offline",
        "IllegalOperation",
        "InvalidExtensiveDomain.ValueNotSupported",
    }
)
BATCH_CODES = frozenset(
    {
        "InvalidObjectPath.ExceedsMaximum",
        "SingleRequest.OverLimit",
        "InvalidObjectPath.Size.Malformed",
    }
)
MALFORMED_CODES = frozenset({"InvalidObjectPath.Malformed", "ObjectPath.Malformed"})

# Alibaba Cloud limits each API on its own ("单用户调用频率" on each API's page).
ALIYUN_BUDGETS = {
    # help.aliyun.com/document_detail/91161.html: 50 calls a second per user.
    "PushObjectCache": Budget(50, source="https://help.aliyun.com/document_detail/91161.html"),
    # help.aliyun.com/document_detail/448062.htm: 30 calls a second.
    "DescribeRefreshTaskById": Budget(
        30, source="https://help.aliyun.com/document_detail/448062.htm"
    ),
    # help.aliyun.com/document_detail/91158.html: 5 calls a second (older versions said 10).
    "DescribeRefreshTasks": Budget(5, source="https://help.aliyun.com/document_detail/91158.html"),
    "DescribeRefreshQuota": Budget(
        20,
        source="https://www.alibabacloud.com/help/en/alibaba-cloud-cdn/latest/describerefreshquota",
    ),
    "RefreshObjectCaches": Budget(
        50,
        source="https://www.alibabacloud.com/help/en/alibaba-cloud-cdn/latest/refreshobjectcaches",
    ),
    # cdn-preheat doctor, once a run: 5 a second stays under the per-account limit the
    # API's page states (not re-checked for this figure).
    "DescribeUserDomains": Budget(
        5,
        source="https://www.alibabacloud.com/help/en/alibaba-cloud-cdn/latest/describeuserdomains",
    ),
}

# Which domain Coverage serves each ALIYUN_AREA.
_COVERS = {"domestic": ("domestic", "global"), "overseas": ("overseas", "global")}

STATES = {"Complete": TaskState.DONE, "Refreshing": TaskState.PROCESSING}


class AliyunConfig(BaseModel):
    """Alibaba Cloud's own settings: from :class:`Settings` or plain arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_key_id: SecretStr | None = None
    access_key_secret: SecretStr | None = None
    endpoint: str | None = None  # e.g. http://127.0.0.1:8091 (the sandbox)
    area: AliyunArea = "domestic"
    l2_preload: bool = False
    call_timeout: float = Field(default=15.0, gt=0)  # seconds; see Settings.api_deadline

    @classmethod
    def from_settings(cls, settings: Settings) -> AliyunConfig:
        return cls(
            access_key_id=settings.aliyun_access_key_id,
            access_key_secret=settings.aliyun_access_key_secret,
            endpoint=settings.aliyun_endpoint,
            area=settings.aliyun_area,
            l2_preload=settings.aliyun_l2_preload,
            call_timeout=settings.api_deadline,
        )


class AliyunProvider(Provider):
    """One Alibaba Cloud account, prefetching into one area."""

    name = "aliyun"
    # Force=true on a directory refresh is the closest Alibaba has to deleting cached
    # copies (RefreshObjectCaches); it has no traffic or log API wired here.
    features = Features(purge_delete=True, domain_check=True, tells_missing_file=False)
    limits = Limits(
        batch_size=100,
        requests_per_second=50,
        purge_batch_size=100,
        purge_dir_batch_size=100,
        quota_utc_offset_hours=8,
        task_retention=TASK_RETENTION,
    )
    budgets = ALIYUN_BUDGETS
    submit_api = "PushObjectCache"
    status_api = "DescribeRefreshTaskById"
    quota_api = "DescribeRefreshQuota"

    def __init__(
        self,
        config: AliyunConfig | Settings,
        *,
        area: AliyunArea | None = None,
        l2_preload: bool | None = None,
    ) -> None:
        """``area`` and ``l2_preload`` override the config's."""
        if isinstance(config, Settings):
            config = AliyunConfig.from_settings(config)
        self.area = area or config.area
        self._l2_preload = config.l2_preload if l2_preload is None else l2_preload
        endpoint, protocol = _endpoint(config.endpoint)
        # A call's deadline (the SDK's read timeout, in ms) is the scheduler's call_timeout:
        # shorter than a claim's lease, so no call outlives the lease it was sent under.
        self.call_timeout = config.call_timeout
        read_timeout = max(1, round(config.call_timeout * 1000))
        connect_timeout = min(CONNECT_TIMEOUT_MS, read_timeout)
        sdk_config = openapi_models.Config(
            access_key_id=require_secret(config.access_key_id, "ALIYUN_ACCESS_KEY_ID"),
            access_key_secret=require_secret(config.access_key_secret, "ALIYUN_ACCESS_KEY_SECRET"),
            endpoint=endpoint,
            protocol=protocol,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        # With no Config.retry_options this SDK tries once; autoretry=False also
        # turns off the older Tea runtime's retries, should that code path run.
        self._client = Client(sdk_config)
        self._runtime = RuntimeOptions(
            autoretry=False,
            max_attempts=0,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    def quota(self) -> Quota:
        body = self._call(
            "DescribeRefreshQuota",
            self._client.describe_refresh_quota_with_options,
            cdn_models.DescribeRefreshQuotaRequest(),
        )
        return Quota(
            area=self.area,
            total=int(body.preload_quota),
            available=int(body.preload_remain),
            batch=self.limits.batch_size,
        )

    def submit(self, urls: Sequence[str]) -> SubmitResult:
        if len(urls) > self.limits.batch_size:
            raise BatchTooLarge(
                f"Alibaba Cloud CDN prefetches at most {self.limits.batch_size} URLs a call, "
                f"got {len(urls)}."
            )
        invalid = {url: reason for url in urls if (reason := _object_path_problem(url))}
        valid = [url for url in urls if url not in invalid]
        if not valid:
            raise InvalidUrls(f"{len(invalid)} URL(s) cannot be prefetched.", invalid=invalid)
        object_path = "\n".join(valid)
        if len(valid) > 1 and _encoded_size(object_path) > MAX_ENCODED_OBJECT_PATH:
            raise BatchTooLarge(
                f"Alibaba Cloud CDN takes the prefetch list in the URL: {len(valid)} URLs "
                f"would exceed {MAX_ENCODED_OBJECT_PATH} bytes; send fewer at once."
            )
        request = cdn_models.PushObjectCacheRequest(
            object_path=object_path,
            area=self.area,
            l_2preload=True if self._l2_preload else None,
        )
        try:
            body = self._call(
                "PushObjectCache", self._client.push_object_cache_with_options, request, urls=valid
            )
        except RateLimited as exc:
            if exc.code != "PreloadQueueFull":
                raise
            raise self._queue_full(exc, len(valid)) from None
        return SubmitResult(task_id=str(body.push_task_id), accepted=tuple(valid), invalid=invalid)

    def _queue_full(self, exc: RateLimited, count: int) -> ProviderError:
        """PreloadQueueFull: the daily quota when it is spent, else a queue to wait out."""
        try:
            quota = self.quota()
        except ProviderError:
            return exc
        if quota.available is not None and quota.available < count:
            return QuotaExhausted(
                f"Alibaba Cloud CDN refused the prefetch (PreloadQueueFull) with "
                f"{quota.available} URLs of today's quota left: the quota is spent "
                "(resets 00:00 UTC+8).",
                code=exc.code,
            )
        return exc

    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        return self._describe_tasks(task_ids)

    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        """The newest prefetch task of each URL since ``since``, from DescribeRefreshTasks.

        The query must carry both StartTime and EndTime and may not reach back
        more than 3 days; a batch older than that raises :class:`Unreconcilable`.
        It reads the window's task list when that takes no more calls than
        asking for each URL by ``ObjectPath`` (exact match), else asks per URL.
        """
        now = utcnow()
        since = self._reconcilable(since, now, "Alibaba Cloud CDN keeps prefetch tasks")
        window = (since, now + CLOCK_MARGIN)
        if since.replace(microsecond=0) >= window[1].replace(microsecond=0):
            return {}  # asked about the future: nothing can have arrived

        return _newest_per_url(self._scan(window, urls), {url_key(url): url for url in urls})

    def find_request(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        """Which URLs of one PushObjectCache call whose answer was lost Alibaba took.

        Alibaba takes a call whole or refuses it whole: it answers one PushTaskId for
        the call or one error code, and PushObjectCacheResponseBody (SDK
        models/_push_object_cache_response_body.py) has no field that would name paths
        taken apart from paths refused. So one URL tells about the request: its tasks
        since ``since`` (DescribeRefreshTasks by ObjectPath, "used as a condition for
        exact matching", SDK DescribeRefreshTasksRequest.object_path), and, when it has
        some, every URL of those tasks by id (DescribeRefreshTaskById, up to 10 ids a
        call at 30 a second, SDK DescribeRefreshTaskByIdRequest.task_id). A URL with no
        task means the request was not taken; the tasks other URLs have are earlier
        pushes', which the caller tells apart with its ledger. Pushes of one second may
        share ids, 500 URLs an id, so one call's URLs may sit under two ids ("id1,id2",
        SDK PushObjectCacheResponseBody.push_task_id): a URL still unseen is looked up
        the same way. Two calls for a lost push, one for a dropped one, where reading
        the task list took a call per 100 tasks pushed since the claim.
        """
        now = utcnow()
        since = self._reconcilable(since, now, "Alibaba Cloud CDN keeps prefetch tasks")
        window = (since, now + CLOCK_MARGIN)
        if since.replace(microsecond=0) >= window[1].replace(microsecond=0):
            return {}  # asked about the future: nothing can have arrived
        # What submit() sent: the URLs it refuses locally never left.
        sent = {url_key(url): url for url in urls if _object_path_problem(url) is None}
        oldest = since.replace(microsecond=0)
        tasks: list[Any] = []
        unseen = dict(sent)
        for _ in range(REQUEST_PROBES):
            if not unseen:
                return _newest_per_url(tasks, sent)
            probe = next(iter(unseen.values()))
            own = self._all_pages(window, probe)
            ids = sorted({str(task.task_id) for task in own})
            if not ids:
                break  # this URL has no task since the claim: the request was not taken
            tasks += own
            tasks += [
                task
                for task in self._tasks_by_id(ids)
                if (_parse_time(task.creation_time) or oldest) >= oldest
            ]
            unseen.pop(url_key(probe))
            for task in tasks:
                unseen.pop(url_key(str(task.object_path)), None)
        else:
            if unseen:
                # Many URLs each under ids of their own (earlier pushes): ask the rest as
                # find_submitted does, by the list or per URL, whichever is fewer calls.
                tasks += self._scan(window, list(unseen.values()))
        return _newest_per_url(tasks, sent)

    def describe_domain(self, host: str) -> DomainInfo | None:
        """DescribeUserDomains, exact match on the name.

        SDK DescribeUserDomainsRequest: DomainSearchType full_match (exact); DomainStatus
        online, offline, configuring, ...; Coverage domestic, overseas, global.
        """
        request = cdn_models.DescribeUserDomainsRequest(
            domain_name=host, domain_search_type="full_match"
        )
        body = self._call(
            "DescribeUserDomains", self._client.describe_user_domains_with_options, request
        )
        pages = body.domains.page_data if body.domains and body.domains.page_data else []
        found = [d for d in pages if str(d.domain_name).lower() == host.lower()]
        if not found:
            return None
        domain = found[0]
        fix = "overseas" if domain.coverage == "overseas" else "domestic"
        return DomainInfo(
            domain=host,
            status=str(domain.domain_status),
            online=domain.domain_status == "online",
            area=str(domain.coverage),
            covered=domain.coverage in _COVERS.get(self.area, ()),
            fix_area=f"ALIYUN_AREA to {fix}",
        )

    def purge_urls(self, urls: Sequence[str]) -> str:
        return self._refresh(urls, "File", force=False)

    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        # Alibaba refreshes a directory only when its path ends with "/".
        paths = [d if d.endswith("/") else f"{d}/" for d in dirs]
        # Force=true refreshes everything under the directories, not only changed files:
        # the closest Alibaba has to deleting the cached copies.
        return self._refresh(paths, "Directory", force=delete)

    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        return self._describe_tasks(task_ids)

    def _refresh(self, paths: Sequence[str], object_type: str, *, force: bool) -> str:
        request = cdn_models.RefreshObjectCachesRequest(
            object_path="\n".join(paths),
            object_type=object_type,
            force=True if force else None,
        )
        body = self._call(
            "RefreshObjectCaches",
            self._client.refresh_object_caches_with_options,
            request,
            urls=paths,
        )
        return str(body.refresh_task_id)

    def _describe_tasks(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        # PushTaskId may hold several comma-separated ids; report under the id we were given.
        asked = {part.strip(): tid for tid in task_ids for part in tid.split(",") if part.strip()}
        return [
            _entry(task, asked.get(str(task.task_id), str(task.task_id)))
            for task in self._tasks_by_id(list(asked))
        ]

    def _tasks_by_id(self, ids: Sequence[str]) -> list[Any]:
        """Every URL's task of these task ids: DescribeRefreshTaskById, 10 ids a call."""
        tasks: list[Any] = []
        for start in range(0, len(ids), TASK_IDS_PER_QUERY):
            request = cdn_models.DescribeRefreshTaskByIdRequest(
                task_id=",".join(ids[start : start + TASK_IDS_PER_QUERY])
            )
            # One request of 10 ids retried alone: the requests before it are not
            # asked again, and the tracker need not split the chunk to get past it.
            body = self._query(
                "DescribeRefreshTaskById",
                self._client.describe_refresh_task_by_id_with_options,
                request,
            )
            tasks += body.tasks or []
        return tasks

    def _scan(self, window: tuple[dt.datetime, dt.datetime], urls: Sequence[str]) -> list[Any]:
        """The prefetch tasks of the window that may be ``urls``': the window's list, or
        each URL's by ObjectPath (exact match), whichever takes fewer calls."""
        first = self._tasks_page(window, 1)
        total = int(first.total_count or 0)
        if math.ceil(total / TASKS_PAGE_SIZE) - 1 > len(set(map(url_key, urls))):
            return [task for url in urls for task in self._all_pages(window, url)]
        return self._all_pages(window, None, first)

    def _all_pages(
        self, window: tuple[dt.datetime, dt.datetime], object_path: str | None, first: Any = None
    ) -> list[Any]:
        """Every page of the window's list (of one URL's tasks, given ``object_path``)."""
        body = first if first is not None else self._tasks_page(window, 1, object_path=object_path)
        total = int(body.total_count or 0)
        tasks: list[Any] = _page_tasks(body)
        # Pushes that arrive while the pages are read join the list (newest first, as
        # the emulator and the console list them) and push the oldest tasks onto later
        # pages: read on to the count the latest page gives, so none of the tasks there
        # at the start falls off the end unread. A task read twice costs nothing
        # (newest per URL).
        page = 1
        while page * TASKS_PAGE_SIZE < total:
            page += 1
            body = self._tasks_page(window, page, object_path=object_path)
            tasks += _page_tasks(body)
            total = max(total, int(body.total_count or 0))
        return tasks

    def _tasks_page(
        self, window: tuple[dt.datetime, dt.datetime], page: int, object_path: str | None = None
    ) -> Any:
        request = cdn_models.DescribeRefreshTasksRequest(
            object_type="preload",
            object_path=object_path,
            start_time=window[0].astimezone(dt.UTC).strftime(TIME_FORMAT),
            end_time=window[1].astimezone(dt.UTC).strftime(TIME_FORMAT),
            page_number=page,
            page_size=TASKS_PAGE_SIZE,
        )
        return self._query(
            "DescribeRefreshTasks", self._client.describe_refresh_tasks_with_options, request
        )

    def _query(
        self, action: str, method: Callable[[Any, RuntimeOptions], Any], request: Any
    ) -> Any:
        """One read-only call (a page of a scan), retried alone on rate-limit and transient
        answers: a scan that loses one page's answer goes on from that page."""
        return call_with_retries(
            functools.partial(self._call, action, method, request),
            attempts=PAGE_ATTEMPTS,
            on_retry=lambda exc: logger.warning("Alibaba Cloud %s: %s (retrying)", action, exc),
        )

    def _call(
        self,
        action: str,
        method: Callable[[Any, RuntimeOptions], Any],
        request: Any,
        urls: Sequence[str] = (),
    ) -> Any:
        """One SDK call, paced on its API's budget; its response body, or a cdn-preheat error."""
        done = self._pace(action)
        try:
            return method(request, self._runtime).body
        except Exception as exc:
            error = map_error(exc, action, urls)
            if error is None:
                raise
            if isinstance(error, RateLimited) and error.code != "PreloadQueueFull":
                self._slowed(action, error.retry_after)
            raise error from None
        finally:
            done()


def map_error(exc: Exception, action: str, urls: Sequence[str] = ()) -> ProviderError | None:
    """The cdn-preheat error for an SDK exception; None when it is not the SDK's."""
    if isinstance(exc, UnretryableException):
        # Connection refused or dropped, timeout, or a non-JSON answer such as a 502 page.
        inner = type(exc.inner_exception).__name__
        if _URI_TOO_LARGE.search(str(exc.inner_exception)):
            # The gateway's HTML 414 page: the request line (ObjectPath) is too long.
            if len(urls) == 1:
                reason = "the gateway refused the request as too long (HTTP 414)"
                return InvalidUrls(
                    f"Alibaba Cloud CDN {action}: {reason}.", invalid={urls[0]: reason}
                )
            return BatchTooLarge(
                f"Alibaba Cloud CDN {action}: the gateway refused the request line as too "
                "long (HTTP 414); sending fewer URLs at once."
            )
        if _read_timed_out(exc.inner_exception):
            # Sent, and no answer within the deadline: it may still take effect.
            return Transient(
                f"Alibaba Cloud CDN {action} got no answer within its deadline; will retry.",
                timed_out=True,
            )
        return Transient(f"Alibaba Cloud CDN {action} failed in transit ({inner}); will retry.")
    if not isinstance(exc, TeaException):
        return None
    code = str(exc.code or "")
    status = _status_code(exc)
    said = f"Alibaba Cloud CDN {action} refused: {code}"
    if code in AUTH_CODES:
        return AuthError(
            f"{said}. Check ALIYUN_ACCESS_KEY_ID and ALIYUN_ACCESS_KEY_SECRET "
            "(and that the key may use CDN).",
            code=code,
        )
    if code in QUOTA_CODES:
        return QuotaExhausted(f"{said}: today's quota is spent (resets 00:00 UTC+8).", code=code)
    if code.startswith("Throttling"):
        retry_after = getattr(exc, "retry_after", None)
        seconds = retry_after / 1000 if isinstance(retry_after, int | float) else None
        return RateLimited(f"{said}.", code=code, retry_after=seconds)
    if code == "ServiceBusy":
        # "The specified Domain is configuring, please retry later." (403).
        return Transient(f"{said}: the domain is being configured; will retry.", code=code)
    if code == "PreloadQueueFull":
        return RateLimited(
            f"{said}: the prefetch queue is full.", code=code, retry_after=QUEUE_FULL_RETRY_SECONDS
        )
    if code in DOMAIN_CODES:
        return DomainError(
            f"{said}. Check CDN_HOST: it must be a domain of this Alibaba Cloud CDN account.",
            code=code,
        )
    if code in BATCH_CODES:
        return BatchTooLarge(f"{said}: too many paths in one call.", code=code)
    if code in MALFORMED_CODES and urls:
        # Alibaba does not say which path; local checks catch what it checks, so
        # this is rare, and it names every URL of the call.
        return InvalidUrls(f"{said}.", invalid=dict.fromkeys(urls, code), code=code)
    if status is not None and status >= 500:
        return Transient(f"{said} (HTTP {status}); will retry.", code=code)
    return ProviderError(f"{said}: {exc.message}", code=code)


def _read_timed_out(error: BaseException | None) -> bool:
    """Whether the SDK's transport error is a read timeout: the request was sent.

    darabonba wraps the transport's exception (requests' ReadTimeout, "Read timed
    out") in a RetryError whose cause or context is that exception.
    """
    seen = 0
    while error is not None and seen < 8:
        if type(error).__name__ == "ReadTimeout" or "Read timed out" in str(error):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _endpoint(override: str | None) -> tuple[str, str]:
    """(``host:port``, ``HTTP``|``HTTPS``) from ALIYUN_ENDPOINT (already normalised)."""
    if not override:
        return DEFAULT_ENDPOINT, "HTTPS"
    parts = urlsplit(override)
    return parts.netloc, parts.scheme.upper()


def _object_path_problem(url: str) -> str | None:
    """Why Alibaba would refuse this URL as an ObjectPath, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "not an absolute http(s) URL"
    if len(url) > MAX_OBJECT_PATH:
        return f"longer than {MAX_OBJECT_PATH} characters"
    if any(ch.isspace() for ch in url):
        return "contains whitespace"
    return None


def _encoded_size(value: str) -> int:
    """Bytes ``value`` takes percent-encoded in a query string."""
    return len(quote(value, safe="-_.~"))


def _page_tasks(body: Any) -> list[Any]:
    return list(body.tasks.cdntask) if body.tasks and body.tasks.cdntask else []


def _newest_per_url(tasks: Iterable[Any], wanted: dict[str, str]) -> dict[str, str]:
    """url -> id of its newest task, by creation time then task id (no listing order assumed)."""
    best: dict[str, tuple[dt.datetime, int, str]] = {}
    for task in tasks:
        url = wanted.get(url_key(str(task.object_path)))
        if url is None:
            continue
        task_id = str(task.task_id)
        created = _parse_time(task.creation_time) or dt.datetime.min.replace(tzinfo=dt.UTC)
        rank = (created, int(task_id) if task_id.isdigit() else 0, task_id)
        if url not in best or rank > best[url]:
            best[url] = rank
    return {url: rank[2] for url, rank in best.items()}


def _entry(task: Any, task_id: str) -> TaskEntry:
    status = str(task.status or "")
    description = str(task.description or "") or None
    state = STATES.get(status, TaskState.PROCESSING)
    if status == "Failed":
        state = TaskState.INVALID if _origin_refused(description) else TaskState.FAILED
    return TaskEntry(
        task_id=task_id,
        url=str(task.object_path),
        state=state,
        reason=description if state in (TaskState.FAILED, TaskState.INVALID) else None,
        created_at=_parse_time(task.creation_time),
    )


# Alibaba documents three failure descriptions, all worth another try: "Internal
# Error", "Origin Timeout", "Origin Return StatusCode 5XX" (SDK
# models/_describe_refresh_task_by_id_response_body.py, DescribeRefreshTaskByIdResponseBodyTasks
# .description; help.aliyun.com/document_detail/91158.html). None names a 4xx; should
# a task report one in the same form ("Origin Return StatusCode 4XX" or "... 404"), the
# origin refused the file and pushing it again cannot help.
_ORIGIN_4XX = re.compile(r"status\s*code\s*4(?:\d\d|xx)\b", re.IGNORECASE)


def _origin_refused(description: str | None) -> bool:
    return bool(_ORIGIN_4XX.search(description or ""))


def _parse_time(value: object) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _status_code(exc: TeaException) -> int | None:
    status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
    return int(status) if status is not None else None


SPEC = ProviderSpec(
    provider=AliyunProvider,
    title="Alibaba Cloud",
    config=AliyunConfig,
    build=AliyunProvider,
    credentials=("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET"),
    areas=("domestic", "overseas"),
    area_setting="aliyun_area",
    endpoint_settings=("aliyun_endpoint",),
    cache_vendor="aliyun",
    emulator="cdn_preheat.sandbox.aliyun",
    default_api="https://cdn.aliyuncs.com",
    # V3 request structure, x-acs-date: "值为请求发出前15分钟内的时间" (help.aliyun.com, "ROA风格
    # 请求体&签名机制" / V3 request structure and signature); InvalidTimeStamp.Expired.
    clock_tolerance=900.0,
)
