"""``doctor`` and ``health``: check the account and the ledger."""

from __future__ import annotations

from typing import Annotated

import typer

from cdn_preheat.cli._common import JsonOption, app, load_settings


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

    report = run_doctor(load_settings(), sample_url=sample_url)
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

    settings = load_settings()
    ledger = open_ledger(settings, retries=0)  # one attempt: a health check must answer fast
    try:
        ledger.get_video("cdn-preheat-health-probe")  # one indexed round trip
    finally:
        ledger.close()
    if json_out:
        ui.print_json({"ok": True, "store": settings.store_kind})
