"""``purge``: refresh cached URLs, directories or a whole video within the purge limits."""

from __future__ import annotations

from typing import Annotated

import typer

from cdn_preheat.cli._common import JsonOption, app, load_settings, preheater


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
    """Refresh (purge) cached URLs, directories, or a whole video, within the purge limits.

    With CDN_PREHEAT_TARGETS, on every target (a pool: each member), each URL on
    its own host; one target's failure is reported for it alone.
    """
    from cdn_preheat import purge, render
    from cdn_preheat.cli._bars import Bars
    from cdn_preheat.errors import InputError

    if delete and not dirs:
        raise InputError("--delete applies to --dir purges only.")
    # Checked before anything is opened: a bad URL is bad input whatever the settings.
    targets = purge.clean_urls(urls or [])
    directories = purge.clean_dirs(dirs or [])
    settings = load_settings()
    if settings.cdn_preheat_targets:
        from cdn_preheat.cli import _targets

        _targets.purge_everywhere(
            settings, urls=targets, dirs=directories, video_id=video, delete=delete,
            wait=wait, wait_timeout=wait_timeout, json_out=json_out,
        )  # fmt: skip
        return
    with preheater(settings) as engine, Bars(purge_bar=wait) as bars:
        result = engine.purge(
            urls=targets, dirs=directories, video_id=video, delete=delete,
            follow=wait, wait_timeout=wait_timeout, observer=bars,
        )  # fmt: skip
    render.report_purge(result, json_out)
    if result.quota_exhausted is not None:
        raise result.quota_exhausted
    if result.failed:
        raise typer.Exit(1)
