"""Alibaba Cloud CDN API emulator (``cdn`` 2018-05-10) for the sandbox.

The official ``alibabacloud-cdn20180510`` SDK talks to it unmodified when its
``Config`` has ``endpoint="127.0.0.1:PORT", protocol="HTTP"``. That SDK signs
every call with ``ACS3-HMAC-SHA256`` (``Authorization`` header, all sent
headers signed, ``x-acs-content-sha256`` the body's hash); the emulator
recomputes that signature with the SDK's own helper from what actually
arrived, so a wrong key, a wrong secret or a tampered request is refused with
Alibaba's codes.

Actions: ``PushObjectCache``, ``DescribeRefreshQuota``,
``DescribeRefreshTaskById``, ``DescribeRefreshTasks`` and
``RefreshObjectCaches``, with Alibaba's limits (100 URLs a prefetch call,
each action's own calls-per-second budget, daily quotas that reset at
midnight UTC+8 on the :class:`SandboxClock`). A prefetch task is
``Refreshing`` for ``task_delay``, then ``Complete`` (the edge cache now holds
the URL) when the origin answered 200, else ``Failed`` with one of Alibaba's
documented descriptions. Tasks are kept ``task_retention`` (3 days) on the
clock, then forgotten, as Alibaba's task queries only cover the last 3 days.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import itertools
import json
import threading
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from alibabacloud_tea_openapi.utils import Utils as OpenApiUtils
from darabonba.request import DaraRequest

from cdn_preheat import config
from cdn_preheat.sandbox.core import (
    EdgeCache,
    EmulatorBase,
    EmulatorSpec,
    FaultKind,
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

API_VERSION = "2018-05-10"
HOST_ID = "cdn.aliyuncs.com"
SIGNATURE_ALGORITHMS = ("ACS3-HMAC-SHA256", "ACS3-HMAC-SM3")
# Headers the gateway insists are signed, so none of them can be swapped in transit.
REQUIRED_SIGNED_HEADERS = frozenset(
    {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
     "x-acs-content-sha256"}
)  # fmt: skip
TIMESTAMP_TOLERANCE = dt.timedelta(minutes=15)
NONCE_MEMORY = 100_000
QUEUE_FULL = "Preload queue is full, please try again later!"
URI_TOO_LARGE = (
    b"<html>\r\n<head><title>414 Request-URI Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>414 Request-URI Too Large</h1></center>\r\n<hr><center>Tengine</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

# The failure descriptions Alibaba documents for a Failed task, and no others:
# SDK alibabacloud_cdn20180510/models/_describe_refresh_task_by_id_response_body.py
# (DescribeRefreshTaskByIdResponseBodyTasks.description) and the DescribeRefreshTasks
# reference (help.aliyun.com/document_detail/91158.html).
INTERNAL_ERROR = "Internal Error"
ORIGIN_TIMEOUT = "Origin Timeout"
ORIGIN_5XX = "Origin Return StatusCode 5XX"
# What a task says when the origin answers 4xx is not documented (the list above has
# no 4xx entry); AliyunLimits.origin_4xx_description chooses, and the tests run the
# provider against both choices: a documented generic text, or a 4XX twin of ORIGIN_5XX.
ORIGIN_4XX = "Origin Return StatusCode 4XX"
# Status the origin stand-in reports for a pull that timed out.
ORIGIN_TIMED_OUT = 504

# Per-action calls a second for one user:
# PushObjectCache 50 (help.aliyun.com/document_detail/91161.html),
# DescribeRefreshTaskById 30 (help.aliyun.com/document_detail/448062.htm),
# DescribeRefreshTasks 5 (help.aliyun.com/document_detail/91158.html; older pages say 10),
# DescribeRefreshQuota 20 (alibabacloud.com/help/en/alibaba-cloud-cdn/latest/describerefreshquota),
# RefreshObjectCaches 50 (alibabacloud.com/help/en/alibaba-cloud-cdn/latest/refreshobjectcaches).
ACTION_RATES = {
    "PushObjectCache": 50,
    "DescribeRefreshTaskById": 30,
    "DescribeRefreshTasks": 5,
    "DescribeRefreshQuota": 20,
    "RefreshObjectCaches": 50,
}

ObjectType = Literal["file", "directory", "preload"]
MERGED_TASK_URLS = 500  # URLs a merged prefetch task id holds (see merge_task_ids)


@dataclass(frozen=True)
class AliyunLimits:
    """Alibaba Cloud's default CDN limits; the daily quotas are settable."""

    # PushObjectCache: "You can submit up to 100 URL prefetch tasks at a time", "50 times
    # per second" (help.aliyun.com/en/cdn/developer-reference/api-cdn-2018-05-10-pushobjectcache).
    preload_batch: int = 100
    # RefreshObjectCaches: "每次请求最多支持提交 1000 条 URL 刷新或者 100 个目录刷新", and
    # 10,000 URLs and 100 directories a day (help.aliyun.com/document_detail/91164.html).
    refresh_url_batch: int = 1000
    refresh_dir_batch: int = 100
    calls_per_second: int = 50  # every action's ceiling; see ``action_rates``
    # An action's own budget, when lower than ``calls_per_second``.
    action_rates: Mapping[str, int] = field(default_factory=lambda: dict(ACTION_RATES))
    # Tests stretch the window so a rate check does not depend on timing.
    rate_window_seconds: float = 1.0
    # How the rate is counted (sandbox/core.py RateCounting: no source settles it).
    rate_counting: RateCounting = "sliding"
    # The documented default is 1,000 URLs a day (PushObjectCache page); the sandbox
    # account has it raised, as accounts can ask for, so demos run to the end.
    preload_quota: int = 100_000
    refresh_url_quota: int = 10_000
    refresh_dir_quota: int = 100
    task_delay: float = 0.5  # seconds on the sandbox clock from Refreshing to done
    quota_utc_offset_hours: int = 8
    # "When the number of URLs pending prefetch in the queue reaches 100,000, CDN rejects
    # new prefetch tasks" (PushObjectCache page): PreloadQueueFull, 403, "Preload queue is
    # full, please try again later!" (AlibabaCloudDocs/cdn, PushObjectCache error table).
    preload_queue: int = 100_000
    # The code a spent daily preload quota answers with. The newer error table says
    # QuotaExceeded.Preload; the help center says "Preload queue is full" appears when the
    # day's maximum is reached (alibabacloud.com/help/en/cdn/user-guide/preload-queue-is-full).
    # Either may be what a real account sends: "QuotaExceeded.Preload" or "PreloadQueueFull".
    preload_quota_code: str = "QuotaExceeded.Preload"
    # The domain is being configured: ServiceBusy, 403, "The specified Domain is
    # configuring, please retry later." (error table at developer.aliyun.com/ask/215043).
    configuring: bool = False
    # The POP gateway (Tengine) answers 414 to a request line longer than its buffer
    # (aliyun/openapi-core-nodejs-sdk#55). PushObjectCache sends ObjectPath in the query
    # string (SDK client.py push_object_cache_with_options: query['ObjectPath']). Alibaba's
    # threshold is not documented; nginx's default buffer is 8k
    # (nginx.org/en/docs/http/ngx_http_core_module.html#large_client_header_buffers).
    # None: no limit but http.server's own 64 KiB.
    max_request_line: int | None = 8192
    # "只能查询最近 3 天内的数据" / "You can query data from the last three days"
    # (DescribeRefreshTasks, help.aliyun.com/document_detail/91158.html; and
    # DescribeRefreshTaskById, 448062): older tasks are forgotten.
    task_retention: dt.timedelta = dt.timedelta(days=3)
    # A StartTime older than the retention: the DCDN twin of DescribeRefreshTasks
    # documents InvalidTime "The query time cannot exceed the last 3 days"; the CDN
    # page does not say whether it refuses or clamps, so both are offered.
    old_start_time: Literal["refuse", "clamp"] = "refuse"
    origin_4xx_description: str = INTERNAL_ERROR
    # Whether task queries echo ObjectPath as submitted or normalise it; ObjectPath's
    # documented format is "加速域名/文件" (PushObjectCache), so "normalise" drops the scheme.
    url_echo: UrlEcho = "echo"
    # PushObjectCache's PushTaskId: "If the tasks are set for the same accelerated domain
    # name, submitted within the same second, and prefetch content from URLs ... the tasks
    # IDs are merged into the same task ID"; past 500 in that second "every 500 task IDs are
    # merged"; several are "separated by commas" (SDK models/_push_object_cache_response_body
    # .py). True: one id per 500 URLs of a second, shared by the pushes of that second; False:
    # one id per push (what a lone push in its second gets either way).
    merge_task_ids: bool = False
    # Actions the RAM user's policy does not allow: 403 Forbidden.RAM, "User not
    # authorized to operate on the specified resource, or this API doesn't support RAM."
    # (Alibaba Cloud's common error codes; a sub-account may push without being
    # allowed to list tasks).
    ram_denied: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ReceivedCall:
    """One accepted prefetch or refresh call, as the emulator logged it."""

    time: dt.datetime
    action: str
    task_id: str
    urls: tuple[str, ...]


