"""The long-running worker: drain, follow tasks, sleep past the quota reset, repeat."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from cdn_preheat.app import run_options
from cdn_preheat.errors import RateLimited, Transient
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.pipeline import refresh_states, run_queue
from cdn_preheat.scheduler import seconds_until_next_day, utcnow

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.providers.base import Provider

log = logging.getLogger(__name__)

EXIT_QUOTA = 3
# Wait a little past the provider's midnight: its counters reset on its own clock.
RESET_MARGIN_SECONDS = 60.0
RETRY_PAUSE_SECONDS = 30.0


def run_worker(
    ledger: Ledger,
    provider: Provider,
    settings: Settings,
    *,
    stop: threading.Event,
    once: bool = False,
    idle: float = 30.0,
    wait_timeout: float = 600.0,
) -> int:
    """Run until ``stop`` is set (or one round with ``once``); the process exit code."""
    options = run_options(settings, wait=True, wait_timeout=wait_timeout)
    offset = settings.cdn_preheat_quota_utc_offset_hours
    if offset is None:
        offset = provider.limits.quota_utc_offset_hours
    while not stop.is_set():
        report = run_queue(ledger, provider, options, stop=stop)
        refresh_states(ledger, [v.video_id for v in ledger.list_videos()])
        log.info(
            "round: %d pushed, %d done, %d failed, %d invalid, %d queued, %d in flight",
            report.submitted, report.done, report.failed, report.invalid,
            report.pending, report.in_flight,
        )  # fmt: skip
        error = report.stopped_by
        if error is not None and not isinstance(error, RateLimited | Transient):
            raise error
        if once:
            return EXIT_QUOTA if report.quota_exhausted and report.pending else 0
        if error is not None:
            log.warning("provider trouble (%s); pausing %.0f s", error, RETRY_PAUSE_SECONDS)
            stop.wait(RETRY_PAUSE_SECONDS)
        elif report.quota_exhausted and report.pending:
            pause = seconds_until_next_day(utcnow(), offset) + RESET_MARGIN_SECONDS
            log.info("daily quota spent; sleeping %.0f s until it resets", pause)
            stop.wait(pause)
        elif not ledger.counts().get(UrlState.PENDING, 0):
            stop.wait(idle)
    log.info("stopped; the ledger is consistent and the queue is kept")
    return 0
