"""Targets through the front door: a push to three targets SIGKILLed mid-run, then rerun."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from clirun import base_env
from support import Proc, duplicates, expected_urls, make_cli, wait_until

from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox, TencentAccount

LEASE = 1.0
NAMES = ("tencent", "tencent-b", "qiniu")


def test_three_targets_killed_mid_run_then_rerun_lose_nothing_and_push_nothing_twice(
    tmp_path: Path,
) -> None:
    # tencent-b answers slowly, so the kill finds it half-way through the video.
    slow = TencentAccount(faults=Faults(latency=0.05))
    accounts = {"tencent-b": slow}
    with Sandbox(videos=1, segments=30, task_delay=0.2, tencent_accounts=accounts) as box:
        env = box.targets_file(tmp_path / "targets.toml", NAMES)
        cli = make_cli(
            box, tmp_path, CDN_PREHEAT_BATCH_SIZE=4, CDN_PREHEAT_LEASE_SECONDS=LEASE,
            CDN_PREHEAT_CONCURRENCY=2, **env,
        )  # fmt: skip
        urls = expected_urls(cli, "demo-1")
        url = box.video_url("demo-1")
        b = box.apis["tencent-b"]

        proc = Proc(cli, "push", "demo-1", url)
        wait_until(lambda: len(b.received_urls()) >= 8 or proc.poll() is not None)  # type: ignore[attr-defined]
        assert proc.poll() is None, f"finished before the kill: {proc.stderr}"
        proc.kill()
        assert len(b.received_urls()) < len(urls)  # type: ignore[attr-defined]
        time.sleep(LEASE + 0.2)  # past the lease: the rerun reconciles the dead run's batches

        final = cli("push", "demo-1", url, "--json")
        assert final.code == 0, final.stderr
        for name in NAMES:
            received = box.apis[name].received_urls()  # type: ignore[attr-defined]
            assert set(received) == set(urls), name  # no loss
            assert duplicates(received) == {}, name  # no URL twice to one target
        rows = {row["target"]: row for row in final.json()["targets"]}
        assert set(rows) == set(NAMES)
        assert all(row["done"] == len(urls) and row["pending"] == 0 for row in rows.values())

        status = cli.status()
        per_target = {row["target"]: row for row in status["targets"]}
        assert per_target["tencent-b"]["done"] == len(urls)
        assert per_target["qiniu"]["area"] == "global"

        quota = cli("quota", "--json")
        assert quota.code == 0, quota.stderr
        assert [row["target"] for row in quota.json()["targets"]] == list(NAMES)


def test_bad_keys_of_one_target_fail_it_alone_with_its_sentence(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=4, task_delay=0.1) as box:
        env = box.targets_file(tmp_path / "targets.toml", ("tencent", "qiniu"))
        wrong = "wrong-qiniu-secret-123"
        cli = make_cli(box, tmp_path, **{**env, "SANDBOX_QINIU_KEY_SECRET": wrong})
        urls = expected_urls(cli, "demo-1")
        run = cli("push", "demo-1", box.video_url("demo-1"))
        assert run.code == 2, run.stderr
        assert "target qiniu: Qiniu rejected the credentials" in run.stderr
        assert "SANDBOX_QINIU_KEY_ID and SANDBOX_QINIU_KEY_SECRET" in run.stderr
        assert wrong not in run.stderr + run.stdout
        assert "Traceback" not in run.stderr
        assert sorted(box.tencent.received_urls()) == sorted(urls)
        assert box.qiniu.received_urls() == []

        again = cli("push", "demo-1", box.video_url("demo-1"), "--verify", "--json")
        assert again.code == 2, again.stderr
        rows = {row["target"]: row for row in again.json()["targets"]}
        assert rows["tencent"]["hit_ratio"] == 1.0  # its own URLs, at its edge
        # Qiniu's URLs were not pushed; the sandbox's one shared edge holds them from the
        # Tencent push, so its ratio says nothing here: only that it is reported per target.
        assert "hit_ratio" in rows["qiniu"]
        assert rows["qiniu"]["error"].startswith("target qiniu: Qiniu rejected")
        assert len(box.tencent.received_urls()) == len(urls)  # nothing pushed twice


def test_demo_targets_preheats_into_four_accounts_and_shows_each(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "cdn_preheat", "demo", "--targets", "--videos", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = done.stderr[done.stderr.index("demo targets") :]
    rows = [line for line in table.splitlines() if line.startswith("│")]
    names = [row.split("│")[1].strip() for row in rows]
    assert names == ["tencent", "tencent-b", "qiniu", "edgeone"]
    assert all(row.split("│")[-2].strip() == "ok" for row in rows)
    pushed = {row.split("│")[4].strip() for row in rows}
    assert len(pushed) == 1 and pushed != {"0"}  # every account got the same URLs
    # each account's own URLs, probed at its own domain, are warm
    assert [row.split("│")[-3].strip() for row in rows] == ["100%"] * 4


def test_batch_queue_only_then_worker_once_drains_every_target(tmp_path: Path) -> None:
    with Sandbox(videos=2, segments=4, task_delay=0.1) as box:
        env = box.targets_file(tmp_path / "targets.toml", ("tencent", "qiniu"))
        cli = make_cli(box, tmp_path, **env)
        (tmp_path / "videos.csv").write_text(
            "".join(f"demo-{n},{box.video_url(f'demo-{n}')}\n" for n in (1, 2))
        )
        queued = cli("batch", "videos.csv", "--queue-only", "--json")
        assert queued.code == 0, queued.stderr
        assert {row["target"]: row["pending"] for row in queued.json()["targets"]} == {
            "tencent": sum(v["found"] for v in queued.json()["videos"]),
            "qiniu": sum(v["found"] for v in queued.json()["videos"]),
        }
        assert box.tencent.received_urls() == [] and box.qiniu.received_urls() == []
        worked = cli("worker", "--once", "--wait-timeout", "30")
        assert worked.code == 0, worked.stderr
        urls = expected_urls(cli, "demo-1") + expected_urls(cli, "demo-2")
        assert sorted(box.tencent.received_urls()) == sorted(set(urls))
        assert sorted(box.qiniu.received_urls()) == sorted(set(urls))


def test_sandbox_command_runs_several_accounts_and_writes_their_targets_file(
    tmp_path: Path,
) -> None:
    import json

    targets = tmp_path / "targets.toml"
    process = subprocess.Popen(
        [sys.executable, "-m", "cdn_preheat", "sandbox", "--videos", "1",
         "--targets", str(targets)],
        cwd=tmp_path, env=base_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        printed = json.loads(process.stdout.readline())
        assert printed["CDN_PREHEAT_TARGETS"] == str(targets)
        assert printed["SANDBOX_TENCENT_B_KEY_ID"] != printed["SANDBOX_TENCENT_KEY_ID"]
        keys = [v for k, v in printed.items() if k.startswith("SANDBOX_")]
        assert keys and not any(key in targets.read_text() for key in keys)  # names only
        env = {**base_env(tmp_path), **{k: v for k, v in printed.items() if k.isupper()}}
        run = subprocess.run(
            [sys.executable, "-m", "cdn_preheat", "quota", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        rows = json.loads(run.stdout)["targets"]
        assert [row["target"] for row in rows] == ["tencent", "tencent-b", "qiniu", "edgeone"]
        assert all(row["error"] is None for row in rows)
        hosts = [line for line in targets.read_text().splitlines() if line.startswith("cdn_host")]
        assert len(hosts) == 4 and len(set(hosts)) == 4  # a domain per account
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_verify_per_target_shows_each_and_exits_1_for_the_cold_one(tmp_path: Path) -> None:
    accounts = {"tencent-b": TencentAccount()}
    with Sandbox(
        videos=1, segments=4, task_delay=0.1, tencent_accounts=accounts, edge_per_account=True
    ) as box:
        env = box.targets_file(tmp_path / "targets.toml", ("tencent", "tencent-b", "qiniu"))
        wrong = "wrong-b-secret-4321"
        cli = make_cli(box, tmp_path, **{**env, "SANDBOX_TENCENT_B_KEY_SECRET": wrong})
        assert cli("push", "demo-1", box.video_url("demo-1")).code == 2  # tencent-b: keys

        checked = cli("verify", "demo-1", "--all", "--json")
        assert checked.code == 1, checked.stderr
        rows = {row["target"]: row for row in checked.json()["targets"]}
        assert list(rows) == ["tencent", "tencent-b", "qiniu"]
        assert checked.json()["passed"] is False
        for name in ("tencent", "qiniu"):
            assert rows[name]["passed"] and rows[name]["overall"]["ratio"] == 1.0, name
            hosts = {url["url"].split("/")[2] for url in rows[name]["urls"]}
            assert hosts == {box.hosts[name]} == {rows[name]["cdn_host"]}
        cold = rows["tencent-b"]
        assert not cold["passed"] and cold["overall"]["ratio"] == 0.0
        assert "below --min-hit-ratio" in cold["reason"]

        lenient = cli("verify", "demo-1", "--min-hit-ratio", "0", "--sample", "3")
        assert lenient.code == 0, lenient.stderr  # every probe answered, ratio 0 allowed
        table = lenient.stderr[lenient.stderr.index("CDN cache per target") :]
        rows = [line for line in table.splitlines() if line.startswith("│")]
        assert [row.split("│")[1].strip() for row in rows] == ["tencent", "tencent-b", "qiniu"]

        requeued = cli("verify", "demo-1", "--all", "--requeue", "--json")
        assert requeued.code == 1
        by_name = {row["target"]: row["requeued"] for row in requeued.json()["targets"]}
        # the warm targets have no misses; tencent-b's misses are still queued there
        assert by_name == {"tencent": 0, "tencent-b": 0, "qiniu": 0}

        pinned = cli("verify", "demo-1", "--edge", "127.0.0.1")
        assert pinned.code == 2 and "each target is probed at its own CDN host" in pinned.stderr
        assert wrong not in checked.stdout + checked.stderr + lenient.stderr
        debug = cli("--debug", "verify", "demo-1", "--json")
        assert debug.code == 1
        keys = [v for k, v in env.items() if k.endswith(("_KEY_SECRET", "_KEY_ID"))]
        assert keys and not any(key in debug.stdout + debug.stderr for key in [*keys, wrong])


def test_purge_per_target_fails_only_the_target_with_bad_keys(tmp_path: Path) -> None:
    with Sandbox(videos=1, segments=4, task_delay=0.1, edge_per_account=True) as box:
        names = ("tencent", "qiniu", "edgeone")
        env = box.targets_file(tmp_path / "targets.toml", names)
        cli = make_cli(box, tmp_path, **env)
        assert cli("push", "demo-1", box.video_url("demo-1")).code == 0
        urls = expected_urls(cli, "demo-1")

        wrong = "wrong-edgeone-secret-77"
        bad = {"SANDBOX_EDGEONE_KEY_SECRET": wrong}
        purged = cli("purge", "--video", "demo-1", "--json", extra_env=bad)
        assert purged.code == 2, purged.stderr
        rows = {row["target"]: row for row in purged.json()["targets"]}
        assert list(rows) == list(names)
        for name in ("tencent", "qiniu"):
            assert rows[name]["error"] is None and rows[name]["exit_code"] == 0, name
            assert rows[name]["urls"] == rows[name]["done"] == len(urls), name
        assert rows["edgeone"]["exit_code"] == 2
        assert rows["edgeone"]["error"].startswith("target edgeone: ")
        assert "SANDBOX_EDGEONE_KEY_SECRET" in rows["edgeone"]["error"]
        assert wrong not in purged.stdout + purged.stderr

        shown = cli("purge", "--video", "demo-1", extra_env=bad)
        assert shown.code == 2
        assert "purge per target" in shown.stderr
        assert "target edgeone: " in shown.stderr and wrong not in shown.stderr
        assert "Traceback" not in shown.stderr

        # --debug logs every API call: no key of any target, right or wrong, shows
        debug = cli("--debug", "purge", "--video", "demo-1", "--json", extra_env=bad)
        assert debug.code == 2
        secrets = [v for k, v in env.items() if k.endswith(("_KEY_SECRET", "_KEY_ID"))]
        secrets.append(wrong)
        assert secrets and not any(s in debug.stdout + debug.stderr for s in secrets)

        # the purged targets are cold at their own hosts, edgeone's copies are untouched
        checked = cli("verify", "demo-1", "--all", "--json", "--min-hit-ratio", "0")
        ratios = {row["target"]: row["overall"]["ratio"] for row in checked.json()["targets"]}
        assert ratios == {"tencent": 0.0, "qiniu": 0.0, "edgeone": 1.0}


def test_push_reset_purge_purges_every_target_then_pushes_or_touches_nothing(
    tmp_path: Path,
) -> None:
    with Sandbox(videos=1, segments=4, task_delay=0.1, edge_per_account=True) as box:
        env = box.targets_file(tmp_path / "targets.toml", ("tencent", "edgeone"))
        cli = make_cli(box, tmp_path, **env)
        url = box.video_url("demo-1")
        assert cli("push", "demo-1", url).code == 0
        n = len(expected_urls(cli, "demo-1"))

        def purged_urls() -> tuple[int, int]:
            tencent = sum(box.tencent.quota_used(a, "url") for a in ("mainland", "global"))
            return tencent, box.edgeone.quota_used("purge_url")

        wrong = "wrong-eo-secret-2468"
        refused = cli("push", "demo-1", url, "--reset", "--purge",
                      extra_env={"SANDBOX_EDGEONE_KEY_SECRET": wrong})  # fmt: skip
        assert refused.code == 2, refused.stderr
        assert "push --purge needs every target to purge first: target edgeone: " in refused.stderr
        assert "Nothing was purged, erased or pushed." in refused.stderr
        assert wrong not in refused.stdout + refused.stderr
        assert purged_urls() == (0, 0)
        assert len(box.tencent.received_urls()) == n  # not pushed again
        assert cli.status("demo-1")["total"]["done"] == 2 * n  # the record kept, both targets

        again = cli("push", "demo-1", url, "--reset", "--purge", "--json")
        assert again.code == 0, again.stderr
        assert purged_urls() == (n, n)  # every old URL purged on each target
        assert len(box.tencent.received_urls()) == len(box.edgeone.received_urls()) == 2 * n
        rows = {row["target"]: row for row in again.json()["targets"]}
        assert all(row["done"] == n for row in rows.values())
        assert cli("verify", "demo-1", "--all").code == 0


def test_status_and_quota_per_target_answer_while_a_writer_holds_the_lock(
    tmp_path: Path,
) -> None:
    import sqlite3

    with Sandbox(videos=1, segments=4, task_delay=0.1) as box:
        env = box.targets_file(tmp_path / "targets.toml", ("tencent", "qiniu"))
        cli = make_cli(box, tmp_path, COLUMNS=200, **env)
        pushed = cli("push", "demo-1", box.video_url("demo-1"), "--verify")
        assert pushed.code == 0, pushed.stderr
        # push --verify shows the grid `verify` shows: a row per target, its own host
        grid = pushed.stderr[pushed.stderr.index("demo-1: CDN cache per target") :]
        assert [r.split("│")[1].strip() for r in grid.splitlines() if r.startswith("│")] == [
            "tencent", "qiniu",
        ]  # fmt: skip
        assert "target qiniu: verify: 100.0% cached" in pushed.stderr
        expected = cli.status()
        writer = sqlite3.connect(tmp_path / "ledger.sqlite3", isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # what a worker holds while it claims
            writer.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq'")
            lock = {"CDN_PREHEAT_LOCK_TIMEOUT": "3"}
            status = cli("status", "--json", extra_env=lock)
            assert status.code == 0, status.stderr
            assert status.json() == expected
            assert [row["target"] for row in status.json()["targets"]] == ["tencent", "qiniu"]
            quota = cli("quota", "--json", extra_env=lock)
            assert quota.code == 0, quota.stderr
            rows = quota.json()["targets"]
            assert [row["target"] for row in rows] == ["tencent", "qiniu"]
            assert all(row["reserved_in_flight"] == 0 and row["error"] is None for row in rows)
        finally:
            writer.execute("ROLLBACK")
            writer.close()
