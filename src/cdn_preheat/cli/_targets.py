"""The CLI side of targets (docs/targets.md): push, batch, status and quota per target.

``push``/``batch`` come here when ``CDN_PREHEAT_TARGETS`` names a targets file, or
when ``--by`` asks for the feasibility table; the single-provider flow stays as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from cdn_preheat.cli._common import EXIT_INTERRUPTED, open_ledger

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.pipeline import QueuedVideo
    from cdn_preheat.source import VideoSource
    from cdn_preheat.targets import Feasibility, TargetsRun, Unit


def wanted(settings: Settings, by: str | None) -> bool:
    """Whether a push goes through targets: a targets file, or a deadline to check."""
    return bool(settings.cdn_preheat_targets) or by is not None


def open_units(settings: Settings) -> list[Unit]:
    from cdn_preheat.targets import build_units, resolve_targets

    return build_units(resolve_targets(settings))


def push_video(
    settings: Settings, video_id: str, m3u8_url: str, *, purge: bool, **options: Any
) -> None:
    """``push VIDEO URL`` over targets (``--reset --purge``: purge every target first)."""
    from cdn_preheat.source import VideoSource

    push_to_targets(settings, [VideoSource(video_id, m3u8_url, 1)], purge=purge, **options)


def push_to_targets(
    settings: Settings,
    sources: Sequence[VideoSource],
    *,
    head_first: Any,
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
    from cdn_preheat.clock import utcnow
    from cdn_preheat.stopping import on_signals
    from cdn_preheat.targets import close_units, parse_deadline, preheat

    deadline = parse_deadline(by, utcnow()) if by is not None else None
    units = open_units(settings)
    ledger = open_ledger(settings)
    try:
        notice = "stopping: settling the batches in flight (press Ctrl-C again to quit at once)"
        with on_signals(notice) as stop, ui.progress("pushing", None) as advance:
            run = preheat(
                ledger, units, sources, settings,
                head_first=head_first, wait=wait, wait_timeout=wait_timeout, reset=reset,
                purge=purge, only_these=only_these, by=deadline, dry_run=dry_run,
                strict=strict, stop=stop, on_progress=advance,
            )  # fmt: skip
        ratios: dict[str, float | None] | None = None
        if verify and not dry_run:
            ratios = _verify(ledger, units, run)
        render_run(
            run, units, ledger, json_out=json_out, dry_run=dry_run, bad=bad, hit_ratios=ratios
        )
    finally:
        ledger.close()
        close_units(units)
    exit_for(run, dry_run=dry_run, bad=bad)


def _verify(ledger: Ledger, units: Sequence[Unit], run: TargetsRun) -> dict[str, float | None]:
    """Each target's cached ratio over the run's videos (None: nothing of it pushed)."""
    from cdn_preheat.targets import verify_units

    cached: dict[str, int] = dict.fromkeys((u.name for u in units), 0)
    total: dict[str, int] = dict.fromkeys((u.name for u in units), 0)
    for video in run.videos:
        if video.error is not None:
            continue
        for name, report in verify_units(ledger, units, video.video_id).items():
            cached[name] += report.overall.cached
            total[name] += report.overall.total
    return {name: (cached[name] / total[name] if total[name] else None) for name in total}


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


def _unit_rows(run: TargetsRun, units: Sequence[Unit], ledger: Ledger) -> list[dict[str, Any]]:
    from cdn_preheat.ledger.base import UrlState

    by_key = ledger.counts_by_target()
    rows = []
    for unit, result in zip(units, run.results, strict=True):
        counts = by_key.get(unit.key, {})
        report = result.report
        quota = unit.quota
        rows.append(
            {
                "target": unit.name,
                "provider": unit.members[0].spec.provider,
                "area": unit.key[1],
                "members": [m.name for m in unit.members] if unit.is_pool else [],
                "pushed": report.submitted if report else 0,
                "done": counts.get(UrlState.DONE, 0),
                "failed": counts.get(UrlState.FAILED, 0) + counts.get(UrlState.INVALID, 0),
                "pending": counts.get(UrlState.PENDING, 0) + counts.get(UrlState.RESERVED, 0),
                "in_flight": counts.get(UrlState.SUBMITTED, 0),
                "quota_left": report.quota_left_today if report else (
                    quota.available if quota else None
                ),
                "requests": report.requests if report else 0,
                "wasted_requests": report.wasted_requests if report else 0,
                "quota_exhausted": bool(report and report.quota_exhausted),
                "pushed_by": result.pushed_by,
                "set_aside": result.set_aside,
                "error": result.error,
            }
        )  # fmt: skip
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
    units: Sequence[Unit],
    ledger: Ledger,
    *,
    json_out: bool,
    dry_run: bool,
    bad: Sequence[Any] = (),
    hit_ratios: dict[str, float | None] | None = None,
) -> None:
    from cdn_preheat import ui

    targets = _unit_rows(run, units, ledger)
    if hit_ratios is not None:
        for row in targets:
            row["hit_ratio"] = hit_ratios.get(row["target"])
    feasible = _feasibility_rows(run.feasibility) if run.feasibility is not None else None
    if json_out:
        ui.print_json(
            {
                "videos": [_video(v) for v in run.videos],
                "targets": targets,
                "feasibility": feasible,
                "dry_run": dry_run,
                "bad_lines": [{"line": b.line, "reason": b.reason} for b in bad],
            }
        )
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


def _video(video: QueuedVideo) -> dict[str, Any]:
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


def status_rows(settings: Settings, ledger: Ledger, video_id: str | None) -> list[dict[str, Any]]:
    """Per target: URL counts by state (and, for a pool, URLs pushed per member)."""
    from cdn_preheat.targets import close_units, status_by_unit

    units = open_units(settings)
    try:
        rows = status_by_unit(ledger, units, video_id)
    finally:
        close_units(units)
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
    from cdn_preheat.clock import quota_day, utcnow
    from cdn_preheat.targets import PoolProvider, check_units, close_units, live_quota

    units = open_units(settings)
    ledger = open_ledger(settings, read_only=True)
    try:
        check_units(units, live_quota)
        rows = []
        for unit in units:
            offset = unit.settings.cdn_preheat_quota_utc_offset_hours
            if offset is None:
                offset = unit.provider.limits.quota_utc_offset_hours
            day = quota_day(utcnow(), offset)
            book = ledger.quota_day(*unit.key, day)
            quota = unit.quota
            row: dict[str, Any] = {
                "target": unit.name,
                "day": day,
                "total": quota.total if quota else None,
                "available": quota.available if quota else None,
                "reserved_in_flight": book.inflight if book else 0,
                "error": unit.explain(unit.error) if unit.error else None,
            }
            if isinstance(unit.provider, PoolProvider):
                row["members"] = unit.provider.left()
            rows.append(row)
    finally:
        ledger.close()
        close_units(units)
    return rows


def queue_only(
    settings: Settings,
    sources: Sequence[VideoSource],
    *,
    head_first: Any,
    reset: bool,
    strict: bool,
    json_out: bool,
    bad: Sequence[Any],
) -> None:
    """``batch --queue-only`` over targets: queue for every target, leave it to workers."""
    from cdn_preheat.app import expand_options
    from cdn_preheat.targets import TargetsRun, UnitResult, close_units, queue_videos_for_units

    units = open_units(settings)
    ledger = open_ledger(settings)
    try:
        videos = queue_videos_for_units(
            ledger, units, sources, expand_options(settings, strict=strict),
            head_first=head_first, max_age=settings.cdn_preheat_max_age, reset=reset,
        )  # fmt: skip
        run = TargetsRun(videos, [UnitResult(u.name, u.key) for u in units])
        render_run(run, units, ledger, json_out=json_out, dry_run=False, bad=bad)
    finally:
        ledger.close()
        close_units(units)
    exit_for(run, dry_run=False, bad=bad)


def work_on_targets(settings: Settings, *, once: bool, idle: float, wait_timeout: float) -> int:
    """``worker`` with a targets file: every target's queue drained side by side."""
    from cdn_preheat.stopping import on_signals
    from cdn_preheat.targets import close_units, run_unit_workers

    units = open_units(settings)
    ledger = open_ledger(settings)
    try:
        with on_signals() as stop:
            return run_unit_workers(
                ledger, units, stop=stop, once=once, idle=idle, wait_timeout=wait_timeout
            )
    finally:
        ledger.close()
        close_units(units)


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
    from cdn_preheat.targets import TargetsPreheater

    with TargetsPreheater.from_settings(settings) as targets, ui.progress("probing", None) as step:
        run = targets.verify(
            video_id, sample=sample, requeue=requeue, min_hit_ratio=min_hit_ratio, seed=seed,
            on_progress=step,
        )  # fmt: skip
    render_verify(run, json_out=json_out)
    if run.exit_code:
        raise typer.Exit(run.exit_code)


