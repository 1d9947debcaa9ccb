"""``status``, ``quota``, ``stats`` and ``logs``: what the ledger and the CDN report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cdn_preheat.cli._common import (
    JsonOption,
    app,
    domain_or_host,
    load_settings,
    open_provider,
    preheater,
)


@app.command()
def status(
    video_id: Annotated[str | None, typer.Argument(help="One video; all when omitted.")] = None,
    json_out: JsonOption = False,
) -> None:
    """What is done, queued, submitted, failed, per video and in total."""
    from cdn_preheat import ui
    from cdn_preheat.ledger.base import UrlState

    settings = load_settings()
    with preheater(settings, read_only=True) as engine:
        report = engine.status(video_id)
    targets = None
    if settings.cdn_preheat_targets:
        from cdn_preheat.cli._targets import status_rows

        targets = status_rows(settings, video_id)
    states = list(UrlState)
    if json_out:
        ui.print_json(
            {
                **({"targets": targets} if targets is not None else {}),
                "videos": [
                    {
                        "video_id": v.video_id,
                        "state": str(v.state),
                        "found": v.found,
                        **{str(s): v.counts.get(s, 0) for s in states},
                    }
                    for v in report.videos
                ],
                "total": {str(s): report.total.get(s, 0) for s in states},
                "failures": [
                    {"url": f.url, "state": str(f.state), "error": f.error} for f in report.failures
                ],
            }
        )
        return
    headers = ["video", "state", "found", *[str(s) for s in states]]
    rows: list[list[object]] = [
        [v.video_id, str(v.state), v.found, *[v.counts.get(s, 0) for s in states]]
        for v in report.videos
    ]
    rows.append(["total", "", "", *[report.total.get(s, 0) for s in states]])
    ui.grid("status", headers, rows)
    if targets is not None:
        ui.grid(
            "per target",
            ["target", "area", *[str(s) for s in states]],
            [[t["target"], t["area"], *[t.get(str(s), 0) for s in states]] for t in targets],
        )
        for row in targets:
            if row["pushed_by"]:
                split = ", ".join(f"{name} {count}" for name, count in row["pushed_by"].items())
                ui.note(f"pool {row['target']}: pushed by {split}")
    for failure in report.failures:
        ui.note(f"{failure.state}: {failure.url}: {failure.error or 'no reason given'}")


@app.command()
def quota(json_out: JsonOption = False) -> None:
    """The provider's quota left today and what the ledger has reserved."""
    import dataclasses

    from cdn_preheat import ui

    settings = load_settings()
    if settings.cdn_preheat_targets:
        _quota_per_target(settings, json_out=json_out)
        return
    with preheater(settings, read_only=True) as engine:
        report = engine.quota()
    data = dataclasses.asdict(report)
    if json_out:
        ui.print_json(data)
    else:
        ui.table(f"{report.provider} quota ({report.area})", data)


def _quota_per_target(settings: Any, *, json_out: bool) -> None:
    """``quota`` with a targets file: one row per target (a pool: its members too)."""
    from cdn_preheat import ui
    from cdn_preheat.cli._targets import quota_rows

    rows = quota_rows(settings)
    if json_out:
        ui.print_json({"targets": rows})
    else:
        ui.grid(
            "quota per target",
            ["target", "day", "total", "available", "reserved in flight"],
            [[r["target"], r["day"], r["total"], r["available"], r["reserved_in_flight"]]
             for r in rows],
        )  # fmt: skip
        for row in rows:
            if row.get("members"):
                split = ", ".join(f"{m} {left}" for m, left in row["members"].items())
                ui.note(f"pool {row['target']}: left per member: {split}")
            if row["error"]:
                ui.error(row["error"])
    if any(row["error"] for row in rows):
        raise typer.Exit(2)


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
    settings = load_settings()
    name = domain_or_host(domain, settings)
    with open_provider(settings) as provider:
        result = traffic.traffic_report(provider, name, first, last, granularity)
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
    settings = load_settings()
    name = domain_or_host(domain, settings)
    with open_provider(settings) as provider:
        files = traffic.access_logs(provider, name, day)
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
