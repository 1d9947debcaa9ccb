"""Verification per target: each target's own URLs of a video probed at its CDN
host with its vendor's cache header, side by side, and gated each.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cdn_preheat.ledger.base import Ledger
from cdn_preheat.targets.units import side_by_side

if TYPE_CHECKING:
    from cdn_preheat.targets.units import Unit
    from cdn_preheat.verify import GateResult, VerifyReport


def verify_units(
    ledger: Ledger, units: Sequence[Unit], video_id: str, sample: int | None = 20
) -> dict[str, VerifyReport]:
    """Probe each target's own pushed URLs of the video (its host, its vendor's header).

    A sample per target (``None``: all), chosen as ``verify`` chooses; a target
    that pushed nothing of the video has nothing probed (its ratio is None).
    """
    from cdn_preheat.verify import options_from_settings, select_sample, verify_urls

    records = ledger.url_records(video_id)
    reports = {}
    for unit in units:
        mine = [r for r in records if (r.provider, r.area) == unit.key]
        probes = select_sample(mine, sample, video_id=video_id)
        reports[unit.name] = verify_urls(probes, options=options_from_settings(unit.settings))
    return reports


@dataclass(frozen=True)
class TargetVerify:
    """One target's (or pool's) verification of a video at its own CDN host.

    ``report`` holds the probes of the target's own URLs, read with its
    vendor's cache header; ``gate`` says whether they pass (nothing probed, a
    target that holds none of the video, never passes).
    """

    name: str
    key: tuple[str, str]
    provider: str
    cdn_host: str | None
    report: VerifyReport
    gate: GateResult
    requeued: int = 0

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def hit_ratio(self) -> float | None:
        return self.report.overall.ratio


@dataclass(frozen=True)
class TargetsVerify:
    """A video verified on every target: one :class:`TargetVerify` each, in file order."""

    video_id: str
    results: tuple[TargetVerify, ...]

    @property
    def passed(self) -> bool:
        """Every target reached the ratio and every probe was answered."""
        return all(result.passed for result in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def __getitem__(self, name: str) -> TargetVerify:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)


def verify_targets(
    ledger: Ledger,
    units: Sequence[Unit],
    video_id: str,
    *,
    sample: int | None = 50,
    requeue: bool = False,
    min_hit_ratio: float = 1.0,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> TargetsVerify:
    """Probe each unit's own URLs of the video, side by side, and gate each.

    A unit's URLs are the ledger rows under its key (its host mapped at
    queueing), probed with its provider's cache header; ``requeue`` queues the
    ones no CDN layer held again, for that unit only. The same exit rules as
    one provider's ``verify`` apply per unit (:func:`cdn_preheat.verify.gate`).
    """
    from cdn_preheat.errors import InputError
    from cdn_preheat.pipeline import requeue_missed
    from cdn_preheat.verify import gate, missed_urls, options_from_settings, select_sample
    from cdn_preheat.verify import verify_urls as probe

    if sample is not None and sample < 1:
        raise InputError("sample must be at least 1 (None probes every URL).")
    if ledger.get_video(video_id) is None:
        raise InputError(f"no video {video_id!r} in the ledger.")
    records = ledger.url_records(video_id)
    found: dict[str, TargetVerify] = {}
    lock = threading.Lock()

    def progressed(n: int) -> None:
        if on_progress is not None:
            with lock:
                on_progress(n)

    def one(unit: Unit) -> None:
        mine = [r for r in records if (r.provider, r.area) == unit.key]
        probes = select_sample(mine, sample, seed, video_id=video_id)
        report = probe(probes, options=options_from_settings(unit.settings),
                       on_progress=progressed)  # fmt: skip
        requeued = 0
        if requeue:
            requeued = requeue_missed(ledger, *unit.key, video_id, missed_urls(report))
        found[unit.name] = TargetVerify(
            unit.name, unit.key, unit.members[0].spec.provider, unit.cdn_host, report,
            gate(report, min_hit_ratio), requeued,
        )  # fmt: skip

    side_by_side([(unit.name, functools.partial(one, unit)) for unit in units])
    return TargetsVerify(video_id, tuple(found[unit.name] for unit in units))
