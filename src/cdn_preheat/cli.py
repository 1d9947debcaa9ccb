"""The ``cdn-preheat`` command line: parses arguments, calls the library, renders.

Exit codes: 0 success, 2 bad input or configuration, 3 quota spent with work
still queued, 1 anything else. Errors print as one sentence; ``--debug``
shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.pipeline import QueuedVideo, RunReport

app = typer.Typer(
    name="cdn-preheat",
    help="Preheat HLS video into CDNs before viewers arrive.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_QUOTA = 3
COMMANDS = (
    "push", "expand", "batch", "status", "quota", "worker", "purge", "verify",
    "sandbox", "demo", "stats", "logs",
)  # fmt: skip

JsonOption = Annotated[bool, typer.Option("--json", help="Print results as JSON.")]


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


def _settings(**overrides: Any) -> Settings:
    from cdn_preheat.config import load_settings

    return load_settings(**overrides)


def _ledger(settings: Settings) -> Ledger:
    from cdn_preheat.ledger import open_ledger

    return open_ledger(settings)


# push -----------------------------------------------------------------------
@app.command()
def push(
    video_id: Annotated[str, typer.Argument(help="Your id for the video.")],
    m3u8_url: Annotated[str, typer.Argument(help="URL of its master or media playlist.")],
    reset: Annotated[bool, typer.Option(help="Forget the video's record and push again.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Expand and report; push nothing.")] = False,
    head_first: Annotated[
        str, typer.Option(help="Push the first N segments (or Ns seconds) first; 'fifo' for none.")
    ] = "10",
    wait: Annotated[bool, typer.Option(help="Follow the CDN's tasks to completion.")] = True,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to follow tasks.")] = 600.0,
    json_out: JsonOption = False,
) -> None:
    """Expand a video, skip what is already preheated, push the rest within quota."""
    from cdn_preheat import pipeline
    from cdn_preheat.app import expand_options
    from cdn_preheat.hls import expand
    from cdn_preheat.scheduler import utcnow

    settings = _settings()
    head = pipeline.HeadFirst.parse(head_first)
    if dry_run:
        expansion = expand(m3u8_url, expand_options(settings))
        queued = pipeline.QueuedVideo(video_id, m3u8_url, found=len(expansion.urls))
        queued.skipped.update(pipeline.skip_reason_key(s.reason) for s in expansion.skipped)
        queued.live = expansion.is_live
        _report_push(queued, None, json_out, dry_run=True)
        return

    ledger = _ledger(settings)
    try:
        if reset:
            ledger.reset_video(video_id)
        video = ledger.get_video(video_id)
        if pipeline.is_preheated(video, utcnow(), settings.cdn_preheat_max_age):
            queued = pipeline.QueuedVideo(video_id, m3u8_url, already_preheated=True)
            queued.found = video.url_count if video else 0
            _report_push(queued, None, json_out)
            return
        provider = _provider(settings)
        provider.quota()  # fail on wrong credentials before anything is written
        expansion = expand(m3u8_url, expand_options(settings))
        queued = pipeline.queue_expansion(
            ledger, provider.name, provider.area, video_id, expansion,
            head_first=head, max_age=settings.cdn_preheat_max_age,
        )  # fmt: skip
        report = _run(ledger, provider, settings, wait=wait, wait_timeout=wait_timeout)
        pipeline.refresh_video_state(ledger, video_id)
        _report_push(queued, report, json_out)
        _exit_for(report)
    finally:
        ledger.close()


def _provider(settings: Settings) -> Any:
    from cdn_preheat.providers import make_provider

    return make_provider(settings)


def _run(
    ledger: Ledger, provider: Any, settings: Settings, *, wait: bool, wait_timeout: float
) -> RunReport:
    from cdn_preheat import ui
    from cdn_preheat.app import run_options
    from cdn_preheat.ledger.base import UrlState
    from cdn_preheat.pipeline import run_queue

    pending = ledger.counts().get(UrlState.PENDING, 0)
    options = run_options(settings, wait=wait, wait_timeout=wait_timeout)
    with ui.progress("pushing", pending, enabled=pending > 0) as advance:
        return run_queue(ledger, provider, options, on_progress=advance)


def _exit_for(report: RunReport) -> None:
    if report.stopped_by is not None:
        raise report.stopped_by
    if report.quota_exhausted and report.pending:
        raise typer.Exit(EXIT_QUOTA)


def _video_dict(queued: QueuedVideo) -> dict[str, Any]:
    return {
        "video_id": queued.video_id,
        "m3u8_url": queued.m3u8_url,
        "already_preheated": queued.already_preheated,
        "found": queued.found,
        "queued": queued.queued,
        "already_done": queued.already_done,
        "already_queued": queued.already_queued,
        "skipped": dict(queued.skipped),
        "live": queued.live,
        "error": queued.error,
    }


def _run_dict(report: RunReport) -> dict[str, Any]:
    return {
        "pushed": report.submitted,
        "invalid": report.invalid,
        "done": report.done,
        "failed": report.failed,
        "pending": report.pending,
        "in_flight": report.in_flight,
        "quota_exhausted": report.quota_exhausted,
        "quota_left_today": report.quota_left_today,
        "requests": report.requests,
        "rate_limited": report.rate_limited,
        "transient_errors": report.transient,
        "stopped_by": str(report.stopped_by) if report.stopped_by else None,
    }


def _push_dict(queued: QueuedVideo, report: RunReport | None) -> dict[str, Any]:
    return _video_dict(queued) | (_run_dict(report) if report is not None else {})


def _report_push(
    queued: QueuedVideo, report: RunReport | None, json_out: bool, *, dry_run: bool = False
) -> None:
    from cdn_preheat import ui

    data = _push_dict(queued, report)
    if json_out:
        ui.print_json(data)
        return
    if queued.already_preheated:
        ui.note(f"{queued.video_id} is already preheated; use --reset to push it again.")
        return
    if queued.live:
        ui.note(f"{queued.video_id}: live playlist (no EXT-X-ENDLIST); pushing what it lists now.")
    rows: dict[str, Any] = {"URLs found": queued.found}
    if dry_run:
        rows["would push (at most)"] = queued.found
    else:
        rows["already preheated"] = queued.already_done
        rows["already queued"] = queued.already_queued
    for reason, count in sorted(queued.skipped.items()):
        rows[f"skipped: {reason}"] = count
    if report is not None:
        rows.update(
            {
                "pushed": report.submitted,
                "done": report.done,
                "invalid": report.invalid,
                "failed": report.failed,
                "still queued": report.pending,
                "quota left today": report.quota_left_today,
            }
        )
    ui.table(f"{queued.video_id}{' (dry run: nothing pushed)' if dry_run else ''}", rows)
    if report is not None and report.quota_exhausted and report.pending:
        ui.note("The daily quota is spent; run again after it resets to push the rest.")


# expand ---------------------------------------------------------------------
@app.command()
def expand(
    m3u8_url: Annotated[str, typer.Argument(help="URL of a master or media playlist.")],
    cdn_host: Annotated[
        str | None, typer.Option(help="Rewrite the playlist host to this CDN host.")
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Print every URL a player may fetch, one a line, playlists first."""
    from cdn_preheat import ui
    from cdn_preheat.app import expand_options
    from cdn_preheat.hls import expand as expand_playlist

    settings = _settings()
    expansion = expand_playlist(m3u8_url, expand_options(settings, cdn_host=cdn_host))
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
            }
        )
        return
    sys.stdout.write("".join(f"{u.url}\n" for u in expansion.urls))
    for skipped in expansion.skipped:
        ui.note(f"skipped {skipped.url}: {skipped.reason}")
    if expansion.is_live:
        ui.note("note: live playlist (no EXT-X-ENDLIST)")


