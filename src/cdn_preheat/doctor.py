"""``cdn-preheat doctor``: check the configured CDN account without spending quota.

Every check is a read-only call or a plain request, one line each:

- credentials (and the API permissions the checks need): the vendor's quota
  query (Tencent ``DescribePushQuota``, Alibaba ``DescribeRefreshQuota``) or,
  for Qiniu, which has no quota query, a prefetch-list query;
- domain: ``CDN_HOST`` exists in the account, is online, and is accelerated in
  the configured area (Tencent ``DescribeDomains``, Alibaba
  ``DescribeUserDomains``, Qiniu's domain API ``GET /domain/<name>``);
- quota: what is left today and the batch size, as the account reports them;
- origin: a sample playlist (``--sample-url``) expands as ``push`` would;
- clock: the API's ``Date`` header against this machine's clock, within what
  the vendor's signatures tolerate.

Nothing is prefetched or purged, so no quota is spent. The checks that cannot
be made without spending (is the account allowed to *push*?) are left to the
first real push, whose errors name the missing permission.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from cdn_preheat.errors import AreaMismatch, AuthError, PreheatError

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.providers.base import Provider, Quota

# How far a request's signing time may be from the server's clock.
CLOCK_TOLERANCE_SECONDS: dict[str, float] = {
    # API 3.0 common parameters, X-TC-Timestamp: "If the difference between the UNIX
    # timestamp and the server time is greater than 5 minutes, a signature expiration error
    # may occur" (tencentcloud.com/document/product/570/36329; AuthFailure.SignatureExpire).
    "tencent": 300.0,
    "edgeone": 300.0,  # the same API 3.0 signing (TC3), service teo
    # V3 request structure, x-acs-date: "值为请求发出前15分钟内的时间" (help.aliyun.com, "ROA风格
    # 请求体&签名机制" / V3 request structure and signature); InvalidTimeStamp.Expired.
    "aliyun": 900.0,
}
# Where each vendor's API answers when no endpoint is configured.
DEFAULT_API: dict[str, str] = {
    "tencent": "https://cdn.tencentcloudapi.com",
    "edgeone": "https://teo.tencentcloudapi.com",
    "aliyun": "https://cdn.aliyuncs.com",
    "qiniu": "https://fusion.qiniuapi.com",
}
_DOCTOR_TASK = "cdn-preheat-doctor"  # a task id no account has: a read-only list query


@dataclass(frozen=True)
class Check:
    """One line of the report; ``ok`` None: not applicable or not checked."""

    name: str
    ok: bool | None
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorReport:
    provider: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """No check failed (a check that does not apply does not fail)."""
        return all(check.ok is not False for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "ok": self.passed,
            "checks": [
                {"name": c.name, "ok": c.ok, "message": c.message, **c.detail} for c in self.checks
            ],
        }


def run_doctor(
    settings: Settings,
    *,
    sample_url: str | None = None,
    now: Callable[[], float] = time.time,
    timeout: float = 5.0,
) -> DoctorReport:
    """Run every check on the configured account; never raises a PreheatError."""
    kind = settings.cdn_provider
    clock = _clock(settings, kind, now, timeout)
    checks: list[Check] = []
    try:
        from cdn_preheat.providers import make_provider

        provider = make_provider(settings)
    except PreheatError as exc:
        checks.append(Check("credentials", False, str(exc)))
        checks.append(_not_checked("domain", "the credentials are not set"))
        checks.append(_not_checked("quota", "the credentials are not set"))
    else:
        try:
            checks.extend(_account(provider, settings, clock))
        finally:
            provider.close()
    checks.append(_origin(settings, sample_url))
    checks.append(clock)
    return DoctorReport(kind, tuple(checks))


def _not_checked(name: str, why: str) -> Check:
    return Check(name, None, f"not checked: {why}.")


# -- credentials, domain, quota ----------------------------------------------------


def _account(provider: Provider, settings: Settings, clock: Check) -> list[Check]:
    kind = provider.name
    if kind == "http":
        return [
            Check("credentials", None, "the http provider needs no API credentials."),
            Check("domain", None, "the http provider warms whatever CDN_HOST resolves to."),
            Check("quota", None, "the http provider has no daily quota."),
        ]
    quota: Quota | None = None
    area_problem: str | None = None
    try:
        if kind == "qiniu":
            provider.task_status([_DOCTOR_TASK])  # Qiniu has no quota query; this is read-only
        else:
            quota = provider.quota()
    except AreaMismatch as exc:  # the key works; the area is wrong
        area_problem = str(exc)
    except PreheatError as exc:
        message = str(exc)
        if clock.ok is False and isinstance(exc, AuthError):
            message += " This machine's clock is off (see the clock line): fix it first."
        why = "the credentials were refused"
        return [
            Check("credentials", False, message),
            _not_checked("domain", why),
            _not_checked("quota", why),
        ]
    via = {
        "tencent": "DescribePushQuota",
        "edgeone": "DescribeContentQuota",
        "aliyun": "DescribeRefreshQuota",
    }.get(kind, "the prefetch list")
    checks = [Check("credentials", True, f"accepted by {_VENDOR[kind]} ({via}).")]
    checks.append(_domain(provider, settings))
    if area_problem is not None:
        checks.append(Check("quota", False, area_problem))
    else:
        checks.append(_quota(kind, quota, provider))
    return checks


_VENDOR = {
    "tencent": "Tencent Cloud",
    "edgeone": "Tencent EdgeOne",
    "aliyun": "Alibaba Cloud",
    "qiniu": "Qiniu",
}


def _quota(kind: str, quota: Quota | None, provider: Provider) -> Check:
    if quota is None:  # Qiniu: the answer of a prefetch is the only report of its quota
        batch = provider.limits.batch_size
        return Check(
            "quota",
            True,
            f"Qiniu reports the prefetch quota only in prefetch answers (100 a day unless "
            f"raised); {batch} URLs a request.",
            {"batch": batch},
        )
    detail: dict[str, Any] = {"area": quota.area, "total": quota.total,
                              "available": quota.available, "batch": quota.batch}  # fmt: skip
    if quota.total is None or quota.available is None:
        return Check("quota", True, f"no daily quota in {quota.area}.", detail)
    per_request = f", {quota.batch} URLs a request" if quota.batch else ""
    text = f"{quota.available:,} of {quota.total:,} URLs left today in {quota.area}{per_request}."
    if quota.available <= 0:
        return Check("quota", False, "no prefetch quota left today: " + text, detail)
    return Check("quota", True, text, detail)


def _domain(provider: Provider, settings: Settings) -> Check:
    host = (settings.cdn_host or "").strip().lower()
    if not host:
        return Check("domain", False, "CDN_HOST is not set: doctor checks that domain.")
    try:
        if provider.name == "tencent":
            return _tencent_domain(provider, host)
        if provider.name == "aliyun":
            return _aliyun_domain(provider, host)
        if provider.name == "qiniu":
            return _qiniu_domain(settings, host)
    except PreheatError as exc:
        return Check("domain", False, str(exc))
    return Check("domain", None, f"not checked for {provider.name}.")


def _tencent_domain(provider: Any, host: str) -> Check:
    from tencentcloud.cdn.v20180606 import models

    # SDK cdn/v20180606/models.py: DomainFilter Name "domain", BriefDomain.Status
    # (online, offline, processing, closing, rejected) and Area (mainland, overseas, global).
    wanted = models.DomainFilter()
    wanted.Name, wanted.Value = "domain", [host]
    request = models.DescribeDomainsRequest()
    request.Filters = [wanted]
    answer = provider._call("DescribeDomains", request)
    found = [d for d in answer.Domains or [] if str(d.Domain).lower() == host]
    if not found:
        return Check(
            "domain", False, f"{host} is not a CDN domain of this Tencent Cloud account (CDN_HOST)."
        )
    domain = found[0]
    return _domain_check(
        host, domain.Status, domain.Area, provider.area,
        covered=domain.Area in ("global", provider.area),
        fix_area=f"TENCENT_AREA={domain.Area}", fix_status=": start it in the console",
    )  # fmt: skip


def _domain_check(
    host: str, status: str, area: str, wanted: str, *, covered: bool, fix_area: str,
    fix_status: str = "",
) -> Check:  # fmt: skip
    """The verdict on a domain the account has: online, and accelerated where it is pushed."""
    detail = {"domain": host, "status": status, "area": area}
    if status != "online":
        return Check("domain", False, f"{host} is {status}, not online{fix_status}.", detail)
    if not covered:
        return Check(
            "domain", False, f"{host} is accelerated in {area}, not {wanted}: set {fix_area}.",
            detail,
        )  # fmt: skip
    return Check("domain", True, f"{host} is online, accelerated in {area}.", detail)


_ALIYUN_COVERS = {"domestic": ("domestic", "global"), "overseas": ("overseas", "global")}


def _aliyun_domain(provider: Any, host: str) -> Check:
    from alibabacloud_cdn20180510 import models as cdn_models

    # SDK DescribeUserDomainsRequest: DomainSearchType full_match (exact); DomainStatus
    # online, offline, configuring, ...; Coverage domestic, overseas, global.
    request = cdn_models.DescribeUserDomainsRequest(
        domain_name=host, domain_search_type="full_match"
    )
    body = provider._call(
        "DescribeUserDomains", provider._client.describe_user_domains_with_options, request
    )
    pages = body.domains.page_data if body.domains and body.domains.page_data else []
    found = [d for d in pages if str(d.domain_name).lower() == host]
    if not found:
        return Check(
            "domain", False, f"{host} is not a CDN domain of this Alibaba Cloud account (CDN_HOST)."
        )
    domain = found[0]
    fix = "overseas" if domain.coverage == "overseas" else "domestic"
    return _domain_check(
        host, domain.domain_status, domain.coverage, provider.area,
        covered=domain.coverage in _ALIYUN_COVERS.get(provider.area, ()),
        fix_area=f"ALIYUN_AREA to {fix}",
    )  # fmt: skip


def _qiniu_domain(settings: Settings, host: str) -> Check:
    from qiniu import Auth
    from qiniu.services.cdn.manager import DomainManager

    from cdn_preheat.config import require_secret

    auth = Auth(
        require_secret(settings.qiniu_access_key, "QINIU_ACCESS_KEY"),
        require_secret(settings.qiniu_secret_key, "QINIU_SECRET_KEY"),
    )
    manager = DomainManager(auth)
    if settings.qiniu_api_endpoint:
        manager.server = settings.qiniu_api_endpoint
    # developer.qiniu.com/fusion/4246: operatingState success (online), processing,
    # failed, frozen, offlined; geoCover china, foreign, global.
    ret, info = manager.get_domain(host)
    status = getattr(info, "status_code", None)
    if status == 404:
        return Check(
            "domain", False, f"{host} is not a CDN domain of this Qiniu account (CDN_HOST)."
        )
    if status in (401, 403):
        return Check("domain", False, "Qiniu refused the domain query: check QINIU_ACCESS_KEY.")
    if status != 200 or not isinstance(ret, dict):
        return Check("domain", False, f"Qiniu's domain API answered HTTP {status} for {host}.")
    state, cover = ret.get("operatingState"), ret.get("geoCover")
    detail = {"domain": host, "status": state, "area": cover}
    if state != "success":
        return Check("domain", False, f"{host} is {state}, not online.", detail)
    return Check("domain", True, f"{host} is online, accelerated in {cover}.", detail)


# -- origin, clock ------------------------------------------------------------------------


def _origin(settings: Settings, sample_url: str | None) -> Check:
    if not sample_url:
        return Check("origin", None, "no --sample-url given: the origin was not asked.")
    from cdn_preheat.app import expand_options
    from cdn_preheat.hls import expand

    try:
        expansion = expand(sample_url, expand_options(settings))
    except PreheatError as exc:
        return Check("origin", False, str(exc), {"url": sample_url})
    count = len(expansion.urls)
    return Check(
        "origin",
        True,
        f"{sample_url} answers: {count:,} URLs to preheat.",
        {"url": sample_url, "urls": count},
    )


def _clock(settings: Settings, kind: str, now: Callable[[], float], timeout: float) -> Check:
    endpoint = _api_endpoint(settings, kind)
    if endpoint is None:
        return Check("clock", None, "the http provider signs nothing.")
    tolerance = CLOCK_TOLERANCE_SECONDS.get(kind)
    try:
        sent = now()
        response = httpx.get(endpoint, timeout=timeout, follow_redirects=False)
        received = now()
    except httpx.HTTPError as exc:
        return Check("clock", False, f"{endpoint} did not answer ({type(exc).__name__}).")
    header = response.headers.get("Date")
    stamp = email.utils.parsedate_to_datetime(header) if header else None
    if stamp is None:
        return Check("clock", False, f"{endpoint} sent no Date header to compare clocks with.")
    # The server stamped its Date between sending and receiving; it has 1 s resolution.
    skew = stamp.timestamp() - (sent + received) / 2
    detail = {"skew_seconds": round(skew, 1), "tolerance_seconds": tolerance}
    ahead = "ahead of" if skew < 0 else "behind"
    text = f"this machine's clock is {abs(skew):.0f} s {ahead} {_VENDOR.get(kind, kind)}'s"
    if tolerance is None:
        return Check("clock", True, f"{text}; Qiniu's signatures carry no time.", detail)
    if abs(skew) > tolerance:
        return Check(
            "clock",
            False,
            f"{text}, more than the {tolerance / 60:.0f} minutes its signatures allow: "
            "set the clock (NTP).",
            detail,
        )
    return Check("clock", True, f"{text}, within the {tolerance / 60:.0f} minutes allowed.", detail)


def _api_endpoint(settings: Settings, kind: str) -> str | None:
    configured = {
        "tencent": settings.tencent_endpoint,
        "edgeone": settings.eo_endpoint,
        "aliyun": settings.aliyun_endpoint,
        "qiniu": settings.qiniu_endpoint,
    }
    if kind not in configured:
        return None
    return configured[kind] or DEFAULT_API[kind]


def render_lines(report: DoctorReport) -> Sequence[str]:
    """One line per check: a mark, the check's name, its sentence."""
    marks = {True: "✓", False: "✗", None: "-"}
    return [f"{marks[c.ok]} {c.name}: {c.message}" for c in report.checks]
