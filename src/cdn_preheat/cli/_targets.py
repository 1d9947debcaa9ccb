"""The CLI side of targets (docs/targets.md): push, batch, status and quota per target.

``push``/``batch`` come here when ``CDN_PREHEAT_TARGETS`` names a targets file, or
when ``--by`` asks for the feasibility table; the single-provider flow stays as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from cdn_preheat.cli._common import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from cdn_preheat import (
        Feasibility,
        Settings,
        TargetsPreheater,
        TargetsPurge,
        TargetsRun,
        TargetSummary,
        TargetsVerify,
    )
    from cdn_preheat.source import VideoSource


def wanted(settings: Settings, by: str | None) -> bool:
    """Whether a push goes through targets: a targets file, or a deadline to check."""
    return bool(settings.cdn_preheat_targets) or by is not None


def engine(settings: Settings, *, read_only: bool = False) -> TargetsPreheater:
    """The library's targets preheater; commands use it in a ``with`` block."""
    from cdn_preheat import TargetsPreheater

    return TargetsPreheater.from_settings(settings, read_only=read_only)


def push_video(
    settings: Settings, video_id: str, m3u8_url: str, *, purge: bool, **options: Any
) -> None:
    """``push VIDEO URL`` over targets (``--reset --purge``: purge every target first)."""
    push_to_targets(settings, [(video_id, m3u8_url)], purge=purge, **options)


def push_to_targets(
    settings: Settings,
    sources: Sequence[VideoSource | tuple[str, str]],
    *,
    head_first: str,
    wait: bool,
    wait_timeout: float,
    reset: bool,
    only_these: bool,
    by: str | None,
    dry_run: bool,
    strict: bool,
    json_out: bool,
    bad: Sequence[Any] = (),
    verify: bool = False,
    purge: bool = False,
) -> None:
    """Queue the videos for every target, push side by side, report per target, exit.

    ``verify``: then probe each target's own URLs of the video(s) at its edge.
    """
    from cdn_preheat import ui
    from cdn_preheat.stopping import on_signals

    with engine(settings) as targets:
        notice = "stopping: settling the batches in flight (press Ctrl-C again to quit at once)"
        with on_signals(notice) as stop, ui.progress("pushing", None) as advance:
            run = targets.preheat(
                sources, head_first=head_first, wait=wait, wait_timeout=wait_timeout,
                reset=reset, purge=purge, only_these=only_these, by=by, dry_run=dry_run,
                strict=strict, verify=verify, stop=stop, on_progress=advance,
            )  # fmt: skip
        summary = targets.summary(run)
    render_run(run, summary, json_out=json_out, dry_run=dry_run, bad=bad)
    exit_for(run, dry_run=dry_run, bad=bad)


def exit_for(run: TargetsRun, *, dry_run: bool, bad: Sequence[Any] = ()) -> None:
    if any(r.report is not None and r.report.interrupted for r in run.results):
        raise typer.Exit(EXIT_INTERRUPTED)
    code = 0 if dry_run else run.exit_code
    if not code and bad:
        code = 2
    if not code and any(v.error or v.partial for v in run.videos):
        code = 1
    if code:
        raise typer.Exit(code)


def _summary_rows(summary: Sequence[TargetSummary], verified: bool) -> list[dict[str, Any]]:
    rows = []
    for t in summary:
        row: dict[str, Any] = {
            "target": t.name,
            "provider": t.provider,
            "area": t.area,
            "members": list(t.members),
            "pushed": t.pushed,
            "done": t.done,
            "failed": t.failed,
            "pending": t.pending,
            "in_flight": t.in_flight,
            "quota_left": t.quota_left,
            "requests": t.requests,
            "wasted_requests": t.wasted_requests,
            "quota_exhausted": t.quota_exhausted,
            "pushed_by": t.pushed_by,
            "set_aside": t.set_aside,
            "error": t.error,
        }
        if verified:
            row["hit_ratio"] = t.hit_ratio
        rows.append(row)
    return rows


def _feasibility_rows(table: Sequence[Feasibility]) -> list[dict[str, Any]]:
    return [
        {
            "target": row.name,
            "queued": row.queued,
            "quota_left": row.quota_left,
            "quota_by_deadline": row.quota_by_deadline,
            "urls_per_second": round(row.urls_per_second, 1),
            "rate_by_deadline": row.rate_by_deadline,
            "can_push": row.capacity,
            "feasible": row.feasible,
            "cold": [
                {"video_id": c.video_id, "pending": c.pending, "reached": c.reached}
                for c in row.cold
            ],
            "error": row.error,
        }
        for row in table
    ]