# batch / worker ---------------------------------------------------------------
@app.command()
def batch(
    file: Annotated[
        str, typer.Argument(help="CSV or JSON lines of video_id,m3u8_url; - for stdin.")
    ],
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
) -> None:
    """Queue many videos (expanded concurrently), then push them within quota."""
    from cdn_preheat import pipeline, ui
    from cdn_preheat.app import expand_options

    settings = _settings()
    head = pipeline.HeadFirst.parse(head_first)
    sources, bad = _read_sources(file)
    for line in bad:
        ui.error(f"{file}:{line.line}: {line.reason}")
    ledger = _ledger(settings)
    try:
        provider = _provider(settings)
        provider.quota()  # fail on wrong credentials before anything is written
        with ui.progress("expanding", len(sources)) as advance:
            videos = pipeline.queue_videos(
                ledger, provider.name, provider.area, sources, expand_options(settings),
                head_first=head, max_age=settings.cdn_preheat_max_age, reset=reset,
                on_video=lambda video: advance(1),
            )  # fmt: skip
        report = None
        if push_now:
            report = _run(ledger, provider, settings, wait=wait, wait_timeout=wait_timeout)
            pipeline.refresh_states(ledger, [v.video_id for v in videos if v.error is None])
    finally:
        ledger.close()
    _report_batch(videos, bad, report, json_out)
    if report is not None:
        _exit_for(report)
    if bad or any(v.error for v in videos):
        raise typer.Exit(2)


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


