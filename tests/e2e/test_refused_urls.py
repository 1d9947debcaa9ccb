"""One bad URL never blocks the queue (issue 10, item 1).

Tencent refuses a whole PushUrlsCache request for one URL it will not take (a
host that is not a CDN domain of the account, an over-long URL) and names no
URL. The scheduler splits such a request until the refused URLs stand alone,
marks them invalid with the CDN's reason and pushes the rest; later runs, and
the worker, go on as if nothing happened.
"""

from __future__ import annotations

import signal
from pathlib import Path

from clirun import Cli
from support import Proc, make_cli, wait_until, write_catalog

from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.sandbox.tencent import TencentLimits


def _total(cli: Cli) -> dict[str, int]:
    total: dict[str, int] = cli.status()["total"]
    return total


def _assert_quota_settled(cli: Cli, box: Sandbox) -> None:
    quota = cli("quota", "--json")
    assert quota.code == 0, quota.stderr
    assert quota.json()["reserved_in_flight"] == 0, quota.json()
    # Refused requests cost no quota: the emulator charged exactly what it accepted.
    assert box.tencent.quota_used() == len(box.tencent.received_urls())


def test_urls_left_by_a_push_without_cdn_host_never_fail_later_runs(tmp_path: Path) -> None:
    with Sandbox(videos=3, segments=6, task_delay=0.1) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=20)
        # CDN_HOST unset: the URLs keep the origin's host, which is no CDN domain.
        bare = cli("push", "demo-1", box.video_url("demo-1"), extra_env={"CDN_HOST": ""})
        assert "Traceback" not in bare.stderr
        origin_host = box.endpoints["origin"].split("://")[1]
        status = cli.status("demo-1")
        assert status["total"]["invalid"] == status["videos"][0]["found"] > 0
        assert status["total"]["pending"] == status["total"]["reserved"] == 0
        reasons = {f["error"] for f in status["failures"]}
        assert reasons and all(origin_host in r and "CdnHostNotExists" in r for r in reasons)
        assert box.tencent.received() == []

        # The next push, a batch and a worker push their own URLs and exit 0.
        second = cli("push", "demo-2", box.video_url("demo-2"), "--json")
        assert second.code == 0, second.stderr
        assert second.json()["done"] == second.json()["found"]
        catalog = write_catalog(cli, ["demo-3"])
        batch = cli("batch", str(catalog), "--json")
        assert batch.code == 0, batch.stderr
        worker = cli("worker", "--once")
        assert worker.code == 0, worker.stderr
        total = _total(cli)
        assert total["pending"] == total["reserved"] == total["submitted"] == 0
        assert all(origin_host not in url for url in box.tencent.received_urls())
        _assert_quota_settled(cli, box)


