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
    from cdn_preheat.providers.base import DomainInfo, Provider, Quota

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
    from cdn_preheat.providers import provider_spec

    spec = provider_spec(provider.name)
    features = provider.features
    if not spec.credentials:
        return [
            Check("credentials", None, "the http provider needs no API credentials."),
            Check("domain", None, "the http provider warms whatever CDN_HOST resolves to."),
            Check("quota", None, "the http provider has no daily quota."),
        ]
    quota: Quota | None = None
    area_problem: str | None = None
    try:
        if features.quota_query:
            quota = provider.quota()
        else:  # no quota query (Qiniu): a read-only task query checks the key
            provider.task_status([_DOCTOR_TASK])
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
    via = provider.quota_api if features.quota_query else f"the {provider.status_api}"
    checks = [Check("credentials", True, f"accepted by {spec.title} ({via}).")]
    checks.append(_domain(provider, settings, spec.title))
    if area_problem is not None:
        checks.append(Check("quota", False, area_problem))
    else:
        checks.append(_quota(spec.title, quota, provider))
    return checks


def _quota(title: str, quota: Quota | None, provider: Provider) -> Check:
    if quota is None:  # Qiniu: the answer of a prefetch is the only report of its quota
        batch = provider.limits.batch_size
        return Check(
            "quota",
            True,
            f"{title} reports the prefetch quota only in prefetch answers (100 a day unless "
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


def _domain(provider: Provider, settings: Settings, title: str) -> Check:
    host = (settings.cdn_host or "").strip().lower()
    if not host:
        return Check("domain", False, "CDN_HOST is not set: doctor checks that domain.")
    if not provider.features.domain_check:
        return Check("domain", None, f"not checked for {provider.name}.")
    try:
        found = provider.describe_domain(host)
    except PreheatError as exc:
        return Check("domain", False, str(exc))
    if found is None:
        return Check(
            "domain", False, f"{host} is not a CDN domain of this {title} account (CDN_HOST)."
        )
    return _domain_check(found, provider.area)


def _domain_check(domain: DomainInfo, wanted: str) -> Check:
    """The verdict on a domain the account has: online, and accelerated where it is pushed."""
    host, status, area = domain.domain, domain.status, domain.area
    detail = {"domain": host, "status": status, "area": area}
    if not domain.online:
        return Check("domain", False, f"{host} is {status}, not online{domain.fix_status}.", detail)
    if not domain.covered:
        fix = domain.fix_area
        return Check(
            "domain", False, f"{host} is accelerated in {area}, not {wanted}: set {fix}.", detail
        )
    return Check("domain", True, f"{host} is online, accelerated in {area}.", detail)


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
    from cdn_preheat.providers import provider_spec

    spec = provider_spec(kind)
    if spec.default_api is None:
        return Check("clock", None, f"{spec.title} signs nothing.")
    config = spec.config.from_settings(settings)
    endpoint = getattr(config, "endpoint", None) or spec.default_api
    tolerance = spec.clock_tolerance
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
    text = f"this machine's clock is {abs(skew):.0f} s {ahead} {spec.title}'s"
    if tolerance is None:
        return Check("clock", True, f"{text}; {spec.title}'s signatures carry no time.", detail)
    if abs(skew) > tolerance:
        return Check(
            "clock",
            False,
            f"{text}, more than the {tolerance / 60:.0f} minutes its signatures allow: "
            "set the clock (NTP).",
            detail,
        )
    return Check("clock", True, f"{text}, within the {tolerance / 60:.0f} minutes allowed.", detail)


def render_lines(report: DoctorReport) -> Sequence[str]:
    """One line per check: a mark, the check's name, its sentence."""
    marks = {True: "✓", False: "✗", None: "-"}
    return [f"{marks[c.ok]} {c.name}: {c.message}" for c in report.checks]
