"""``cdn-preheat demo``: a full preheat on the local sandbox, no credentials needed."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, cast

from cdn_preheat import pipeline, ui
from cdn_preheat.app import expand_options, run_options
from cdn_preheat.config import load_settings
from cdn_preheat.errors import InputError
from cdn_preheat.hls import expand
from cdn_preheat.ledger import open_ledger
from cdn_preheat.providers import make_provider
from cdn_preheat.sandbox.edge import Vendor
from cdn_preheat.sandbox.server import Sandbox

DEMO_PROVIDERS = ("tencent", "edgeone", "qiniu", "aliyun")


def run_demo(*, provider: str = "tencent", videos: int = 3, db: Path | None = None) -> None:
    if provider not in DEMO_PROVIDERS:
        raise InputError(f"--provider must be one of {', '.join(DEMO_PROVIDERS)}.")
    with tempfile.TemporaryDirectory(prefix="cdn-preheat-demo-") as tmp:
        ledger_path = db or Path(tmp) / "demo.sqlite3"
        # The sandbox's Qiniu account has its daily prefetch quota raised from
        # Qiniu's default of 100 URLs (see Sandbox), so every provider runs to the end.
        vendor = cast("Vendor", provider)  # one of DEMO_PROVIDERS, checked above
        with Sandbox(videos=videos, task_delay=0.3, edge_vendor=vendor) as box:
            ui.note(f"sandbox running: {box.endpoints}")
            env: dict[str, Any] = {k.lower(): v for k, v in box.client_env(provider).items()}
            settings = load_settings(**env, cdn_preheat_db=str(ledger_path))
            _preheat(box, settings, videos)


def _preheat(box: Sandbox, settings: Any, videos: int) -> None:
    ledger = open_ledger(settings)
    cdn = make_provider(settings)
    try:
        queued = []
        sources = [(f"demo-{n}", box.video_url(f"demo-{n}")) for n in range(1, videos + 1)]
        if videos:
            # The first video again, as players on DASH (Android, TVs, dash.js) fetch it.
            sources.append(("demo-1-dash", box.dash_url("demo-1")))
        for video_id, url in sources:
            expansion = expand(url, expand_options(settings))
            queued.append(
                pipeline.queue_expansion(
                    ledger,
                    cdn.name,
                    cdn.area,
                    video_id,
                    expansion,
                    head_first=pipeline.DEFAULT_HEAD_FIRST,
                    max_age=settings.cdn_preheat_max_age,
                )
            )
        total = sum(q.queued for q in queued)
        with ui.progress(f"preheating on {cdn.name} (sandbox)", total) as advance:
            report = pipeline.run_queue(
                ledger, cdn, run_options(settings, poll_interval=0.2), on_progress=advance
            )
        pipeline.refresh_states(ledger, [q.video_id for q in queued])
        rows = [
            [q.video_id, q.found, q.queued, sum(q.skipped.values()), str(_state(ledger, q))]
            for q in queued
        ]
        ui.grid("demo videos", ["video", "URLs", "queued", "skipped", "state"], rows)
        ui.table(
            "demo summary",
            {
                "pushed": report.submitted,
                "done (edge holds them)": report.done,
                "invalid": report.invalid,
                "failed": report.failed,
                "requests": report.requests,
                "rate-limited answers": report.rate_limited,
                "quota left today": report.quota_left_today,
            },
        )
        if report.stopped_by is not None:
            raise report.stopped_by
    finally:
        cdn.close()
        ledger.close()


def _state(ledger: Any, queued: pipeline.QueuedVideo) -> Any:
    video = ledger.get_video(queued.video_id)
    return video.state if video else "-"