def _mixed_video(box: Sandbox, hosts: int) -> str:
    """A media playlist of local segments with one segment on each of ``hosts`` foreign hosts."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
    for i in range(30):
        lines += ["#EXTINF:4,", f"seg{i}.ts"]
        box.origin.add_file(f"/mixed/seg{i}.ts", b"x", "video/mp2t")
        if i % 10 == 5 and i // 10 < hosts:
            lines += ["#EXTINF:4,", f"http://foreign{i}.example.net/x{i}.ts"]
    lines.append("#EXT-X-ENDLIST")
    box.origin.add_file("/mixed/index.m3u8", ("\n".join(lines) + "\n").encode())
    return f"{box.endpoints['origin']}/mixed/index.m3u8"


def _catalog(cli: Cli, url: str) -> Path:
    path = cli.workdir / "mixed.csv"
    path.write_text(f"mixed,{url}\n")
    return path


def test_foreign_hosts_allowed_are_isolated_by_host_and_the_rest_is_pushed(
    tmp_path: Path,
) -> None:
    with Sandbox(videos=1, segments=4, task_delay=0.1) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_ALLOW_FOREIGN_HOSTS="true")
        run = cli("push", "mixed", _mixed_video(box, hosts=3), "--json")
        assert run.code == 0, run.stderr
        failures = cli.status("mixed")["failures"]
        assert sorted(f["url"] for f in failures) == sorted(
            f"http://foreign{i}.example.net/x{i}.ts" for i in (5, 15, 25)
        )
        assert all(f["state"] == "invalid" and "not a CDN domain" in f["error"] for f in failures)
        received = box.tencent.received_urls()
        assert len(received) == len(set(received)) == 31  # 30 segments and the playlist
        assert not any("foreign" in url for url in received)
        _assert_quota_settled(cli, box)


def test_an_over_long_url_is_isolated_by_bisection(tmp_path: Path) -> None:
    limits = TencentLimits(max_url_length=120)
    with Sandbox(videos=1, segments=4, task_delay=0.1, tencent_limits=limits) as box:
        long_name = "long-" + "x" * 150 + ".ts"
        box.origin.add_file(f"/long/{long_name}", b"x", "video/mp2t")
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
        for i in range(40):
            box.origin.add_file(f"/long/s{i}.ts", b"x", "video/mp2t")
            lines += ["#EXTINF:4,", f"s{i}.ts"]
            if i == 17:
                lines += ["#EXTINF:4,", long_name]
        box.origin.add_file(
            "/long/index.m3u8", ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()
        )
        cli = make_cli(box, tmp_path, CDN_PREHEAT_BATCH_SIZE=32)
        run = cli("push", "long", f"{box.endpoints['origin']}/long/index.m3u8", "--json")
        assert run.code == 0, run.stderr
        failures = cli.status("long")["failures"]
        assert [f["url"].rsplit("/", 1)[1] for f in failures] == [long_name]
        assert "CdnUrlExceedLength" in failures[0]["error"]
        received = box.tencent.received_urls()
        assert len(received) == len(set(received)) == 41
        assert box.tencent.outcomes["invalid"] >= 1  # the refusals did happen
        _assert_quota_settled(cli, box)


def test_without_a_length_limit_a_long_url_is_pushed_like_any_other(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=4, task_delay=0.1) as box:
        long_name = "long-" + "x" * 150 + ".ts"
        box.origin.add_file(f"/long/{long_name}", b"x", "video/mp2t")
        box.origin.add_file(
            "/long/index.m3u8",
            f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n{long_name}\n#EXT-X-ENDLIST\n".encode(),
        )
        cli = make_cli(box, tmp_path)
        run = cli("push", "long", f"{box.endpoints['origin']}/long/index.m3u8", "--json")
        assert run.code == 0, run.stderr
        assert run.json()["done"] == 2
        assert cli.status("long")["failures"] == []


def test_worker_once_exits_0_and_pushes_the_rest_past_refused_urls(tmp_path: Path) -> None:
    with Sandbox(videos=2, segments=6, task_delay=0.1) as box:
        cli = make_cli(box, tmp_path, CDN_PREHEAT_ALLOW_FOREIGN_HOSTS="true")
        queued = cli("batch", str(write_catalog(cli, ["demo-1"])), "--queue-only")
        assert queued.code == 0, queued.stderr
        url = _mixed_video(box, hosts=2)
        mixed = cli("batch", str(_catalog(cli, url)), "--queue-only")
        assert mixed.code == 0, mixed.stderr
        worker = cli("worker", "--once")
        assert worker.code == 0, worker.stderr
        total = _total(cli)
        assert total["invalid"] == 2
        assert total["pending"] == total["reserved"] == total["submitted"] == 0
        assert total["done"] == len(box.tencent.received_urls())
        _assert_quota_settled(cli, box)


def test_a_running_worker_rides_out_refusals_faults_and_unknown_errors(tmp_path: Path) -> None:
    faults = Faults(rate_limited=0.2, server_error=0.1, drop=0.05, seed=7)
    with Sandbox(videos=3, segments=8, task_delay=0.1, faults=faults) as box:
        cli = make_cli(
            box,
            tmp_path,
            CDN_PREHEAT_ALLOW_FOREIGN_HOSTS="true",
            CDN_PREHEAT_BATCH_SIZE=10,
        )
        catalog = write_catalog(cli, ["demo-1", "demo-2", "demo-3"])
        # Faults only once the queue is in the ledger: queueing itself asks for the quota.
        box.faults.rate_limited = box.faults.server_error = box.faults.drop = 0.0
        queued = cli("batch", str(catalog), "--queue-only")
        assert queued.code == 0, queued.stderr
        mixed = cli("batch", str(_catalog(cli, _mixed_video(box, 3))), "--queue-only")
        assert mixed.code == 0, mixed.stderr
        box.faults.rate_limited, box.faults.server_error, box.faults.drop = 0.2, 0.1, 0.05
        # An error the product has no rule for, several times in a row.
        box.tencent.inject("FailedOperation.SandboxUnknown", times=3)
        proc = Proc(cli, "worker", "--idle", "0.2", "--wait-timeout", "30")

        def finished() -> bool:
            assert proc.poll() is None, proc.stderr
            total = _total(cli)
            return total["pending"] + total["reserved"] + total["submitted"] == 0

        wait_until(finished, timeout=120, interval=0.3)
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.stderr
        total = _total(cli)
        assert total["invalid"] == 3
        received = box.tencent.received_urls()
        assert total["done"] == len(set(received))
        assert box.tencent.outcomes["rate_limited"] + box.tencent.outcomes["fault"] > 0
        assert "FailedOperation.SandboxUnknown" in proc.stderr
