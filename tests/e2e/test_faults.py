"""A misbehaving CDN API: 5xx, dropped connections, rate limits, lost answers, failed tasks.

A "lost answer" is the hard case: the emulator carries the push out, then hangs
up, so the client sees the same network error as for a request that never
arrived. The scheduler must ask the task list (DescribePushTasks) before
pushing again, and must not mistake an earlier push of the same URL for it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from support import assert_all_done, duplicates, expected_urls, make_cli, write_catalog

from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.sandbox.tencent import TencentLimits

VIDEOS = ["demo-1", "demo-2"]


def test_faults_at_a_steady_rate_still_push_every_url_exactly_once(tmp_path: Path) -> None:
    faults = Faults(server_error=0.1, drop=0.1, rate_limited=0.1, lost_answer=0.1, seed=11)
    with Sandbox(videos=2, segments=15, task_delay=0.2, faults=faults) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=6)
        urls = expected_urls(cli, *VIDEOS)
        run = cli("batch", str(write_catalog(cli, VIDEOS)), "--json")
        assert run.code == 0, run.stderr
        assert "Traceback" not in run.stderr

        received = box.tencent.received_urls()
        assert sorted(set(received)) == sorted(urls)
        assert duplicates(received) == {}
        outcomes = box.tencent.outcomes
        assert outcomes["fault"] > 0  # 502s and hang-ups before the request ran
        assert outcomes["lost_answer"] > 0  # pushes carried out whose answer was lost
        assert outcomes["rate_limited"] > 0
        summary = run.json()["run"]
        assert summary["transient_errors"] > 0 and summary["rate_limited"] > 0
        assert_all_done(cli, urls)


def test_failed_tasks_are_retried_up_to_max_attempts_even_when_answers_get_lost(
    tmp_path: Path,
) -> None:
    faults = Faults(drop=0.15, lost_answer=0.1, seed=5)
    limits = TencentLimits(fail_rate=0.35, seed=3)
    with Sandbox(
        videos=2, segments=15, task_delay=0.2, faults=faults, tencent_limits=limits
    ) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=6, CDN_PREHEAT_MAX_ATTEMPTS=3)
        urls = expected_urls(cli, *VIDEOS)
        run = cli("batch", str(write_catalog(cli, VIDEOS)), "--json")
        assert "Traceback" not in run.stderr

        sent = Counter(box.tencent.received_urls())
        assert set(sent) == set(urls)
        assert max(sent.values()) <= 3
        assert any(n > 1 for n in sent.values())  # failures were pushed again
        status = cli.status()
        total = status["total"]
        assert total["done"] + total["failed"] == len(urls), total
        # Exit 1 exactly when some URL could not be prefetched after every attempt.
        assert run.code == (1 if total["failed"] else 0), run.stderr
        failed = {f["url"]: f for f in status["failures"] if f["state"] == "failed"}
        assert len(failed) == total["failed"]
        for url, failure in failed.items():
            # Given up only after three real pushes, never on an older task's word.
            assert sent[url] == 3, (url, sent[url])
            assert failure["error"]
        assert total["pending"] == total["reserved"] == total["submitted"] == 0


def test_a_failed_prefetch_is_retried_and_ends_done_or_failed_with_its_error(
    tmp_path: Path,
) -> None:
    with Sandbox(
        videos=1, segments=20, task_delay=0.2, tencent_limits=TencentLimits(fail_rate=0.5, seed=1)
    ) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_MAX_ATTEMPTS=2)
        urls = expected_urls(cli, "demo-1")
        run = cli("push", "demo-1", box.video_url("demo-1"), "--json")
        sent = Counter(box.tencent.received_urls())
        status = cli.status("demo-1")
        # Some URLs failed for good (asserted below): that is a failed push.
        assert run.code == 1, run.stderr
        assert "could not be prefetched after every attempt" in run.stderr
        total = status["total"]
        assert total["done"] + total["failed"] == len(urls)
        assert total["failed"] > 0 and total["done"] > 0
        for failure in status["failures"]:
            assert failure["state"] == "failed"
            assert "could not prefetch" in failure["error"]
            assert sent[failure["url"]] == 2
        assert all(n <= 2 for n in sent.values())


def test_a_url_the_origin_lacks_ends_invalid_with_its_reason_after_one_retry(
    tmp_path: Path,
) -> None:
    with Sandbox(videos=1, segments=4, task_delay=0.2) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_INVALID_RETRY_SECONDS=0.3)
        origin = box.origin
        origin.add_file(
            "/gone/index.m3u8",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nhere.ts\n"
            b"#EXTINF:4,\nmissing.ts\n#EXT-X-ENDLIST\n",
        )
        origin.add_file("/gone/here.ts", b"x", "video/mp2t")
        url = f"{box.endpoints['origin']}/gone/index.m3u8"
        run = cli("push", "gone", url, "--json")
        assert run.code == 0, run.stderr

        missing = box.edge_url("/gone/missing.ts")
        status = cli.status("gone")
        assert status["videos"][0]["invalid"] == 1
        assert status["videos"][0]["done"] == 2
        assert status["failures"] == [
            {
                "url": missing,
                "state": "invalid",
                "error": "the origin answered 4xx or 5xx (Tencent status invalid)",
            }
        ]
        # Tencent's "invalid" may be a passing 5xx: pushed once more, then left invalid.
        assert Counter(box.tencent.received_urls())[missing] == 2

        again = cli("push", "gone", url)
        assert again.code == 0
        assert Counter(box.tencent.received_urls())[missing] == 2


def test_an_origin_swamped_by_the_prefetch_burst_is_retried_and_ends_done(
    tmp_path: Path,
) -> None:
    """Tencent "invalid" is "源站返回4xx或5xx状态码" (SDK models.py PushTask.Status).

    The origin answers 503 to the first pulls of the burst, then recovers: those
    URLs read "invalid" and must not stay unpreheated.
    """
    with Sandbox(videos=1, segments=6, task_delay=0.2) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_INVALID_RETRY_SECONDS=0.3)
        urls = expected_urls(cli, "demo-1")
        box.origin.overload(pulls=5, status=503)
        run = cli("push", "demo-1", box.video_url("demo-1"), "--json")
        assert run.code == 0, run.stderr

        assert_all_done(cli, urls)
        received = Counter(box.tencent.received_urls())
        assert sorted(received) == sorted(urls)
        assert sorted(received.values()).count(2) == 5  # the five swamped pulls, pushed again
        assert set(received.values()) == {1, 2}


def test_a_10k_catalog_with_drops_and_lost_answers_ends_with_every_url_done(
    tmp_path: Path,
) -> None:
    # Every API call (pushes, status polls, reconciliation pages) may hang up
    # before it ran or after: the run must still end with every URL done.
    faults = Faults(drop=0.1, lost_answer=0.1, seed=7)
    videos = ["demo-1", "demo-2", "demo-3", "demo-4"]
    with Sandbox(videos=4, variants=3, segments=625, task_delay=0.2, faults=faults) as box:
        cli = make_cli(box, tmp_path)
        urls = expected_urls(cli, *videos)
        assert len(set(urls)) >= 10_000
        run = cli("batch", str(write_catalog(cli, videos)), "--json")
        assert run.code == 0, run.stderr
        assert "Traceback" not in run.stderr

        received = box.tencent.received_urls()
        assert set(received) == set(urls)
        assert box.tencent.outcomes["fault"] > 0 and box.tencent.outcomes["lost_answer"] > 0
        assert box.tencent.rate_refusals == {}
        assert_all_done(cli, urls)
