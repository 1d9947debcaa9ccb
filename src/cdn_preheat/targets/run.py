"""Running the units side by side: each unit drains its own queue and follows its
tasks (:func:`cdn_preheat.pipeline.run_queue` over a ledger scoped to its key),
or runs its own worker loop; one unit's failure never stops another.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from cdn_preheat.errors import AuthError, PreheatError, QuotaExhausted
from cdn_preheat.ledger.base import Ledger, UrlState
from cdn_preheat.targets.pool import PoolProvider
from cdn_preheat.targets.results import UnitResult, worst_exit
from cdn_preheat.targets.status import describe_targets
from cdn_preheat.targets.units import side_by_side

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.pipeline import RunOptions
    from cdn_preheat.targets.units import Unit
    from cdn_preheat.tracker import TrackReport

log = logging.getLogger("cdn_preheat.targets")  # one logger for the whole package


class ScopedLedger:
    """The shared ledger as one unit's run sees it: counts are that unit's only.

    ``run_queue`` reports the pending URLs of its own target, read from that
    target's rows only (the other targets' rows of a shared ledger are not read).
    """

    def __init__(self, ledger: Ledger, key: tuple[str, str]) -> None:
        self._ledger = ledger
        self._key = key

    def counts(
        self, video_id: str | None = None, *, target: tuple[str, str] | None = None
    ) -> dict[UrlState, int]:
        if target not in (None, self._key):
            raise ValueError(f"a ledger scoped to {self._key} counts no other target's URLs")
        return self._ledger.counts(video_id, target=self._key)

    @property
    def unscoped(self) -> Ledger:
        """The shared ledger: a video's state is over every unit, not this one's share."""
        return self._ledger

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._ledger, attribute)


def scoped(ledger: Ledger, key: tuple[str, str]) -> Ledger:
    return cast("Ledger", ScopedLedger(ledger, key))


def run_units(
    ledger: Ledger,
    units: Sequence[Unit],
    options_for: Callable[[Unit], RunOptions],
    *,
    stop: threading.Event | None = None,
    video_id: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_tracking: Callable[[str, int, TrackReport], None] | None = None,
) -> list[UnitResult]:
    """Push every unit's queue side by side; one unit's failure never stops another.

    Units that failed their check (:func:`check_units`) are reported, not run.
    """
    from cdn_preheat.pipeline import run_queue

    stop = stop or threading.Event()
    results = [UnitResult(unit.name, unit.key) for unit in units]
    progress_lock = threading.Lock()

    def progressed(n: int) -> None:
        if on_progress is not None:
            with progress_lock:
                on_progress(n)

    def run(unit: Unit, result: UnitResult) -> None:
        if unit.error is not None:
            _fail(unit, result, unit.error)
            return
        tracking = None
        if on_tracking is not None:
            track = on_tracking

            def tracking(open_tasks: int, totals: TrackReport) -> None:
                with progress_lock:
                    track(unit.name, open_tasks, totals)

        try:
            report = run_queue(
                scoped(ledger, unit.key), unit.provider, options_for(unit),
                on_progress=progressed, on_tracking=tracking, stop=stop, video_id=video_id,
            )  # fmt: skip
        except PreheatError as exc:
            _fail(unit, result, exc)
            return
        result.report = report
        if report.stopped_by is not None:
            _fail(unit, result, report.stopped_by)
        elif report.quota_exhausted and report.pending:
            result.exit_code = QuotaExhausted.exit_code
        if isinstance(unit.provider, PoolProvider):
            result.pushed_by = dict(unit.provider.pushed)
            _note_set_aside(unit, unit.provider, result)

    side_by_side(
        [(u.name, functools.partial(run, u, r)) for u, r in zip(units, results, strict=True)]
    )
    return results


def _note_set_aside(unit: Unit, pool: PoolProvider, result: UnitResult) -> None:
    """Members whose keys were refused: their sentences, and the run's exit code 2."""
    members = {target.name: target for target in unit.members}
    for name, error in pool.broken.items():
        result.set_aside[name] = members[name].explain(error)
        log.warning("pool %s: %s", unit.name, result.set_aside[name])
    if result.set_aside and not result.exit_code:
        result.exit_code = AuthError.exit_code


def _fail(unit: Unit, result: UnitResult, error: PreheatError) -> None:
    result.error = unit.explain(error)
    result.exit_code = error.exit_code
    log.warning("%s", result.error)


def unit_run_options(
    settings: Settings, *, wait: bool, wait_timeout: float
) -> Callable[[Unit], RunOptions]:
    """Run options per unit: its own rate, batch size and CDN host."""
    from cdn_preheat.app import run_options

    def options(unit: Unit) -> RunOptions:
        return run_options(unit.settings, wait=wait, wait_timeout=wait_timeout)

    return options


def run_unit_workers(
    ledger: Ledger,
    units: Sequence[Unit],
    *,
    stop: threading.Event,
    once: bool = False,
    idle: float = 30.0,
    wait_timeout: float = 600.0,
    wake: threading.Event | None = None,
    on_error: Callable[[str, str], None] | None = None,
) -> int:
    """``worker`` over targets: one worker loop per unit, side by side, on its own queue.

    A unit whose error no pause can cure (wrong keys) stops alone, its sentence
    logged (and given to ``on_error(unit name, sentence)``); the others go on.
    ``wake``: set it when work is queued to end every loop's wait at an empty
    queue (``serve`` does). The exit code is the worst of the units'.
    """
    from cdn_preheat.worker import run_worker

    codes: dict[str, int] = {}
    describe = describe_targets(ledger, units)
    # Each loop clears the wake it waited on: one shared event would let the first
    # loop to wake swallow it for the others, so each has its own, set from ``wake``.
    wakes = {unit.name: threading.Event() for unit in units}
    halt = threading.Event()  # every loop is over: the forwarder ends too
    forwarder = None
    if wake is not None:
        forwarder = threading.Thread(
            target=_fan_out, args=(wake, list(wakes.values()), stop, halt), daemon=True,
            name="targets-wake",
        )  # fmt: skip
        forwarder.start()

    def work(unit: Unit) -> None:
        try:
            codes[unit.name] = run_worker(
                scoped(ledger, unit.key), unit.provider, unit.settings, stop=stop, once=once,
                idle=idle, wait_timeout=wait_timeout,
                wake=wakes[unit.name] if wake is not None else None,
                targets=describe,
            )  # fmt: skip
        except PreheatError as exc:
            sentence = unit.explain(exc)
            log.error("%s", sentence)
            codes[unit.name] = exc.exit_code
            if on_error is not None:
                on_error(unit.name, sentence)

    try:
        side_by_side([(unit.name, functools.partial(work, unit)) for unit in units])
    finally:
        halt.set()
        if forwarder is not None:
            forwarder.join()
    results = [UnitResult(u.name, u.key, exit_code=codes.get(u.name, 0)) for u in units]
    return worst_exit(results)


def _fan_out(
    wake: threading.Event,
    wakes: Sequence[threading.Event],
    stop: threading.Event,
    halt: threading.Event,
) -> None:
    """Pass each setting of ``wake`` on to every loop's own event, until ``stop`` or ``halt``.

    ``stop`` wakes every loop too (a loop waiting at an empty queue then ends).
    """
    while not halt.is_set():
        woken = wake.wait(0.5)
        if woken:
            wake.clear()
        if woken or stop.is_set():
            for event in wakes:
                event.set()
