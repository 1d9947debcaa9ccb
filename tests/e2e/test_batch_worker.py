"""`batch`, `worker`, `status`, `quota`, expiry and ledger-file trouble, through the CLI."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from clirun import Cli
from support import (
    Proc,
    assert_all_done,
    duplicates,
    expansion,
    expected_urls,
    make_cli,
    wait_until,
    write_catalog,
)

from cdn_preheat.clock import seconds_until_next_day
from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox

# batch ------------------------------------------------------------------------


def test_batch_reads_csv_with_or_without_header_json_lines_and_stdin(cli: Cli) -> None:
    box = cli.sandbox
    urls = expected_urls(cli, "demo-1", "demo-2", "demo-3")
    (cli.workdir / "a.csv").write_text(f"demo-1,{box.video_url('demo-1')}\n")
    (cli.workdir / "b.jsonl").write_text(
        json.dumps({"video_id": "demo-2", "m3u8_url": box.video_url("demo-2")}) + "\n"
    )
    assert cli("batch", "a.csv").code == 0
    assert cli("batch", "b.jsonl").code == 0
    stdin = subprocess.run(
        [sys.executable, "-m", "cdn_preheat", "batch", "-", "--json"],
        input=f"video_id,m3u8_url\ndemo-3,{box.video_url('demo-3')}\n",
        cwd=cli.workdir,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert stdin.returncode == 0, stdin.stderr
    assert [v["video_id"] for v in json.loads(stdin.stdout)["videos"]] == ["demo-3"]
    assert sorted(box.tencent.received_urls()) == sorted(urls)
    assert_all_done(cli, urls)


def test_batch_reports_bad_lines_and_a_missing_playlist_and_pushes_the_rest(cli: Cli) -> None:
    box = cli.sandbox
    missing = f"{box.endpoints['origin']}/vod/nope/master.m3u8"
    catalog = cli.workdir / "mixed.txt"
    catalog.write_text(
        f"video_id,m3u8_url\n"
        f"demo-1,{box.video_url('demo-1')}\n"
        f"broken line without a comma\n"
        f'{{"video_id": "demo-2", "m3u8_url": "{box.video_url("demo-2")}"}}\n'
        f'{{"video_id": "x", \n'
        f"nope,{missing}\n"
    )
    run = cli("batch", str(catalog), "--json")
    assert run.code == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert f"{catalog}:3:" in run.stderr
    assert f"{catalog}:5:" in run.stderr
    report = run.json()
    assert [b["line"] for b in report["bad_lines"]] == [3, 5]
    videos = {v["video_id"]: v for v in report["videos"]}
    assert missing in videos["nope"]["error"] and "404" in videos["nope"]["error"]
    assert videos["demo-1"]["error"] is None and videos["demo-2"]["error"] is None
    urls = expected_urls(cli, "demo-1", "demo-2")
    assert sorted(box.tencent.received_urls()) == sorted(urls)
    assert_all_done(cli, urls)
    assert {v["video_id"] for v in cli.status()["videos"]} == {"demo-1", "demo-2"}


def test_batch_pushes_every_videos_start_before_any_videos_tail(tmp_path: Path) -> None:
    with Sandbox(videos=3, variants=2, segments=16, task_delay=0.2) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=10)
        videos = ["demo-1", "demo-2", "demo-3"]
        head, tail = set(), set()
        for video in videos:
            for item in expansion(cli, video):
                is_tail = str(item.kind) == "segment" and item.index >= 4
                (tail if is_tail else head).add(item.url)
        assert tail
        box.tencent.limits.push_per_day = len(head) + 3
        run = cli("batch", str(write_catalog(cli, videos)), "--head-first", "4", "--json")
        assert run.code == 3, run.stderr
        received = box.tencent.received_urls()
        assert len(received) == len(head) + 3
        assert head <= set(received)  # every video's playlists and first segments
        assert len(set(received) & tail) == 3
        assert duplicates(received) == {}


# worker -----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_worker_stops_cleanly_on_a_signal_and_logs_each_batch(tmp_path: Path, signum: int) -> None:
    with Sandbox(videos=2, segments=20, task_delay=0.2, faults=Faults(latency=0.05)) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=6, CDN_PREHEAT_CONCURRENCY=2)
        videos = ["demo-1", "demo-2"]
        assert cli("batch", str(write_catalog(cli, videos)), "--queue-only").code == 0
        worker = Proc(cli, "worker", "--idle", "1")
        wait_until(lambda: len(box.tencent.received()) >= 5)
        worker.signal(signum)
        assert worker.wait(30) == 0, worker.stderr
        assert "Traceback" not in worker.stderr
        pushes = len(box.tencent.received())
        assert pushes < len(expected_urls(cli, *videos)) / 6  # it stopped mid-queue
        assert worker.stderr.count("URLs submitted as task") == pushes
        total = cli.status()["total"]
        assert total["reserved"] == 0 and total["pending"] > 0
        quota = cli("quota", "--json").json()
        assert quota["reserved_in_flight"] == 0

        rest = Proc(cli, "worker", "--once")
        assert rest.wait() == 0, rest.stderr
        received = box.tencent.received_urls()
        assert duplicates(received) == {}
        assert_all_done(cli, expected_urls(cli, *videos))


def test_worker_once_exits_3_and_a_running_worker_waits_out_the_spent_quota(
    tmp_path: Path,
) -> None:
    with Sandbox(videos=1, segments=10, task_delay=0.2) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=5)
        assert cli("batch", str(write_catalog(cli, ["demo-1"])), "--queue-only").code == 0
        box.tencent.limits.push_per_day = 12
        once = Proc(cli, "worker", "--once")
        assert once.wait() == 3, once.stderr
        assert len(box.tencent.received_urls()) == 12

        worker = Proc(cli, "worker", "--idle", "1")
        wait_until(lambda: "until it resets" in worker.stderr, timeout=60)
        time.sleep(0.5)
        assert worker.poll() is None  # asleep until the provider's midnight, not gone
        assert len(box.tencent.received_urls()) == 12
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr
        assert box.tencent.outcomes["quota"] == 0


def test_seconds_until_next_day_is_until_the_providers_midnight() -> None:
    utc8 = dt.timezone(dt.timedelta(hours=8))
    noon_utc = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)  # 20:00 in UTC+8
    assert seconds_until_next_day(noon_utc, 8) == 4 * 3600
    assert seconds_until_next_day(noon_utc, 0) == 12 * 3600
    assert seconds_until_next_day(noon_utc, None) == 12 * 3600
    just_before = dt.datetime(2024, 3, 1, 23, 59, 59, tzinfo=utc8)
    assert seconds_until_next_day(just_before, 8) == 1
    midnight = dt.datetime(2024, 3, 2, 0, 0, tzinfo=utc8)
    assert seconds_until_next_day(midnight, 8) == 24 * 3600
    # Across a month end and in a negative offset.
    assert seconds_until_next_day(dt.datetime(2024, 2, 29, 23, 0, tzinfo=dt.UTC), -5) == 6 * 3600


# status / quota -----------------------------------------------------------------


def test_status_and_quota_json(cli: Cli) -> None:
    box = cli.sandbox
    box.origin.add_file(
        "/odd/index.m3u8",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\na.ts\n#EXTINF:4,\nlost.ts\n"
        b"#EXT-X-ENDLIST\n",
    )
    box.origin.add_file("/odd/a.ts", b"x", "video/mp2t")
    assert cli("push", "odd", f"{box.endpoints['origin']}/odd/index.m3u8").code == 0
    assert cli("push", "demo-1", box.video_url("demo-1")).code == 0
    demo = len(expected_urls(cli, "demo-1"))

    status = cli.status()
    videos = {v["video_id"]: v for v in status["videos"]}
    assert videos["odd"]["state"] == "done"
    assert (videos["odd"]["done"], videos["odd"]["invalid"], videos["odd"]["found"]) == (2, 1, 3)
    assert (videos["demo-1"]["done"], videos["demo-1"]["found"]) == (demo, demo)
    assert status["total"]["done"] == demo + 2
    assert status["total"]["invalid"] == 1
    assert [f["url"] for f in status["failures"]] == [box.edge_url("/odd/lost.ts")]
    assert status["failures"][0]["error"]
    one = cli.status("demo-1")
    assert [v["video_id"] for v in one["videos"]] == ["demo-1"]
    assert one["failures"] == []
    unknown = cli("status", "nobody", "--json")
    assert unknown.code == 2 and "nobody" in unknown.stderr

    quota = cli("quota", "--json")
    assert quota.code == 0, quota.stderr
    data = quota.json()
    limit = box.tencent.limits.push_per_day
    assert data["provider"] == "tencent" and data["area"] == "mainland"
    assert data["total"] == limit
    # lost.ts was pushed twice: Tencent "invalid" gets one more try.
    assert data["available"] == limit - (demo + 4) == limit - box.tencent.quota_used()
    assert data["batch"] == box.tencent.limits.push_batch
    assert data["reserved_in_flight"] == 0


# expiry -------------------------------------------------------------------------


def _age_ledger(path: Path, by: dt.timedelta) -> None:
    """Move every time the ledger holds ``by`` into the past: the clock moved on."""
    shift = int(by.total_seconds() * 1_000_000)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE videos SET created_at = created_at - ?, updated_at = updated_at - ?",
                   (shift, shift))  # fmt: skip
        db.execute(
            "UPDATE urls SET pushed_at = pushed_at - ?, expires_at = expires_at - ?",
            (shift, shift),
        )
    db.close()


def test_a_preheated_video_is_pushed_again_only_after_max_age(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=6, task_delay=0.1) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_MAX_AGE="PT1H")
        urls = expected_urls(cli, "demo-1")
        url = box.video_url("demo-1")
        assert cli("push", "demo-1", url).code == 0
        # Within the age: nothing to do.
        fresh = cli("push", "demo-1", url)
        assert fresh.code == 0 and "already preheated" in fresh.stderr
        assert Counter(box.tencent.received_urls()) == Counter(dict.fromkeys(urls, 1))
        # Half the age later: still nothing to do.
        _age_ledger(tmp_path / "ledger.sqlite3", dt.timedelta(minutes=30))
        assert "already preheated" in cli("push", "demo-1", url).stderr
        assert Counter(box.tencent.received_urls()) == Counter(dict.fromkeys(urls, 1))
        # Past the age: every URL is pushed again.
        _age_ledger(tmp_path / "ledger.sqlite3", dt.timedelta(minutes=31))
        again = cli("push", "demo-1", url, "--json")
        assert again.code == 0, again.stderr
        assert again.json()["pushed"] == len(urls)
        assert Counter(box.tencent.received_urls()) == Counter(dict.fromkeys(urls, 2))
        reset = cli("push", "demo-1", url, "--reset", "--json")
        assert reset.code == 0 and reset.json()["pushed"] == len(urls)
        assert Counter(box.tencent.received_urls()) == Counter(dict.fromkeys(urls, 3))


# ledger file trouble ---------------------------------------------------------------


def test_a_corrupt_ledger_file_is_one_sentence_and_left_untouched(cli: Cli) -> None:
    path = cli.workdir / "ledger.sqlite3"
    garbage = bytes(range(256)) * 64
    path.write_bytes(garbage)
    (cli.workdir / "videos.csv").write_text(f"demo-1,{cli.sandbox.video_url('demo-1')}\n")
    for args in (["status", "--json"], ["worker", "--once"], ["batch", "videos.csv"]):
        run = cli(*args)
        assert run.code == 1, (args, run.stderr)
        assert "Traceback" not in run.stderr
        assert str(path) in run.stderr
        assert run.stderr.count("error:") == 1 and run.stderr.strip().endswith("."), run.stderr
        assert path.read_bytes() == garbage
    assert cli.sandbox.tencent.received() == []


def test_a_locked_ledger_file_is_one_sentence_and_left_untouched(cli: Cli) -> None:
    path = cli.workdir / "ledger.sqlite3"
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    before = path.read_bytes()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('PRAGMA locking_mode = EXCLUSIVE')\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for args in (["status", "--json"], ["worker", "--once"]):
            run = cli(*args, extra_env={"CDN_PREHEAT_LOCK_TIMEOUT": "0.5"})
            assert run.code == 1, (args, run.stderr)
            assert "Traceback" not in run.stderr
            assert str(path) in run.stderr and "locked" in run.stderr
            assert run.stderr.count("error:") == 1, run.stderr
    finally:
        holder.kill()
        holder.wait()
    assert path.read_bytes() == before
    assert cli.status()["total"]["done"] > 0
    sqlite3.connect(path).close()
