"""The ``cdn-preheat`` command line: parses arguments, calls the library, renders.

Exit codes: 0 success, 2 bad input or configuration, 3 quota spent with work
still queued, 1 anything else. Errors print as one sentence; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import difflib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.pipeline import RunReport

app = typer.Typer(
    name="cdn-preheat",
    help="Preheat HLS video into CDNs before viewers arrive.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_QUOTA = 3
EXIT_INTERRUPTED = 130
COMMANDS = (
    "push", "expand", "batch", "status", "quota", "worker", "purge", "verify",
    "sandbox", "demo", "stats", "logs", "health", "doctor",
)  # fmt: skip

JsonOption = Annotated[bool, typer.Option("--json", help="Print results as JSON.")]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail the video on a malformed tag or a rendition that cannot be read"
        " (default: warn, skip that rendition, queue the rest, exit 1).",
    ),
]


class State:
    debug = False


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    State.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from cdn_preheat.redact import install_logging_filter

    install_logging_filter()


def _settings(**overrides: Any) -> Settings:
    from cdn_preheat.config import load_settings

    return load_settings(**overrides)


def _ledger(settings: Settings, *, read_only: bool = False) -> Ledger:
    from cdn_preheat.ledger import open_ledger

    return open_ledger(settings, read_only=read_only)


# push -----------------------------------------------------------------------
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
) -> None:
    """Expand a video, skip what is already preheated, push the rest within quota."""
    from cdn_preheat import pipeline, render
    from cdn_preheat.app import expand_options
    from cdn_preheat.hls import expand
    from cdn_preheat.scheduler import utcnow

    _check_video_id(video_id)
    settings = _settings()
    head = pipeline.HeadFirst.parse(head_first)
    if dry_run:
        _dry_run(settings, video_id, m3u8_url, strict=strict, json_out=json_out)
        return

    ledger = _ledger(settings)
    try:
        provider = None
        if reset:
            # Wrong credentials fail here, before anything of the video is erased.
            provider = _provider(settings)
            _live_quota(provider)
        if purge:
            _purge_before_republish(
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
            provider = _provider(settings)
            _live_quota(provider)
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
        _exit_if_partial([queued])
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
    ledger = _ledger(settings, read_only=True)
    try:
        pipeline.count_would_push(ledger, queued, expansion, settings.cdn_preheat_max_age)
    finally:
        ledger.close()
    render.report_push(queued, None, json_out, dry_run=True)
    _exit_if_partial([queued])


def _check_video_id(video_id: str) -> None:
    from cdn_preheat.errors import InputError
    from cdn_preheat.source import video_id_problem

    problem = video_id_problem(video_id)
    if problem is not None:
        raise InputError(f"{problem}; give the id you use for the video, e.g. ep-101.")


def _exit_if_partial(videos: list[Any]) -> None:
    """Exit 1 when renditions of a video were skipped because they could not be read."""
    if any(video.partial for video in videos):
        raise typer.Exit(1)


def _provider(settings: Settings) -> Any:
    from cdn_preheat.providers import make_provider

    return make_provider(settings)


def _live_quota(provider: Any) -> Any:
    """The provider's quota, riding out a flaky API; wrong credentials fail here,
    before anything is written."""
    from cdn_preheat.ratelimit import RateLimiter, call_with_retries

    limiter = RateLimiter(provider.limits.requests_per_second)
    return call_with_retries(provider.quota, limiter, attempts=8)


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


# expand ---------------------------------------------------------------------
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

    settings = _settings()
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


# batch / worker ---------------------------------------------------------------
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
) -> None:
    """Queue many videos (expanded concurrently), then push them within quota."""
    from cdn_preheat import pipeline, render, ui
    from cdn_preheat.app import expand_options

    settings = _settings()
    head = pipeline.HeadFirst.parse(head_first)
    sources, bad = _batch_sources(file, settings, qiniu_bucket, prefix, domain)
    for line in bad:
        ui.error(f"{file}:{line.line}: {line.reason}")
    ledger = _ledger(settings)
    try:
        provider = _provider(settings)
        _live_quota(provider)
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

    settings = _settings()
    if not State.debug:
        logging.getLogger("cdn_preheat").setLevel(logging.INFO)
    ledger = _ledger(settings)
    try:
        with on_signals() as stop:
            code = run_worker(
                ledger,
                _provider(settings),
                settings,
                stop=stop,
                once=once,
                idle=idle,
                wait_timeout=wait_timeout,
            )
    finally:
        ledger.close()
    raise typer.Exit(code)


# status / quota ---------------------------------------------------------------
@app.command()
def status(
    video_id: Annotated[str | None, typer.Argument(help="One video; all when omitted.")] = None,
    json_out: JsonOption = False,
) -> None:
    """What is done, queued, submitted, failed, per video and in total."""
    from cdn_preheat import ui
    from cdn_preheat.errors import InputError
    from cdn_preheat.ledger.base import UrlState

    settings = _settings()
    ledger = _ledger(settings, read_only=True)
    try:
        if video_id is not None and ledger.get_video(video_id) is None:
            raise InputError(f"no video {video_id!r} in the ledger.")
        videos = [v for v in ledger.list_videos() if video_id in (None, v.video_id)]
        states = list(UrlState)
        per_video = {v.video_id: ledger.counts(v.video_id) for v in videos}
        total = ledger.counts(video_id)
        failures = ledger.failures(video_id)
    finally:
        ledger.close()
    if json_out:
        ui.print_json(
            {
                "videos": [
                    {
                        "video_id": v.video_id,
                        "state": str(v.state),
                        "found": v.url_count,
                        **{str(s): per_video[v.video_id].get(s, 0) for s in states},
                    }
                    for v in videos
                ],
                "total": {str(s): total.get(s, 0) for s in states},
                "failures": [
                    {"url": f.url, "state": str(f.state), "error": f.last_error} for f in failures
                ],
            }
        )
        return
    headers = ["video", "state", "found", *[str(s) for s in states]]
    rows = [
        [v.video_id, str(v.state), v.url_count, *[per_video[v.video_id].get(s, 0) for s in states]]
        for v in videos
    ]
    rows.append(["total", "", "", *[total.get(s, 0) for s in states]])
    ui.grid("status", headers, rows)
    for failure in failures:
        ui.note(f"{failure.state}: {failure.url}: {failure.last_error or 'no reason given'}")


@app.command()
def quota(json_out: JsonOption = False) -> None:
    """The provider's quota left today and what the ledger has reserved."""
    from cdn_preheat import ui
    from cdn_preheat.scheduler import quota_day, utcnow

    settings = _settings()
    provider = _provider(settings)
    ledger = _ledger(settings, read_only=True)
    try:
        live = _live_quota(provider)
        offset = settings.cdn_preheat_quota_utc_offset_hours
        if offset is None:
            offset = provider.limits.quota_utc_offset_hours
        day = quota_day(utcnow(), offset)
        book = ledger.quota_day(provider.name, provider.area, day)
    finally:
        ledger.close()
        provider.close()
    total, available, source = live.total, live.available, "provider"
    if available is None and book is not None and book.limit is not None:
        # No quota API (Qiniu): the figures the ledger learned from the CDN's
        # answers today (quotaDay/surplusDay of each prefetch answer).
        total, available, source = book.limit, book.remaining, "ledger"
    data = {
        "provider": provider.name,
        "area": provider.area,
        "day": day,
        "batch": live.batch or provider.limits.batch_size,
        "total": total,
        "available": available,
        "used_today": book.used if book else None,
        "reserved_in_flight": book.inflight if book else 0,
        "source": source if available is not None else "unknown until the first push today",
    }
    if json_out:
        ui.print_json(data)
    else:
        ui.table(f"{provider.name} quota ({provider.area})", data)


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
    """
    from cdn_preheat import pipeline, render, ui
    from cdn_preheat.errors import InputError
    from cdn_preheat.verify import (
        gate,
        missed_urls,
        options_from_settings,
        probe_count,
        verify_urls,
        video_targets,
    )

    settings = _settings()
    ledger = _ledger(settings)
    try:
        if ledger.get_video(video_id) is None:
            raise InputError(f"no video {video_id!r} in the ledger.")
        options = options_from_settings(settings, edge_ips=edge or (), vendor=vendor)
        targets = video_targets(ledger, video_id, None if all_urls else sample, seed=seed)
        with ui.progress("probing", probe_count(targets, options)) as advance:
            report = verify_urls(targets, options=options, on_progress=advance)
        requeued = 0
        if requeue:
            provider = _provider(settings)
            requeued = pipeline.requeue_missed(
                ledger, provider.name, provider.area, video_id, missed_urls(report)
            )
    finally:
        ledger.close()
    outcome = gate(report, min_hit_ratio)
    render.report_verify(video_id, report, requeued, json_out, outcome)
    if not outcome.passed:
        raise typer.Exit(1)


@app.command()
def doctor(
    sample_url: Annotated[
        str | None,
        typer.Option("--sample-url", help="A playlist URL the origin must answer (expanded)."),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Check the configured CDN account without spending quota; exit 0 when all pass.

    Credentials and permissions, the domain (exists, online, in the area),
    quota and batch size, the origin (--sample-url) and the clock skew that
    signatures tolerate; one line per check.
    """
    from cdn_preheat import ui
    from cdn_preheat.doctor import render_lines, run_doctor

    report = run_doctor(_settings(), sample_url=sample_url)
    if json_out:
        ui.print_json(report.as_dict())
    else:
        for line in render_lines(report):
            ui.out.print(line, markup=False, highlight=False)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def health(json_out: JsonOption = False) -> None:
    """Exit 0 when the settings are valid and the ledger answers (no CDN call)."""
    from cdn_preheat import ui
    from cdn_preheat.ledger import open_ledger

    settings = _settings()
    ledger = open_ledger(settings, retries=0)  # one attempt: a health check must answer fast
    try:
        ledger.get_video("cdn-preheat-health-probe")  # one indexed round trip
    finally:
        ledger.close()
    if json_out:
        ui.print_json({"ok": True, "store": settings.store_kind})


