"""`cdn-preheat push` through the front door, against the sandbox over real HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from clirun import Cli

from cdn_preheat.config import SANDBOX_TENCENT_SECRET_KEY


def expected_urls(cli: Cli, video_id: str) -> list[str]:
    run = cli("expand", cli.sandbox.video_url(video_id))
    assert run.code == 0, run.stderr
    return run.stdout.split()


def test_full_push_reaches_the_cdn_and_a_second_push_pushes_nothing(cli: Cli) -> None:
    urls = expected_urls(cli, "demo-2")
    assert len(urls) > 50

    first = cli("push", "demo-2", cli.sandbox.video_url("demo-2"), "--json")
    assert first.code == 0, first.stderr
    summary = first.json()
    assert summary["found"] == len(urls)
    assert summary["pushed"] == len(urls)
    assert summary["done"] == len(urls)
    assert sorted(cli.sandbox.tencent.received_urls()) == sorted(urls)
    assert all(url in cli.sandbox.cache for url in urls)  # the edge holds them now

    second = cli("push", "demo-2", cli.sandbox.video_url("demo-2"))
    assert second.code == 0
    assert "already preheated" in second.stderr
    assert len(cli.sandbox.tencent.received_urls()) == len(urls)


def test_a_url_shared_by_two_videos_is_pushed_once(cli: Cli) -> None:
    origin = cli.sandbox.origin
    for name in ("a", "b"):
        body = (
            "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n/vod/demo-1/v0/seg0.ts\n"
            f"#EXTINF:4,\n{name}.ts\n#EXT-X-ENDLIST\n"
        )
        origin.add_file(f"/shared/{name}.m3u8", body.encode())
        origin.add_file(f"/shared/{name}.ts", b"x", "video/mp2t")
    for name in ("a", "b"):
        run = cli("push", f"video-{name}", f"{cli.sandbox.endpoints['origin']}/shared/{name}.m3u8")
        assert run.code == 0, run.stderr
    counts = Counter(cli.sandbox.tencent.received_urls())
    assert counts[cli.sandbox.edge_url("/vod/demo-1/v0/seg0.ts")] == 1
    assert set(counts.values()) == {1}


def test_wrong_secret_key_is_one_clear_sentence_and_the_ledger_is_unchanged(cli: Cli) -> None:
    wrong = "definitely-not-the-key-1234"
    run = cli(
        "push", "demo-1", cli.sandbox.video_url("demo-1"), extra_env={"TENCENT_SECRET_KEY": wrong}
    )
    assert run.code == 2  # a configuration error, like every other (README: exit codes)
    assert "TENCENT_SECRET_KEY" in run.stderr
    assert wrong not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    assert cli.status()["videos"] == []
    assert cli.sandbox.tencent.received_urls() == []


def test_quota_runs_out_mid_video_then_the_next_day_finishes_without_duplicates(cli: Cli) -> None:
    urls = expected_urls(cli, "demo-1")
    cli.sandbox.tencent.limits.push_per_day = 25
    first = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--json")
    assert first.code == 3, first.stderr
    assert first.json()["quota_exhausted"] is True
    assert first.json()["pending"] == len(urls) - 25
    assert len(cli.sandbox.tencent.received_urls()) == 25
    # The playlists and the start of every rendition went first.
    received = set(cli.sandbox.tencent.received_urls())
    assert {u for u in urls if u.endswith(".m3u8")} <= received

    again = cli("push", "demo-1", cli.sandbox.video_url("demo-1"))
    assert again.code == 3  # same provider day: still nothing to spend
    assert len(cli.sandbox.tencent.received_urls()) == 25

    cli.sandbox.clock.next_day()
    cli.sandbox.tencent.limits.push_per_day = 1000
    last = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--json")
    assert last.code == 0, last.stderr
    received_all = cli.sandbox.tencent.received_urls()
    assert sorted(received_all) == sorted(urls)  # every URL once, none twice
    assert cli.status("demo-1")["videos"][0]["state"] == "done"


def test_a_foreign_host_url_is_skipped_and_reported_without_failing_the_batch(cli: Cli) -> None:
    origin = cli.sandbox.origin
    origin.add_file(
        "/mixed/index.m3u8",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nlocal.ts\n"
        b"#EXTINF:4,\nhttp://elsewhere.example.net/x.ts\n#EXTINF:4,\nlocal2.ts\n#EXT-X-ENDLIST\n",
    )
    origin.add_file("/mixed/local.ts", b"x", "video/mp2t")
    origin.add_file("/mixed/local2.ts", b"x", "video/mp2t")
    run = cli("push", "mixed", f"{cli.sandbox.endpoints['origin']}/mixed/index.m3u8", "--json")
    assert run.code == 0, run.stderr
    summary = run.json()
    assert summary["skipped"] == {"foreign host": 1}
    assert summary["pushed"] == 3
    assert "elsewhere.example.net" not in " ".join(cli.sandbox.tencent.received_urls())
    table = cli("push", "mixed", f"{cli.sandbox.endpoints['origin']}/mixed/index.m3u8", "--reset")
    assert "skipped: foreign host" in table.stderr


def test_an_html_error_page_is_a_clear_error_and_nothing_is_recorded(cli: Cli) -> None:
    cli.sandbox.origin.add_file(
        "/broken/master.m3u8", b"<html><body>502 Bad Gateway</body></html>", "text/html"
    )
    url = f"{cli.sandbox.endpoints['origin']}/broken/master.m3u8"
    run = cli("push", "broken", url)
    assert run.code == 2
    assert url in run.stderr
    assert "Traceback" not in run.stderr
    assert cli.status()["videos"] == []


def test_dry_run_pushes_nothing(cli: Cli) -> None:
    run = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--dry-run", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["found"] == len(expected_urls(cli, "demo-1"))
    assert cli.sandbox.tencent.received_urls() == []
    assert cli.status()["videos"] == []


def test_reset_forgets_the_video_and_pushes_again(cli: Cli) -> None:
    urls = expected_urls(cli, "demo-1")
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    run = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--reset", "--json")
    assert run.code == 0, run.stderr
    assert run.json()["pushed"] == len(urls)
    assert Counter(cli.sandbox.tencent.received_urls()) == Counter(dict.fromkeys(urls, 2))


def test_the_old_usage_still_works(cli: Cli) -> None:
    run = cli("demo-3", cli.sandbox.video_url("demo-3"), "--reset")
    assert run.code == 0, run.stderr
    assert len(cli.sandbox.tencent.received_urls()) == len(expected_urls(cli, "demo-3"))
    main_py = Path(__file__).resolve().parents[2] / "main.py"
    old = subprocess.run(
        [sys.executable, str(main_py), "demo-3", cli.sandbox.video_url("demo-3")],
        cwd=cli.workdir,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert old.returncode == 0, old.stderr
    assert "already preheated" in old.stderr


def test_a_malformed_setting_is_exit_2_naming_the_variable(cli: Cli) -> None:
    run = cli(
        "push", "demo-1", cli.sandbox.video_url("demo-1"), extra_env={"CDN_PROVIDER": "akamai"}
    )
    assert run.code == 2
    assert "CDN_PROVIDER" in run.stderr
    assert "Traceback" not in run.stderr


def test_secrets_never_reach_output_or_the_ledger(cli: Cli) -> None:
    run = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--json")
    assert run.code == 0
    assert SANDBOX_TENCENT_SECRET_KEY not in run.stdout + run.stderr
    ledger_bytes = (cli.workdir / "ledger.sqlite3").read_bytes()
    assert SANDBOX_TENCENT_SECRET_KEY.encode() not in ledger_bytes


def test_a_push_that_stops_following_its_tasks_says_so(cli: Cli) -> None:
    import dataclasses

    tencent = cli.sandbox.tencent
    tencent.limits = dataclasses.replace(tencent.limits, task_delay=3600)  # never done here
    pushed = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--wait-timeout", "0", "--json")
    assert pushed.code == 0, pushed.stderr
    summary = pushed.json()
    assert summary["tracking_timed_out"] is True
    assert summary["in_flight"] == summary["pushed"] > 0

    text = cli("push", "demo-3", cli.sandbox.video_url("demo-3"), "--wait-timeout", "0")
    assert text.code == 0, text.stderr
    assert "Stopped following the tasks at --wait-timeout" in text.stderr
    assert "still processing at the CDN" in text.stderr
