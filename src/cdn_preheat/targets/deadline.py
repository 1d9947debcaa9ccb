"""Feasibility before a deadline (``--by``): whether each unit's quota and rate can
push its queue in time, and which videos stay cold if not.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdn_preheat.ledger.base import Ledger, PendingGroup, UrlState
from cdn_preheat.providers.base import Provider
from cdn_preheat.targets.pool import PoolProvider
from cdn_preheat.targets.queueing import expansion_for

if TYPE_CHECKING:
    from cdn_preheat.hls import Expansion
    from cdn_preheat.pipeline import HeadFirst, RunOptions
    from cdn_preheat.targets.units import Unit


@dataclass(frozen=True)
class ColdVideo:
    video_id: str
    pending: int
    reached: int  # of the pending URLs, how many the target can push in time


@dataclass(frozen=True)
class Feasibility:
    """Whether one unit can push its whole queue before the deadline."""

    name: str
    queued: int
    quota_left: int | None  # today's, None: no daily quota
    quota_by_deadline: int | None  # with the new days' quotas that start before the deadline
    urls_per_second: float
    rate_by_deadline: int
    capacity: int
    cold: list[ColdVideo]
    error: str | None = None

    @property
    def feasible(self) -> bool:
        return self.error is None and not self.cold


def urls_per_second(provider: Provider, batch_size: int) -> float:
    """The unit's push ceiling in URLs a second: its submit budget times its batch."""
    if isinstance(provider, PoolProvider):
        return sum(urls_per_second(m, min(batch_size, m.limits.batch_size))
                   for m in provider.members.values())  # fmt: skip
    pacing = provider.pacing
    api = provider.submit_api
    try:
        rate = pacing.rate(api)
        budget = provider.budgets.get(pacing.budget_of(api))
    except KeyError:
        return provider.limits.requests_per_second * batch_size
    if budget is not None and budget.units_per_call > 1:
        return rate  # a budget counted in URLs (Qiniu)
    return rate * batch_size


def feasibility(
    ledger: Ledger,
    units: Sequence[Unit],
    deadline: dt.datetime,
    now: dt.datetime,
    options_for: Callable[[Unit], RunOptions],
    groups_for: Callable[[Unit], list[PendingGroup]] | None = None,
) -> list[Feasibility]:
    """For each unit: can its quota and rate push its queue by ``deadline``, and if not,
    which videos (in claim order: head-first tiers, then queue order) stay cold.

    ``groups_for``: the unit's queue (default: what the ledger holds pending).
    """
    from cdn_preheat.clock import seconds_until_next_day

    seconds = max(0.0, (deadline - now).total_seconds())
    rows = []
    for unit in units:
        groups = groups_for(unit) if groups_for else ledger.pending_groups(*unit.key)
        queued = sum(g.count for g in groups)
        if unit.error is not None:
            rows.append(Feasibility(unit.name, queued, None, None, 0.0, 0, 0, [],
                                    unit.explain(unit.error)))  # fmt: skip
            continue
        options = options_for(unit)
        quota = unit.quota
        batch = min(
            unit.provider.limits.batch_size,
            options.scheduler.batch_size or unit.provider.limits.batch_size,
            (quota.batch if quota and quota.batch else unit.provider.limits.batch_size),
        )
        ceiling = urls_per_second(unit.provider, batch)
        by_rate = int(ceiling * seconds)
        left: int | None = None
        by_quota: int | None = None
        if quota is not None and quota.total is not None:
            book = None
            offset = options.scheduler.quota_utc_offset_hours
            if offset is None:
                offset = unit.provider.limits.quota_utc_offset_hours
            from cdn_preheat.clock import quota_day

            book = ledger.quota_day(*unit.key, quota_day(now, offset))
            left = quota.available if quota.available is not None else quota.total
            if book is not None and book.remaining is not None:
                left = min(left, book.remaining)
            by_quota = left
            to_reset = seconds_until_next_day(now, offset)
            if seconds > to_reset:
                new_days = 1 + int((seconds - to_reset) // 86400)
                by_quota += new_days * quota.total
        capacity = by_rate if by_quota is None else min(by_rate, by_quota)
        rows.append(
            Feasibility(
                unit.name,
                queued,
                left,
                by_quota,
                ceiling,
                by_rate,
                capacity,
                _cold(groups, capacity),
            )
        )
    return rows


def planned_groups(
    ledger: Ledger,
    unit: Unit,
    expansions: Mapping[str, Expansion],
    base_host: str | None,
    head_first: HeadFirst | None,
    now: dt.datetime,
    max_age: dt.timedelta,
) -> list[PendingGroup]:
    """The unit's queue as it would stand once these expansions were queued (a dry run).

    What the ledger holds pending comes first (it was queued earlier); then each
    video's URLs the unit has neither queued nor done, by priority. Nothing is written.
    """
    from cdn_preheat.pipeline import iter_prioritized

    groups = list(ledger.pending_groups(*unit.key))
    seen: set[str] = set()
    for video_id, expansion in expansions.items():
        mine = expansion_for(expansion, base_host, unit.cdn_host)
        held = {
            record.url
            for record in ledger.url_records(video_id)
            if (record.provider, record.area) == unit.key
            and (
                record.state in (UrlState.PENDING, UrlState.RESERVED, UrlState.SUBMITTED)
                or (
                    record.state is UrlState.DONE
                    and (record.expires_at is None or record.expires_at > now)
                    and (record.pushed_at is None or now - record.pushed_at < max_age)
                )
            )
        }
        counts: Counter[int] = Counter()
        for item in iter_prioritized(mine, head_first):
            if item.url not in held and item.url not in seen:
                seen.add(item.url)
                counts[item.priority] += 1
        groups += [PendingGroup(video_id, p, n) for p, n in sorted(counts.items())]
    return sorted(groups, key=lambda group: group.priority)  # stable: queue order kept


def _cold(groups: Sequence[Any], capacity: int) -> list[ColdVideo]:
    pending: dict[str, int] = {}
    reached: dict[str, int] = {}
    budget = capacity
    for group in groups:
        pending[group.video_id] = pending.get(group.video_id, 0) + group.count
        take = min(budget, group.count)
        reached[group.video_id] = reached.get(group.video_id, 0) + take
        budget -= take
    return [
        ColdVideo(video_id, count, reached[video_id])
        for video_id, count in pending.items()
        if reached[video_id] < count
    ]


def parse_deadline(text: str, now: dt.datetime) -> dt.datetime:
    """``--by``: an ISO-8601 time (with its offset; UTC if none) or a span like 90m, 3h, 1d."""
    from cdn_preheat.errors import InputError

    text = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text.lower())
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return now + dt.timedelta(seconds=float(match.group(1)) * unit)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"--by takes a time like 2026-12-02T20:00+08:00 or a span like 3h, not {text!r}."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if moment <= now:
        raise InputError(f"--by {text} is already past.")
    return moment
