"""Several worker processes on one SQLite ledger share the queue and the daily quota."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Proc, assert_all_done, duplicates, expected_urls, make_cli, write_catalog

from cdn_preheat.sandbox.core import RATE_COUNTINGS, Faults, RateCounting
from cdn_preheat.sandbox.server import Sandbox


def test_three_workers_never_exceed_the_quota_nor_push_a_url_twice(tmp_path: Path) -> None:
    with Sandbox(videos=3, segments=8, task_delay=0.2, faults=Faults(latency=0.02)) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=6)
        videos = ["demo-1", "demo-2", "demo-3"]
        urls = expected_urls(cli, *videos)
        queued = cli("batch", str(write_catalog(cli, videos)), "--queue-only", "--json")
        assert queued.code == 0, queued.stderr
        quota = len(urls) * 3 // 5
        box.tencent.limits.push_per_day = quota

        day_one = [Proc(cli, "worker", "--once") for _ in range(3)]
        codes = [proc.wait() for proc in day_one]
        assert codes == [3, 3, 3], [proc.stderr for proc in day_one]
        received = box.tencent.received_urls()
        assert len(received) <= quota
        assert box.tencent.outcomes["quota"] == 0  # the ledger stopped them first
        assert duplicates(received) == {}
        # Not one URL of quota was left unused while work was queued.
        assert len(received) == quota
        total = cli.status()["total"]
        assert total["pending"] == len(urls) - quota
        assert total["reserved"] == 0

        box.clock.next_day()
        day_two = [Proc(cli, "worker", "--once") for _ in range(3)]
        assert [proc.wait() for proc in day_two] == [0, 0, 0], [p.stderr for p in day_two]
        received = box.tencent.received_urls()
        assert sorted(received) == sorted(urls)
        assert box.tencent.outcomes["quota"] == 0
        assert_all_done(cli, urls)


@pytest.mark.parametrize("rate_counting", RATE_COUNTINGS)
def test_four_workers_share_the_accounts_rate_without_a_push_refused(
    tmp_path: Path, rate_counting: RateCounting
) -> None:
    # 4 x 101 URLs in batches of 10: about 40 pushes, two seconds at Tencent's 20 a second,
    # so the four processes push at the same time. Nobody divided the rate by hand.
    with Sandbox(
        videos=4, variants=1, segments=99, task_delay=0.2, rate_counting=rate_counting
    ) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=10)
        videos = ["demo-1", "demo-2", "demo-3", "demo-4"]
        urls = expected_urls(cli, *videos)
        queued = cli("batch", str(write_catalog(cli, videos)), "--queue-only", "--json")
        assert queued.code == 0, queued.stderr

        workers = [Proc(cli, "worker", "--once") for _ in range(4)]
        assert [proc.wait() for proc in workers] == [0, 0, 0, 0], [p.stderr for p in workers]

        received = box.tencent.received_urls()
        assert sorted(received) == sorted(urls)  # every URL exactly once
        assert box.tencent.outcomes["rate_limited"] == 0, (
            box.tencent.rate_refusals,
            box.tencent.actions,
        )
        # No API was refused for rate: not the pushes, not the status polls.
        assert box.tencent.rate_refusals == {}
        assert box.tencent.actions["PushUrlsCache"] == -(-len(urls) // 10)
        assert_all_done(cli, urls)
