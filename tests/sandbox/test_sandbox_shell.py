"""The sandbox from the shell: demo keys, fault and limit options, the demo bucket,
and ``GET /_sandbox/received`` on every API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cdn_preheat import config
from cdn_preheat.config import Settings
from cdn_preheat.errors import InputError
from cdn_preheat.providers.aliyun import AliyunProvider
from cdn_preheat.providers.qiniu import QiniuProvider
from cdn_preheat.sandbox import core
from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import DEMO_BUCKET, Sandbox, parse_faults, parse_per_vendor


def base_env(workdir: Path) -> dict[str, str]:
    """The environment of a user who set none of cdn-preheat's variables."""
    prefixes = ("TENCENT_", "QINIU_", "ALIYUN_", "CDN_", "MONGODB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["CDN_PREHEAT_DB"] = str(workdir / "ledger.sqlite3")
    return env


# -- demo keys ------------------------------------------------------------------------


def test_an_endpoint_without_keys_gets_the_sandbox_demo_keys() -> None:
    settings = Settings(_env_file=None, tencent_endpoint="http://127.0.0.1:9")
    assert settings.tencent_secret_id is not None and settings.tencent_secret_key is not None
    assert settings.tencent_secret_id.get_secret_value() == config.SANDBOX_TENCENT_SECRET_ID
    assert settings.tencent_secret_key.get_secret_value() == config.SANDBOX_TENCENT_SECRET_KEY
    assert settings.sandbox_demo_keys == {"tencent"}
    assert settings.qiniu_access_key is None and settings.aliyun_access_key_id is None


def test_demo_keys_for_qiniu_and_aliyun_endpoints() -> None:
    settings = Settings(
        _env_file=None, qiniu_rsf_endpoint="http://127.0.0.1:9", aliyun_endpoint="127.0.0.1:9"
    )
    assert settings.qiniu_access_key is not None and settings.aliyun_access_key_secret is not None
    assert settings.qiniu_access_key.get_secret_value() == config.SANDBOX_QINIU_ACCESS_KEY
    assert (
        settings.aliyun_access_key_secret.get_secret_value()
        == config.SANDBOX_ALIYUN_ACCESS_KEY_SECRET
    )
    assert settings.sandbox_demo_keys == {"qiniu", "aliyun"}


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the real API: no demo keys
        {"tencent_endpoint": "http://127.0.0.1:9", "tencent_secret_id": "AKIDmine"},
        {"tencent_endpoint": "http://127.0.0.1:9", "tencent_secret_key": "mine"},
    ],
)
def test_no_demo_keys_without_an_endpoint_or_with_a_key_of_ones_own(
    overrides: dict[str, str],
) -> None:
    settings = Settings(_env_file=None, **overrides)  # type: ignore[arg-type]
    assert settings.sandbox_demo_keys == frozenset()
    for name in ("tencent_secret_id", "tencent_secret_key"):
        value = getattr(settings, name)
        assert value is None or value.get_secret_value() == overrides[name]


# -- option parsing -------------------------------------------------------------------


def test_faults_option_sets_each_chance() -> None:
    faults = parse_faults(
        "5xx=0.1, drop=0.1,lost=0.05,slow=0.05,rate=0.2", latency_ms=20, slow_ms=500
    )
    assert (faults.server_error, faults.drop, faults.lost_answer) == (0.1, 0.1, 0.05)
    assert (faults.slow, faults.rate_limited) == (0.05, 0.2)
    assert (faults.latency, faults.slow_seconds) == (0.02, 0.5)
    assert parse_faults("").server_error == 0


