"""What the commands print: JSON documents for scripts, Rich tables for people.

Pure presentation: every function takes results the library returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdn_preheat import ui
from cdn_preheat.redact import redact, strip_userinfo

if TYPE_CHECKING:
    from cdn_preheat.api import DrainResult, PurgeResult, PushResult, QueueResult
    from cdn_preheat.purge import PurgeReport


def video_dict(queued: QueueResult, hit_ratio: float | None = None) -> dict[str, Any]:
    return {
        "video_id": queued.video_id,
        "m3u8_url": strip_userinfo(queued.m3u8_url),
        "already_preheated": queued.already_preheated,
        "found": queued.found,
        "queued": queued.queued,
        "already_done": queued.already_done,
        "already_queued": queued.already_queued,
        "skipped": dict(queued.skipped),
        "live": queued.live,
        "error": None if queued.error is None else redact(queued.error),
        "edge_hit_ratio": hit_ratio,
        "warnings": list(queued.warnings),
        "failed_playlists": list(queued.failed_playlists),
        "interrupted": queued.interrupted,
    }


def report_problems(queued: QueueResult) -> None:
    """Warnings and skipped renditions of one video, one line each on stderr."""
    for message in queued.warnings:
        ui.warning(f"{queued.video_id}: {message}")
    for failure in queued.failed_playlists:
        ui.error(f"{queued.video_id}: partial: rendition skipped: {failure}")


def run_dict(report: DrainResult) -> dict[str, Any]:
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
        "tracking_timed_out": report.tracking_timed_out,
        "stopped_by": str(report.error) if report.error else None,
        "interrupted": report.interrupted,
    }


def push_dict(result: PushResult) -> dict[str, Any]:
    queued, report = result.video, result.run
    data = video_dict(queued, result.hit_ratio) | (run_dict(report) if report is not None else {})
    if queued.would_push is not None:
        data["dry_run"] = True
        data["would_push"] = queued.would_push
    return data


def report_push(result: PushResult, json_out: bool) -> None:
    data = push_dict(result)
    if json_out:
        ui.print_json(data)
        return
    queued, report, dry_run = result.video, result.run, result.dry_run
    report_problems(queued)
    if queued.already_preheated:
        ui.note(f"{queued.video_id} is already preheated; use --reset to push it again.")
        return
    if queued.interrupted:
        ui.note(f"{queued.video_id}: interrupted while its playlists were read; nothing queued.")
    if queued.live:
        ui.note(
            f"{queued.video_id}: live (no EXT-X-ENDLIST, or a dynamic MPD);"
            " pushing what it lists now."
        )
    rows: dict[str, Any] = {"URLs found": queued.found}
    if dry_run:
        rows["already preheated"] = queued.already_done
        rows["would push"] = queued.would_push if queued.would_push is not None else queued.found
    else:
        rows["already preheated"] = queued.already_done
        rows["already queued"] = queued.already_queued
    for reason, count in sorted(queued.skipped.items()):
        rows[f"skipped: {reason}"] = count
    if report is not None:
        rows.update(run_rows(report))
    if result.hit_ratio is not None:
        rows["cached in the CDN (sample)"] = percent(result.hit_ratio)
    ui.table(f"{queued.video_id}{' (dry run: nothing pushed)' if dry_run else ''}", rows)
    if report is not None:
        report_run_notes(report, "run again after it resets to push the rest.")


def run_rows(report: DrainResult) -> dict[str, Any]:
    rows: dict[str, Any] = {
        "pushed": report.submitted,
        "done": report.done,
        "invalid": report.invalid,
        "failed": report.failed,
        "still queued": report.pending,
    }
    if report.tracking_timed_out:
        rows["still processing at the CDN"] = report.in_flight
    rows["quota left today"] = report.quota_left_today
    return rows


def report_run_notes(report: DrainResult, after_reset: str) -> None:
    if report.tracking_timed_out:
        ui.note(
            f"Stopped following the tasks at --wait-timeout: {report.in_flight} URLs are still"
            " processing at the CDN; `cdn-preheat status` shows them as they finish."
        )
    if report.quota_exhausted and report.pending:
        ui.note(f"The daily quota is spent; {after_reset}")


def report_batch(
    videos: list[QueueResult], bad: list[Any], report: DrainResult | None, json_out: bool
) -> None:
    if json_out:
        ui.print_json(
            {
                "videos": [video_dict(video) for video in videos],
                "bad_lines": [{"line": b.line, "reason": b.reason} for b in bad],
                "run": run_dict(report) if report is not None else None,
            }
        )
        return
    rows = []
    for video in videos:
        report_problems(video)
        state = (
            "already preheated"
            if video.already_preheated
            else "interrupted: not queued"
            if video.interrupted
            else f"failed: {redact(video.error)}"
            if video.error
            else "partial"
            if video.partial
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
        ui.table("push", run_rows(report))
        report_run_notes(report, "`cdn-preheat worker` pushes the rest after the reset.")


def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.0%}"


def ratio_dict(value: Any) -> dict[str, Any]:
    """One verdict tally of ``verify --json`` (overall, a rendition, an edge)."""
    return {"hits": value.hits, "upper": value.upper, "misses": value.misses,
            "unknown": value.unknown, "errors": value.errors, "ratio": value.ratio,
            "edge_ratio": value.edge_ratio}  # fmt: skip


def probe_dicts(report: Any) -> list[dict[str, Any]]:
    """Each probe of a verification, as ``verify --json`` lists them."""
    return [
        {
            "url": r.url,
            "edge": r.edge_ip,
            "status": r.status_code,
            "cache": str(r.status),
            "error": r.error,
        }
        for r in report.results
    ]


def report_verify(
    video_id: str, report: Any, requeued: int, json_out: bool, gate: Any = None
) -> None:
    """The verdicts per rendition (and per pinned edge), and the gate's outcome.

    ``gate`` is a :class:`cdn_preheat.verify.GateResult` (or None: no gate).
    Three verdicts: ``hit`` (the edge's copy), ``upper`` (warm in an upper
    layer of the CDN) and ``miss``; the ratio counts both hits as cached.
    """

    if json_out:
        data: dict[str, Any] = {
            "video_id": video_id,
            "overall": ratio_dict(report.overall),
            "renditions": {k: ratio_dict(v) for k, v in report.by_rendition().items()},
            # Keyed by pinned edge address; "" when DNS chose the edge.
            "edges": {k: ratio_dict(v) for k, v in report.by_edge().items()},
            "urls": probe_dicts(report),
            "requeued": requeued,
            "interrupted": getattr(report, "interrupted", False),
        }
        if gate is not None:
            data["min_hit_ratio"] = gate.min_hit_ratio
            data["passed"] = gate.passed
        ui.print_json(data)
    else:
        groups = sorted(report.by_rendition().items())
        rows = [
            [name or "-", v.hits, v.upper, v.misses, v.unknown, v.errors, percent(v.ratio)]
            for name, v in [*groups, ("all", report.overall)]
        ]
        headers = ["rendition", "edge hit", "upper hit", "miss", "unknown", "error", "cached"]
        ui.grid(f"{video_id}: CDN cache", headers, rows)
        edges = report.by_edge()
        if len(edges) > 1:  # pinned to several edges: one of them may be the cold one
            edge_rows = [
                [name, v.hits, v.upper, v.misses, v.unknown, v.errors, percent(v.ratio)]
                for name, v in sorted(edges.items())
            ]
            ui.grid(f"{video_id}: per edge", ["edge", *headers[1:]], edge_rows)
        if report.overall.upper:
            ui.note(
                f"{report.overall.upper} URLs are warm in the CDN's upper layer (where "
                "Tencent mainland and Alibaba prefetch); the edge takes them on the first "
                "request. They count as cached and are never pushed again."
            )
        if requeued:
            ui.note(f"{requeued} URLs that missed are queued again; run push or the worker.")
    if gate is not None and not gate.passed:
        ui.note(gate.reason)


def purge_dict(report: PurgeResult | PurgeReport) -> dict[str, Any]:
    return {
        "provider": report.provider,
        "urls": report.urls,
        "dirs": report.dirs,
        "submitted": report.submitted,
        "not_submitted": report.not_submitted,
        "left": list(report.left),
        "tasks": list(report.tasks),
        "done": report.done,
        "failed": report.failed,
        "processing": report.processing,
        "timed_out": report.timed_out,
        "quota_exhausted": report.quota_exhausted is not None,
        "failures": [{"url": url, "reason": why} for url, why in report.failures.items()],
    }


def report_purge(report: PurgeResult, json_out: bool) -> None:
    if json_out:
        ui.print_json(purge_dict(report))
        return
    rows = {
        "URLs": report.urls,
        "directories": report.dirs,
        "accepted": report.submitted,
        "done": report.done,
        "failed": report.failed,
        "still processing": report.processing,
        "not submitted": report.not_submitted,
    }
    ui.table(f"purge on {report.provider}", rows)
    for url, why in report.failures.items():
        ui.note(f"failed: {url}: {why}")
    if report.timed_out:
        ui.note("Stopped following the purge tasks at --wait-timeout; they go on at the CDN.")
