"""Per-target status: URL counts by state per unit (a pool's also per member), and
the entries the service and the webhook events list for a video on each target.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdn_preheat import notify
from cdn_preheat.ledger.base import Ledger, UrlState
from cdn_preheat.targets.pool import member_of

if TYPE_CHECKING:
    from cdn_preheat.targets.units import Unit


@dataclass(frozen=True)
class TargetCounts:
    name: str
    key: tuple[str, str]
    counts: dict[UrlState, int]
    members: tuple[str, ...] = ()  # a pool's member targets
    pushed_by: dict[str, int] = field(default_factory=dict)


def status_by_unit(
    ledger: Ledger, units: Sequence[Unit], video_id: str | None = None
) -> list[TargetCounts]:
    """URL counts per unit; a pool's rows also count URLs per member (from task ids)."""
    by_key = ledger.counts_by_target(video_id)
    rows = []
    for unit in units:
        pushed: Counter[str] = Counter()
        if unit.is_pool:
            videos = [video_id] if video_id else [v.video_id for v in ledger.list_videos()]
            seen: set[str] = set()
            for vid in videos:
                for record in ledger.url_records(vid):
                    if (record.provider, record.area) != unit.key or record.url in seen:
                        continue
                    seen.add(record.url)
                    if record.task_id and record.state is not UrlState.PENDING:
                        pushed[member_of(record.task_id)] += 1
        rows.append(
            TargetCounts(
                unit.name,
                unit.key,
                dict(by_key.get(unit.key, {})),
                tuple(m.name for m in unit.members) if unit.is_pool else (),
                dict(pushed),
            )
        )
    return rows


def target_entries(ledger: Ledger, units: Sequence[Unit], video_id: str) -> list[dict[str, Any]]:
    """The video on each unit as ``GET /v1/videos/{id}`` lists it (webhook events too).

    Counts by state, state, progress and a pool's URLs pushed per member; the
    service adds the ``error`` its worker met.
    """
    rows = []
    for unit, row in zip(units, status_by_unit(ledger, units, video_id), strict=True):
        counts = notify.record_counts(row.counts)
        entry: dict[str, Any] = {
            "name": row.name,
            "provider": unit.members[0].spec.provider,
            "area": row.key[1],
            "state": notify.target_state(counts),
            "counts": counts,
            "progress": notify.progress(counts),
        }
        if row.members:
            entry["members"] = [
                {"name": member, "pushed": row.pushed_by.get(member, 0)} for member in row.members
            ]
        rows.append(entry)
    return rows


def describe_targets(ledger: Ledger, units: Sequence[Unit]) -> notify.DescribeTargets:
    """The units' description for the webhook events of a run (:mod:`cdn_preheat.notify`)."""
    return functools.partial(target_entries, ledger, list(units))
