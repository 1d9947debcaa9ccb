"""Reconciling a dead worker's batch against a task list that behaves like the real one.

A worker killed after its request reached the CDN and before it recorded the
task leaves an expired claim. The next run must find those URLs in the
provider's task list (and not push them again) within the vendor's rules, or,
when the task list no longer reaches back that far, push them again; never
fail the run because of that claim.

Alibaba's ``DescribeRefreshTasks`` demands StartTime and EndTime together
(help.aliyun.com/document_detail/448062.htm), covers the last 3 days only and
allows 5 calls a second (help.aliyun.com/document_detail/91158.html): the
sandbox's emulator enforces all three.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from clirun import Cli, base_env
from support import assert_all_done, duplicates, expected_urls, write_catalog

from cdn_preheat.config import Settings
from cdn_preheat.ledger.base import Claim
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.providers.aliyun import AliyunProvider
from cdn_preheat.sandbox.aliyun import AliyunLimits
from cdn_preheat.sandbox.server import Sandbox

BATCH = 20
LEASE = dt.timedelta(seconds=1)


def _aliyun_cli(box: Sandbox, workdir: Path) -> Cli:
    env = {**base_env(workdir), **box.client_env("aliyun"), "CDN_PREHEAT_BATCH_SIZE": str(BATCH)}
    return Cli(box, workdir, env)


def _die_after_pushing(cli: Cli, claimed_at: dt.datetime) -> Claim:
    """What a worker killed mid-batch leaves: a claim whose request reached the CDN."""
    ledger = SqliteLedger(cli.workdir / "ledger.sqlite3")
    try:
        claim = ledger.claim("aliyun", "domestic", BATCH, "dead:1", claimed_at, LEASE)
        assert claim is not None
        settings = Settings(_env_file=None, **{k.lower(): v for k, v in cli.env.items()})  # type: ignore[call-arg]
        AliyunProvider(settings).submit(claim.urls)
    finally:
        ledger.close()
    return claim


def _queue(cli: Cli, *videos: str) -> list[str]:
    queued = cli("batch", str(write_catalog(cli, videos)), "--queue-only")
    assert queued.code == 0, queued.stderr
    return expected_urls(cli, *videos)


def test_worker_reconciles_a_dead_workers_batch_within_alibabas_rules(tmp_path: Path) -> None:
    with Sandbox(videos=2, segments=10, task_delay=0.2) as box:
        cli = _aliyun_cli(box, tmp_path)
        urls = _queue(cli, "demo-1", "demo-2")
        claim = _die_after_pushing(cli, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))

        run = cli("worker", "--once")
        assert run.code == 0, run.stderr

        received = box.aliyun.received_urls()
        assert duplicates(received) == {}  # the lost batch was found, not pushed again
        assert sorted(received) == sorted(urls)
        assert set(claim.urls) <= set(received)
        assert_all_done(cli, urls)
        assert box.aliyun.action_calls.get("DescribeRefreshTasks", 0) >= 1
        for code in ("MissingTimeParameter", "InvalidTime", "Throttling.User"):
            assert code not in box.aliyun.counters, box.aliyun.counters


def test_a_batch_older_than_alibaba_keeps_tasks_is_pushed_again(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=10, task_delay=0.2) as box:
        cli = _aliyun_cli(box, tmp_path)
        urls = _queue(cli, "demo-1")
        # The worker died four days ago, right after its request arrived.
        box.clock.advance(-dt.timedelta(days=4))
        claim = _die_after_pushing(cli, dt.datetime.now(dt.UTC) - dt.timedelta(days=4))
        box.clock.advance(dt.timedelta(days=4))

        for _ in range(2):  # no later round fails because of it either
            run = cli("worker", "--once")
            assert run.code == 0, run.stderr

        received = box.aliyun.received_urls()
        # Nobody can tell any more whether they arrived: those URLs went out again.
        assert duplicates(received) == dict.fromkeys(claim.urls, 2)
        assert sorted(set(received)) == sorted(urls)
        assert_all_done(cli, urls)
        assert "InvalidTime" not in box.aliyun.counters


def test_a_batch_whose_lookup_is_refused_is_pushed_again(tmp_path: Path) -> None:
    """A key allowed to push but not to list tasks (RAM): the claim is released, not fatal."""
    limits = AliyunLimits(task_delay=0.2, ram_denied=frozenset({"DescribeRefreshTasks"}))
    with Sandbox(videos=1, segments=10, aliyun_limits=limits) as box:
        cli = _aliyun_cli(box, tmp_path)
        urls = _queue(cli, "demo-1")
        claim = _die_after_pushing(cli, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))

        for _ in range(2):
            run = cli("worker", "--once")
            assert run.code == 0, run.stderr

        assert box.aliyun.counters.get("Forbidden.RAM", 0) >= 1
        received = box.aliyun.received_urls()
        assert duplicates(received) == dict.fromkeys(claim.urls, 2)
        assert sorted(set(received)) == sorted(urls)
        assert_all_done(cli, urls)