# sandbox / demo ---------------------------------------------------------------
@app.command()
def sandbox(
    port: Annotated[
        int, typer.Option(help="First port; the servers take consecutive ports. 0: any free.")
    ] = 0,
    videos: Annotated[int, typer.Option(help="Generated videos demo-1..demo-N.")] = 3,
    segments: Annotated[int, typer.Option(help="Segments per variant.")] = 20,
    faults: Annotated[
        str,
        typer.Option(
            help="Fault chances on every API, e.g. 5xx=0.1,drop=0.1,lost=0.05,slow=0.05,rate=0.1"
            " (lost: done but unanswered; slow: answered --slow-ms late)."
        ),
    ] = "",
    latency_ms: Annotated[float, typer.Option(help="Milliseconds added to every API answer.")] = 0,
    slow_ms: Annotated[float, typer.Option(help="How late a 'slow' answer comes.")] = 3000,
    quota: Annotated[
        str, typer.Option(help="Daily prefetch quota per vendor, e.g. tencent=1000,qiniu=100.")
    ] = "",
    rate: Annotated[
        str, typer.Option(help="Request rate per vendor, e.g. tencent=20,aliyun=50,qiniu=240.")
    ] = "",
) -> None:
    """Run the local emulators (HLS origin, CDN APIs, edge) in the foreground.

    Each API answers GET /_sandbox/received with what it accepted. The Qiniu
    account has a bucket, sandbox-vod, holding the generated videos' playlists.
    """
    from cdn_preheat import ui
    from cdn_preheat.sandbox.server import (
        DEMO_BUCKET,
        Sandbox,
        parse_faults,
        parse_per_vendor,
        run_forever,
    )

    injected = parse_faults(faults, latency_ms=latency_ms, slow_ms=slow_ms)
    quotas, rates = parse_per_vendor(quota, "--quota"), parse_per_vendor(rate, "--rate")
    box = Sandbox.from_settings(
        _settings(), videos=videos, segments=segments, first_port=port, faults=injected
    )
    box.set_limits(quota=quotas, rate=rates)
    box.fill_demo_bucket(DEMO_BUCKET)
    run_forever(box, lambda endpoints: ui.print_json({**endpoints, "qiniu_bucket": DEMO_BUCKET}))


