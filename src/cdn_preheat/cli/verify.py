"""``verify``: ask the edge whether a video's files are cached."""

from __future__ import annotations

from typing import Annotated

import typer

from cdn_preheat.cli._common import EXIT_INTERRUPTED, JsonOption, app, load_settings, preheater


@app.command()
def verify(
    video_id: Annotated[str, typer.Argument(help="A video in the ledger.")],
    sample: Annotated[
        int,
        typer.Option(min=1, help="Probe this many URLs (playlists and rendition starts always)."),
    ] = 50,
    all_urls: Annotated[bool, typer.Option("--all", help="Probe every pushed URL.")] = False,
    edge: Annotated[
        list[str] | None, typer.Option("--edge", help="Edge IP[:port] to pin to; repeatable.")
    ] = None,
    vendor: Annotated[
        str | None, typer.Option(help="Cache header to read: tencent, qiniu, aliyun, ...")
    ] = None,
    requeue: Annotated[
        bool, typer.Option(help="Queue the URLs that no CDN layer held again.")
    ] = False,
    min_hit_ratio: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit 1 below this cached ratio (edge or upper-layer hits), or when a "
            "probe got no answer.",
        ),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Sample seed, for a repeatable sample.")] = 0,
    json_out: JsonOption = False,
) -> None:
    """Ask the edge (GET of one byte) whether the video's files are cached in the CDN.

    Each URL is an edge hit, warm in an upper layer (where Tencent mainland
    and Alibaba prefetch), or a miss; both hits count as cached. Exit 0 when
    the cached ratio reaches --min-hit-ratio and every probe was answered.
    With CDN_PREHEAT_TARGETS, each target's own URLs are probed at its host
    with its vendor's header, a row each; every target must pass.
    """
    from cdn_preheat import render
    from cdn_preheat.cli._bars import Bars

    settings = load_settings()
    if settings.cdn_preheat_targets:
        from cdn_preheat.cli import _targets
        from cdn_preheat.errors import InputError

        if edge or vendor:
            raise InputError(
                "--edge and --vendor work with one provider; with CDN_PREHEAT_TARGETS each "
                "target is probed at its own CDN host with its vendor's cache header."
            )
        _targets.verify_video(
            settings, video_id, sample=None if all_urls else sample, requeue=requeue,
            min_hit_ratio=min_hit_ratio, seed=seed, json_out=json_out,
        )  # fmt: skip
        return
    from cdn_preheat.stopping import STOP

    # Ctrl-C/SIGTERM ends the probes at once; what was answered is shown, exit 130.
    with preheater(settings) as engine, Bars(signals=True) as bars:
        result = engine.verify(
            video_id, sample=None if all_urls else sample, edge_ips=edge or (), vendor=vendor,
            requeue=requeue, min_hit_ratio=min_hit_ratio, seed=seed, observer=bars, stop=STOP,
        )  # fmt: skip
    render.report_verify(video_id, result.report, result.requeued, json_out, result.gate)
    if result.report.interrupted:
        from cdn_preheat import ui

        ui.note(
            f"interrupted: {len(result.report.results)} of {result.report.planned} probes were"
            " answered; the figures above are theirs."
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if not result.passed:
        raise typer.Exit(1)
