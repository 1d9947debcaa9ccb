"""What a run over the targets answers: each unit's outcome (:class:`UnitResult`),
the whole run (:class:`TargetsRun`), one line per target (:class:`TargetSummary`),
each target's quota (:class:`TargetQuota`), and the worst exit code of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cdn_preheat.pipeline import QueuedVideo, RunReport
    from cdn_preheat.targets.deadline import Feasibility
    from cdn_preheat.targets.verify import TargetsVerify


@dataclass
class UnitResult:
    """What one unit's run did (``report``), or the sentence it failed with."""

    name: str
    key: tuple[str, str]
    report: RunReport | None = None
    error: str | None = None
    exit_code: int = 0
    pushed_by: dict[str, int] = field(default_factory=dict)  # pool: URLs per member
    # pool: members set aside because their API refused the keys, with the sentence
    set_aside: dict[str, str] = field(default_factory=dict)


def worst_code(codes: Iterable[int]) -> int:
    """A configuration error (2) before quota (3) before others (1); 0 when all are 0."""
    present = {code for code in codes if code}
    for code in (2, 3, 1):
        if code in present:
            return code
    return max(present, default=0)


def worst_exit(results: Sequence[UnitResult]) -> int:
    """The run's exit code: a configuration error (2) before quota (3) before others (1)."""
    return worst_code(result.exit_code for result in results)


@dataclass
class TargetsRun:
    """A push over every unit: the videos queued, each unit's outcome, the deadline table."""

    videos: list[QueuedVideo]
    results: list[UnitResult]
    feasibility: list[Feasibility] | None = None
    # ``preheat(verify=True)``: each video's verification on every target (None: not asked)
    verified: list[TargetsVerify] | None = None

    @property
    def exit_code(self) -> int:
        return worst_exit(self.results)

    def hit_ratios(self) -> dict[str, float | None] | None:
        """Per target, the cached share of the probes over every verified video.

        None when the run was not verified; a target's None: nothing of it probed.
        """
        if self.verified is None:
            return None
        cached: dict[str, int] = dict.fromkeys((r.name for r in self.results), 0)
        total: dict[str, int] = dict.fromkeys((r.name for r in self.results), 0)
        for checked in self.verified:
            for target in checked.results:
                cached[target.name] += target.report.overall.cached
                total[target.name] += target.report.overall.total
        return {name: (cached[name] / total[name] if total[name] else None) for name in total}


@dataclass(frozen=True)
class TargetSummary:
    """One target's line after a push (or a queueing): what it did, what its queue holds.

    The counts are the ledger's for the target's key when asked; ``pushed``,
    ``requests`` and the like are this run's (0 when nothing ran);
    ``quota_left`` is the run's last figure, else the quota its check read.
    """

    name: str
    provider: str
    area: str
    members: tuple[str, ...]  # a pool's member targets
    pushed: int
    done: int
    failed: int  # failed or invalid
    pending: int  # pending or reserved
    in_flight: int
    quota_left: int | None
    requests: int
    wasted_requests: int
    quota_exhausted: bool
    pushed_by: dict[str, int] = field(default_factory=dict)
    set_aside: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    hit_ratio: float | None = None  # with a verified run (``TargetsRun.hit_ratios``)


@dataclass(frozen=True)
class TargetQuota:
    """One unit's quota today: the provider's figures and the ledger's reservations."""

    name: str
    day: str
    total: int | None
    available: int | None
    reserved_in_flight: int
    members: dict[str, int | None] = field(default_factory=dict)  # a pool: left per member
    error: str | None = None
