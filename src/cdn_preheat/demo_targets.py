"""``cdn-preheat demo --targets``: the demo videos into four sandbox accounts at once.

Two Tencent Cloud accounts (separate keys and daily quotas), Qiniu and EdgeOne,
described by a targets file like a user's (docs/targets.md), the keys in variables
it names. One expansion per video, every account pushed side by side.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cdn_preheat import ui
from cdn_preheat.config import load_settings
from cdn_preheat.ledger import open_ledger
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.pipeline import DEFAULT_HEAD_FIRST
from cdn_preheat.sandbox.server import Sandbox, TencentAccount
from cdn_preheat.sandbox.tencent import TencentLimits
from cdn_preheat.source import VideoSource
from cdn_preheat.targets import TargetsRun, build_units, close_units, preheat, resolve_targets

DEMO_TARGETS = ("tencent", "tencent-b", "qiniu", "edgeone")
# The second account's own daily quota: smaller than the first's, enough for the demo.
SECOND_ACCOUNT_QUOTA = 20_000


def run_targets_demo(*, videos: int = 3, db: Path | None = None) -> TargetsRun:
    second = TencentAccount(limits=TencentLimits(push_per_day=SECOND_ACCOUNT_QUOTA))
    accounts = {"tencent-b": second}
    with (
        tempfile.TemporaryDirectory(prefix="cdn-preheat-demo-") as tmp,
        Sandbox(videos=videos, task_delay=0.3, tencent_accounts=accounts) as box,
    ):
        ui.note(f"sandbox running: {box.endpoints}")
        env = box.targets_file(Path(tmp) / "targets.toml", DEMO_TARGETS)
        settings = load_settings(
            cdn_preheat_targets=env["CDN_PREHEAT_TARGETS"],
            cdn_preheat_db=str(db or Path(tmp) / "demo.sqlite3"),
        )
        units = build_units(resolve_targets(settings, env))
        ledger = open_ledger(settings)
        try:
            sources = [
                VideoSource(f"demo-{n}", box.video_url(f"demo-{n}"), n)
                for n in range(1, videos + 1)
            ]
            with ui.progress("preheating into 4 sandbox accounts", None) as advance:
                run = preheat(
                    ledger, units, sources, settings, head_first=DEFAULT_HEAD_FIRST,
                    on_progress=advance,
                )  # fmt: skip
            by_key = ledger.counts_by_target()
            rows = []
            for unit, result in zip(units, run.results, strict=True):
                counts = by_key.get(unit.key, {})
                report = result.report
                rows.append(
                    [
                        unit.name,
                        unit.members[0].spec.provider,
                        unit.key[1],
                        report.submitted if report else 0,
                        counts.get(UrlState.DONE, 0),
                        counts.get(UrlState.FAILED, 0) + counts.get(UrlState.INVALID, 0),
                        "" if report is None else report.quota_left_today,
                        report.requests if report else 0,
                        result.error or "ok",
                    ]
                )
            ui.grid(
                "demo targets",
                ["target", "provider", "area/zone", "pushed", "done", "failed", "quota left",
                 "requests", "outcome"],
                rows,
            )  # fmt: skip
            found = sum(v.found for v in run.videos)
            ui.note(
                f"{len(run.videos)} videos, {found} URLs, expanded once each and preheated "
                f"into {len(units)} accounts."
            )
        finally:
            ledger.close()
            close_units(units)
    return run
