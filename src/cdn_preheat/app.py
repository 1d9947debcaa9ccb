"""Wiring: build the ledger, provider and expander options from the settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdn_preheat.pipeline import RunOptions
from cdn_preheat.scheduler import SchedulerOptions
from cdn_preheat.tracker import TrackerOptions

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.hls import ExpandOptions


def expand_options(
    settings: Settings, *, cdn_host: str | None = None, strict: bool = False
) -> ExpandOptions:
    from cdn_preheat.hls import ExpandOptions
    from cdn_preheat.signing import make_signer

    return ExpandOptions(
        cdn_host=cdn_host or settings.cdn_host,
        allow_foreign_hosts=settings.cdn_preheat_allow_foreign_hosts,
        timeout=settings.cdn_preheat_fetch_timeout,
        deadline=settings.cdn_preheat_fetch_deadline,
        concurrency=settings.cdn_preheat_fetch_concurrency,
        max_bytes=settings.cdn_preheat_max_playlist_bytes,
        max_urls_per_video=settings.cdn_preheat_max_urls_per_video,
        dash_all_base_urls=settings.cdn_preheat_dash_all_base_urls,
        sign_url=make_signer(settings),
        strict=strict,
    )


def run_options(
    settings: Settings,
    *,
    wait: bool = True,
    wait_timeout: float = 600.0,
    poll_interval: float | None = None,
) -> RunOptions:
    """``poll_interval`` None: ``CDN_PREHEAT_POLL_SECONDS``."""
    import datetime as dt

    return RunOptions(
        wait=wait,
        scheduler=SchedulerOptions(
            concurrency=settings.cdn_preheat_concurrency,
            lease=dt.timedelta(seconds=settings.cdn_preheat_lease_seconds),
            batch_size=settings.cdn_preheat_batch_size,
            rate=settings.cdn_preheat_rate,
            quota_utc_offset_hours=settings.cdn_preheat_quota_utc_offset_hours,
            cdn_host=settings.cdn_host,
        ),
        tracker=TrackerOptions(
            poll_interval=(
                settings.cdn_preheat_poll_seconds if poll_interval is None else poll_interval
            ),
            timeout=wait_timeout,
            max_age=settings.cdn_preheat_max_age,
            max_attempts=settings.cdn_preheat_max_attempts,
            invalid_retry_delay=settings.cdn_preheat_invalid_retry_seconds,
        ),
    )