def _report_batch(
    videos: list[Any], bad: list[Any], report: RunReport | None, json_out: bool
) -> None:
    from cdn_preheat import ui

    if json_out:
        ui.print_json(
            {
                "videos": [_video_dict(video) for video in videos],
                "bad_lines": [{"line": b.line, "reason": b.reason} for b in bad],
                "run": _run_dict(report) if report is not None else None,
            }
        )
        return
    rows = []
    for video in videos:
        state = (
            "already preheated"
            if video.already_preheated
            else f"failed: {video.error}"
            if video.error
            else "queued"
        )
        rows.append(
            [
                video.video_id,
                video.found,
                video.queued,
                video.already_done,
                sum(video.skipped.values()),
                state,
            ]
        )
    ui.grid("videos", ["video", "URLs", "queued", "already done", "skipped", "result"], rows)
    if report is not None:
        ui.table(
            "push",
            {
                "pushed": report.submitted,
                "done": report.done,
                "invalid": report.invalid,
                "failed": report.failed,
                "still queued": report.pending,
                "quota left today": report.quota_left_today,
            },
        )
        if report.quota_exhausted and report.pending:
            ui.note(
                "The daily quota is spent; `cdn-preheat worker` pushes the rest after the reset."
            )


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Drain what can be pushed now, then exit.")] = False,
    idle: Annotated[float, typer.Option(help="Seconds between looks at an empty queue.")] = 30.0,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to follow tasks per round.")] = 600.0,
) -> None:
    """Drain the queue, follow tasks, sleep past the quota reset, and go on."""
    import signal
    import threading

    from cdn_preheat.worker import run_worker

    settings = _settings()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if not State.debug:
        logging.getLogger("cdn_preheat").setLevel(logging.INFO)
    ledger = _ledger(settings)
    try:
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
    ledger = _ledger(settings)
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
    ledger = _ledger(settings)
    try:
        live = provider.quota()
        offset = settings.cdn_preheat_quota_utc_offset_hours
        if offset is None:
            offset = provider.limits.quota_utc_offset_hours
        day = quota_day(utcnow(), offset)
        book = ledger.quota_day(provider.name, provider.area, day)
    finally:
        ledger.close()
        provider.close()
    data = {
        "provider": provider.name,
        "area": provider.area,
        "day": day,
        "batch": live.batch or provider.limits.batch_size,
        "total": live.total,
        "available": live.available,
        "reserved_in_flight": book.inflight if book else 0,
    }
    if json_out:
        ui.print_json(data)
    else:
        ui.table(f"{provider.name} quota ({provider.area})", data)


# sandbox / demo ---------------------------------------------------------------
@app.command()
def sandbox(
    port: Annotated[
        int, typer.Option(help="First port; the servers take consecutive ports. 0: any free.")
    ] = 0,
    videos: Annotated[int, typer.Option(help="Generated videos demo-1..demo-N.")] = 3,
    segments: Annotated[int, typer.Option(help="Segments per variant.")] = 20,
) -> None:
    """Run the local emulators (HLS origin, CDN APIs, edge) in the foreground."""
    from cdn_preheat import ui
    from cdn_preheat.sandbox.server import Sandbox, run_forever

    box = Sandbox.from_settings(_settings(), videos=videos, segments=segments, first_port=port)
    run_forever(box, ui.print_json)


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


# entry point ----------------------------------------------------------------
def _legacy_form(args: list[str]) -> list[str]:
    """``cdn-preheat VIDEO_ID M3U8_URL [--reset]`` (the old main.py) means ``push``."""
    positional = [a for a in args if not a.startswith("-")]
    if len(positional) >= 2 and positional[0] not in COMMANDS and args[0] == positional[0]:
        return ["push", *args]
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; usage errors exit 2 (Typer), PreheatErrors print one sentence."""
    from cdn_preheat.errors import PreheatError

    args = _legacy_form(list(sys.argv[1:] if argv is None else argv))
    try:
        app(args=args, prog_name="cdn-preheat")
    except PreheatError as exc:
        if State.debug:
            raise
        from cdn_preheat import ui

        ui.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
