"""``cdn-preheat demo --targets``: the demo videos into four sandbox accounts at once.

Two Tencent Cloud accounts (separate keys and daily quotas), Qiniu and EdgeOne,
described by a targets file like a user's (docs/targets.md), the keys in variables
it names. One expansion per video, every account pushed side by side, then each
account's own URLs verified at its own domain (each account owns a host of the
sandbox edge, with its vendor's cache header).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cdn_preheat import ui
from cdn_preheat.config import load_settings
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.render import percent
from cdn_preheat.sandbox.server import Sandbox, TencentAccount
from cdn_preheat.sandbox.tencent import TencentLimits
from cdn_preheat.targets import TargetsPreheater, TargetsRun

# The demo's accounts, by design: the sandbox's further accounts are Tencent's.
DEMO_TARGETS = ("tencent", "tencent-b", "qiniu", "edgeone")
# The second account's own daily quota: smaller than the first's, enough for the demo.
SECOND_ACCOUNT_QUOTA = 20_000
VERIFY_SAMPLE = 10  # probes per video and target: playlists and every rendition's start


def run_targets_demo(*, videos: int = 3, db: Path | None = None) -> TargetsRun:
    second = TencentAccount(limits=TencentLimits(push_per_day=SECOND_ACCOUNT_QUOTA))
    accounts = {"tencent-b": second}
    with (
        tempfile.TemporaryDirectory(prefix="cdn-preheat-demo-") as tmp,
        Sandbox(
            videos=videos, task_delay=0.3, tencent_accounts=accounts, edge_per_account=True
        ) as box,
    ):
        ui.note(f"sandbox running: {box.endpoints}")
        env = box.targets_file(Path(tmp) / "targets.toml", DEMO_TARGETS)
        settings = load_settings(
            cdn_preheat_targets=env["CDN_PREHEAT_TARGETS"],
            cdn_preheat_db=str(db or Path(tmp) / "demo.sqlite3"),
        )
        with TargetsPreheater.from_settings(settings, environ=env) as targets:
            sources = [(f"demo-{n}", box.video_url(f"demo-{n}")) for n in range(1, videos + 1)]
            with ui.progress("preheating into 4 sandbox accounts", None) as advance:
                run = targets.preheat(sources, on_progress=advance)
            cached = dict.fromkeys(DEMO_TARGETS, 0)
            probed = dict.fromkeys(DEMO_TARGETS, 0)
            for video in run.videos:
                if video.error is None:
                    checked = targets.verify(video.video_id, sample=VERIFY_SAMPLE)
                    for one in checked.results:
                        cached[one.name] += one.report.overall.cached
                        probed[one.name] += one.report.overall.total
            by_target = {row.name: row.counts for row in targets.status()}
            rows = []
            for unit, result in zip(targets.units, run.results, strict=True):
                counts = by_target.get(unit.name, {})
                report = result.report
                ratio = cached[unit.name] / probed[unit.name] if probed[unit.name] else None
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
                        percent(ratio),
                        result.error or "ok",
                    ]
                )
            ui.grid(
                "demo targets",
                ["target", "provider", "area/zone", "pushed", "done", "failed", "quota left",
                 "requests", "cached", "outcome"],
                rows,
            )  # fmt: skip
            found = sum(v.found for v in run.videos)
            ui.note(
                f"{len(run.videos)} videos, {found} URLs, expanded once each and preheated "
                f'into {len(targets.units)} accounts; "cached": a sample of each account\'s '
                "own URLs probed at its own domain."
            )
    return run
