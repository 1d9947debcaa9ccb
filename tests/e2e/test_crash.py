"""Crash safety for real: SIGKILL a pushing process mid-run, restart, finish.

The ledger protocol (docs/architecture.md): a batch is reserved (lease and
quota) before the API call and marked submitted after; a restart reconciles
expired leases against the provider's task list instead of pushing them
blindly. So however often the
process dies, every URL reaches the CDN and, thanks to reconciliation, none
reaches it twice.
"""

from __future__ import annotations

import time
from pathlib import Path

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

BATCH = 8
LEASE = 1.0


def _kill_at_thresholds(box: Sandbox, start: object, thresholds: list[int]) -> int:
    """Start a process per threshold and SIGKILL it once that many pushes arrived."""
    kills = 0
    for threshold in thresholds:
        proc = start()
        assert isinstance(proc, Proc)

        def reached(proc: Proc = proc, threshold: int = threshold) -> bool:
            return len(box.tencent.received()) >= threshold or proc.poll() is not None

        wait_until(reached)
        assert proc.poll() is None, f"finished before the kill at {threshold}: {proc.stderr}"
        proc.kill()
        kills += 1
        # Past the lease, the next run must reconcile what the dead one held.
        time.sleep(LEASE + 0.2)
    return kills


def test_push_killed_again_and_again_pushes_every_url_exactly_once(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=50, task_delay=0.2, faults=Faults(latency=0.04)) as box:
        cli = make_cli(
            box,
            tmp_path,
            CDN_PREHEAT_BATCH_SIZE=BATCH,
            CDN_PREHEAT_LEASE_SECONDS=LEASE,
            CDN_PREHEAT_CONCURRENCY=2,
        )
        urls = expected_urls(cli, "demo-1")
        assert len(urls) > 120
        url = box.video_url("demo-1")

        kills = _kill_at_thresholds(box, lambda: Proc(cli, "push", "demo-1", url), [1, 6, 12])
        received_before_finish = len(box.tencent.received_urls())
        assert received_before_finish < len(urls)

        final = cli("push", "demo-1", url, "--json")
        assert final.code == 0, final.stderr

        received = box.tencent.received_urls()
        assert set(received) == set(urls)
        # The bound the design promises is one in-flight batch per pushing thread
        # and kill; reconciliation through DescribePushTasks makes it zero.
        assert len(received) - len(set(received)) <= kills * 2 * BATCH
        assert duplicates(received) == {}
        assert box.tencent.outcomes["quota"] == 0
        assert_all_done(cli, urls)
        assert cli.status("demo-1")["videos"][0]["state"] == "done"


def test_worker_once_killed_during_a_catalog_loses_and_repeats_nothing(tmp_path: Path) -> None:
    with Sandbox(videos=3, segments=15, task_delay=0.2, faults=Faults(latency=0.03)) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=BATCH, CDN_PREHEAT_LEASE_SECONDS=LEASE)
        videos = ["demo-1", "demo-2", "demo-3"]
        urls = expected_urls(cli, *videos)
        queued = cli("batch", str(write_catalog(cli, videos)), "--queue-only")
        assert queued.code == 0, queued.stderr
        assert box.tencent.received() == []

        kills = _kill_at_thresholds(box, lambda: Proc(cli, "worker", "--once"), [2, 9])
        final = Proc(cli, "worker", "--once")
        assert final.wait() == 0, final.stderr

        received = box.tencent.received_urls()
        assert set(received) == set(urls)
        assert len(received) - len(set(received)) <= kills * 4 * BATCH
        assert duplicates(received) == {}
        assert_all_done(cli, urls)
