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
from urllib.parse import urlsplit

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
from scripted_origin import Reply, ScriptedOrigin

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


# A signal while playlists are still being read -------------------------------------


def _trickling_master(segments: int = 40) -> str:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
    for n in range(segments):
        lines += ["#EXTINF:4.0,", f"slow-{n}.ts"]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def _trickling_origin(origin: ScriptedOrigin) -> str:
    """A playlist at one byte a second: its expansion lasts minutes, past any signal."""
    origin.script("/slow.m3u8", Reply(_trickling_master(), drip=1.0))
    return origin.url("/slow.m3u8")


def test_push_stopped_while_its_playlist_is_read_prints_the_summary_and_exits_130(
    tmp_path: Path,
) -> None:
    with Sandbox(videos=1, segments=10) as box, ScriptedOrigin() as origin:
        cli = make_cli(box, tmp_path)
        slow = _trickling_origin(origin)
        proc = Proc(cli, "push", "slow", slow, "--json")
        wait_until(lambda: origin.hits("/slow.m3u8") >= 1 or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr
        proc.signal(signal.SIGINT)
        assert proc.wait(60) == 130, proc.stderr

    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["video_id"] == "slow" and summary["interrupted"] is True
    assert summary["queued"] == 0 and summary["pushed"] == 0
    assert "interrupted" in proc.stderr
    assert box.tencent.received() == []
    assert cli.status()["videos"] == []  # nothing of it was recorded


def test_batch_stopped_while_expanding_and_pushing_reports_both_and_exits_130(
    tmp_path: Path,
) -> None:
    with (
        # Enough URLs that pushing outlasts the looks at the status before the signal.
        Sandbox(videos=2, segments=300, task_delay=0.2, faults=Faults(latency=0.15)) as box,
        ScriptedOrigin() as origin,
    ):
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=BATCH, CDN_PREHEAT_CONCURRENCY=THREADS)
        catalog = write_catalog(cli, ["demo-1", "demo-2"])
        with catalog.open("a") as handle:
            handle.write(f"slow,{_trickling_origin(origin)}\n")
        proc = Proc(cli, "batch", str(catalog), "--json")
        # The pipeline pushes the videos queued while the slow one is still being read.
        wait_until(
            lambda: (
                (
                    origin.hits("/slow.m3u8") >= 1
                    and len(box.tencent.received()) >= 1
                    and len(cli.status()["videos"]) == 2  # demo-1 and demo-2 recorded
                )
                or proc.poll() is not None
            )
        )
        assert proc.poll() is None, proc.stderr
        at_signal = len(box.tencent.received_urls())
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 130, proc.stderr

        assert "Traceback" not in proc.stderr
        summary = json.loads(proc.stdout)
        videos = {video["video_id"]: video for video in summary["videos"]}
        assert set(videos) == {"demo-1", "demo-2", "slow"}
        assert videos["slow"]["interrupted"] is True and videos["slow"]["queued"] == 0
        for video_id in ("demo-1", "demo-2"):
            assert videos[video_id]["interrupted"] is False
            assert videos[video_id]["queued"] == len(expected_urls(cli, video_id))
        assert summary["run"]["interrupted"] is True
        assert summary["run"]["pushed"] == len(box.tencent.received_urls())
        _assert_settled(cli, box, cli.status()["total"], at_signal)
        assert cli("quota", "--json").json()["reserved_in_flight"] == 0


def test_batch_queue_only_stopped_while_expanding_keeps_what_was_queued(
    tmp_path: Path,
) -> None:
    with Sandbox(videos=1, segments=10) as box, ScriptedOrigin() as origin:
        cli = make_cli(box, tmp_path)
        catalog = write_catalog(cli, ["demo-1"])
        with catalog.open("a") as handle:
            handle.write(f"slow,{_trickling_origin(origin)}\n")
        proc = Proc(cli, "batch", str(catalog), "--queue-only", "--json")
        wait_until(
            lambda: (
                (origin.hits("/slow.m3u8") >= 1 and cli.status().get("videos"))
                or proc.poll() is not None
            )
        )
        assert proc.poll() is None, proc.stderr
        proc.signal(signal.SIGINT)
        assert proc.wait(60) == 130, proc.stderr

        assert "Traceback" not in proc.stderr
        videos = {video["video_id"]: video for video in json.loads(proc.stdout)["videos"]}
        assert videos["slow"]["interrupted"] is True
        assert videos["demo-1"]["queued"] == len(expected_urls(cli, "demo-1"))
        assert cli.status()["total"]["pending"] == videos["demo-1"]["queued"]
        assert box.tencent.received() == []