def _ratio(value: Any) -> dict[str, Any]:
    return {"hits": value.hits, "upper": value.upper, "misses": value.misses,
            "unknown": value.unknown, "errors": value.errors, "ratio": value.ratio,
            "edge_ratio": value.edge_ratio}  # fmt: skip


def render_verify(run: Any, *, json_out: bool) -> None:
    """One row per target: its probes' verdicts and whether it passed; JSON: the same and URLs."""
    from cdn_preheat import ui
    from cdn_preheat.render import percent

    if json_out:
        ui.print_json(
            {
                "video_id": run.video_id,
                "passed": run.passed,
                "targets": [
                    {
                        "target": t.name,
                        "provider": t.provider,
                        "cdn_host": t.cdn_host,
                        "overall": _ratio(t.report.overall),
                        "renditions": {k: _ratio(v) for k, v in t.report.by_rendition().items()},
                        "urls": [
                            {
                                "url": r.url,
                                "edge": r.edge_ip,
                                "status": r.status_code,
                                "cache": str(r.status),
                                "error": r.error,
                            }
                            for r in t.report.results
                        ],
                        "min_hit_ratio": t.gate.min_hit_ratio,
                        "passed": t.passed,
                        "reason": t.gate.reason or None,
                        "requeued": t.requeued,
                    }
                    for t in run.results
                ],
            }
        )
        return
    rows = []
    for t in run.results:
        v = t.report.overall
        passed = "yes" if t.passed else "no"
        rows.append([t.name, t.provider, t.cdn_host or "-", v.total, v.hits, v.upper, v.misses,
                     v.unknown, v.errors, percent(v.ratio), passed])  # fmt: skip
    headers = ["target", "provider", "host", "probed", "edge hit", "upper hit", "miss",
               "unknown", "error", "cached", "passed"]  # fmt: skip
    ui.grid(f"{run.video_id}: CDN cache per target", headers, rows)
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
    from cdn_preheat.targets import TargetsPreheater

    with TargetsPreheater.from_settings(settings) as targets, on_signals() as stop:
        run = targets.purge(
            urls=urls, dirs=dirs, video_id=video_id, delete=delete, follow=wait,
            wait_timeout=wait_timeout, stop=stop,
        )  # fmt: skip
    render_purge(run, json_out=json_out)
    if run.exit_code:
        raise typer.Exit(run.exit_code)


def render_purge(run: Any, *, json_out: bool) -> None:
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