def render_run(
    run: TargetsRun,
    summary: Sequence[TargetSummary],
    *,
    json_out: bool,
    dry_run: bool,
    bad: Sequence[Any] = (),
) -> None:
    from cdn_preheat import ui

    targets = _summary_rows(summary, run.verified is not None)
    feasible = _feasibility_rows(run.feasibility) if run.feasibility is not None else None
    if json_out:
        data: dict[str, Any] = {
            "videos": [_video(v) for v in run.videos],
            "targets": targets,
            "feasibility": feasible,
            "dry_run": dry_run,
            "bad_lines": [{"line": b.line, "reason": b.reason} for b in bad],
        }
        if run.verified is not None:
            data["verified"] = [verify_dict(checked) for checked in run.verified]
        ui.print_json(data)
        return
    for video in run.videos:
        if video.error:
            ui.error(f"{video.video_id}: {video.error}")
        elif video.already_preheated:
            ui.note(f"{video.video_id}: already preheated on every target")
        elif video.interrupted:
            ui.note(f"{video.video_id}: interrupted while its playlists were read; not queued")
    if feasible is not None:
        render_feasibility(feasible)
    if dry_run:
        ui.note("dry run: nothing was pushed.")
        return
    headers = ["target", "provider", "area", "pushed", "done", "failed", "pending", "quota left"]
    ui.grid(
        "targets",
        headers,
        [
            [t["target"], t["provider"], t["area"], t["pushed"], t["done"], t["failed"],
             t["pending"], "" if t["quota_left"] is None else t["quota_left"]]
            for t in targets
        ],
    )  # fmt: skip
    for checked in run.verified or ():
        verify_grid(checked)  # the grid ``verify`` shows, one per video
    for row in targets:
        if row["pushed_by"]:
            split = ", ".join(f"{name} {count}" for name, count in row["pushed_by"].items())
            ui.note(f"pool {row['target']}: pushed by {split}")
        for sentence in row["set_aside"].values():
            ui.error(f"pool {row['target']}: member {sentence} (the pool went on without it)")
        if "hit_ratio" in row:
            ratio = row["hit_ratio"]
            shown = "nothing pushed to probe" if ratio is None else f"{ratio:.1%} cached"
            ui.note(f"target {row['target']}: verify: {shown}")
        if row["error"]:
            ui.error(row["error"])
        elif row["quota_exhausted"] and row["pending"]:
            ui.note(
                f"target {row['target']}: quota spent for today; {row['pending']} URLs stay "
                "queued for the next run."
            )


def render_feasibility(rows: Sequence[dict[str, Any]]) -> None:
    from cdn_preheat import ui

    ui.grid(
        "can every target be warm in time?",
        ["target", "queued", "quota by then", "URLs/s", "can push", "feasible", "left cold"],
        [
            [
                r["target"], r["queued"],
                "unlimited" if r["quota_by_deadline"] is None else r["quota_by_deadline"],
                r["urls_per_second"], r["can_push"], "yes" if r["feasible"] else "no",
                ", ".join(f"{c['video_id']} ({c['reached']}/{c['pending']})" for c in r["cold"]),
            ]
            for r in rows
        ],
    )  # fmt: skip
    for row in rows:
        if row["error"]:
            ui.error(row["error"])


def _video(video: Any) -> dict[str, Any]:
    return {
        "video_id": video.video_id,
        "found": video.found,
        "queued": video.queued,
        "already_done": video.already_done,
        "already_queued": video.already_queued,
        "already_preheated": video.already_preheated,
        "error": video.error,
        "partial": video.partial,
        "interrupted": video.interrupted,
    }


def status_rows(settings: Settings, video_id: str | None) -> list[dict[str, Any]]:
    """Per target: URL counts by state (and, for a pool, URLs pushed per member)."""
    with engine(settings, read_only=True) as targets:
        rows = targets.status(video_id)
    return [
        {
            "target": row.name,
            "provider": row.key[0],
            "area": row.key[1],
            **{str(state): count for state, count in row.counts.items()},
            "members": list(row.members),
            "pushed_by": row.pushed_by,
        }
        for row in rows
    ]


def quota_rows(settings: Settings) -> list[dict[str, Any]]:
    """Per target (a pool: its members' sum, and each member): the live quota, side by side."""
    with engine(settings, read_only=True) as targets:
        found = targets.quota()
    rows = []
    for t in found:
        row: dict[str, Any] = {
            "target": t.name,
            "day": t.day,
            "total": t.total,
            "available": t.available,
            "reserved_in_flight": t.reserved_in_flight,
            "error": t.error,
        }
        if t.members:  # a pool: what each member has left
            row["members"] = t.members
        rows.append(row)
    return rows


def queue_only(
    settings: Settings,
    sources: Sequence[VideoSource],
    *,
    head_first: str,
    reset: bool,
    strict: bool,
    json_out: bool,
    bad: Sequence[Any],
) -> None:
    """``batch --queue-only`` over targets: queue for every target, leave it to workers."""
    from cdn_preheat import TargetsRun

    with engine(settings) as targets:
        videos = targets.queue(sources, head_first=head_first, reset=reset, strict=strict)
        summary = targets.summary()
    run = TargetsRun(videos, [])  # nothing ran: the queue is the workers'
    render_run(run, summary, json_out=json_out, dry_run=False, bad=bad)
    exit_for(run, dry_run=False, bad=bad)


def work_on_targets(settings: Settings, *, once: bool, idle: float, wait_timeout: float) -> int:
    """``worker`` with a targets file: every target's queue drained side by side."""
    from cdn_preheat.stopping import on_signals

    with engine(settings) as targets, on_signals() as stop:
        return targets.work(stop=stop, once=once, idle=idle, wait_timeout=wait_timeout)


