"""``expand``: every URL a player may fetch of one playlist."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cdn_preheat.cli._common import JsonOption, StrictOption, app, load_settings


@app.command()
def expand(
    m3u8_url: Annotated[str, typer.Argument(help="URL of an HLS playlist or a DASH MPD.")],
    cdn_host: Annotated[
        str | None, typer.Option(help="Rewrite the playlist host to this CDN host.")
    ] = None,
    json_out: JsonOption = False,
    strict: StrictOption = False,
) -> None:
    """Print every URL a player may fetch, one a line, playlists first."""
    from cdn_preheat import ui
    from cdn_preheat.app import expand_options
    from cdn_preheat.hls import expand as expand_playlist

    settings = load_settings()
    options = expand_options(settings, cdn_host=cdn_host, strict=strict)
    expansion = expand_playlist(m3u8_url, options)
    if json_out:
        ui.print_json(
            {
                "source": expansion.source,
                "live": expansion.is_live,
                "urls": [
                    {"url": u.url, "kind": str(u.kind), "rendition": u.rendition, "index": u.index}
                    for u in expansion.urls
                ],
                "skipped": [{"url": s.url, "reason": s.reason} for s in expansion.skipped],
                "warnings": expansion.warnings,
                "failed_playlists": [str(error) for error in expansion.failed],
            }
        )
    else:
        sys.stdout.write("".join(f"{u.url}\n" for u in expansion.urls))
        for skipped in expansion.skipped:
            ui.note(f"skipped {skipped.url}: {skipped.reason}")
        for message in expansion.warnings:
            ui.warning(message)
        if expansion.is_live:
            ui.note("note: live (no EXT-X-ENDLIST, or a dynamic MPD): only what it lists now")
    if expansion.failed:
        ui.error(
            f"partial: {len(expansion.failed)} playlist(s) could not be read and were skipped: "
            + "; ".join(str(error) for error in expansion.failed)
        )
        raise typer.Exit(1)
