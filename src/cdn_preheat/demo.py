"""``cdn-preheat demo``: a full preheat on the local sandbox, no credentials needed."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from cdn_preheat import ui
from cdn_preheat.api import Observer, Preheater
from cdn_preheat.config import Settings, load_settings
from cdn_preheat.errors import InputError
from cdn_preheat.providers import emulated_names
from cdn_preheat.sandbox.server import Sandbox

# The progress of the push: push title -> an observer, entered while the run drains.
Progress = Callable[[str], AbstractContextManager[Observer]]


def _silent(title: str) -> AbstractContextManager[Observer]:
    return contextlib.nullcontext(Observer())


def run_demo(
    *,
    provider: str = "tencent",  # CDN_PROVIDER's default
    videos: int = 3,
    db: Path | None = None,
    progress: Progress = _silent,
) -> None:
    """Preheat ``videos`` generated videos into the emulated ``provider``.

    ``progress`` draws the push (the CLI passes its Rich bars); by default nothing.
    """
    demo_providers = emulated_names()  # every provider the sandbox emulates
    if provider not in demo_providers:
        raise InputError(f"--provider must be one of {', '.join(demo_providers)}.")
    with tempfile.TemporaryDirectory(prefix="cdn-preheat-demo-") as tmp:
        ledger_path = db or Path(tmp) / "demo.sqlite3"
        # The sandbox's Qiniu account has its daily prefetch quota raised from
        # Qiniu's default of 100 URLs (see Sandbox), so every provider runs to the end.
        with Sandbox(videos=videos, task_delay=0.3, edge_vendor=provider) as box:
            ui.note(f"sandbox running: {box.endpoints}")
            env: dict[str, Any] = {k.lower(): v for k, v in box.client_env(provider).items()}
            settings = load_settings(**env, cdn_preheat_db=str(ledger_path))
            _preheat(box, settings, videos, progress)


def _preheat(box: Sandbox, settings: Settings, videos: int, progress: Progress) -> None:
    """Queue the generated videos (and one as DASH), push them, show what the ledger holds."""
    sources = [(f"demo-{n}", box.video_url(f"demo-{n}")) for n in range(1, videos + 1)]
    if videos:
        # The first video again, as players on DASH (Android, TVs, dash.js) fetch it.
        sources.append(("demo-1-dash", box.dash_url("demo-1")))
    with Preheater.from_settings(settings) as preheater:
        title = f"preheating on {preheater.provider.name} (sandbox)"
        queued = preheater.queue(sources)
        with progress(title) as observer:
            run = preheater.drain(observer=observer, poll_interval=0.2)
        states = {v.video_id: str(v.state) for v in preheater.status().videos}
    rows = [
        [q.video_id, q.found, q.queued, sum(q.skipped.values()), states.get(q.video_id, "-")]
        for q in queued
    ]
    ui.grid("demo videos", ["video", "URLs", "queued", "skipped", "state"], rows)
    ui.table(
        "demo summary",
        {
            "pushed": run.submitted,
            "done (edge holds them)": run.done,
            "invalid": run.invalid,
            "failed": run.failed,
            "requests": run.requests,
            "rate-limited answers": run.rate_limited,
            "quota left today": run.quota_left_today,
        },
    )
    if run.error is not None:
        raise run.error
