"""``push``, ``batch`` and ``worker``: queue videos and push them within quota."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cdn_preheat.cli._common import (
    EXIT_INTERRUPTED,
    EXIT_QUOTA,
    JsonOption,
    State,
    StrictOption,
    app,
    check_video_id,
    exit_if_partial,
    live_quota,
    load_settings,
    open_ledger,
    open_provider,
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
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.pipeline import RunReport


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
    from cdn_preheat import pipeline, render
    from cdn_preheat.app import expand_options
    from cdn_preheat.cli import _targets
    from cdn_preheat.hls import expand
    from cdn_preheat.scheduler import utcnow

    check_video_id(video_id)
    settings = load_settings()
    head = pipeline.HeadFirst.parse(head_first)
    if _targets.wanted(settings, by):
        _targets.push_video(
            settings, video_id, m3u8_url, head_first=head, wait=wait, purge=purge,
            wait_timeout=wait_timeout, reset=reset, only_these=not push_all, by=by,
            dry_run=dry_run, strict=strict, json_out=json_out,
        )  # fmt: skip
        return
    if dry_run:
        _dry_run(settings, video_id, m3u8_url, strict=strict, json_out=json_out)
        return

    ledger = open_ledger(settings)
    try:
        provider = None
        if reset:
            # Wrong credentials fail here, before anything of the video is erased.
            provider = open_provider(settings)
            live_quota(provider)
        if purge:
            from cdn_preheat.cli.purge import purge_before_republish

            purge_before_republish(
                ledger, settings, video_id, reset=reset, wait_timeout=wait_timeout
            )
        if reset:
            ledger.reset_video(video_id)
        video = ledger.get_video(video_id)
        if pipeline.is_preheated(video, utcnow(), settings.cdn_preheat_max_age):
            queued = pipeline.QueuedVideo(video_id, m3u8_url, already_preheated=True)
            queued.found = video.url_count if video else 0
            render.report_push(queued, None, json_out)
            return
        if provider is None:
            provider = open_provider(settings)
            live_quota(provider)
        expansion = expand(m3u8_url, expand_options(settings, strict=strict))
        queued = pipeline.queue_expansion(
            ledger, provider.name, provider.area, video_id, expansion,
            head_first=head, max_age=settings.cdn_preheat_max_age,
        )  # fmt: skip
        report = _run(
            ledger, provider, settings, wait=wait, wait_timeout=wait_timeout,
            video_id=None if push_all else video_id,
        )  # fmt: skip
        if push_all:
            # The other videos pushed on the way are brought up to date too, as by `worker`.
            pipeline.refresh_states(ledger, [v.video_id for v in ledger.list_videos()])
        pipeline.refresh_video_state(ledger, video_id)
        if verify_after and report.stopped_by is None and not report.interrupted:
            from cdn_preheat.verify import options_from_settings, verify_video

            checked = verify_video(ledger, video_id, 20, options_from_settings(settings))
            queued.hit_ratio = checked.overall.ratio
        render.report_push(queued, report, json_out)
        _exit_for(report, ledger, [video_id])
        exit_if_partial([queued])
    finally:
        ledger.close()


def _dry_run(
    settings: Settings, video_id: str, m3u8_url: str, *, strict: bool, json_out: bool
) -> None:
    """``push --dry-run``: expand, count what a push would send (ledger read-only)."""
    from cdn_preheat import pipeline, render
    from cdn_preheat.app import expand_options
    from cdn_preheat.hls import expand

    expansion = expand(m3u8_url, expand_options(settings, strict=strict))
    queued = pipeline.describe_expansion(video_id, expansion)
    ledger = open_ledger(settings, read_only=True)
    try:
        pipeline.count_would_push(ledger, queued, expansion, settings.cdn_preheat_max_age)
    finally:
        ledger.close()
    render.report_push(queued, None, json_out, dry_run=True)
    exit_if_partial([queued])


def _run(
    ledger: Ledger,
    provider: Any,
    settings: Settings,
    *,
    wait: bool,
    wait_timeout: float,
    video_id: str | None = None,
) -> RunReport:
    """Push what is queued (``video_id``: only that video's URLs), then follow the tasks."""
    from cdn_preheat import ui
    from cdn_preheat.app import run_options
    from cdn_preheat.ledger.base import UrlState
    from cdn_preheat.pipeline import run_queue
    from cdn_preheat.stopping import on_signals

    pending = ledger.counts(video_id).get(UrlState.PENDING, 0)
    options = run_options(settings, wait=wait, wait_timeout=wait_timeout)
    notice = "stopping: settling the batches in flight (press Ctrl-C again to quit at once)"
    with (
        on_signals(notice) as stop,
        ui.progress("pushing", pending, enabled=pending > 0) as advance,
    ):

        def following(open_tasks: int, totals: Any) -> None:
            # The bar goes on while the CDN works: settled URLs of those pushed.
            settled = totals.done + totals.failed + totals.invalid
            advance.update(
                f"following {open_tasks:,} tasks: {totals.done:,} done, "
                f"{totals.still_processing:,} processing",
                completed=settled,
                total=max(settled + totals.still_processing, 1),
            )

        return run_queue(
            ledger, provider, options, on_progress=advance, on_tracking=following, stop=stop,
            video_id=video_id,
        )  # fmt: skip


def _exit_for(report: RunReport, ledger: Ledger, video_ids: list[str]) -> None:
    from cdn_preheat import ui
    from cdn_preheat.ledger.base import UrlState, VideoState

    if report.interrupted:
        ui.note(
            f"interrupted: the batches in flight were settled; {report.pending} URLs stay"
            " queued for the next run."
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if report.stopped_by is not None:
        raise report.stopped_by
    if report.quota_exhausted and report.pending:
        raise typer.Exit(EXIT_QUOTA)
    reserved = sum(ledger.counts(video_id).get(UrlState.RESERVED, 0) for video_id in video_ids)
    if reserved:
        # Held by another run, or by one that was killed: not done, whatever else went well.
        ui.note(
            f"{reserved} URLs are reserved by another run (or one that was killed) and were"
            " not pushed by this one; a dead run's reservation is reconciled once its lease"
            " (CDN_PREHEAT_LEASE_SECONDS) expires: run again then."
        )
        raise typer.Exit(1)
    failed = sum(ledger.counts(video_id).get(UrlState.FAILED, 0) for video_id in video_ids)
    if failed:
        ui.note(f"{failed} URLs could not be prefetched after every attempt; see status.")
        raise typer.Exit(1)
    lost = [v for v in video_ids if (r := ledger.get_video(v)) and r.state is VideoState.FAILED]
    if lost:
        ui.note(f"every URL of {', '.join(lost)} was refused as invalid; see status.")
        raise typer.Exit(1)


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
    from cdn_preheat import pipeline, render, ui
    from cdn_preheat.app import expand_options
    from cdn_preheat.cli import _targets

    settings = load_settings()
    head = pipeline.HeadFirst.parse(head_first)
    if dry_run and by is None:
        from cdn_preheat.errors import InputError

        raise InputError("batch --dry-run goes with --by TIME (the feasibility table).")
    sources, bad = _batch_sources(file, settings, qiniu_bucket, prefix, domain)
    for line in bad:
        ui.error(f"{file}:{line.line}: {line.reason}")
    if _targets.wanted(settings, by) and (push_now or dry_run):
        _targets.push_to_targets(
            settings, sources, head_first=head, wait=wait, wait_timeout=wait_timeout,
            reset=reset, only_these=False, by=by, dry_run=dry_run, strict=strict,
            json_out=json_out, bad=bad,
        )  # fmt: skip
        return
    if _targets.wanted(settings, by):
        _targets.queue_only(settings, sources, head_first=head, reset=reset, strict=strict,
                            json_out=json_out, bad=bad)  # fmt: skip
        return
    ledger = open_ledger(settings)
    try:
        provider = open_provider(settings)
        live_quota(provider)
        with ui.progress("expanding", len(sources)) as advance:
            videos = pipeline.queue_videos(
                ledger, provider.name, provider.area, sources,
                expand_options(settings, strict=strict),
                head_first=head, max_age=settings.cdn_preheat_max_age, reset=reset,
                on_video=lambda video: advance(1),
            )  # fmt: skip
        report = None
        queued_ids = [v.video_id for v in videos if v.error is None]
        if push_now:
            report = _run(ledger, provider, settings, wait=wait, wait_timeout=wait_timeout)
            pipeline.refresh_states(ledger, queued_ids)
        render.report_batch(videos, bad, report, json_out)
        if report is not None:
            _exit_for(report, ledger, queued_ids)
    finally:
        ledger.close()
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
    from cdn_preheat.worker import run_worker

    settings = load_settings()
    if not State.debug:
        logging.getLogger("cdn_preheat").setLevel(logging.INFO)
    ledger = open_ledger(settings)
    try:
        with on_signals() as stop:
            code = run_worker(
                ledger,
                open_provider(settings),
                settings,
                stop=stop,
                once=once,
                idle=idle,
                wait_timeout=wait_timeout,
            )
    finally:
        ledger.close()
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
    from cdn_preheat.app import expand_options
    from cdn_preheat.discover import discover_qiniu_videos
    from cdn_preheat.providers.qiniu import QiniuProvider

    serving = domain or settings.cdn_host
    if not serving:
        raise InputError("--qiniu-bucket needs --domain (or CDN_HOST) to fetch playlists from.")
    lister = QiniuProvider(settings)
    try:
        sources = discover_qiniu_videos(
            lister, qiniu_bucket, prefix, serving, expand_options(settings)
        )
    finally:
        lister.close()
    if not sources:
        raise InputError(f"no .m3u8 playlists in bucket {qiniu_bucket} under {prefix!r}.")
    return sources, []
