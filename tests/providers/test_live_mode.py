"""The contract suite's live mode, run as a user runs it against "a real account".

The account here is a sandbox in this process, reached only through the variables a
real run takes (CDN_PREHEAT_LIVE=1, the vendor's endpoint and keys, CDN_HOST,
CDN_PREHEAT_LIVE_URLS): the live tests must pass on it and spend exactly one quota
unit per listed URL, no more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cdn_preheat.sandbox.server import Sandbox

SUITE = Path(__file__).with_name("test_provider_contract.py")
_CLEARED = ("TENCENT_", "QINIU_", "ALIYUN_", "CDN_", "MONGODB_")


def _run_live(env: dict[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    return subprocess.run(
        # As the README runs it: only the live kind's tests.
        [sys.executable, "-m", "pytest", str(SUITE), "-m", "live", "-q", "-rs",
         "-p", "no:cacheprovider"],
        cwd=workdir, env={**clean, **env}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def test_live_mode_runs_the_live_tests_and_spends_one_unit_per_listed_url(
    tmp_path: Path,
) -> None:
    with Sandbox(videos=1, segments=3, task_delay=0.5) as box:
        urls = [box.edge_url(p) for p in box.origin.catalog_paths("demo-1")[:3]]
        listed = tmp_path / "live-urls.txt"
        listed.write_text("# a few real URLs\n" + "\n".join(urls) + "\n\n", encoding="utf-8")
        env = {
            **box.client_env("tencent"),
            "CDN_PREHEAT_LIVE": "1",
            "CDN_PREHEAT_LIVE_URLS": str(listed),
            "CDN_PREHEAT_LIVE_POLL": "0.5",
            "CDN_PREHEAT_LIVE_TIMEOUT": "60",
        }
        run = _run_live(env, tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "2 passed" in run.stdout and "skipped" not in run.stdout, run.stdout
        assert box.tencent.received_urls() == urls  # the listed URLs, once each
        assert box.tencent.quota_used("mainland") == len(urls)


def test_without_the_variables_the_live_tests_skip_naming_them(tmp_path: Path) -> None:
    run = _run_live({}, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 skipped" in run.stdout and "passed" not in run.stdout
    for variable in ("CDN_PREHEAT_LIVE=1", "CDN_PROVIDER", "CDN_PREHEAT_LIVE_URLS"):
        assert variable in run.stdout