def test_batch_over_targets_stopped_while_expanding_exits_130_at_once(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=10) as box, ScriptedOrigin() as origin:
        env = box.targets_file(tmp_path / "targets.toml", ("tencent", "qiniu"))
        # Only the stop can end this expansion: the fetch deadline is an hour away.
        cli = make_cli(box, tmp_path, CDN_PREHEAT_FETCH_DEADLINE=3600, **env)
        catalog = write_catalog(cli, ["demo-1"])
        with catalog.open("a") as handle:
            handle.write(f"slow,{_trickling_origin(origin)}\n")
        proc = Proc(cli, "batch", str(catalog), "--json")
        wait_until(lambda: origin.hits("/slow.m3u8") >= 1 or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr
        proc.signal(signal.SIGINT)
        assert proc.wait(60) == 130, proc.stderr

    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    videos = {video["video_id"]: video for video in summary["videos"]}
    assert videos["slow"]["interrupted"] is True


def test_verify_all_stopped_while_probing_shows_what_was_answered_and_exits_130(
    tmp_path: Path,
) -> None:
    with Sandbox(videos=1, segments=10, task_delay=0.05) as box, ScriptedOrigin() as edge:
        cli = make_cli(box, tmp_path)
        pushed = cli("push", "demo-1", box.video_url("demo-1"))
        assert pushed.code == 0, pushed.stderr
        urls = expected_urls(cli, "demo-1")
        # A pinned edge that answers the first URL at once and every other one in a minute.
        first, *rest = (urlsplit(url).path for url in urls)
        edge.script(
            first,
            Reply(b"x", content_type="video/mp2t", headers={"X-Cache-Lookup": "Hit From Disktank"}),
        )
        for path in rest:
            edge.script(path, Reply(b"x", content_type="video/mp2t", delay=60))
        proc = Proc(cli, "verify", "demo-1", "--all", "--edge", edge.netloc, "--json")
        wait_until(lambda: len(edge.requests) >= 2 or proc.poll() is not None)
        assert proc.poll() is None, proc.stderr
        proc.signal(signal.SIGINT)
        assert proc.wait(60) == 130, proc.stderr

    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["interrupted"] is True
    assert len(report["urls"]) < len(urls)  # the answered probes only
    assert "interrupted" in proc.stderr


def test_after_a_killed_batch_the_next_run_does_not_report_success(tmp_path: Path) -> None:
    with Sandbox(videos=2, segments=60, task_delay=0.2, faults=Faults(latency=0.3)) as box:
        cli = make_cli(
            box,
            tmp_path,
            CDN_PREHEAT_BATCH_SIZE=BATCH,
            CDN_PREHEAT_CONCURRENCY=THREADS,
            CDN_PREHEAT_LEASE_SECONDS=600,
        )
        catalog = write_catalog(cli, ["demo-1", "demo-2"])
        proc = Proc(cli, "batch", str(catalog))
        wait_until(lambda: len(box.tencent.received()) >= 1)
        proc.kill()
        assert cli.status()["total"]["reserved"] > 0  # the dead run's claims
        again = cli("batch", str(catalog))
        assert again.code == 1, again.stderr
        assert "reserved" in again.stderr and "CDN_PREHEAT_LEASE_SECONDS" in again.stderr
        assert duplicates(box.tencent.received_urls()) == {}


def test_a_second_signal_quits_without_waiting_for_the_batches_in_flight(tmp_path: Path) -> None:
    # Every API answer 8 s late: a push claimed is a push in flight for that long.
    with Sandbox(videos=1, segments=60, task_delay=0.2, faults=Faults(latency=8.0)) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=BATCH, CDN_PREHEAT_CONCURRENCY=THREADS)
        proc = Proc(cli, "push", "demo-1", box.video_url("demo-1"))
        wait_until(
            lambda: cli.status()["total"]["reserved"] > 0 or proc.poll() is not None, timeout=60
        )
        assert proc.poll() is None, proc.stderr
        proc.signal(signal.SIGINT)
        wait_until(lambda: "stopping:" in proc.stderr or proc.poll() is not None)
        proc.signal(signal.SIGINT)
        assert proc.wait(60) == 130, proc.stderr
        # Quit at once: the batches in flight were left to their lease, not settled
        # (the first signal alone waits for their answers and settles them).
        assert cli.status()["total"]["reserved"] > 0
        assert "Traceback" not in proc.stderr
        assert "quitting now" in proc.stderr
        box.faults.latency = 0.0
        # The next run finds the dead run's reservation, as after a kill.
        again = cli("push", "demo-1", box.video_url("demo-1"))
        assert again.code == 1 and "reserved" in again.stderr, again.stderr
