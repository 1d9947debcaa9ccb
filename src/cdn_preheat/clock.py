"""Time helpers, in one place: now in UTC, the vendors' UTC+8 day, the quota reset.

Tencent Cloud, Alibaba Cloud and Qiniu count their daily quotas from midnight
in China (UTC+8): "每日" quotas on their prefetch pages (Tencent PushUrlsCache,
cloud.tencent.com/document/api/228/37869; Alibaba PushObjectCache,
help.aliyun.com/document_detail/91161.html; Qiniu
developer.qiniu.com/fusion/13367). A provider states its offset in
``Limits.quota_utc_offset_hours``; ``CDN_PREHEAT_QUOTA_UTC_OFFSET_HOURS``
overrides it once, when the provider is built (:func:`resolve_quota_offset`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cdn_preheat.providers.base import Provider

# The vendors' own clock: their quota day, task times and log days.
UTC8 = dt.timezone(dt.timedelta(hours=8))


def utcnow() -> dt.datetime:
    """Now, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def aware(moment: dt.datetime) -> dt.datetime:
    """``moment`` with a time zone: naive values are taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def china_day(moment: dt.datetime) -> dt.date:
    """The calendar day of ``moment`` in UTC+8."""
    return aware(moment).astimezone(UTC8).date()


def quota_day(now: dt.datetime, utc_offset_hours: int | None) -> str:
    """The provider's calendar day for ``now`` (its quota resets at local midnight)."""
    offset = dt.timedelta(hours=utc_offset_hours or 0)
    return now.astimezone(dt.timezone(offset)).date().isoformat()


def seconds_until_next_day(now: dt.datetime, utc_offset_hours: int | None) -> float:
    """Seconds from ``now`` to the provider's next local midnight (its quota reset)."""
    tz = dt.timezone(dt.timedelta(hours=utc_offset_hours or 0))
    local = now.astimezone(tz)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return (midnight - local).total_seconds()


def resolve_quota_offset(provider: Provider, override: int | None) -> None:
    """Give ``provider`` the quota day's offset ``override`` (None: keep its own).

    Done once, when the provider is built: everything after reads
    ``provider.limits.quota_utc_offset_hours``.
    """
    if override is not None and override != provider.limits.quota_utc_offset_hours:
        provider.limits = dataclasses.replace(provider.limits, quota_utc_offset_hours=override)