@pytest.mark.parametrize("text", ["5xx", "boom=0.1", "drop=2", "drop=x", "5xx=0.6,drop=0.6"])
def test_bad_faults_option_is_one_sentence(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_faults(text)
    assert caught.value.exit_code == 2 and str(caught.value).endswith(".")


def test_per_vendor_option() -> None:
    assert parse_per_vendor("tencent=1000, qiniu=100", "--quota") == {
        "tencent": 1000,
        "qiniu": 100,
    }
    for bad in ("akamai=5", "tencent=0", "tencent=many", "tencent"):
        with pytest.raises(InputError, match="--rate"):
            parse_per_vendor(bad, "--rate")


def test_slow_answers_wait_the_slow_time(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(core.time, "sleep", slept.append)
    Faults(latency=0.01, slow=1.0, slow_seconds=2.0).pause()
    Faults(latency=0.01).pause()
    Faults().pause()
    assert slept == [2.01, 0.01]


# -- the inspection endpoint ----------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(videos=2, segments=3, task_delay=0) as box:
        box.fill_demo_bucket()
        yield box


def received(box: Sandbox, vendor: str) -> dict[str, object]:
    answer = httpx.get(f"{box.endpoints[vendor]}/_sandbox/received", timeout=10)
    assert answer.status_code == 200
    document = answer.json()
    assert isinstance(document, dict)
    return document


def test_every_api_reports_what_it_accepted(sandbox: Sandbox) -> None:
    urls = [sandbox.edge_url(p) for p in sandbox.origin.catalog_paths("demo-1")[:3]]
    env = {k.lower(): v for k, v in sandbox.client_env().items()}
    AliyunProvider(Settings(_env_file=None, **env)).submit(urls)  # type: ignore[arg-type]
    QiniuProvider(Settings(_env_file=None, **env)).submit(urls[:2])  # type: ignore[arg-type]
    for vendor, count in (("tencent", 0), ("aliyun", 3), ("qiniu", 2)):
        document = received(sandbox, vendor)
        assert document["vendor"] == vendor and document["urls"] == count
        accepted = document["accepted"]
        assert isinstance(accepted, list)
        assert [u for item in accepted for u in item["urls"]] == urls[:count]
    outcomes = received(sandbox, "aliyun")["outcomes"]
    assert isinstance(outcomes, dict) and outcomes["ok"] >= 1


def test_the_demo_bucket_lists_the_playlists(sandbox: Sandbox) -> None:
    env = {k.lower(): v for k, v in sandbox.client_env().items()}
    keys = list(QiniuProvider(Settings(_env_file=None, **env)).iter_keys(DEMO_BUCKET, "vod/"))  # type: ignore[arg-type]
    assert "vod/demo-1/master.m3u8" in keys and "vod/demo-2/master.m3u8" in keys
    assert all(key.endswith(".m3u8") for key in keys)


# -- the command ----------------------------------------------------------------------


def start_sandbox(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = base_env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "cdn_preheat", "sandbox", "--videos", "1", *options],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else ""
    return process, json.loads(line)


def cli(tmp_path: Path, endpoints: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **base_env(tmp_path),
        "TENCENT_ENDPOINT": endpoints["tencent"],
        "CDN_HOST": endpoints["edge"],
    }
    return subprocess.run(
        [sys.executable, "-m", "cdn_preheat", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_sandbox_command_applies_the_quota_option(tmp_path: Path) -> None:
    process, endpoints = start_sandbox(tmp_path, "--quota", "tencent=10")
    try:
        assert endpoints["qiniu_bucket"] == DEMO_BUCKET
        run = cli(
            tmp_path, endpoints, "push", "demo-1", f"{endpoints['origin']}/vod/demo-1/master.m3u8"
        )
        assert run.returncode == 3, run.stderr
        document = httpx.get(f"{endpoints['tencent']}/_sandbox/received", timeout=10).json()
        assert 0 < document["urls"] <= 10
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_sandbox_command_applies_the_faults_option(tmp_path: Path) -> None:
    process, endpoints = start_sandbox(tmp_path, "--faults", "5xx=1")
    try:
        run = cli(tmp_path, endpoints, "quota")
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        document = httpx.get(f"{endpoints['tencent']}/_sandbox/received", timeout=10).json()
        assert document["urls"] == 0 and document["outcomes"]["fault"] >= 1
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_sandbox_command_refuses_a_bad_option_in_one_sentence(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "cdn_preheat", "sandbox", "--faults", "boom=1"],
        cwd=tmp_path,
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and "--faults" in run.stderr and "Traceback" not in run.stderr


def test_sandbox_command_on_a_port_in_use_says_so_in_one_sentence(tmp_path: Path) -> None:
    process, endpoints = start_sandbox(tmp_path)
    try:
        taken = int(endpoints["origin"].rsplit(":", 1)[1])
        run = subprocess.run(
            [sys.executable, "-m", "cdn_preheat", "sandbox", "--port", str(taken)],
            cwd=tmp_path,
            env=base_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 2, run.stderr
        assert run.stderr == (
            f"error: a port from {taken} to {taken + 5} is already in use (another sandbox?);"
            " choose another --port, or 0 for any free ones.\n"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