def verify_video(
    settings: Settings,
    video_id: str,
    *,
    sample: int | None,
    requeue: bool,
    min_hit_ratio: float,
    seed: int,
    json_out: bool,
) -> None:
    """``verify VIDEO`` over targets: each target's own URLs at its host, a row each; exit."""
    from cdn_preheat import ui

    with engine(settings) as targets, ui.progress("probing", None) as step:
        run = targets.verify(
            video_id, sample=sample, requeue=requeue, min_hit_ratio=min_hit_ratio, seed=seed,
            on_progress=step,
        )  # fmt: skip
    render_verify(run, json_out=json_out)
    if run.exit_code:
        raise typer.Exit(run.exit_code)


def verify_dict(run: TargetsVerify) -> dict[str, Any]:
    """A video's verification on every target, as ``verify --json`` prints it."""
    from cdn_preheat.render import probe_dicts, ratio_dict

    return {
        "video_id": run.video_id,
        "passed": run.passed,
        "targets": [
            {
                "target": t.name,
                "provider": t.provider,
                "cdn_host": t.cdn_host,
                "overall": ratio_dict(t.report.overall),
                "renditions": {k: ratio_dict(v) for k, v in t.report.by_rendition().items()},
                "urls": probe_dicts(t.report),
                "min_hit_ratio": t.gate.min_hit_ratio,
                "passed": t.passed,
                "reason": t.gate.reason or None,
                "requeued": t.requeued,
            }
            for t in run.results
        ],
    }


def verify_grid(run: TargetsVerify) -> None:
    """One row per target: its probes' verdicts and whether it passed."""
    from cdn_preheat import ui
    from cdn_preheat.render import percent

    rows = []
    for t in run.results:
        v = t.report.overall
        passed = "yes" if t.passed else "no"
        rows.append([t.name, t.provider, t.cdn_host or "-", v.total, v.hits, v.upper, v.misses,
                     v.unknown, v.errors, percent(v.ratio), passed])  # fmt: skip
    headers = ["target", "provider", "host", "probed", "edge hit", "upper hit", "miss",
               "unknown", "error", "cached", "passed"]  # fmt: skip
    ui.grid(f"{run.video_id}: CDN cache per target", headers, rows)


def render_verify(run: TargetsVerify, *, json_out: bool) -> None:
    """One row per target: its probes' verdicts and whether it passed; JSON: the same and URLs."""
    from cdn_preheat import ui

    if json_out:
        ui.print_json(verify_dict(run))
        return
    verify_grid(run)
    for t in run.results:
        if t.requeued:
            ui.note(f"target {t.name}: {t.requeued} URLs that missed are queued again.")
        if not t.passed:
            ui.note(f"target {t.name}: {t.gate.reason}")


def purge_everywhere(
    settings: Settings,
    *,
    urls: Sequence[str],
    dirs: Sequence[str],
    video_id: str | None,
    delete: bool,
    wait: bool,
    wait_timeout: float,
    json_out: bool,
) -> None:
    """``purge`` over targets: every target (a pool: each member), a result each; exit."""
    from cdn_preheat.stopping import on_signals

    with engine(settings) as targets, on_signals() as stop:
        run = targets.purge(
            urls=urls, dirs=dirs, video_id=video_id, delete=delete, follow=wait,
            wait_timeout=wait_timeout, stop=stop,
        )  # fmt: skip
    render_purge(run, json_out=json_out)
    if run.exit_code:
        raise typer.Exit(run.exit_code)


def render_purge(run: TargetsPurge, *, json_out: bool) -> None:
    from cdn_preheat import ui
    from cdn_preheat.render import purge_dict

    if json_out:
        ui.print_json(
            {
                "targets": [
                    {
                        "target": t.name,
                        "provider": t.provider,
                        "cdn_host": t.cdn_host,
                        "pool": t.pool,
                        **(purge_dict(t.result) if t.result is not None else {}),
                        "error": t.error,
                        "exit_code": t.exit_code,
                    }
                    for t in run.results
                ],
                "exit_code": run.exit_code,
            }
        )
        return
    rows = []
    for t in run.results:
        r = t.result
        counts = [r.urls + r.dirs, r.submitted, r.done, r.failed, r.processing,
                  r.not_submitted] if r is not None else ["-"] * 6  # fmt: skip
        rows.append([t.name, t.provider, t.cdn_host or "-", *counts,
                     "ok" if not t.exit_code else "failed"])  # fmt: skip
    headers = ["target", "provider", "host", "asked", "accepted", "done", "failed",
               "processing", "not submitted", "outcome"]  # fmt: skip
    ui.grid("purge per target", headers, rows)
    for t in run.results:
        if t.result is not None:
            for url, why in t.result.failures.items():
                ui.note(f"target {t.name}: failed: {url}: {why}")
            if t.result.timed_out:
                ui.note(f"target {t.name}: stopped following its purge tasks at --wait-timeout.")
        if t.error:
            ui.error(t.error)
