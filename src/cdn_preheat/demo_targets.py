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

from cdn_preheat import TargetsPreheater, TargetsRun, ui
from cdn_preheat.config import load_settings
from cdn_preheat.render import percent
from cdn_preheat.sandbox.server import Sandbox, TencentAccount
from cdn_preheat.sandbox.tencent import TencentLimits

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
                run = targets.preheat(
                    sources, on_progress=advance, verify=True, verify_sample=VERIFY_SAMPLE
                )
            summary = targets.summary(run)
            rows = [
                [
                    t.name, t.provider, t.area, t.pushed, t.done, t.failed,
                    "" if t.quota_left is None else t.quota_left, t.requests,
                    percent(t.hit_ratio), t.error or "ok",
                ]
                for t in summary
            ]  # fmt: skip
            ui.grid(
                "demo targets",
                ["target", "provider", "area/zone", "pushed", "done", "failed", "quota left",
                 "requests", "cached", "outcome"],
                rows,
            )  # fmt: skip
            found = sum(v.found for v in run.videos)
            ui.note(
                f"{len(run.videos)} videos, {found} URLs, expanded once each and preheated "
                f'into {len(summary)} accounts; "cached": a sample of each account\'s '
                "own URLs probed at its own domain."
            )
    return run
