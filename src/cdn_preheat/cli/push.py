"""``push``, ``batch`` and ``worker``: queue videos and push them within quota."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cdn_preheat.cli._common import (
    EXIT_INTERRUPTED,
    JsonOption,
    State,
    StrictOption,
    app,
    check_video_id,
    exit_for,
    exit_if_partial,
    load_settings,
    preheater,
)

ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="A deadline (2026-12-02T20:00+08:00, or 3h): before pushing, show per target"
        " whether its quota and rate warm the queue by then, and which videos stay cold;"
        " with --dry-run stop there.",
    ),
]

if TYPE_CHECKING:
    from cdn_preheat.config import Settings


@app.command()
def push(
    video_id: Annotated[str, typer.Argument(help="Your id for the video.")],
    m3u8_url: Annotated[str, typer.Argument(help="URL of its HLS playlist or DASH MPD.")],
    reset: Annotated[bool, typer.Option(help="Forget the video's record and push again.")] = False,
    purge: Annotated[
        bool, typer.Option(help="With --reset: purge the old URLs from the CDN first.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Expand and report; push nothing.")] = False,
    head_first: Annotated[
        str, typer.Option(help="Push the first N segments (or Ns seconds) first; 'fifo' for none.")
    ] = "10",
    wait: Annotated[bool, typer.Option(help="Follow the CDN's tasks to completion.")] = True,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to follow tasks.")] = 600.0,
    verify_after: Annotated[
        bool, typer.Option("--verify", help="Probe a sample at the edge after the tasks finish.")
    ] = False,
    json_out: JsonOption = False,
    strict: StrictOption = False,
    push_all: Annotated[
        bool,
        typer.Option("--all", help="Push every queued video's URLs, not only this video's."),
    ] = False,
    by: ByOption = None,
) -> None:
    """Expand a video, skip what is already preheated, push the rest within quota.

    With CDN_PREHEAT_TARGETS (docs/targets.md): expanded once, pushed to every target.
    """
    from cdn_preheat import render
    from cdn_preheat.cli import _targets
    from cdn_preheat.cli._bars import Bars
    from cdn_preheat.pipeline import HeadFirst
    from cdn_preheat.stopping import STOP

    check_video_id(video_id)
    settings = load_settings()
    head = HeadFirst.parse(head_first)
    if _targets.wanted(settings, by):
        _targets.push_video(
            settings, video_id, m3u8_url, head_first=head_first, wait=wait, purge=purge,
            verify=verify_after,
            wait_timeout=wait_timeout, reset=reset, only_these=not push_all, by=by,
            dry_run=dry_run, strict=strict, json_out=json_out,
        )  # fmt: skip
        return
    with preheater(settings, read_only=dry_run) as engine, Bars(signals=True) as bars:
        result = engine.preheat(
            video_id, m3u8_url, reset=reset, purge=purge, head_first=head, strict=strict,
            dry_run=dry_run, follow=wait, wait_timeout=wait_timeout, verify=verify_after,
            only_this_video=not push_all, stop=STOP, observer=bars,
        )  # fmt: skip
    render.report_push(result, json_out)
    if result.run is not None:
        exit_for(result.run)
    if result.video.interrupted:  # a dry run stopped while the playlists were read
        raise typer.Exit(EXIT_INTERRUPTED)
    exit_if_partial([result.video])


@app.command()
def batch(
    file: Annotated[
        str | None, typer.Argument(help="CSV or JSON lines of video_id,m3u8_url; - for stdin.")
    ] = None,
    reset: Annotated[bool, typer.Option(help="Forget these videos' records first.")] = False,
    head_first: Annotated[
        str,
        typer.Option(help="Push the first N segments (or Ns) of every rendition first; 'fifo'."),
    ] = "10",
    push_now: Annotated[
        bool,
        typer.Option("--push/--queue-only", help="Push after queueing, or leave it to a worker."),
    ] = True,
    wait: Annotated[bool, typer.Option(help="Follow the CDN's tasks to completion.")] = True,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to follow tasks.")] = 600.0,
    json_out: JsonOption = False,
    qiniu_bucket: Annotated[
        str | None, typer.Option(help="Instead of FILE: the top-level playlists of this bucket.")
    ] = None,
    prefix: Annotated[str, typer.Option(help="With --qiniu-bucket: keys under this prefix.")] = "",
    domain: Annotated[
        str | None,
        typer.Option(help="With --qiniu-bucket: host serving the bucket; CDN_HOST by default."),
    ] = None,
    strict: StrictOption = False,
    by: ByOption = None,
    dry_run: Annotated[
        bool, typer.Option(help="With --by: show the feasibility table; push nothing.")
    ] = False,
) -> None:
    """Queue many videos (expanded concurrently), then push them within quota.

    With CDN_PREHEAT_TARGETS (docs/targets.md): each expanded once, pushed to every target.
    """
    from cdn_preheat import render, ui
    from cdn_preheat.cli import _targets
    from cdn_preheat.cli._bars import Bars
    from cdn_preheat.pipeline import HeadFirst
    from cdn_preheat.stopping import STOP

    settings = load_settings()
    head = HeadFirst.parse(head_first)
    if dry_run and by is None:
        from cdn_preheat.errors import InputError

        raise InputError("batch --dry-run goes with --by TIME (the feasibility table).")
    sources, bad = _batch_sources(file, settings, qiniu_bucket, prefix, domain)
    for line in bad:
        ui.error(f"{file}:{line.line}: {line.reason}")
    if _targets.wanted(settings, by) and (push_now or dry_run):
        _targets.push_to_targets(
            settings, sources, head_first=head_first, wait=wait, wait_timeout=wait_timeout,
            reset=reset, only_these=False, by=by, dry_run=dry_run, strict=strict,
            json_out=json_out, bad=bad,
        )  # fmt: skip
        return
    if _targets.wanted(settings, by):
        _targets.queue_only(settings, sources, head_first=head_first, reset=reset, strict=strict,
                            json_out=json_out, bad=bad)  # fmt: skip
        return
    with preheater(settings) as engine:
        run = None
        if push_now:
            # One pipeline: pushing starts with the first video queued when the day's
            # quota covers the catalog, and the tasks are followed while pushing goes on.
            with Bars(signals=True) as bars:
                videos, run = engine.queue_and_drain(
                    sources, reset=reset, head_first=head, strict=strict, stop=STOP,
                    follow=wait, wait_timeout=wait_timeout, observer=bars,
                )  # fmt: skip
        else:
            with Bars(signals=True) as bars:
                videos = engine.queue(
                    sources, reset=reset, head_first=head, strict=strict, observer=bars, stop=STOP
                )
    render.report_batch(videos, bad, run, json_out)
    if run is not None:
        exit_for(run)
    if any(v.interrupted for v in videos):  # --queue-only stopped while expanding
        ui.note("interrupted: the videos queued so far stay queued; run again for the rest.")
        raise typer.Exit(EXIT_INTERRUPTED)
    if bad:
        raise typer.Exit(2)
    if any(v.error or v.partial for v in videos):
        raise typer.Exit(1)  # partial: the other videos (or renditions) were queued


def _read_sources(file: str) -> tuple[list[Any], list[Any]]:
    from cdn_preheat.errors import InputError
    from cdn_preheat.source import BadLine, read_videos

    try:
        if file == "-":
            entries = list(read_videos(sys.stdin))
        else:
            with open(file, encoding="utf-8-sig") as handle:
                entries = list(read_videos(handle))
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise InputError(f"{file} is not UTF-8 text.") from None
    if not entries:
        where = "standard input" if file == "-" else file
        raise InputError(f"{where} holds no videos; give lines of video_id,m3u8_url.")
    bad = [e for e in entries if isinstance(e, BadLine)]
    sources, seen = [], set()
    for entry in entries:
        if isinstance(entry, BadLine):
            continue
        if entry.video_id in seen:
            bad.append(BadLine(entry.line, f"video {entry.video_id!r} appears twice"))
            continue
        seen.add(entry.video_id)
        sources.append(entry)
    return sources, sorted(bad, key=lambda b: b.line)


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Drain what can be pushed now, then exit.")] = False,
    idle: Annotated[float, typer.Option(help="Seconds between looks at an empty queue.")] = 30.0,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to follow tasks per round.")] = 600.0,
) -> None:
    """Drain the queue, follow tasks, sleep past the quota reset, and go on."""
    from cdn_preheat.stopping import on_signals

    settings = load_settings()
    if not State.debug:
        logging.getLogger("cdn_preheat").setLevel(logging.INFO)
    if settings.cdn_preheat_targets:
        from cdn_preheat.cli._targets import work_on_targets

        raise typer.Exit(work_on_targets(settings, once=once, idle=idle, wait_timeout=wait_timeout))
    with preheater(settings) as engine, on_signals() as stop:
        code = engine.work(stop=stop, once=once, idle=idle, wait_timeout=wait_timeout)
    raise typer.Exit(code)


def _batch_sources(
    file: str | None,
    settings: Settings,
    qiniu_bucket: str | None,
    prefix: str,
    domain: str | None,
) -> tuple[list[Any], list[Any]]:
    """Videos from FILE, or the top-level playlists of a Qiniu bucket."""
    from cdn_preheat.errors import InputError

    if qiniu_bucket is None:
        if file is None:
            raise InputError("give a FILE of video_id,m3u8_url lines, or --qiniu-bucket.")
        return _read_sources(file)
    if file is not None:
        raise InputError("give either FILE or --qiniu-bucket, not both.")
    from cdn_preheat._sync import run_coroutine
    from cdn_preheat.app import expand_options
    from cdn_preheat.discover import discover_qiniu_videos
    from cdn_preheat.providers.qiniu import QiniuProvider

    serving = domain or settings.cdn_host
    if not serving:
        raise InputError("--qiniu-bucket needs --domain (or CDN_HOST) to fetch playlists from.")
    with QiniuProvider(settings) as lister:
        sources = run_coroutine(
            discover_qiniu_videos(lister, qiniu_bucket, prefix, serving, expand_options(settings))
        )
    if not sources:
        raise InputError(f"no .m3u8 playlists in bucket {qiniu_bucket} under {prefix!r}.")
    return sources, []
