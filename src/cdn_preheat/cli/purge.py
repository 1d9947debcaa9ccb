"""``purge``: refresh cached URLs, directories or a whole video within the purge limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cdn_preheat.cli._common import JsonOption, app, load_settings, open_ledger, open_provider

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.purge import PurgeReport


@app.command("purge")
def purge_command(
    urls: Annotated[
        list[str] | None, typer.Argument(help="URLs to refresh (sign/t parameters are dropped).")
    ] = None,
    dirs: Annotated[
        list[str] | None,
        typer.Option("--dir", help="Refresh everything under this directory URL; repeatable."),
    ] = None,
    delete: Annotated[
        bool,
        typer.Option(help="With --dir: delete cached copies rather than mark them stale."),
    ] = False,
    video: Annotated[
        str | None, typer.Option("--video", help="Refresh every URL the ledger holds for it.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the purge tasks to completion.")] = True,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to follow tasks.")] = 600.0,
    json_out: JsonOption = False,
) -> None:
    """Refresh (purge) cached URLs, directories, or a whole video, within the purge limits."""
    from cdn_preheat import purge, render
    from cdn_preheat.errors import InputError

    if delete and not dirs:
        raise InputError("--delete applies to --dir purges only.")
    targets = purge.clean_urls(urls or [])
    directories = purge.clean_dirs(dirs or [])
    settings = load_settings()
    ledger = open_ledger(settings)
    try:
        if video is not None:
            targets = list(dict.fromkeys([*targets, *purge.video_urls(ledger, video)]))
        if not targets and not directories:
            raise InputError("give URLs to purge, --dir DIR or --video VIDEO_ID.")
        provider = open_provider(settings)
        try:
            report = purge_run(
                ledger, provider, targets, directories,
                delete=delete, wait=wait, wait_timeout=wait_timeout,
            )  # fmt: skip
        finally:
            provider.close()
    finally:
        ledger.close()
    render.report_purge(report, json_out)
    if report.quota_exhausted is not None:
        raise report.quota_exhausted
    if report.failed:
        raise typer.Exit(1)


def purge_run(
    ledger: Ledger,
    provider: Any,
    urls: list[str],
    dirs: list[str],
    *,
    delete: bool,
    wait: bool,
    wait_timeout: float,
) -> PurgeReport:
    from cdn_preheat import ui
    from cdn_preheat.purge import PurgeOptions, purge

    options = PurgeOptions(wait=wait, timeout=wait_timeout)
    total = len(urls) + len(dirs)
    with ui.progress(f"purging on {provider.name}", total, enabled=wait) as advance:
        return purge(
            ledger, provider, urls, dirs, delete=delete, options=options, on_progress=advance
        )


def purge_before_republish(
    ledger: Ledger, settings: Settings, video_id: str, *, reset: bool, wait_timeout: float
) -> None:
    """``push --reset --purge``: purge the URLs the ledger holds for the video, then go on."""
    from cdn_preheat import purge, ui
    from cdn_preheat.errors import InputError, ProviderError

    if not reset:
        raise InputError("--purge goes with --reset: it purges the old URLs before pushing anew.")
    if ledger.get_video(video_id) is None:
        ui.note(f"{video_id} is not in the ledger: nothing to purge.")
        return
    urls = purge.video_urls(ledger, video_id)
    provider = open_provider(settings)
    try:
        report = purge_run(
            ledger, provider, urls, [], delete=False, wait=True, wait_timeout=wait_timeout
        )
    finally:
        provider.close()
    if report.quota_exhausted is not None:
        raise report.quota_exhausted
    if report.failed:
        raise ProviderError(
            f"{report.failed} of {len(urls)} purges of {video_id} failed; nothing was pushed."
        )
    ui.note(f"purged {report.submitted} URLs of {video_id}; pushing the new version.")
