"""The long-running worker: drain, follow tasks, sleep past the quota reset, repeat."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from cdn_preheat import stopping
from cdn_preheat.app import run_options
from cdn_preheat.clock import seconds_until_next_day, utcnow
from cdn_preheat.errors import (
    AuthError,
    DomainError,
    LedgerError,
    PreheatError,
    RateLimited,
    Transient,
)
from cdn_preheat.pipeline import RunReport, refresh_states, run_queue
from cdn_preheat.retrying import backoff_delay

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.notify import DescribeTargets
    from cdn_preheat.providers.base import Provider

log = logging.getLogger(__name__)

EXIT_QUOTA = 3
# Wait a little past the provider's midnight: its counters reset on its own clock.
RESET_MARGIN_SECONDS = 60.0
# After a round that ended in provider trouble: the first pause, doubled each
# troubled round in a row up to the longest (full jitter, ratelimit.backoff_delay).
RETRY_PAUSE_SECONDS = 2.0
RETRY_PAUSE_MAX_SECONDS = 120.0


def _fatal(error: PreheatError) -> bool:
    """Errors no pause can cure: wrong credentials or configuration, an unusable store.

    A refused URL or video never gets here (the scheduler marks it invalid); a
    CDN_HOST the account does not have stops the worker with that sentence.
    """
    # Exit code 2: credentials, permissions, area, settings, input.
    return error.exit_code == 2 or isinstance(error, AuthError | DomainError | LedgerError)


def _work_left(ledger: Ledger, provider: Provider) -> bool:
    """Whether a round now has something to do on this provider and area's queue.

    Pending URLs (``has_pending`` stops at the first row), or a batch reserved
    by a worker whose lease ran out during the round that just ended (it died):
    the next round's drain recovers it (``Scheduler.reconcile_expired``) and
    pushes what never arrived, rather than leaving it reserved for an idle wait.
    Another provider's URLs in the same ledger are not this worker's work.
    ``--once`` goes round again for such a dead batch too (not for pending URLs
    its rounds left, which the next run pushes), so it never exits 0 leaving a
    batch it could settle reserved.
    """
    return ledger.has_pending(provider.name, provider.area) or _dead_batches(ledger, provider)


def _dead_batches(ledger: Ledger, provider: Provider) -> bool:
    """Whether a claim of this provider and area has a lease that ran out (its worker died).

    A round takes each over with a fresh lease (``renew_lease``) and settles it,
    so a recovery that has to wait is not found here again until that lease ends.
    """
    return bool(ledger.expired_claims(provider.name, provider.area, utcnow()))


def run_worker(
    ledger: Ledger,
    provider: Provider,
    settings: Settings,
    *,
    stop: threading.Event,
    once: bool = False,
    idle: float = 30.0,
    wait_timeout: float = 600.0,
    wake: threading.Event | None = None,
    targets: DescribeTargets | None = None,
) -> int:
    """Run until ``stop`` is set (or one round with ``once``); the process exit code.

    ``wake``: set it when work arrives (``serve`` does when a video is queued)
    to end a wait at an empty queue at once; whoever sets ``stop`` sets it too.
    ``targets``: one loop of a run over targets (their description, for the
    webhook events of the videos it finishes: :mod:`cdn_preheat.notify`).

    Rate-limit, transient and unknown provider answers never end it: it pauses
    (a growing pause, cut short by ``stop``) and goes on. ``stop`` and ``wake``
    are bound to the run (:func:`stopping.bound`): a signal sets both, so every
    pause ends on it as on ``stop``.
    """
    with stopping.bound(stop, also=[wake]):
        return _run_worker(
            ledger, provider, settings, stop, once, idle, wait_timeout, wake, targets
        )


def _run_worker(
    ledger: Ledger,
    provider: Provider,
    settings: Settings,
    stop: threading.Event,
    once: bool,
    idle: float,
    wait_timeout: float,
    wake: threading.Event | None,
    targets: DescribeTargets | None,
) -> int:
    options = run_options(settings, wait=True, wait_timeout=wait_timeout)
    offset = provider.limits.quota_utc_offset_hours  # resolved by make_provider
    troubled = 0
    while not stop.is_set():
        report: RunReport | None = None
        error: PreheatError | None = None
        try:
            done = run_queue(ledger, provider, options, stop=stop)
            # A targets worker's ledger is scoped to its target; a video's state is
            # over every target (done once done everywhere).
            whole: Ledger = getattr(ledger, "unscoped", ledger)
            refresh_states(whole, [v.video_id for v in whole.list_videos()], targets=targets)
        except PreheatError as exc:
            error = exc
        else:
            report, error = done, done.stopped_by
            log.info(
                "round: %d pushed, %d done, %d failed, %d invalid, %d queued, %d in flight",
                done.submitted, done.done, done.failed, done.invalid, done.pending, done.in_flight,
            )  # fmt: skip
        if error is not None and _fatal(error):
            raise error
        if once:
            if error is not None and (
                report is None or not isinstance(error, RateLimited | Transient)
            ):
                raise error
            spent = report is not None and report.quota_exhausted and report.pending
            if not spent and error is None and _dead_batches(ledger, provider):
                continue  # a worker died during the round: its batch is this run's to settle
            return EXIT_QUOTA if spent else 0
        if error is not None:
            troubled += 1
            pause = max(
                1.0, backoff_delay(troubled, base=RETRY_PAUSE_SECONDS, cap=RETRY_PAUSE_MAX_SECONDS)
            )
            log.warning("provider trouble (%s); pausing %.0f s", error, pause)
            stop.wait(pause)
            continue
        troubled = 0
        if report is not None and report.quota_exhausted and report.pending:
            pause = seconds_until_next_day(utcnow(), offset) + RESET_MARGIN_SECONDS
            log.info("daily quota spent; sleeping %.0f s until it resets", pause)
            stop.wait(pause)
        elif not _work_left(ledger, provider):
            if wake is None:
                stop.wait(idle)
            else:
                wake.wait(idle)
                wake.clear()
    log.info("stopped; the ledger is consistent and the queue is kept")
    return 0
