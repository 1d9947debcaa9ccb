"""Verify and purge per target, through the library, against a sandbox whose accounts
each own a domain of their own (``edge_per_account``), over real HTTP.

Each account's domain is a further host of the sandbox edge with its vendor's cache
header, and the edge caches per host: a target's probes say what that target's
pushes warmed, not what another account's did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import cdn_preheat
from cdn_preheat.config import Settings, load_settings
from cdn_preheat.sandbox.server import Sandbox, TencentAccount
from cdn_preheat.sandbox.tencent import TencentLimits

NAMES = ("tencent", "tencent-b", "qiniu", "edgeone")
HEADERS = {
    "tencent": "x-cache-lookup",
    "tencent-b": "x-cache-lookup",
    "qiniu": "x-qnm-cache",
    "edgeone": "eo-cache-status",
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    accounts = {"tencent-b": TencentAccount(limits=TencentLimits(task_delay=0.1))}
    box = Sandbox(
        videos=6, variants=2, segments=4, task_delay=0.1, tencent_accounts=accounts,
        edge_per_account=True,
    )  # fmt: skip
    with box:
        yield box


def configure(
    sandbox: Sandbox, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[Settings, dict[str, str]]:
    variables = sandbox.targets_file(tmp_path / "targets.toml", NAMES)
    variables.update(env or {})
    settings = load_settings(
        cdn_preheat_targets=variables["CDN_PREHEAT_TARGETS"],
        cdn_preheat_db=str(tmp_path / "ledger.sqlite3"),
        cdn_preheat_invalid_retry_seconds=0.2,
        cdn_preheat_poll_seconds=0.1,
    )
    return settings, variables


def test_every_account_owns_a_host_of_its_own_with_its_vendors_header(sandbox: Sandbox) -> None:
    hosts = [sandbox.hosts[name] for name in NAMES]
    assert len(set(hosts)) == len(NAMES)
    assert sandbox.hosts["tencent"] == sandbox.edge.netloc


def test_verify_per_target_probes_each_host_and_a_cold_target_fails_alone(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    wrong = "wrong-secret-of-tencent-b-991"
    settings, env = configure(sandbox, tmp_path, {"SANDBOX_TENCENT_B_KEY_SECRET": wrong})
    with cdn_preheat.TargetsPreheater.from_settings(settings, environ=env) as targets:
        run = targets.preheat([("demo-1", sandbox.video_url("demo-1"))])
        assert run.exit_code == 2  # tencent-b refused its keys; its URLs stay queued
        checked = targets.verify("demo-1", sample=None)
    assert isinstance(checked, cdn_preheat.TargetsVerify)
    assert [t.name for t in checked.results] == list(NAMES)
    assert not checked.passed and checked.exit_code == 1
    for name in NAMES:
        result = checked[name]
        assert isinstance(result, cdn_preheat.TargetVerify)
        assert result.report.results, name
        # its own URLs, at its own host, read with its vendor's header
        assert {urlsplit(r.url).netloc for r in result.report.results} == {sandbox.hosts[name]}
        assert {(r.header or "").lower() for r in result.report.results} == {HEADERS[name]}
    for name in ("tencent", "qiniu", "edgeone"):
        assert checked[name].passed and checked[name].hit_ratio == 1.0, name
    cold = checked["tencent-b"]
    assert not cold.passed and cold.hit_ratio == 0.0
    assert cold.report.overall.misses == cold.report.overall.total
    assert "below --min-hit-ratio" in cold.gate.reason
    assert wrong not in repr(checked)


def test_verify_requeues_the_misses_of_the_cold_target_only(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings, env = configure(sandbox, tmp_path)
    with cdn_preheat.TargetsPreheater.from_settings(settings, environ=env) as targets:
        assert targets.preheat([("demo-2", sandbox.video_url("demo-2"))]).exit_code == 0
        cold_host = sandbox.hosts["qiniu"]
        for path in sandbox.origin.catalog_paths("demo-2"):
            sandbox.cache.discard(f"http://{cold_host}{path}")  # qiniu's copies evicted
        checked = targets.verify("demo-2", sample=None, requeue=True)
        after = {row.name: row.counts for row in targets.status("demo-2")}
    assert [t.name for t in checked.results if not t.passed] == ["qiniu"]
    assert checked["qiniu"].requeued == checked["qiniu"].report.overall.total > 0
    assert after["qiniu"].get(cdn_preheat.UrlState.PENDING) == checked["qiniu"].requeued
    for name in ("tencent", "tencent-b", "edgeone"):
        assert checked[name].requeued == 0
        assert cdn_preheat.UrlState.PENDING not in after[name], name


def test_purge_per_target_with_one_targets_bad_keys_purges_the_others(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings, env = configure(sandbox, tmp_path)
    with cdn_preheat.TargetsPreheater.from_settings(settings, environ=env) as targets:
        assert targets.preheat([("demo-3", sandbox.video_url("demo-3"))]).exit_code == 0
        assert targets.verify("demo-3", sample=None).passed  # every target warm
    wrong = "wrong-qiniu-secret-5150"
    settings, env = configure(sandbox, tmp_path, {"SANDBOX_QINIU_KEY_SECRET": wrong})
    with cdn_preheat.TargetsPreheater.from_settings(settings, environ=env) as targets:
        purged = targets.purge(video_id="demo-3")
        checked = targets.verify("demo-3", sample=None)
    assert isinstance(purged, cdn_preheat.TargetsPurge)
    assert [t.name for t in purged.results] == list(NAMES)
    assert purged.exit_code == 2
    bad = purged["qiniu"]
    assert isinstance(bad, cdn_preheat.TargetPurge)
    assert bad.result is None and bad.exit_code == 2
    assert bad.error is not None
    assert bad.error.startswith("target qiniu: Qiniu rejected the credentials")
    assert "SANDBOX_QINIU_KEY_ID and SANDBOX_QINIU_KEY_SECRET" in bad.error
    assert wrong not in repr(purged)
    for name in ("tencent", "tencent-b", "edgeone"):
        result = purged[name].result
        assert result is not None and purged[name].error is None, name
        assert result.urls == result.done > 0 and result.failed == 0, name
    # each purged target is cold again at its own host; qiniu's copies were not purged
    for name in ("tencent", "tencent-b", "edgeone"):
        assert checked[name].hit_ratio == 0.0, name
    assert checked["qiniu"].hit_ratio == 1.0


def test_purge_moves_urls_and_directories_to_each_targets_host(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings, env = configure(sandbox, tmp_path)
    base = sandbox.hosts["tencent"]
    with cdn_preheat.TargetsPreheater.from_settings(settings, environ=env) as targets:
        assert targets.preheat([("demo-4", sandbox.video_url("demo-4"))]).exit_code == 0
        playlist = f"http://{base}/vod/demo-4/master.m3u8"
        purged = targets.purge(urls=[playlist], dirs=[f"http://{base}/vod/demo-4/v0"])
        checked = targets.verify("demo-4", sample=None)
    assert purged.exit_code == 0, [t.error for t in purged.results]
    for name in NAMES:
        result = purged[name].result
        assert result is not None and (result.urls, result.dirs) == (1, 1), name
        assert result.done >= 1 and result.failed == 0, name
        cold = {r.url for r in checked[name].report.results if not r.status.cached}
        host = sandbox.hosts[name]
        assert f"http://{host}/vod/demo-4/master.m3u8" in cold, name
        assert any(url.startswith(f"http://{host}/vod/demo-4/v0/") for url in cold), name
        assert not any("/v1/" in url for url in cold), name  # outside the directory: warm


def test_a_delete_purge_qiniu_cannot_do_fails_qiniu_alone(sandbox: Sandbox, tmp_path: Path) -> None:
    settings, env = configure(sandbox, tmp_path)
    base = sandbox.hosts["tencent"]
    with cdn_preheat.TargetsPreheater.from_settings(settings, environ=env) as targets:
        assert targets.preheat([("demo-5", sandbox.video_url("demo-5"))]).exit_code == 0
        purged = targets.purge(dirs=[f"http://{base}/vod/demo-5/"], delete=True)
        with pytest.raises(cdn_preheat.InputError, match="--delete applies to --dir"):
            targets.purge(urls=[f"http://{base}/vod/demo-5/master.m3u8"], delete=True)
        with pytest.raises(cdn_preheat.InputError, match="no video 'never-queued'"):
            targets.verify("never-queued")
    assert purged.exit_code == 2
    qiniu = purged["qiniu"]
    assert qiniu.result is None and qiniu.error is not None
    assert qiniu.error.startswith("target qiniu: CDN_PROVIDER=qiniu cannot delete")
    for name in ("tencent", "tencent-b", "edgeone"):
        result = purged[name].result
        assert result is not None and result.dirs == result.done == 1, name
