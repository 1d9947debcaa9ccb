"""Tasks older than the vendor keeps them are closed as unknown and pushed again.

Alibaba answers task queries for the last 3 days only (help.aliyun.com/
document_detail/91158.html, 448062.htm); Tencent keeps push logs 30 days
(cloud.tencent.com/document/api/228/12840). The emulators forget older tasks
on the sandbox clock, so a task recorded before a long outage gets no answer
ever again: following it must not go on forever.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from cdn_preheat.app import expand_options
from cdn_preheat.config import Settings
from cdn_preheat.hls import expand
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.pipeline import DEFAULT_HEAD_FIRST, RunOptions, queue_expansion, run_queue
from cdn_preheat.providers import make_provider
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.tracker import TrackerOptions

AGES = {"aliyun": dt.timedelta(days=3, hours=1), "tencent": dt.timedelta(days=30, hours=1)}


@pytest.mark.parametrize("kind", ["aliyun", "tencent"])
def test_a_task_the_vendor_forgot_is_closed_and_its_urls_pushed_again(
    tmp_path: Path, kind: str
) -> None:
    with Sandbox(videos=1, segments=4, task_delay=0.1) as box:
        env = {k.lower(): v for k, v in box.client_env(kind).items()}
        settings = Settings(_env_file=None, **env)  # type: ignore[arg-type]
        provider = make_provider(settings)
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        expansion = expand(box.video_url("demo-1"), expand_options(settings))
        queue_expansion(
            ledger, kind, provider.area, "demo-1", expansion,
            head_first=DEFAULT_HEAD_FIRST, max_age=dt.timedelta(days=1),
        )  # fmt: skip
        urls = [item.url for item in expansion.urls]

        # Pushed before an outage longer than the vendor keeps tasks.
        age = AGES[kind]
        then = dt.datetime.now(dt.UTC) - age
        box.clock.advance(-age)
        claim = ledger.claim(kind, provider.area, 1000, "old:1", then, dt.timedelta(minutes=2))
        assert claim is not None
        task_id = provider.submit(claim.urls).task_id
        ledger.mark_submitted(claim, task_id, claim.urls, then)
        box.clock.advance(age)

        options = RunOptions(tracker=TrackerOptions(poll_interval=0.05, timeout=15))
        report = run_queue(ledger, provider, options)

        assert not report.tracking_timed_out
        assert ledger.counts() == {UrlState.DONE: len(urls)}
        assert task_id not in {t.task_id for t in ledger.open_tasks(kind, provider.area)}
        received = box.apis[kind].received_urls()  # type: ignore[attr-defined]
        assert sorted(received) == sorted(urls + urls)  # the forgotten push, and the new one
        ledger.close()
