"""Ctrl-C and SIGTERM during push and batch (issue 10, item 4).

The first signal stops claiming; batches in flight are settled (recorded as
submitted or released, their quota reservation returned); the summary is
printed; the exit code is 130. What reaches the CDN after the signal is at
most what was in flight then: one batch per pushing thread.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from support import (
    Proc,
    assert_all_done,
    duplicates,
    expected_urls,
    make_cli,
    wait_until,
    write_catalog,
)

from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox

BATCH = 10
THREADS = 2


def _interrupt_after_first_batches(box: Sandbox, proc: Proc, signum: int) -> int:
    """Signal ``proc`` once two batches arrived; the URLs received at that moment."""
    wait_until(lambda: len(box.tencent.received()) >= 2 or proc.poll() is not None)
    assert proc.poll() is None, proc.stderr
    at_signal = len(box.tencent.received_urls())
    proc.signal(signum)
    return at_signal


def _assert_settled(cli: object, box: Sandbox, total: dict[str, int], at_signal: int) -> None:
    received = box.tencent.received_urls()
    assert duplicates(received) == {}
    # Only the batches in flight at the signal went out after it.
    assert len(received) - at_signal <= THREADS * BATCH
    # Every URL that reached the CDN is recorded so; none is left reserved.
    assert total["reserved"] == 0
    assert total["submitted"] + total["done"] == len(received)
    assert total["pending"] > 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_push_stops_on_a_signal_settles_prints_the_summary_and_exits_130(
    tmp_path: Path, signum: int
) -> None:
    with Sandbox(videos=1, segments=80, task_delay=0.2, faults=Faults(latency=0.15)) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=BATCH, CDN_PREHEAT_CONCURRENCY=THREADS)
        urls = expected_urls(cli, "demo-1")
        assert len(urls) > 20 * BATCH
        proc = Proc(cli, "push", "demo-1", box.video_url("demo-1"), "--json")
        at_signal = _interrupt_after_first_batches(box, proc, signum)
        assert proc.wait(60) == 130, proc.stderr
        assert "Traceback" not in proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["pushed"] == len(box.tencent.received_urls())
        assert "interrupted" in proc.stderr
        total = cli.status()["total"]
        _assert_settled(cli, box, total, at_signal)
        quota = cli("quota", "--json")
        assert quota.json()["reserved_in_flight"] == 0
        assert box.tencent.quota_used() == len(box.tencent.received_urls())

        # The next run goes on from there and pushes nothing twice.
        rest = cli("push", "demo-1", box.video_url("demo-1"))
        assert rest.code == 0, rest.stderr
        assert duplicates(box.tencent.received_urls()) == {}
        assert_all_done(cli, urls)


def test_batch_stops_on_a_signal_settles_and_exits_130(tmp_path: Path) -> None:
    with Sandbox(videos=3, segments=30, task_delay=0.2, faults=Faults(latency=0.15)) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=BATCH, CDN_PREHEAT_CONCURRENCY=THREADS)
        videos = ["demo-1", "demo-2", "demo-3"]
        proc = Proc(cli, "batch", str(write_catalog(cli, videos)), "--json")
        at_signal = _interrupt_after_first_batches(box, proc, signal.SIGINT)
        assert proc.wait(60) == 130, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["run"]["pushed"] == len(box.tencent.received_urls())
        _assert_settled(cli, box, cli.status()["total"], at_signal)
        assert cli("quota", "--json").json()["reserved_in_flight"] == 0


def test_a_signal_while_rate_limited_does_not_wait_out_the_backoff(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=30, task_delay=0.2, faults=Faults(latency=0.02)) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=BATCH, CDN_PREHEAT_CONCURRENCY=1)
        queued = cli("batch", str(write_catalog(cli, ["demo-1"])), "--queue-only")
        assert queued.code == 0, queued.stderr
        # From now on every call is refused for rate: the worker only ever backs off.
        box.tencent.inject("RequestLimitExceeded", times=10_000)
        proc = Proc(cli, "worker", "--once")
        wait_until(lambda: box.tencent.outcomes["rate_limited"] >= 3 or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr
        refused_at_signal = box.tencent.outcomes["rate_limited"]
        proc.signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr
        # No retry after the signal: at most the request already on its way.
        assert box.tencent.outcomes["rate_limited"] - refused_at_signal <= 1
        total = cli.status()["total"]
        assert total["reserved"] == 0 and total["pending"] > 0
        assert box.tencent.received() == []


def test_after_a_killed_push_the_next_run_does_not_report_success(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=60, task_delay=0.2, faults=Faults(latency=0.3)) as box:
        cli = make_cli(
            box,
            tmp_path,
            CDN_PREHEAT_BATCH_SIZE=BATCH,
            CDN_PREHEAT_CONCURRENCY=THREADS,
            CDN_PREHEAT_LEASE_SECONDS=600,
        )
        proc = Proc(cli, "push", "demo-1", box.video_url("demo-1"))
        wait_until(lambda: len(box.tencent.received()) >= 1)
        proc.kill()
        assert cli.status()["total"]["reserved"] > 0  # the dead run's claims
        again = cli("push", "demo-1", box.video_url("demo-1"))
        assert again.code == 1, again.stderr
        assert "reserved" in again.stderr and "CDN_PREHEAT_LEASE_SECONDS" in again.stderr
        assert duplicates(box.tencent.received_urls()) == {}
