"""Issue 4 through the front door: Qiniu in the sandbox, purge, bucket discovery, stats, logs.

Every command runs as a user runs it (a subprocess with only environment
variables) against the sandbox over real HTTP.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from clirun import Cli, base_env

from cdn_preheat.config import Settings
from cdn_preheat.hls import ExpandOptions, expand
from cdn_preheat.ledger import open_ledger
from cdn_preheat.sandbox.server import Sandbox

UTC8 = dt.timezone(dt.timedelta(hours=8))
YESTERDAY = (dt.datetime.now(UTC8).date() - dt.timedelta(days=1)).isoformat()


@pytest.fixture
def qiniu_sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=4, segments=12, task_delay=0.2, edge_vendor="qiniu") as box:
        yield box


@pytest.fixture
def qcli(qiniu_sandbox: Sandbox, tmp_path: Path) -> Cli:
    return Cli(qiniu_sandbox, tmp_path, {**base_env(tmp_path), **qiniu_sandbox.client_env("qiniu")})


def expanded(cli: Cli, video_id: str) -> list[str]:
    """The URLs a push of the video sends (what ``cdn-preheat expand`` prints)."""
    options = ExpandOptions(cdn_host=cli.sandbox.edge.netloc)
    return [item.url for item in expand(cli.sandbox.video_url(video_id), options).urls]


def push(cli: Cli, video_id: str, *options: str) -> dict[str, object]:
    run = cli("push", video_id, cli.sandbox.video_url(video_id), "--json", *options)
    assert run.code == 0, run.stderr
    result: dict[str, object] = run.json()
    return result


def open_purge_tasks(cli: Cli, provider: str, area: str) -> list[str]:
    settings = Settings(_env_file=None, cdn_preheat_db=cli.env["CDN_PREHEAT_DB"])  # type: ignore[call-arg]
    ledger = open_ledger(settings)
    try:
        return [task.task_id for task in ledger.open_tasks(provider, area, "purge")]
    finally:
        ledger.close()


# -- the sandbox and demo on Qiniu ------------------------------------------------


def test_demo_runs_end_to_end_on_qiniu(qiniu_sandbox: Sandbox, tmp_path: Path) -> None:
    cli = Cli(qiniu_sandbox, tmp_path, base_env(tmp_path))  # the demo starts its own sandbox
    run = cli("demo", "--provider", "qiniu", "--videos", "2")
    assert run.code == 0, run.stderr
    assert "demo summary" in run.stderr
    assert "failed" in run.stderr and "Traceback" not in run.stderr


def test_push_on_qiniu_reaches_the_edge(qcli: Cli) -> None:
    urls = expanded(qcli, "demo-2") + expanded(qcli, "demo-4")
    assert len(urls) > 100  # more than Qiniu's default daily quota of 100
    assert push(qcli, "demo-2")["done"] + push(qcli, "demo-4")["done"] == len(urls)
    assert sorted(qcli.sandbox.qiniu.received_urls()) == sorted(urls)
    assert all(len(r.urls) <= 20 for r in qcli.sandbox.qiniu.received())
    assert all(url in qcli.sandbox.cache for url in urls)


# -- purge ----------------------------------------------------------------------


def test_purge_urls_drops_anti_leech_parameters_and_empties_the_edge(qcli: Cli) -> None:
    urls = expanded(qcli, "demo-1")
    push(qcli, "demo-1")
    signed = [f"{url}?sign=0123abcd&t=65f0a1b2" for url in urls[:2]]
    run = qcli("purge", *signed, "--json")
    assert run.code == 0, run.stderr
    report = run.json()
    assert (report["urls"], report["done"], report["failed"]) == (2, 2, 0)
    assert not any(url in qcli.sandbox.cache for url in urls[:2])
    assert all(url in qcli.sandbox.cache for url in urls[2:])
    assert open_purge_tasks(qcli, "qiniu", "global") == []  # followed to the end and closed


def test_purge_video_uses_the_ledger_in_batches_the_provider_accepts(qcli: Cli) -> None:
    urls = expanded(qcli, "demo-1")
    push(qcli, "demo-1")
    run = qcli("purge", "--video", "demo-1", "--no-wait", "--json")
    assert run.code == 0, run.stderr
    report = run.json()
    assert report["urls"] == len(urls)
    assert len(report["tasks"]) == math.ceil(len(urls) / 20)  # Qiniu: 20 URLs a refresh
    assert report["processing"] == len(urls)
    # Recorded as purge tasks, apart from prefetch tasks.
    assert sorted(open_purge_tasks(qcli, "qiniu", "global")) == sorted(report["tasks"])
    assert not any(url in qcli.sandbox.cache for url in urls)


def test_purge_dir_on_tencent_with_delete(cli: Cli) -> None:
    push(cli, "demo-1")
    push(cli, "demo-3")
    directory = cli.sandbox.edge_url("/vod/demo-1/")
    run = cli("purge", "--dir", directory, "--delete", "--json")
    assert run.code == 0, run.stderr
    assert (run.json()["dirs"], run.json()["done"]) == (1, 1)
    assert not any(url.startswith(directory) for url in _cached(cli, "demo-1"))
    assert _cached(cli, "demo-3")  # another video's files stay
    assert cli.sandbox.tencent.quota_used("mainland", "path") == 1


def _cached(cli: Cli, video_id: str) -> list[str]:
    paths = cli.sandbox.origin.catalog_paths(video_id)
    return [u for u in map(cli.sandbox.edge_url, paths) if u in cli.sandbox.cache]


def test_purge_quota_spent_exits_3_and_says_so(qcli: Cli) -> None:
    urls = expanded(qcli, "demo-1")
    push(qcli, "demo-1")
    qcli.sandbox.qiniu.limits.refresh_url_quota = 30
    run = qcli("purge", "--video", "demo-1", "--json")
    assert run.code == 3, run.stderr
    report = run.json()
    assert report["quota_exhausted"] is True
    assert report["done"] == 30  # what fits is purged: 20, then halves of the next request
    assert report["not_submitted"] == len(urls) - 30
    assert len(report["left"]) == len(urls) - 30
    assert "quota" in run.stderr and "Traceback" not in run.stderr


def test_purge_needs_something_to_purge(qcli: Cli) -> None:
    assert qcli("purge").code == 2
    assert qcli("purge", "--video", "never-pushed").code == 2
    assert qcli("purge", "ftp://x/y").code == 2
    assert qcli("purge", qcli.sandbox.edge_url("/a.ts"), "--delete").code == 2


def test_republish_purges_the_old_urls_then_pushes_again(cli: Cli) -> None:
    urls = expanded(cli, "demo-1")
    push(cli, "demo-1")
    summary = push(cli, "demo-1", "--reset", "--purge")
    assert summary["pushed"] == summary["done"] == len(urls)
    assert cli.sandbox.tencent.quota_used("mainland", "url") == len(urls)
    assert sorted(cli.sandbox.tencent.received_urls()) == sorted(urls * 2)
    assert all(url in cli.sandbox.cache for url in urls)  # purged, then preheated anew


def test_republish_stops_before_pushing_when_the_purge_quota_is_spent(cli: Cli) -> None:
    urls = expanded(cli, "demo-1")
    push(cli, "demo-1")
    cli.sandbox.tencent.limits.purge_url_per_day = 10
    run = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--reset", "--purge")
    assert run.code == 3
    assert "quota" in run.stderr
    assert len(cli.sandbox.tencent.received_urls()) == len(urls)  # nothing pushed again
    assert cli.status("demo-1")["videos"][0]["state"] == "done"  # and nothing forgotten


def test_purge_flag_needs_reset(cli: Cli) -> None:
    run = cli("push", "demo-1", cli.sandbox.video_url("demo-1"), "--purge")
    assert run.code == 2
    assert "--reset" in run.stderr


# -- private origins -------------------------------------------------------------


def test_push_through_a_private_bucket_origin_signs_fetches_only(tmp_path: Path) -> None:
    signing = Settings(_env_file=None, cdn_preheat_origin_signing="qiniu-private")  # type: ignore[call-arg]
    with Sandbox.from_settings(signing, videos=1, segments=4, task_delay=0.2) as box:
        cli = Cli(box, tmp_path, {**base_env(tmp_path), **box.client_env("qiniu")})
        unsigned = cli(
            "push", "demo-1", box.video_url("demo-1"),
            extra_env={"CDN_PREHEAT_ORIGIN_SIGNING": "none"},
        )  # fmt: skip
        assert unsigned.code == 2
        assert "HTTP 401" in unsigned.stderr
        run = cli("push", "demo-1", box.video_url("demo-1"), "--json")
        assert run.code == 0, run.stderr
        assert run.json()["done"] == run.json()["found"] > 0
        received = box.qiniu.received_urls()
        assert received and not any("token=" in url or "e=" in url for url in received)


# -- bucket discovery -------------------------------------------------------------


def test_batch_discovers_top_level_playlists_in_a_large_bucket(qcli: Cli) -> None:
    box = qcli.sandbox
    teaser = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n/vod/demo-1/v0/seg0.ts\n"
        "#EXTINF:6,\n/vod/demo-1/v0/seg1.ts\n#EXT-X-ENDLIST\n"
    )
    box.origin.add_file("/vod/clips/teaser.m3u8", teaser)
    keys = [
        p.removeprefix("/") for v in box.origin.video_ids() for p in box.origin.catalog_paths(v)
    ]
    keys += ["vod/clips/teaser.m3u8", "other/outside.m3u8", "other/outside.mpd"]
    keys += ["vod/demo-2/manifest.mpd"]  # the same title packaged for DASH too
    keys += [f"vod/archive/{n:05d}.ts" for n in range(3000)]
    box.qiniu.put_objects("media", keys)
    assert sum(k.endswith(".m3u8") for k in keys) > 4 * 4  # masters and their variants

    run = qcli(
        "batch",
        "--qiniu-bucket", "media",
        "--prefix", "vod/",
        "--domain", box.endpoints["origin"],
        "--json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    videos = {v["video_id"]: v for v in run.json()["videos"]}
    expected = {f"vod/demo-{n}/master" for n in range(1, 5)} | {"vod/clips/teaser"}
    assert set(videos) == expected | {"vod/demo-2/manifest"}
    assert all(v["error"] is None for v in videos.values())
    assert videos["vod/demo-1/master"]["found"] == len(expanded(qcli, "demo-1"))
    assert run.json()["run"]["pending"] == 0
    assert box.edge_url("/vod/clips/teaser.m3u8") in box.qiniu.received_urls()
    dash = [box.edge_url(p) for p in box.origin.dash_catalog_paths("demo-2")]
    assert videos["vod/demo-2/manifest"]["found"] == len(dash)
    assert set(dash) <= set(box.qiniu.received_urls())


def test_batch_needs_a_file_or_a_bucket(qcli: Cli) -> None:
    run = qcli("batch")
    assert run.code == 2
    assert "--qiniu-bucket" in run.stderr


# -- traffic and logs ---------------------------------------------------------------


@pytest.mark.parametrize("provider", ["qiniu", "tencent"])
def test_stats_reports_flux_and_bandwidth(qcli: Cli, provider: str) -> None:
    env = qcli.sandbox.client_env(provider)
    run = qcli(
        "stats", "--from", YESTERDAY, "--to", YESTERDAY, "--granularity", "hour", "--json",
        extra_env=env,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    report = run.json()
    assert report["provider"] == provider
    assert len(report["points"]) == 24
    assert report["total_flux_bytes"] > 0
    assert report["peak_bandwidth_bps"] == max(p["bandwidth_bps"] for p in report["points"])
    table = qcli("stats", "--from", YESTERDAY, "--to", YESTERDAY, extra_env=env)
    assert table.code == 0, table.stderr
    assert "total flux" in table.stderr and "peak bandwidth" in table.stderr


def test_stats_plot_writes_a_png(qcli: Cli, tmp_path: Path) -> None:
    # matplotlib comes with the test extra, so this runs wherever the suite does.
    chart = tmp_path / "traffic.png"
    run = qcli("stats", "--from", YESTERDAY, "--to", YESTERDAY, "--plot", str(chart))
    assert run.code == 0, run.stderr
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_stats_plot_without_matplotlib_names_the_extra(qcli: Cli, tmp_path: Path) -> None:
    # A package named matplotlib that cannot be imported, first on the path.
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    run = qcli(
        "stats", "--from", YESTERDAY, "--to", YESTERDAY, "--plot", str(tmp_path / "x.png"),
        extra_env={"PYTHONPATH": str(shim.parent)},
    )  # fmt: skip
    assert run.code == 2
    assert "pip install 'cdn-preheat[plot]'" in run.stderr
    assert not (tmp_path / "x.png").exists()


def test_stats_refuses_bad_dates_and_providers_without_statistics(qcli: Cli) -> None:
    assert qcli("stats", "--from", "yesterday", "--to", YESTERDAY).code == 2
    assert qcli("stats", "--from", YESTERDAY, "--to", "2000-01-01").code == 2
    aliyun = qcli(
        "stats", "--from", YESTERDAY, "--to", YESTERDAY,
        extra_env=qcli.sandbox.client_env("aliyun"),
    )  # fmt: skip
    assert aliyun.code == 2
    assert "traffic statistics" in aliyun.stderr


def test_logs_is_refused_where_the_provider_declares_no_log_api(qcli: Cli) -> None:
    aliyun = qcli("logs", "--date", YESTERDAY, extra_env=qcli.sandbox.client_env("aliyun"))
    assert aliyun.code == 2
    assert aliyun.stderr.strip().endswith(
        "CDN_PROVIDER=aliyun has no access-log API; use tencent or qiniu."
    )


@pytest.mark.parametrize("provider", ["qiniu", "tencent"])
def test_logs_lists_download_links(qcli: Cli, provider: str) -> None:
    env = qcli.sandbox.client_env(provider)
    run = qcli("logs", "--date", YESTERDAY, "--json", extra_env=env)
    assert run.code == 0, run.stderr
    logs = run.json()["logs"]
    assert logs and all(log["url"].startswith("http") for log in logs)
    assert [log["start"] for log in logs] == sorted(log["start"] for log in logs)
    plain = qcli("logs", "--date", YESTERDAY, extra_env=env)
    assert plain.code == 0, plain.stderr
    assert plain.stdout.split() == [log["url"] for log in logs]