@app.command()
def demo(
    provider: Annotated[str, typer.Option(help="Which emulated CDN: tencent, qiniu, aliyun.")] = (
        "tencent"
    ),
    videos: Annotated[int, typer.Option(help="How many generated videos to preheat.")] = 3,
    db: Annotated[
        Path | None, typer.Option(help="Ledger file to keep; a temporary one by default.")
    ] = None,
) -> None:
    """Start the sandbox and preheat a few generated videos through the real code path."""
    from cdn_preheat.demo import run_demo

    run_demo(provider=provider, videos=videos, db=db)


# purge / stats / logs (issue 4) ---------------------------------------------
if TYPE_CHECKING:
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
    settings = _settings()
    ledger = _ledger(settings)
    try:
        if video is not None:
            targets = list(dict.fromkeys([*targets, *purge.video_urls(ledger, video)]))
        if not targets and not directories:
            raise InputError("give URLs to purge, --dir DIR or --video VIDEO_ID.")
        provider = _provider(settings)
        try:
            report = _purge_run(
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


def _purge_run(
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


def _purge_before_republish(
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
    provider = _provider(settings)
    try:
        report = _purge_run(
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


@app.command()
def stats(
    from_day: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD (UTC+8).")],
    to_day: Annotated[str, typer.Option("--to", help="Last day, included.")],
    domain: Annotated[str | None, typer.Option(help="CDN domain; CDN_HOST by default.")] = None,
    granularity: Annotated[str, typer.Option(help="5min, hour or day.")] = "hour",
    plot: Annotated[
        Path | None, typer.Option(help="Also draw a PNG chart here (needs the plot extra).")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Flux and bandwidth of a CDN domain per interval, as the provider reports them."""
    from cdn_preheat import report as traffic
    from cdn_preheat import ui

    first = traffic.parse_day(from_day, "--from")
    last = traffic.parse_day(to_day, "--to")
    if plot is not None:
        traffic.require_matplotlib()
    settings = _settings()
    name = _domain(domain, settings)
    provider = _provider(settings)
    try:
        result = traffic.traffic_report(provider, name, first, last, granularity)
    finally:
        provider.close()
    if plot is not None:
        traffic.plot_traffic(result, plot)
    if json_out:
        ui.print_json(traffic.report_dict(result) | {"plot": str(plot) if plot else None})
        return
    shown = result.rows[:STATS_TABLE_ROWS]
    ui.grid(
        f"{name} on {result.provider}, per {result.granularity} (UTC+8)",
        ["time", "flux", "bandwidth"],
        [
            [
                f"{row.time.astimezone(traffic.UTC8):%Y-%m-%d %H:%M}",
                traffic.human(row.flux_bytes, "B"),
                traffic.human(row.bandwidth_bps, "bit/s"),
            ]
            for row in shown
        ],
    )
    if len(result.rows) > len(shown):
        ui.note(f"showing {len(shown)} of {len(result.rows)} intervals; --json has them all.")
    peak = result.peak
    ui.table(
        "traffic summary",
        {
            "intervals": len(result.rows),
            "total flux": traffic.human(result.total_bytes, "B"),
            "peak bandwidth": traffic.human(peak.bandwidth_bps if peak else None, "bit/s"),
            "peak at": f"{peak.time.astimezone(traffic.UTC8):%Y-%m-%d %H:%M}" if peak else None,
        },
    )
    if plot is not None:
        ui.note(f"chart written to {plot}")


STATS_TABLE_ROWS = 400  # a longer table is unreadable; --json and --plot have every row


@app.command()
def logs(
    domain: Annotated[str | None, typer.Option(help="CDN domain; CDN_HOST by default.")] = None,
    date: Annotated[
        str | None, typer.Option(help="Day, YYYY-MM-DD (UTC+8); yesterday by default.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Download links of a CDN domain's access logs for one day."""
    import datetime as dt

    from cdn_preheat import report as traffic
    from cdn_preheat import ui

    if date is None:
        day = dt.datetime.now(traffic.UTC8).date() - dt.timedelta(days=1)
    else:
        day = traffic.parse_day(date, "--date")
    settings = _settings()
    name = _domain(domain, settings)
    provider = _provider(settings)
    try:
        files = traffic.access_logs(provider, name, day)
    finally:
        provider.close()
    if json_out:
        ui.print_json(
            {
                "domain": name,
                "date": day.isoformat(),
                "logs": [
                    {
                        "name": f.name,
                        "start": f.start.isoformat(),
                        "end": f.end.isoformat(),
                        "area": f.area,
                        "size": f.size,
                        "url": f.url,
                    }
                    for f in files
                ],
            }
        )
        return
    ui.grid(
        f"{name} access logs, {day} (UTC+8)",
        ["start", "end", "area", "size", "name"],
        [
            [
                f"{f.start.astimezone(traffic.UTC8):%H:%M}",
                f"{f.end.astimezone(traffic.UTC8):%H:%M}",
                f.area,
                traffic.human(f.size, "B"),
                f.name,
            ]
            for f in files
        ],
    )
    # Links go to stdout, one a line, so `cdn-preheat logs ... | xargs -n1 curl -O` works.
    sys.stdout.write("".join(f"{f.url}\n" for f in files))
    if not files:
        ui.note(f"no access logs for {name} on {day}.")


def _domain(domain: str | None, settings: Settings) -> str:
    from cdn_preheat.errors import InputError

    name = (domain or settings.cdn_host or "").strip()
    if not name:
        raise InputError("give --domain (or set CDN_HOST).")
    return name


# entry point ----------------------------------------------------------------
ROOT_FLAGS = ("--debug",)


def _legacy_form(args: list[str]) -> list[str]:
    """``cdn-preheat VIDEO_ID M3U8_URL [--reset]`` (the old main.py) means ``push``.

    Only when the first word is neither a command nor close to one (a typo such
    as ``expnad`` must never push) and the second is an http(s) URL. A word of
    letters only that is close to a command is refused as a typo.
    """
    from cdn_preheat.errors import InputError

    flags = 0
    while flags < len(args) and args[flags] in ROOT_FLAGS:
        flags += 1
    rest = args[flags:]
    if not rest or rest[0].startswith("-") or rest[0] in COMMANDS:
        return args
    first = rest[0]
    # Command names are letters only; a word with digits or separators (demo-3,
    # ep_101) is a video id, however close its letters are to a command.
    close = difflib.get_close_matches(first.lower(), COMMANDS, n=3, cutoff=0.6)
    if close and first.isalpha():
        options = " or ".join(repr(name) for name in close)
        raise InputError(f"no such command {first!r}; did you mean {options}?")
    if len(rest) >= 2 and _is_http_url(rest[1]):
        return [*args[:flags], "push", *rest]
    return args


def _is_http_url(text: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(text.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; usage errors exit 2 (Typer), PreheatErrors print one sentence.

    With ``--debug`` the traceback is printed first (secrets masked) and the exit
    code stays the one the error promises.
    """
    from cdn_preheat import redact
    from cdn_preheat.errors import PreheatError

    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in raw[: next((i for i, a in enumerate(raw) if a not in ROOT_FLAGS), 0)]
    try:
        app(args=_legacy_form(raw), prog_name="cdn-preheat")
    except PreheatError as exc:
        _fail(redact.redact(str(exc)), exc.exit_code, debug=debug or State.debug)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug or an unforeseen failure: still one sentence
        detail = redact.redact(str(exc)).strip().splitlines()
        text = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
        _fail(
            f"unexpected failure ({text}); run with --debug for the traceback.",
            1,
            debug=debug or State.debug,
        )


def _fail(message: str, code: int, *, debug: bool) -> None:
    import traceback

    from cdn_preheat import redact, ui

    if debug:
        sys.stderr.write(redact.redact(traceback.format_exc()))
        sys.stderr.flush()
    ui.error(message)
    sys.exit(code)
