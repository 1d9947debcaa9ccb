"""``cdn-preheat serve`` as a process: exposure rules, SIGTERM, logs without tokens."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cdn_preheat.errors import ConfigError
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.sandbox.core import Faults
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.service.runner import check_exposure
from cdn_preheat.service.settings import ServiceSettings

TOKEN = "serve-test-token-7f3a9c"
QUERY_SECRET = "query-secret-5d1e8b"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the refusal is about
_CLEARED = ("TENCENT_", "QINIU_", "ALIYUN_", "CDN_", "MONGODB_", "PROMETHEUS_")


def _env(workdir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEARED)}
    env.update({"CDN_PREHEAT_DB": str(workdir / "ledger.sqlite3"), **extra})
    return env


def _run(workdir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdn_preheat", "serve", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    done = _run(tmp_path, "--host", ALL_INTERFACES, "--port", "0", env=_env(tmp_path, {}))
    assert done.returncode == 2
    assert "needs an API token: set CDN_PREHEAT_API_TOKENS" in done.stderr
    assert not (tmp_path / "ledger.sqlite3").exists()


def test_a_port_in_use_is_exit_2_with_a_sentence_not_uvicorns_3(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run(tmp_path, "--port", str(port), "--no-worker", env=_env(tmp_path, {}))
    assert done.returncode == 2, done.stderr  # 3 is the README's "quota spent"
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"error: cannot listen on 127.0.0.1:{port}; is the port in use?"
    assert "Traceback" not in done.stderr


def test_beyond_loopback_needs_allowed_origins() -> None:
    service = ServiceSettings(cdn_preheat_api_tokens=TOKEN)
    with pytest.raises(ConfigError, match="needs CDN_PREHEAT_ALLOWED_ORIGINS"):
        check_exposure(ALL_INTERFACES, service.api_tokens(), service)
    check_exposure("127.0.0.1", (), ServiceSettings())  # loopback: neither is needed
    check_exposure("::1", (), ServiceSettings())
    allowed = ServiceSettings(cdn_preheat_api_tokens=TOKEN, cdn_preheat_allowed_origins="*.a.b")
    check_exposure(ALL_INTERFACES, allowed.api_tokens(), allowed)


@pytest.fixture(scope="module")
def slow_box() -> Iterator[Sandbox]:
    # Every API answer 0.3 s late: pushes are in flight when SIGTERM comes.
    with Sandbox(videos=3, segments=30, task_delay=0.2, faults=Faults(latency=0.3)) as box:
        yield box


def _pump(stream: object) -> tuple[queue.Queue[str], threading.Thread]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


@pytest.mark.slow
def test_sigterm_settles_the_batches_in_flight_and_leaves_no_lease(
    slow_box: Sandbox, tmp_path: Path
) -> None:
    env = _env(
        tmp_path,
        {
            **slow_box.client_env("tencent"),
            "CDN_PREHEAT_API_TOKENS": TOKEN,
            "CDN_PREHEAT_ALLOWED_NETWORKS": "127.0.0.1/32",
            "CDN_PREHEAT_BATCH_SIZE": "10",
        },
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "cdn_preheat", "serve", "--port", "0", "--idle", "0.5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        lines, pump = _pump(process.stderr)
        url = ""
        while not url:
            line = lines.get(timeout=30)
            output.append(line)
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].split()[0]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
            for n in (1, 2, 3):
                body = {"video_id": f"demo-{n}", "m3u8_url": slow_box.video_url(f"demo-{n}")}
                assert client.post("/v1/videos", json=body).status_code == 202
            assert client.get("/healthz", params={"token": QUERY_SECRET}).status_code == 200
            # Wait until the worker has pushed some (it is still far from done).
            ledger = SqliteLedger(tmp_path / "ledger.sqlite3", read_only=True)
            try:
                while ledger.counts().get(UrlState.SUBMITTED, 0) == 0:
                    assert process.poll() is None
                    time.sleep(0.05)
            finally:
                ledger.close()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    pump.join(timeout=10)
    while not lines.empty():
        output.append(lines.get())
    log = "".join(output)
    assert code == 0, log
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    try:
        counts = ledger.counts()
        assert counts.get(UrlState.RESERVED, 0) == 0, counts
        assert counts.get(UrlState.PENDING, 0) > 0  # stopped early: the rest stays queued
        assert counts.get(UrlState.SUBMITTED, 0) + counts.get(UrlState.DONE, 0) > 0
    finally:
        ledger.close()
    assert "POST /v1/videos" in log  # the access log is on ...
    assert TOKEN not in log and QUERY_SECRET not in log  # ... and holds no token