class ApiError(Exception):
    """An answer in Alibaba's error format: HTTP status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _TaskItem:
    """One URL (or directory) of one task."""

    task_id: str
    url: str
    object_type: ObjectType
    created_at: dt.datetime
    done_at: dt.datetime
    failure: str | None  # the Description of a Failed task; None: it completes


@dataclass(frozen=True)
class ApiCall:
    """One HTTP request as it arrived: params merge the query and a form body."""

    method: str
    path: str
    params: dict[str, str]
    headers: Mapping[str, str]
    body: bytes


class AliyunEmulator(EmulatorBase):
    """The CDN API of one Alibaba Cloud account holding one domain.

    ``origin_has`` answers whether the origin serves a ``path[?query]``: a bool, or
    the HTTP status a pull of it gets (200, 404, 503, ``ORIGIN_TIMED_OUT``...);
    ``edge_netloc`` is the account's only domain, and cached URLs are keyed
    ``http://<edge_netloc><path>[?query]`` as the sandbox edge looks them up.
    """

    def __init__(
        self,
        clock: SandboxClock,
        cache: EdgeCache,
        origin_has: Callable[[str], bool | int],
        edge_netloc: str,
        access_key_id: str,
        access_key_secret: str,
        limits: AliyunLimits | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.clock = clock
        self.cache = cache
        self.origin_has = origin_has
        self.edge_netloc = edge_netloc.lower()
        self.limits = limits or AliyunLimits()
        self.faults = faults or Faults()
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._lock = threading.Lock()
        self._task_ids = itertools.count(80_000_001)
        self._items: deque[_TaskItem] = deque()  # in creation order
        self._by_task: dict[str, list[_TaskItem]] = {}
        # Not yet applied to the cache; every task takes the same delay, so FIFO.
        self._pending: deque[_TaskItem] = deque()
        self._queued_preloads = 0  # preload URLs of _pending
        self._used: Counter[tuple[str, str]] = Counter()  # (day, quota kind) -> used
        self._rate = RateWindows(
            self.limits.rate_window_seconds, counting=self.limits.rate_counting
        )
        # Calls refused by their API's rate window (not injected faults), by action.
        self.rate_refusals: Counter[str] = Counter()
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self._received: list[ReceivedCall] = []
        self._counters: Counter[str] = Counter()
        self._action_calls: Counter[str] = Counter()
        # The preload task id URLs of this second join, and (second, URLs in it).
        self._merging: tuple[str | None, tuple[dt.datetime, int]] = (None, (dt.datetime.min, 0))
        # Codes to answer the next calls of an action with (see inject).
        self._injected: dict[str, deque[str]] = {}
        self._actions: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
            "PushObjectCache": self._push_object_cache,
            "DescribeRefreshQuota": self._describe_refresh_quota,
            "DescribeRefreshTaskById": self._describe_refresh_task_by_id,
            "DescribeRefreshTasks": self._describe_refresh_tasks,
            "RefreshObjectCaches": self._refresh_object_caches,
            "DescribeUserDomains": self._describe_user_domains,
        }
        # DescribeUserDomains' DomainStatus (SDK DescribeUserDomainsRequest.domain_status:
        # online, offline, configuring, configure_failed, checking, check_failed, stopping,
        # deleting) and Coverage (domestic, overseas, global) of the account's domain.
        self.domain_status = "online"
        self.domain_coverage = "domestic"

    name = "aliyun"
    server_version = "Tengine"

    # -- the wire (faults are applied by EmulatorBase.serve) -------------------

    def unfaulted(self, request: Request) -> Reply | None:
        early = super().unfaulted(request)
        if early is not None:
            return early
        limit = self.limits.max_request_line
        if limit is not None and len(request.request_line) > limit:
            self.count("uri_too_large")
            return Reply(414, URI_TOO_LARGE, "text/html")
        return None

    def on_fault(self, kind: FaultKind) -> None:
        self.count(f"fault:{kind}")

    def answer(self, request: Request, *, rate_limited: bool) -> Reply:
        """One RPC-style call: query and form parameters, ACS3-signed."""
        try:
            if rate_limited:
                raise ApiError(503, "Throttling", "Request was denied due to request throttling.")
            result = self.handle(_call(request))
        except ApiError as error:
            if not rate_limited:
                self.count(error.code)
            return _json(error.status, {"Code": error.code, "Message": error.message})
        self.count("ok")
        return _json(200, result)

    @property
    def received(self) -> list[ReceivedCall]:
        with self._lock:
            return list(self._received)

    def received_urls(self) -> list[str]:
        """Every URL accepted for prefetch, in the order received."""
        return [
            url for call in self.received if call.action == "PushObjectCache" for url in call.urls
        ]

    def received_json(self) -> bytes:
        """``GET /_sandbox/received``: every accepted prefetch and refresh, and the counters."""
        accepted = [
            {
                "time": call.time.isoformat(),
                "action": call.action,
                "task_id": call.task_id,
                "urls": list(call.urls),
            }
            for call in self.received
            if call.action == "PushObjectCache"
        ]
        return received_document("aliyun", accepted, self.counters, self.limits.rate_counting)

    @property
    def counters(self) -> dict[str, int]:
        """Answers by outcome: ``ok``, an error code, or ``fault:<kind>``."""
        with self._lock:
            return dict(self._counters)

    @property
    def action_calls(self) -> dict[str, int]:
        """Authenticated calls by action, answered or refused."""
        with self._lock:
            return dict(self._action_calls)

    def inject(self, code: str, action: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``action`` with this error code.

        ``Throttling.User`` is Alibaba's flow-control answer (see _check_rate); any
        other code answers HTTP 400 (500 for ``InternalError``).
        """
        with self._lock:
            self._injected.setdefault(action, deque()).extend([code] * times)

    def count(self, outcome: str) -> None:
        with self._lock:
            self._counters[outcome] += 1

    def settle(self) -> None:
        """Apply every task that has finished by now to the edge cache.

        Runs before each API call; a caller that reads the edge cache without
        an API call in between (with a ``task_delay``) calls it first.
        """
        with self._lock:
            self._settle_locked()

    def handle(self, call: ApiCall) -> dict[str, Any]:
        """Authenticate, rate-limit and run one call; raises ApiError."""
        self._verify_signature(call)
        action = call.headers.get("x-acs-action", call.params.get("Action", ""))
        version = call.headers.get("x-acs-version", call.params.get("Version", ""))
        run = self._actions.get(action)
        if run is None or version != API_VERSION:
            raise ApiError(
                404, "InvalidAction.NotFound", f"Specified api is not found: {action} {version}."
            )
        with self._lock:
            self._action_calls[action] += 1
            if action in self.limits.ram_denied:
                raise ApiError(
                    403,
                    "Forbidden.RAM",
                    "User not authorized to operate on the specified resource, or this API "
                    "doesn't support RAM.",
                )
            self._settle_locked()
            self._forget_locked()
            self._check_rate(action)
            queued = self._injected.get(action)
            injected = queued.popleft() if queued else None
        if injected is not None:
            status = 500 if injected == "InternalError" else 400
            raise ApiError(status, injected, f"{injected} (injected).")
        return run(call.params)

    # Authentication ---------------------------------------------------------

    def _verify_signature(self, call: ApiCall) -> None:
        algorithm, fields = _parse_authorization(call.headers.get("authorization", ""))
        if algorithm not in SIGNATURE_ALGORITHMS or not fields.keys() >= {
            "Credential",
            "SignedHeaders",
            "Signature",
        }:
            raise ApiError(
                400, "IncompleteSignature", "The request signature does not conform to standards."
            )
        if not hmac.compare_digest(fields["Credential"], self._access_key_id):
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        signed = fields["SignedHeaders"].split(";")
        if not REQUIRED_SIGNED_HEADERS.issubset(signed) or any(
            name not in call.headers for name in signed
        ):
            raise ApiError(
                400, "IncompleteSignature", "Required headers are missing from SignedHeaders."
            )
        request = DaraRequest()
        request.method = call.method
        request.query = dict(parse_qsl(urlsplit(call.path).query, keep_blank_values=True))
        request.pathname = urlsplit(call.path).path
        request.headers = {name: call.headers[name] for name in signed}
        # The payload hash comes from the bytes that arrived, never from the header.
        payload = OpenApiUtils.hash(call.body, algorithm).hex()
        expected = OpenApiUtils.get_authorization(
            request, algorithm, payload, self._access_key_id, self._access_key_secret
        )
        _, expected_fields = _parse_authorization(expected)
        if not hmac.compare_digest(expected_fields["Signature"], fields["Signature"]):
            raise ApiError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        self._check_freshness(call.headers)

    def _check_freshness(self, headers: Mapping[str, str]) -> None:
        # The SDK stamps real time, so the window is checked against the real clock.
        try:
            stamped = dt.datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ApiError(400, "InvalidTimeStamp.Format", "x-acs-date is malformed.") from None
        server_now = dt.datetime.fromtimestamp(self.clock.wall_time(), dt.UTC)
        skew = abs(server_now.replace(tzinfo=None) - stamped)
        if skew > TIMESTAMP_TOLERANCE:
            raise ApiError(400, "InvalidTimeStamp.Expired", "Specified time stamp is expired.")
        nonce = headers["x-acs-signature-nonce"]
        with self._lock:
            if nonce in self._nonces:
                raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used.")
            self._nonces[nonce] = None
            if len(self._nonces) > NONCE_MEMORY:
                self._nonces.popitem(last=False)

    def _check_rate(self, action: str) -> None:
        budget = min(
            self.limits.calls_per_second,
            self.limits.action_rates.get(action, self.limits.calls_per_second),
        )
        self._rate.tune(self.limits.rate_window_seconds, self.limits.rate_counting)
        if not self._rate.allow(action, budget):
            self.rate_refusals[action] += 1
            # Alibaba's flow-control answer; the old error table lists Throttling, 503
            # (developer.aliyun.com/ask/215043), the gateway's per-user form is Throttling.User.
            raise ApiError(400, "Throttling.User", "Request was denied due to user flow control.")

    # Actions: validate without the lock, take it to read or change state ----

    def _push_object_cache(self, params: dict[str, str]) -> dict[str, Any]:
        if self.limits.configuring:
            raise ApiError(
                403, "ServiceBusy", "The specified Domain is configuring, please retry later."
            )
        urls = self._object_urls(params, self.limits.preload_batch)
        # SDK PushObjectCacheRequest.area: domestic or overseas; absent, the domain's own.
        area = params.get("Area", "domestic")
        if area not in ("domestic", "overseas"):
            raise ApiError(400, "InvalidArea.ValueNotSupported", f"Area {area!r} is invalid.")
        for name in ("L2Preload", "QueryHashkey"):
            if params.get(name, "false").lower() not in ("true", "false"):
                raise ApiError(400, "InvalidParameter", f"{name} must be true or false.")
        if "WithHeader" in params:
            _parse_with_header(params["WithHeader"])
        # Outside the lock: the origin may build large files to answer.
        failures = [self._pull_failure(url) for url in urls]
        with self._lock:
            if self._queued_preloads + len(urls) > self.limits.preload_queue:
                raise ApiError(403, "PreloadQueueFull", QUEUE_FULL)
            self._spend(
                "preload", len(urls), self.limits.preload_quota, self.limits.preload_quota_code
            )
            task_id = self._new_task(
                "PushObjectCache", "preload", list(zip(urls, failures, strict=True))
            )
        return {"PushTaskId": task_id}

    def _describe_user_domains(self, params: dict[str, str]) -> dict[str, Any]:
        """DescribeUserDomains: the account's domains matching DomainName (exact by default;
        ``fuzzy_match``: a substring), as the SDK's response model lays them out."""
        wanted = params.get("DomainName", "").lower()
        fuzzy = params.get("DomainSearchType", "full_match") == "fuzzy_match"
        found = not wanted or (wanted in self.edge_netloc if fuzzy else wanted == self.edge_netloc)
        page = [
            {"DomainName": self.edge_netloc, "DomainStatus": self.domain_status,
             "Coverage": self.domain_coverage, "CdnType": "video",
             "Cname": f"{self.edge_netloc}.w.kunlunsl.com", "DomainId": 1,
             "GmtCreated": "2024-01-01T00:00:00Z", "SslProtocol": "off"}
        ] if found else []  # fmt: skip
        return {
            "Domains": {"PageData": page},
            "TotalCount": len(page),
            "PageNumber": int(params.get("PageNumber", "1") or 1),
            "PageSize": int(params.get("PageSize", "20") or 20),
        }

    def _refresh_object_caches(self, params: dict[str, str]) -> dict[str, Any]:
        kind = params.get("ObjectType", "File")
        if kind not in ("File", "Directory"):
            raise ApiError(
                400, "InvalidObjectType.ValueNotSupported", f"ObjectType {kind!r} is not supported."
            )
        if kind == "File":
            urls = self._object_urls(params, self.limits.refresh_url_batch)
            quota_kind, quota = "url", self.limits.refresh_url_quota
        else:
            urls = self._object_urls(params, self.limits.refresh_dir_batch)
            if any(not urlsplit(url).path.endswith("/") for url in urls):
                raise ApiError(
                    400, "InvalidObjectPath.Malformed", "A directory path must end with '/'."
                )
            quota_kind, quota = "dir", self.limits.refresh_dir_quota
        object_type: ObjectType = "file" if kind == "File" else "directory"
        with self._lock:
            self._spend(quota_kind, len(urls), quota, "QuotaExceeded.Refresh")
            task_id = self._new_task("RefreshObjectCaches", object_type, [(u, None) for u in urls])
        return {"RefreshTaskId": task_id}

    def _describe_refresh_quota(self, params: dict[str, str]) -> dict[str, Any]:
        day = self.clock.day(self.limits.quota_utc_offset_hours)
        with self._lock:
            used = {kind: self._used[day, kind] for kind in ("preload", "url", "dir")}
        rows = {
            "Preload": (self.limits.preload_quota, used["preload"]),
            "Url": (self.limits.refresh_url_quota, used["url"]),
            "Dir": (self.limits.refresh_dir_quota, used["dir"]),
            "Block": (100, 0),
            "Regex": (20, 0),
            "IgnoreParams": (10, 0),
            "PreloadEdge": (self.limits.preload_quota, used["preload"]),
        }
        answer: dict[str, Any] = {}
        for name, (quota, spent) in rows.items():
            # Alibaba returns these numbers as strings.
            answer[f"{name}Quota"] = str(quota)
            answer[f"{name}Remain"] = str(max(quota - spent, 0))
        return answer

    def _describe_refresh_task_by_id(self, params: dict[str, str]) -> dict[str, Any]:
        ids = [t.strip() for t in params.get("TaskId", "").split(",") if t.strip()]
        if not ids:
            raise ApiError(400, "MissingParameter", "The input parameter TaskId is not supplied.")
        if len(ids) > 10:
            raise ApiError(400, "InvalidTaskId.Malformed", "At most 10 task IDs are allowed.")
        with self._lock:
            items = [
                item for task_id in dict.fromkeys(ids) for item in self._by_task.get(task_id, [])
            ]
        tasks = [self._task_view(item) for item in items]
        return {"Tasks": tasks, "TotalCount": len(tasks)}

    def _describe_refresh_tasks(self, params: dict[str, str]) -> dict[str, Any]:
        page = _int_param(params, "PageNumber", 1, 1, 100_000)
        size = _int_param(params, "PageSize", 20, 1, 100)
        start = _time_param(params, "StartTime")
        end = _time_param(params, "EndTime")
        # Both or neither: help.aliyun.com/document_detail/448062.htm lists
        # 400 MissingTimeParameter for the refresh-task queries.
        if (start is None) != (end is None):
            raise ApiError(
                400, "MissingTimeParameter", "The StartTime and EndTime must be both specified."
            )
        oldest = self.clock.now() - self.limits.task_retention
        if start is not None and start < oldest:
            if self.limits.old_start_time == "refuse":
                raise ApiError(400, "InvalidTime", "The query time cannot exceed the last 3 days.")
            start = oldest
        if start and end and end <= start:
            raise ApiError(400, "InvalidTime.Mismatch", "EndTime must be later than StartTime.")
        path = params.get("ObjectPath")
        wanted_path = _normalize_object_path(path) if path else None
        with self._lock:
            newest_first = list(reversed(self._items))  # as Alibaba lists them
        items = [
            item
            for item in newest_first
            if (not params.get("TaskId") or item.task_id == params["TaskId"])
            and (not params.get("ObjectType") or item.object_type == params["ObjectType"])
            and (wanted_path is None or item.url == wanted_path)
            and (start is None or item.created_at >= start)
            and (end is None or item.created_at < end)
        ]
        views = [self._task_view(i) for i in items]
        if params.get("Status"):
            views = [v for v in views if v["Status"] == params["Status"]]
        chunk = views[(page - 1) * size : page * size]
        return {
            "PageNumber": page,
            "PageSize": size,
            "TotalCount": len(views),
            "Tasks": {"CDNTask": chunk},
        }

    # Helpers -------------------------------------------------------------------

    def _object_urls(self, params: dict[str, str], batch: int) -> list[str]:
        raw = params.get("ObjectPath", "")
        paths = [p.strip() for p in raw.replace("\r\n", "\n").split("\n") if p.strip()]
        if not paths:
            raise ApiError(
                400, "MissingParameter", "The input parameter ObjectPath is not supplied."
            )
        if len(paths) > batch:
            # No document names the code for too many paths (the tables list
            # InvalidObjectPath.Size.Malformed and SingleRequest.OverLimit); this one is the
            # emulator's own, and the provider maps all three to BatchTooLarge.
            raise ApiError(
                400,
                "InvalidObjectPath.ExceedsMaximum",
                f"The maximum number of urls is exceeded: {len(paths)} > {batch}.",
            )
        urls = [_normalize_object_path(p) for p in paths]
        for url in urls:
            if urlsplit(url).netloc.lower() != self.edge_netloc:
                # InvalidDomain.NotFound, 404 (error table, developer.aliyun.com/ask/215043).
                raise ApiError(
                    404, "InvalidDomain.NotFound", "The domain provided does not belong to you."
                )
        return urls

    def _spend(self, kind: str, count: int, quota: int, code: str) -> None:
        """Take ``count`` from today's quota (lock held)."""
        day = self.clock.day(self.limits.quota_utc_offset_hours)
        if self._used[day, kind] + count > quota:
            if code == "PreloadQueueFull":
                raise ApiError(403, code, QUEUE_FULL)
            raise ApiError(400, code, "You have exceeded the prescribed daily limits.")
        self._used[day, kind] += count

    def _pull_failure(self, url: str) -> str | None:
        """The Description a prefetch of ``url`` ends with; None when the origin answers 200."""
        answer = self.origin_has(_path_and_query(url))
        status = (200 if answer else 404) if isinstance(answer, bool) else answer
        if status < 400:
            return None
        if status == ORIGIN_TIMED_OUT:
            return ORIGIN_TIMEOUT
        if status >= 500:
            return ORIGIN_5XX
        return self.limits.origin_4xx_description

    def _new_task(
        self, action: str, object_type: ObjectType, urls: list[tuple[str, str | None]]
    ) -> str:
        now = self.clock.now()
        done_at = now + dt.timedelta(seconds=self.limits.task_delay)
        if self.limits.merge_task_ids and object_type == "preload":
            ids = self._merged_ids(now, len(urls))
        else:
            ids = [str(next(self._task_ids))] * len(urls)
        items = [
            _TaskItem(task_id, url, object_type, now, done_at, failure)
            for task_id, (url, failure) in zip(ids, urls, strict=True)
        ]
        task_id = ",".join(dict.fromkeys(ids))
        self._items.extend(items)
        for item in items:
            self._by_task.setdefault(item.task_id, []).append(item)
        self._pending.extend(items)
        if object_type == "preload":
            self._queued_preloads += len(items)
        self._received.append(ReceivedCall(now, action, task_id, tuple(u for u, _ in urls)))
        self._settle_locked()
        return task_id

    def _merged_ids(self, now: dt.datetime, count: int) -> list[str]:
        """The task id of each of ``count`` URLs prefetched now: 500 a second share one."""
        second = now.replace(microsecond=0)
        ids = []
        for _ in range(count):
            current, used = self._merging
            if current is None or used[0] != second or used[1] >= MERGED_TASK_URLS:
                current, used = str(next(self._task_ids)), (second, 0)
            self._merging = (current, (second, used[1] + 1))
            ids.append(current)
        return ids

    def _settle_locked(self) -> None:
        now = self.clock.now()
        while self._pending and self._pending[0].done_at <= now:
            item = self._pending.popleft()
            key = self._cache_key(item.url)
            if item.object_type == "preload":
                self._queued_preloads -= 1
            if item.object_type == "preload" and item.failure is None:
                prefetched(self.cache, "aliyun", key)
            elif item.object_type == "file":
                self.cache.discard(key)
            elif item.object_type == "directory":
                self.cache.discard_prefix(key)

    def _forget_locked(self) -> None:
        """Drop tasks older than the retention (lock held); the queries never see them."""
        oldest = self.clock.now() - self.limits.task_retention
        while self._items and self._items[0].created_at < oldest:
            item = self._items.popleft()
            self._by_task.pop(item.task_id, None)

    def _cache_key(self, url: str) -> str:
        return f"http://{self.edge_netloc}{_path_and_query(url)}"

    def _task_view(self, item: _TaskItem) -> dict[str, Any]:
        # Status Complete, Refreshing, Failed (or Pending): SDK
        # models/_describe_refresh_task_by_id_response_body.py; CreationTime in UTC ISO 8601.
        done = item.done_at <= self.clock.now()
        status = "Refreshing" if not done else "Failed" if item.failure else "Complete"
        return {
            "TaskId": item.task_id,
            "ObjectPath": (
                item.url
                if self.limits.url_echo == "echo"
                else normalised_url(item.url, scheme=False)
            ),
            "ObjectType": item.object_type,
            "Status": status,
            "Process": "100%" if done else "0%",
            "CreationTime": item.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Description": item.failure if status == "Failed" else "",
        }


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _parse_authorization(header: str) -> tuple[str, dict[str, str]]:
    """``ALG Credential=..,SignedHeaders=..,Signature=..`` -> (ALG, fields)."""
    algorithm, _, rest = header.strip().partition(" ")
    fields = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value
    return algorithm, fields


def _normalize_object_path(path: str) -> str:
    """``host/path`` or ``http(s)://host/path`` -> an absolute URL; else ApiError."""
    url = path if "://" in path else f"http://{path}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(path) > 1024:
        raise ApiError(400, "InvalidObjectPath.Malformed", "The specified ObjectPath is invalid.")
    return parts._replace(path=parts.path or "/", fragment="").geturl()


def _parse_with_header(value: str) -> None:
    try:
        headers = json.loads(value)
    except ValueError:
        headers = None
    if not isinstance(headers, dict):
        raise ApiError(400, "InvalidWithHeader.Malformed", "WithHeader must be a JSON object.")


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(name, default))
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, f"Invalid{name}.ValueNotSupported", f"{name} is out of range.")
    return value


def _time_param(params: dict[str, str], name: str) -> dt.datetime | None:
    if not params.get(name):
        return None
    try:
        parsed = dt.datetime.strptime(params[name], "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise ApiError(400, f"Invalid{name}.Malformed", f"{name} is malformed.") from None
    return parsed.replace(tzinfo=dt.UTC)


def _call(request: Request) -> ApiCall:
    params = dict(parse_qsl(urlsplit(request.target).query, keep_blank_values=True))
    if "x-www-form-urlencoded" in request.headers.get("content-type", ""):
        params.update(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return ApiCall(request.method, request.target, params, dict(request.headers), request.body)


def _json(status: int, answer: dict[str, Any]) -> Reply:
    answer = {"RequestId": str(uuid.uuid4()).upper(), **answer}
    if status >= 400:
        answer["HostId"] = HOST_ID
    return Reply(status, json.dumps(answer).encode(), "application/json;charset=utf-8")


AliyunApi = AliyunEmulator  # the name before the emulators shared one naming


def _build(shared: Shared, credentials: tuple[str, str], limits: AliyunLimits) -> AliyunEmulator:
    return AliyunEmulator(
        shared.clock,
        shared.cache,
        shared.origin.pull_status,
        shared.edge_netloc,
        *credentials,
        limits=limits,
        faults=shared.faults,
    )


def _client_env(endpoint: str, credentials: tuple[str, str]) -> dict[str, str]:
    return {
        "ALIYUN_ENDPOINT": endpoint,
        "ALIYUN_ACCESS_KEY_ID": credentials[0],
        "ALIYUN_ACCESS_KEY_SECRET": credentials[1],
    }


def _set_limits(api: AliyunEmulator, quota: int | None, rate: int | None) -> None:
    """Rate: calls a second (each API's lower documented budget still applies)."""
    changes: dict[str, int] = {}
    if quota is not None:
        changes["preload_quota"] = quota
    if rate is not None:
        changes["calls_per_second"] = rate
    if changes:
        api.limits = dataclasses.replace(api.limits, **changes)  # type: ignore[arg-type]


# What this vendor's edges answer (sandbox/edge.py), per answer: an edge hit, an
# upper-layer hit, a miss.
# Alibaba: X-Cache is the edge's (L1) verdict; Via lists each node of the path,
# L2 ("…l2…") first, each cache node's entry ending in H (hit) or M (miss).
# Edge hit: cnblogs.com/panxiaoming/p/9851701 ("Via: cache45.l2cm9[0,200-0,H],
# cache25.l2cm9[9,0], cache9.cn831[0,200-0,H], cache9.cn831[0,0]"); miss everywhere:
# m.haomeiwen.com/subject/wstkvrtx (L2 and L1 both "M"); L2 hit, L1 miss: the same
# format with the L2 entry "H" and the L1 entry "M" (tnie.github.io/2019/11/04/debugCDN
# shows the opposite pair, L2 "M" and L1 "H").
EDGE_HEADERS: dict[str, list[tuple[str, str]]] = {
    "edge": [
        ("X-Cache", "HIT TCP_MEM_HIT dirn:-2:-2"),
        ("Via", "cache45.l2cm9[0,200-0,H], cache25.l2cm9[9,0], "
                "cache9.cn831[0,200-0,H], cache9.cn831[0,0]"),
    ],
    "upper": [
        ("X-Cache", "MISS TCP_MISS dirn:-2:-2"),
        ("Via", "cache45.l2cm9[0,200-0,H], cache25.l2cm9[9,0], "
                "cache9.cn831[12,200-0,M], cache9.cn831[13,0]"),
    ],
    "origin": [
        ("X-Cache", "MISS TCP_MISS dirn:-2:-2"),
        ("Via", "cache55.l2cn2630[28,28,200-0,M], cache39.l2cn2630[30,0], "
                "vcache10.cn838[85,85,200-0,M], vcache15.cn838[86,0]"),
    ],
}  # fmt: skip


def _prefetch_layer(area: str, layer_option: str) -> Layer:
    """The layer a finished prefetch fills, as the vendor documents it."""
    # SDK PushObjectCacheRequest.l_2preload: true = L2 POPs, false (default) =
    # "regular POPs … L2 POPs or L3 POPs"; the API doc: "将源站的内容主动预热到L2 Cache
    # 节点上". Neither is the client-facing L1 (that is the separate PreloadEdge quota).
    return "upper"


EMULATOR = EmulatorSpec(
    name="aliyun",
    build=_build,
    limits_type=AliyunLimits,
    credentials=(config.SANDBOX_ALIYUN_ACCESS_KEY_ID, config.SANDBOX_ALIYUN_ACCESS_KEY_SECRET),
    client_env=_client_env,
    set_limits=_set_limits,
    cache_headers=EDGE_HEADERS,
    prefetch_layer=_prefetch_layer,
)
